// What the connection is, as the transport keeps it and as users see it: its phases (one
// `ConnectionState`), the `StatusInfo` the widget shows and Python reads, and its timing.
// The state machine that moves between them is transport.ts; the view, the store and the
// widget read these types without loading it. The statuses, as the transport moves between them:
//
//   connecting ──open──▶ (Join) ──Joined──▶ live ──drop/heartbeat timeout──▶ reconnecting
//        │                                    ▲                                │ backoff timer,
//        └──never opened, no extension───▶ via_kernel                          │ `online`, visible,
//        └──not authorised──▶ failed                                           ▼ retryNow()
//                                                                           connecting…
//
// Through the kernel relay: via_kernel ──Joined──▶ via_kernel (live) ──relay closed──▶
// reconnecting (backoff) ──▶ via_kernel again. A relay that cannot reach a server before it
// ever joined (Error on the Join) ends in `failed` with the kernel's reason, as does a server
// that answers with Error 503 before any Join (llmchat did not start: the reason is the setting).

import type { SocketLike } from "./socket-like";

/** What the widget shows and Python reads as `status`. */
export type Status = "connecting" | "live" | "reconnecting" | "via_kernel" | "failed";
export type TransportKind = "websocket" | "kernel";
export type TransportMode = "auto" | "websocket" | "kernel";
export type ProbeResult = "ok" | "missing" | "forbidden" | "unreachable";

export interface Timing {
  heartbeatMs: number; // app-level Ping period: browsers cannot see protocol pings
  pongTimeoutMs: number; // no frame at all this long after a Ping: the socket is dead
  connectTimeoutMs: number; // an upgrade that neither opens nor fails (black-holed proxy)
  serverFullFloorMs: number; // after close 1013 wait at least this long
  kernelFallbackAfter: number; // upgrades failing this many times before any success → kernel relay
}

export const DEFAULT_TIMING: Timing = {
  heartbeatMs: 15_000,
  pongTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  serverFullFloorMs: 5_000,
  kernelFallbackAfter: 3,
};

export interface StatusInfo {
  status: Status;
  transport: TransportKind | null;
  /** Why we are not live (last close reason, failure cause, relay notice). */
  reason: string;
  /** When the next attempt is due (ms since epoch), while waiting to reconnect. */
  retryAt: number | null;
  attempt: number;
}

/**
 * Where the connection is, as one value: the socket exists only in the phases that have one,
 * so "open but not joined" or "failed with a socket" cannot be written down by mistake.
 */
export type ConnectionState =
  | { phase: "idle" } // not started
  | { phase: "opening"; via: TransportKind; sock: SocketLike } // upgrade (or relay) under way
  | { phase: "open"; via: TransportKind; sock: SocketLike } // Join sent, no Joined yet
  | { phase: "joined"; via: TransportKind; sock: SocketLike } // frames flow both ways
  | { phase: "dropped"; via: TransportKind } // the socket just went; the next phase is being chosen
  | { phase: "waiting"; via: TransportKind; retryAt: number } // backoff before the next attempt
  | { phase: "failed"; via: TransportKind | null } // given up until retryNow()
  | { phase: "stopped" }; // for good

type WithSocket = Extract<ConnectionState, { sock: SocketLike }>;
export type Socketless = Exclude<ConnectionState, WithSocket>;
