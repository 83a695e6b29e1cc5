// The connection itself: one socket at a time, healed forever. It opens the WebSocket (or the
// kernel relay), retries with backoff, checks a quiet socket with a heartbeat, and falls back
// to the kernel relay where the WebSocket cannot work. It knows nothing of rooms: the client
// says Join when told the socket opened, and tells it when Joined arrived. The statuses it
// moves through, and when, are drawn in connection-state.ts.
//
// Its state is one `ConnectionState`, which it branches on; `status` is what users see of
// it. The socket factories, the page events (`env`), the clock (global timers, so fake
// timers drive it) and randomness are injected.

import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from "./backoff";
import { Heartbeat } from "./heartbeat";
import type { ClientEnv } from "./page-env";
import { newId, parseFrame, type ErrorData, type Frame } from "./protocol";
import {
  DEFAULT_TIMING,
  type ConnectionState,
  type ProbeResult,
  type Socketless,
  type StatusInfo,
  type Timing,
  type TransportKind,
  type TransportMode,
} from "./connection-state";
import { describeClose, OPEN, safeClose, type SocketLike } from "./socket-like";

export interface TransportOptions {
  /** Candidate WebSocket URLs, tried in turn until one opens (cookie auth first, then ?token=). */
  urls: string[];
  openSocket: (url: string) => SocketLike;
  /** The kernel comm relay, or null where there is no kernel to relay through. */
  openKernel?: (() => SocketLike) | null;
  /** Asks the REST API whether the extension exists, to tell "not installed" from "down". */
  probe?: (() => Promise<ProbeResult>) | null;
  mode?: TransportMode;
  env?: ClientEnv | null;
  random?: () => number;
  backoff?: BackoffPolicy;
  timing?: Partial<Timing>;
}

/** How the transport talks to the client that owns it. */
export interface TransportHooks {
  /** The socket opened: say Join. */
  opened(): void;
  frame(f: Frame): void;
  /** The socket is gone (dropped, replaced or closed by us): requests tied to it end. */
  lost(): void;
  /** A WebSocket closed with this code, before the next attempt is planned. */
  closed(code: number): void;
  status(info: StatusInfo): void;
}

export class Transport {
  private readonly timing: Timing;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly mode: TransportMode;
  private _state: ConnectionState = { phase: "idle" };
  private info: StatusInfo = { status: "connecting", transport: null, reason: "", retryAt: null, attempt: 0 };
  private everJoined = false; // after a first success, a drop is a restart: heal, never fall back
  private failedUpgrades = 0;
  private urlIndex = 0;
  private probe: (() => Promise<ProbeResult>) | null; // asked once, then null
  private kernelReason = "";

  private readonly heartbeat: Heartbeat;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private unlisten: Array<() => void> = [];

  constructor(
    private readonly opts: TransportOptions,
    private readonly hooks: TransportHooks,
  ) {
    this.timing = { ...DEFAULT_TIMING, ...(opts.timing ?? {}) };
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.random = opts.random ?? Math.random;
    this.mode = opts.mode ?? "auto";
    this.probe = opts.probe ?? null;
    this.heartbeat = new Heartbeat(
      { everyMs: this.timing.heartbeatMs, timeoutMs: this.timing.pongTimeoutMs },
      () => this.send({ type: "Ping", id: newId("p"), data: {} }),
      () => this.onSilence(),
    );
  }

  get state(): ConnectionState {
    return this._state;
  }
  get status(): StatusInfo {
    return { ...this.info };
  }
  get joined(): boolean {
    return this._state.phase === "joined";
  }
  /** The socket is open (Join may be said on it). */
  get isOpen(): boolean {
    return this._state.phase === "open" || this._state.phase === "joined";
  }

  // ---- lifecycle -------------------------------------------------------------------

  start(): void {
    if (this._state.phase !== "idle") return;
    const env = this.opts.env;
    if (env) this.unlisten.push(env.onOnline(() => this.retryNow()), env.onVisible(() => this.retryNow()));
    if (this.mode === "kernel") this.useKernel("kernel transport requested");
    else if (this.opts.urls.length === 0) {
      if (this.mode === "auto" && this.opts.openKernel) this.useKernel("no Jupyter server on this page");
      else this.fail("no Jupyter server URL on this page");
    } else this.connect();
  }

  /** Close everything for good (widget model destroyed). */
  stop(): void {
    if (this._state.phase === "stopped") return;
    this.clearTimers();
    for (const off of this.unlisten) off();
    this.unlisten = [];
    const sock = this.detach({ phase: "stopped" });
    if (sock) safeClose(sock, 1000, "widget closed");
  }

  /** Retry at once (button, `online`, tab visible again); on a live socket check it with a Ping. */
  retryNow(): void {
    const s = this._state;
    switch (s.phase) {
      case "idle":
      case "stopped":
      case "dropped":
      case "opening": // an attempt (or the relay) is already under way
        return;
      case "open":
      case "joined":
        if (s.via === "kernel") return; // the relay heals itself; no heartbeat over the comm
        // Live (or switching rooms on a live socket): check it. Open but never joined: start over.
        if (s.phase === "joined" || this.info.status === "live") {
          this.heartbeat.check();
          return;
        }
        break;
      case "waiting":
      case "failed":
        break;
    }
    if (this.info.transport === "kernel" || this.opts.urls.length === 0) {
      const canRelay = !!this.opts.openKernel && this.mode !== "websocket";
      if ((s.phase === "failed" || s.phase === "waiting") && canRelay) {
        this.clearRetryTimer();
        this.useKernel(this.kernelReason || "retrying through the kernel");
      }
      return;
    }
    this.connect();
  }

  // ---- what the client tells us ----------------------------------------------------

  /** Send a frame on the open socket; false when there is none. */
  send(frame: Frame): boolean {
    const s = this._state;
    if ((s.phase !== "open" && s.phase !== "joined") || s.sock.readyState !== OPEN) return false;
    try {
      s.sock.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** `Joined` arrived: live (or via the kernel), and the backoff starts over. */
  markJoined(): void {
    const s = this._state;
    if (s.phase === "opening" || s.phase === "open") this._state = { phase: "joined", via: s.via, sock: s.sock };
    this.everJoined = true;
    const kernel = this.info.transport === "kernel";
    this.setStatus({ status: kernel ? "via_kernel" : "live", reason: kernel ? this.kernelReason : "", retryAt: null, attempt: 0 });
  }

  /** Another room on the same socket: not joined until its `Joined`. */
  markRejoining(): void {
    const s = this._state;
    if (s.phase === "joined") this._state = { phase: "open", via: s.via, sock: s.sock };
  }

  /** The server (or the relay) answered our Join with an Error. */
  joinRefused(d: ErrorData): void {
    if (this.info.transport === "kernel") this.onKernelJoinError(d);
    // Refused for good (forbidden / no such room).
    else if (d.code === 403 || d.code === 404) this.fail(`cannot join room: ${d.message}`);
  }

  /** The server will not serve llmchat at all (Error 503 before any Join: a bad setting stopped it). */
  serverRefused(d: ErrorData): void {
    this.fail(String(d.message ?? "the llmchat server refused the connection"));
  }

  // ---- connection ------------------------------------------------------------------

  private connect(): void {
    if (this._state.phase === "stopped") return;
    this.clearRetryTimer();
    const old = this.detach();
    if (old) safeClose(old, 4001, "replaced");
    const url = this.opts.urls[this.urlIndex % this.opts.urls.length] ?? "";
    const reconnecting = this.everJoined || this.info.attempt > 0;
    this.setStatus({ status: reconnecting ? "reconnecting" : "connecting", transport: "websocket", retryAt: null });
    let sock: SocketLike;
    try {
      sock = this.opts.openSocket(url);
    } catch (err) {
      // A malformed URL or a CSP refusal throws synchronously; treat it as a failed upgrade.
      this._state = { phase: "dropped", via: "websocket" };
      this.onDrop(1006, errorText(err), false);
      return;
    }
    this.attach(sock, "websocket");
    this.connectTimer = setTimeout(() => {
      if (!this.holds(sock) || this._state.phase !== "opening") return;
      this.detach();
      safeClose(sock, 4002, "connect timeout");
      this.onDrop(1006, "connect timeout", false);
    }, this.timing.connectTimeoutMs);
  }

  private useKernel(reason: string): void {
    const open = this.opts.openKernel;
    if (!open) {
      this.fail(reason);
      return;
    }
    this.clearTimers();
    const old = this.detach();
    if (old) safeClose(old, 4003, "switching to kernel relay");
    this.kernelReason = reason;
    this.setStatus({ status: "via_kernel", transport: "kernel", reason, retryAt: null });
    this.attach(open(), "kernel");
  }

  /** Give up until retryNow(). A socket still around (an attempt under way, a refused Join) goes too. */
  private fail(reason: string): void {
    this.clearTimers();
    const sock = this.detach({ phase: "failed", via: this.info.transport });
    if (sock) safeClose(sock, 1000, "giving up");
    this.setStatus({ status: "failed", reason, retryAt: null });
  }

  private attach(sock: SocketLike, via: TransportKind): void {
    this._state = { phase: "opening", via, sock };
    sock.onopen = () => {
      if (!this.holds(sock) || this._state.phase !== "opening") return;
      this._state = { phase: "open", via, sock };
      this.clearConnectTimer();
      this.failedUpgrades = 0;
      if (via === "websocket") this.heartbeat.start();
      this.hooks.opened();
    };
    sock.onmessage = (ev) => {
      if (!this.holds(sock)) return;
      this.heartbeat.alive();
      const frame = parseFrame(ev.data);
      if (frame) this.hooks.frame(frame);
    };
    sock.onclose = (ev) => {
      if (!this.holds(sock)) return;
      const wasOpen = this.isOpen;
      this.detach();
      if (via === "kernel") this.onKernelDrop(ev.code, ev.reason);
      else this.onDrop(ev.code, ev.reason, wasOpen);
    };
    sock.onerror = () => {
      // Browsers follow every error with a close event; the close handler does the work.
    };
    // The kernel relay says what it is doing before it can connect (starting the model service).
    sock.onstatus = (text) => {
      if (this.holds(sock) && this._state.phase !== "joined") this.setStatus({ reason: text });
    };
    if (sock.readyState === OPEN) queueMicrotask(() => sock.onopen?.({}));
  }

  private holds(sock: SocketLike): boolean {
    return "sock" in this._state && this._state.sock === sock;
  }

  /**
   * Let go of the current socket (handlers and its timers off) and return it for closing;
   * the state becomes `next`, or "dropped" until the caller chooses. Requests tied to the
   * socket hear of it last, when nothing can be sent on it any more.
   */
  private detach(next?: Socketless): SocketLike | null {
    const s = this._state;
    this.heartbeat.stop();
    this.clearConnectTimer();
    if (!("sock" in s)) {
      if (next) this._state = next;
      return null;
    }
    const sock = s.sock;
    this._state = next ?? { phase: "dropped", via: s.via };
    sock.onopen = null;
    sock.onmessage = null;
    sock.onclose = null;
    sock.onerror = null;
    sock.onstatus = null;
    this.hooks.lost();
    return sock;
  }

  private onDrop(code: number, reason: string, wasOpen: boolean): void {
    if (this._state.phase === "stopped") return;
    this.hooks.closed(code);
    if (!wasOpen && !this.everJoined) {
      this.failedUpgrades += 1;
      this.urlIndex += 1; // next candidate: cookie-only first, then ?token=
      const canFallBack = this.mode === "auto" && !!this.opts.openKernel;
      if (canFallBack && this.failedUpgrades >= this.timing.kernelFallbackAfter) {
        this.useKernel("the llmchat WebSocket is not reachable from this page");
        return;
      }
      const probe = this.probe;
      if (probe) {
        this.probe = null;
        void probe().then((result) => this.onProbe(result, canFallBack));
      }
    }
    this.scheduleRetry(describeClose(code, reason), code === 1013);
  }

  /** The kernel's socket to the server closed: heal like a dropped WebSocket, if it ever worked. */
  private onKernelDrop(code: number, reason: string): void {
    if (this._state.phase === "stopped") return;
    if (this.everJoined) this.scheduleRetry(`kernel relay: ${describeClose(code, reason)}`, code === 1013, "kernel");
    else this.fail(`kernel relay closed: ${describeClose(code, reason)}`);
  }

  /** The relay answered our Join with an Error (e.g. 503: the kernel finds no server either). */
  private onKernelJoinError(d: ErrorData): void {
    const reason = d.code ? `${d.message} (${d.code})` : String(d.message ?? "error");
    const sock = this.detach();
    if (sock) safeClose(sock, 1000, "join refused");
    // A relay that worked before is probably facing a restarting server: keep healing.
    if (this.everJoined && d.code === 503) this.scheduleRetry(reason, false, "kernel");
    else this.fail(reason);
  }

  private onProbe(result: ProbeResult, canFallBack: boolean): void {
    if (this._state.phase === "stopped" || this.everJoined) return;
    if (result === "missing" && canFallBack) this.useKernel("the llmchat server extension is not installed on this server");
    else if (result === "forbidden") this.fail("not authorised by the Jupyter server (403): log in again and retry");
  }

  private scheduleRetry(reason: string, serverFull: boolean, via: TransportKind = "websocket"): void {
    let delay = backoffDelay(this.info.attempt, this.backoff, this.random);
    if (serverFull) delay = Math.max(delay, Math.min(this.timing.serverFullFloorMs, this.backoff.capMs));
    const attempt = this.info.attempt + 1;
    const retryAt = Date.now() + delay;
    this._state = { phase: "waiting", via, retryAt };
    this.setStatus({ status: "reconnecting", transport: via, reason, retryAt, attempt });
    this.clearRetryTimer();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (via === "kernel") this.useKernel(this.kernelReason || "reconnecting through the kernel");
      else this.connect();
    }, delay);
  }

  /** No frame came back after a Ping: drop the socket without waiting for a close handshake. */
  private onSilence(): void {
    const sock = this.detach();
    if (!sock) return;
    safeClose(sock, 4000, "heartbeat timeout");
    this.onDrop(4000, "no answer to Ping (heartbeat timeout)", true);
  }

  // ---- plumbing --------------------------------------------------------------------

  private setStatus(patch: Partial<StatusInfo>): void {
    const next = { ...this.info, ...patch };
    if (patch.status === "live") next.reason = patch.reason ?? "";
    this.info = next;
    this.hooks.status({ ...next });
  }

  private clearRetryTimer(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
  private clearConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }
  private clearTimers(): void {
    this.clearRetryTimer();
    this.clearConnectTimer();
    this.heartbeat.stop();
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
