// The connection state machine: one socket per widget model, healed forever.
//
// Knows nothing of the DOM: the transport (`openSocket`, `openKernel`), the page events
// (`env`), the clock (global timers, so fake timers drive it) and randomness are injected.
//
//   connecting ──open──▶ (Join) ──Joined──▶ live ──drop/heartbeat timeout──▶ reconnecting
//        │                                    ▲                                │ backoff timer,
//        └──never opened, no extension───▶ via_kernel                          │ `online`, visible,
//        └──not authorised──▶ failed                                           ▼ retryNow()
//                                                                           connecting…
//
// Through the kernel relay: via_kernel ──Joined──▶ via_kernel (live) ──relay closed──▶
// reconnecting (backoff) ──▶ via_kernel again, Join {since}. A relay that cannot reach a
// server before it ever joined (Error on the Join) ends in `failed` with the kernel's reason.
//
// Ordering: every room event carries `seq`; anything ≤ the last seq seen is a duplicate
// (a replay overlapping what we had) and is dropped here, so consumers see each event once.

import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from "./backoff";
import {
  isRoomEvent,
  newId,
  parseFrame,
  type AckData,
  type ErrorData,
  type Frame,
  type GenerateConfig,
  type GenerateExtras,
  type HistoryData,
  type JoinedData,
  type ResetData,
  type RoomSettings,
  type TokenData,
  type WelcomeData,
} from "./protocol";

export type Status = "connecting" | "live" | "reconnecting" | "via_kernel" | "failed";
export type Transport = "websocket" | "kernel";
export type TransportMode = "auto" | "websocket" | "kernel";
export type ProbeResult = "ok" | "missing" | "forbidden" | "unreachable";

/** The part of the browser WebSocket API the client uses (a fake in tests, a comm relay in kernels). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Page signals that mean "try again now". */
export interface ClientEnv {
  onOnline(cb: () => void): () => void;
  onVisible(cb: () => void): () => void;
}

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

export interface ClientOptions {
  room: string;
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

export interface StatusInfo {
  status: Status;
  transport: Transport | null;
  /** Why we are not live (last close reason, failure cause, relay notice). */
  reason: string;
  /** When the next attempt is due (ms since epoch), while waiting to reconnect. */
  retryAt: number | null;
  attempt: number;
}

export type RequestPhase = "queued" | "sent" | "acked" | "cancelling" | "done" | "dropped" | "failed";

export interface RequestInfo {
  id: string;
  type: "Text" | "Generate";
  phase: RequestPhase;
  text: string;
  messageId: string | null;
  queuePosition: number | null;
  error: string | null;
  /** A private completion: asked without a room, answered to this connection only. */
  private: boolean;
  /** The answer this request regenerates, if it does. */
  regenerate: string | null;
  newThread: boolean;
}

interface Pending {
  frame: Frame;
  info: RequestInfo;
  sent: boolean;
  cancelRequested: boolean;
}

type Listener<T> = (value: T) => void;

interface EventMap {
  status: StatusInfo;
  frame: Frame; // accepted frames, room events deduplicated
  reset: { reason: "reset" | "room" }; // the log must be cleared (Reset, or another room)
  request: RequestInfo; // lifecycle of requests made through this client
}

const OPEN = 1;

export class ChatClient {
  private readonly opts: ClientOptions;
  private readonly timing: Timing;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly listeners: { [K in keyof EventMap]: Set<Listener<EventMap[K]>> } = {
    status: new Set(),
    frame: new Set(),
    reset: new Set(),
    request: new Set(),
  };

  private _room: string;
  private _lastSeq = 0;
  private _epoch: string | null = null;
  private _welcome: WelcomeData | null = null;
  private info: StatusInfo = { status: "connecting", transport: null, reason: "", retryAt: null, attempt: 0 };

  private sock: SocketLike | null = null;
  private sockOpened = false;
  private joined = false;
  private joinId: string | null = null;
  private everLive = false;
  private failedUpgrades = 0;
  private urlIndex = 0;
  private probed = false;
  private kernelReason = "";
  private started = false;
  private stopped = false;
  private lastSentRequest: string | null = null;
  private readonly requests = new Map<string, Pending>();
  private readonly historyRequests = new Set<string>();
  // After a fresh Join (or a Reset) the server sends the tokens of answers still running,
  // with seqs at or below the head it announced: accept each of those once, by seq.
  private catchUp: { head: number; seen: Set<number> } | null = null;

  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  private unlisten: Array<() => void> = [];

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this._room = opts.room;
    this.timing = { ...DEFAULT_TIMING, ...(opts.timing ?? {}) };
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.random = opts.random ?? Math.random;
  }

  // ---- read-only state -------------------------------------------------------------

  get room(): string {
    return this._room;
  }
  get lastSeq(): number {
    return this._lastSeq;
  }
  get epoch(): string | null {
    return this._epoch;
  }
  get welcome(): WelcomeData | null {
    return this._welcome;
  }
  get status(): StatusInfo {
    return { ...this.info };
  }
  get pending(): RequestInfo[] {
    return [...this.requests.values()].map((p) => ({ ...p.info }));
  }

  on<K extends keyof EventMap>(event: K, cb: Listener<EventMap[K]>): () => void {
    this.listeners[event].add(cb);
    return () => this.listeners[event].delete(cb);
  }

  // ---- lifecycle -------------------------------------------------------------------

  start(): void {
    if (this.started) return;
    this.started = true;
    const env = this.opts.env;
    if (env) {
      this.unlisten.push(env.onOnline(() => this.nudge()));
      this.unlisten.push(env.onVisible(() => this.nudge()));
    }
    const mode = this.opts.mode ?? "auto";
    if (mode === "kernel") this.useKernel("kernel transport requested");
    else if (this.opts.urls.length === 0) {
      if (mode === "auto" && this.opts.openKernel) this.useKernel("no Jupyter server on this page");
      else this.fail("no Jupyter server URL on this page");
    } else this.connect();
  }

  /** Close everything for good (widget model destroyed). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    for (const off of this.unlisten) off();
    this.unlisten = [];
    const sock = this.detachSocket();
    if (sock) safeClose(sock, 1000, "widget closed");
  }

  /** Retry at once (button, `online`, tab visible again); on a live socket check it with a Ping. */
  retryNow(): void {
    if (this.stopped || !this.started) return;
    if (this.info.status === "live" || this.info.status === "via_kernel") {
      if (this.info.transport === "websocket") this.sendPing();
      return;
    }
    if (this.info.transport === "kernel" || this.opts.urls.length === 0) {
      const canRelay = !!this.opts.openKernel && (this.opts.mode ?? "auto") !== "websocket";
      if ((this.info.status === "failed" || this.info.status === "reconnecting") && canRelay) {
        this.clearRetryTimer();
        this.useKernel(this.kernelReason || "retrying through the kernel");
      }
      return;
    }
    if (this.sock && !this.sockOpened) return; // an attempt is already under way
    this.clearRetryTimer();
    this.connect();
  }

  private nudge(): void {
    this.retryNow();
  }

  // ---- requests --------------------------------------------------------------------

  /** Post a chat message; queued while offline, sent once (at most once) when back. */
  sendText(content: string, id: string = newId("t")): string {
    return this.enqueue({ type: "Text", id, room: this._room, data: { content } }, "Text", content);
  }

  /**
   * Ask the model in the room; re-sent with the same id until acknowledged (the server dedupes).
   * `extras.private`: no room, the answer streams to this connection only; such a request is
   * sent at most once, because the server drops a private answer when its connection closes.
   */
  generate(prompt: string, config?: GenerateConfig, id: string = newId("g"), extras: GenerateExtras = {}): string {
    const data: Record<string, unknown> = { prompt };
    if (config && Object.keys(config).length > 0) data.config = config;
    const priv = extras.private === true;
    if (!priv) {
      // Threads, replies and regeneration are about a room; a private question has none.
      if (extras.new_thread) data.new_thread = true;
      if (extras.reply_to) data.reply_to = extras.reply_to;
      if (extras.regenerate) data.regenerate = extras.regenerate;
    }
    if (extras.attachments && extras.attachments.length > 0) data.attachments = extras.attachments;
    const frame: Frame = priv ? { type: "Generate", id, data } : { type: "Generate", id, room: this._room, data };
    return this.enqueue(frame, "Generate", prompt, {
      private: priv,
      regenerate: priv ? null : (extras.regenerate ?? null),
      newThread: !priv && extras.new_thread === true,
    });
  }

  /** Change the room's own settings (system prompt, context mode); the reply is a `RoomSettings` frame. */
  setRoomSettings(settings: Partial<RoomSettings>): string | null {
    const id = newId("r");
    return this.sendNow({ type: "RoomSettings", id, room: this._room, data: { ...settings } }) ? id : null;
  }

  /** Stop a request: forget it if it never left, otherwise `Cancel` once its message id is known. */
  cancel(id: string): void {
    const p = this.requests.get(id);
    if (!p) return;
    if (!p.sent) {
      this.finish(p, "dropped", "cancelled before it was sent");
      return;
    }
    if (p.info.type !== "Generate") return;
    p.cancelRequested = true;
    p.info.phase = "cancelling";
    this.emit("request", { ...p.info });
    if (p.info.messageId) this.sendCancel(p);
  }

  /** Ask for older messages (before `beforeSeq`); the reply arrives as a `History` frame with this id. */
  requestHistory(beforeSeq: number, limit = 50): string | null {
    const id = newId("h");
    if (!this.sendNow({ type: "History", id, room: this._room, data: { before_seq: beforeSeq, limit } })) return null;
    this.historyRequests.add(id);
    return id;
  }

  requestStats(): string | null {
    const id = newId("s");
    return this.sendNow({ type: "Stats", id, data: {} }) ? id : null;
  }

  /** Switch rooms on the same socket: leave, forget the old log, join fresh. */
  setRoom(room: string): void {
    if (room === this._room) return;
    if (this.joined) this.sendNow({ type: "Leave", id: newId("l"), room: this._room, data: {} });
    for (const p of [...this.requests.values()]) this.finish(p, "dropped", "room changed");
    this._room = room;
    this._lastSeq = 0;
    this._epoch = null;
    this.catchUp = null;
    this.joined = false;
    this.emit("reset", { reason: "room" });
    if (this.sock && this.sockOpened) this.sendJoin();
  }

  // ---- connection ------------------------------------------------------------------

  private connect(): void {
    if (this.stopped) return;
    this.clearRetryTimer();
    const old = this.detachSocket();
    if (old) safeClose(old, 4001, "replaced");
    const url = this.opts.urls[this.urlIndex % this.opts.urls.length] ?? "";
    const reconnecting = this.everLive || this.info.attempt > 0;
    this.setStatus({ status: reconnecting ? "reconnecting" : "connecting", transport: "websocket", retryAt: null });
    let sock: SocketLike;
    try {
      sock = this.opts.openSocket(url);
    } catch (err) {
      // A malformed URL or a CSP refusal throws synchronously; treat it as a failed upgrade.
      this.sock = null;
      this.onDrop(1006, errorText(err), false);
      return;
    }
    this.attach(sock, "websocket");
    this.connectTimer = setTimeout(() => {
      if (this.sock !== sock || this.sockOpened) return;
      this.detachSocket();
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
    const old = this.detachSocket();
    if (old) safeClose(old, 4003, "switching to kernel relay");
    this.kernelReason = reason;
    this.setStatus({ status: "via_kernel", transport: "kernel", reason, retryAt: null });
    this.attach(open(), "kernel");
  }

  private fail(reason: string): void {
    this.clearTimers();
    this.setStatus({ status: "failed", reason, retryAt: null });
  }

  private attach(sock: SocketLike, transport: Transport): void {
    this.sock = sock;
    this.sockOpened = false;
    this.joined = false;
    sock.onopen = () => {
      if (this.sock !== sock) return;
      this.sockOpened = true;
      this.clearConnectTimer();
      this.failedUpgrades = 0;
      if (transport === "websocket") this.startHeartbeat();
      this.sendJoin();
    };
    sock.onmessage = (ev) => {
      if (this.sock !== sock) return;
      this.clearPongTimer(); // any frame proves the socket alive
      const frame = parseFrame(ev.data);
      if (frame) this.handleFrame(frame);
    };
    sock.onclose = (ev) => {
      if (this.sock !== sock) return;
      const wasOpen = this.sockOpened;
      this.detachSocket();
      if (transport === "kernel") {
        this.onKernelDrop(ev.code, ev.reason);
        return;
      }
      this.onDrop(ev.code, ev.reason, wasOpen);
    };
    sock.onerror = () => {
      // Browsers follow every error with a close event; the close handler does the work.
    };
    if (sock.readyState === OPEN) queueMicrotask(() => sock.onopen?.({}));
  }

  /** Forget the current socket (handlers off, timers off) and return it for closing. */
  private detachSocket(): SocketLike | null {
    const sock = this.sock;
    if (sock) this.failPrivateInFlight();
    this.sock = null;
    this.sockOpened = false;
    this.joined = false;
    this.stopHeartbeat();
    this.clearConnectTimer();
    if (sock) {
      sock.onopen = null;
      sock.onmessage = null;
      sock.onclose = null;
      sock.onerror = null;
    }
    return sock;
  }

  private onDrop(code: number, reason: string, wasOpen: boolean): void {
    if (this.stopped) return;
    const mode = this.opts.mode ?? "auto";
    if (code === 1009 && this.lastSentRequest) {
      // The server closed because our last frame was over message_size_limit: never resend it.
      const p = this.requests.get(this.lastSentRequest);
      if (p) this.finish(p, "failed", "message too big for the server (close 1009)");
    }
    if (!wasOpen && !this.everLive) {
      this.failedUpgrades += 1;
      this.urlIndex += 1; // next candidate: cookie-only first, then ?token=
      const canFallBack = mode === "auto" && !!this.opts.openKernel;
      if (canFallBack && this.failedUpgrades >= this.timing.kernelFallbackAfter) {
        this.useKernel("the llmchat WebSocket is not reachable from this page");
        return;
      }
      if (this.opts.probe && !this.probed) {
        this.probed = true;
        void this.opts.probe().then((result) => this.onProbe(result, canFallBack));
      }
    }
    const why = describeClose(code, reason);
    this.scheduleRetry(why, code === 1013);
  }

  /** The kernel's socket to the server closed: heal like a dropped WebSocket, if it ever worked. */
  private onKernelDrop(code: number, reason: string): void {
    if (this.stopped) return;
    if (this.everLive) this.scheduleRetry(`kernel relay: ${describeClose(code, reason)}`, code === 1013, "kernel");
    else this.fail(`kernel relay closed: ${describeClose(code, reason)}`);
  }

  /** The relay answered our Join with an Error (e.g. 503: the kernel finds no server either). */
  private onKernelJoinError(d: ErrorData): void {
    const reason = d.code ? `${d.message} (${d.code})` : String(d.message ?? "error");
    const sock = this.detachSocket();
    if (sock) safeClose(sock, 1000, "join refused");
    // A relay that worked before is probably facing a restarting server: keep healing.
    if (this.everLive && d.code === 503) this.scheduleRetry(reason, false, "kernel");
    else this.fail(reason);
  }

  private onProbe(result: ProbeResult, canFallBack: boolean): void {
    if (this.stopped || this.everLive || this.info.status === "live") return;
    if (result === "missing" && canFallBack) this.useKernel("the llmchat server extension is not installed on this server");
    else if (result === "forbidden") this.fail("not authorised by the Jupyter server (403): log in again and retry");
  }

  private scheduleRetry(reason: string, serverFull: boolean, via: Transport = "websocket"): void {
    let delay = backoffDelay(this.info.attempt, this.backoff, this.random);
    if (serverFull) delay = Math.max(delay, Math.min(this.timing.serverFullFloorMs, this.backoff.capMs));
    const attempt = this.info.attempt + 1;
    this.setStatus({ status: "reconnecting", transport: via, reason, retryAt: Date.now() + delay, attempt });
    this.clearRetryTimer();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (via === "kernel") this.useKernel(this.kernelReason || "reconnecting through the kernel");
      else this.connect();
    }, delay);
  }

  // ---- heartbeat -------------------------------------------------------------------

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.sendPing(), this.timing.heartbeatMs);
  }

  private sendPing(): void {
    const sock = this.sock;
    if (!sock || !this.sockOpened || this.pongTimer) return;
    this.rawSend({ type: "Ping", id: newId("p"), data: {} });
    this.pongTimer = setTimeout(() => {
      this.pongTimer = null;
      if (this.sock !== sock) return;
      // A half-open TCP connection can sit silent for minutes; don't wait for the close handshake.
      this.detachSocket();
      safeClose(sock, 4000, "heartbeat timeout");
      this.onDrop(4000, "no answer to Ping (heartbeat timeout)", true);
    }, this.timing.pongTimeoutMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.clearPongTimer();
  }

  // ---- frames ----------------------------------------------------------------------

  private sendJoin(): void {
    this.joinId = newId("j");
    // Resume only when we know which history our seq belongs to; otherwise a fresh History.
    const data = this._epoch !== null ? { since: this._lastSeq, epoch: this._epoch } : {};
    this.rawSend({ type: "Join", id: this.joinId, room: this._room, data });
  }

  private handleFrame(f: Frame): void {
    if (isRoomEvent(f)) {
      if (f.room !== undefined && f.room !== this._room) return; // leftovers of a room we left
      const seq = f.seq as number;
      if (this.catchUp && seq <= this.catchUp.head) {
        if (this.catchUp.seen.has(seq)) return;
        this.catchUp.seen.add(seq);
      } else {
        this.catchUp = null; // the first live event ends the catch-up
        if (seq <= this._lastSeq) return; // duplicate or replay overlap
        this._lastSeq = seq;
      }
      if (f.type === "Token") this.onToken(f.data as TokenData);
      this.emit("frame", f);
      return;
    }
    switch (f.type) {
      case "Welcome":
        this._welcome = f.data as WelcomeData;
        break;
      case "Joined": {
        if (f.room !== this._room) return;
        const d = f.data as JoinedData;
        const fresh = this._epoch === null;
        if (typeof d.epoch === "string") this._epoch = d.epoch;
        if (fresh && typeof d.seq === "number") {
          this._lastSeq = d.seq; // History covers ≤ seq; running answers follow as catch-up
          this.catchUp = { head: d.seq, seen: new Set() };
        } else this.catchUp = null;
        this.joined = true;
        this.everLive = true;
        this.setStatus({
          status: this.info.transport === "kernel" ? "via_kernel" : "live",
          reason: this.info.transport === "kernel" ? this.info.reason : "",
          retryAt: null,
          attempt: 0,
        });
        this.emit("frame", f);
        this.flush();
        return;
      }
      case "Reset": {
        if (f.room !== undefined && f.room !== this._room) return;
        this._lastSeq = (f.data as ResetData).head_seq ?? 0;
        this.catchUp = { head: this._lastSeq, seen: new Set() };
        this.emit("reset", { reason: "reset" });
        break;
      }
      case "History": {
        if (f.room !== undefined && f.room !== this._room) return;
        const d = f.data as HistoryData;
        // A page we asked for (older messages) must not move the resume point.
        const paged = f.id !== undefined && this.historyRequests.delete(f.id);
        if (!paged) {
          if (typeof d.epoch === "string") this._epoch = d.epoch;
          if (typeof d.head_seq === "number") this._lastSeq = Math.max(this._lastSeq, d.head_seq);
        }
        break;
      }
      case "Ack": {
        const p = f.id !== undefined ? this.requests.get(f.id) : undefined;
        if (p) {
          const d = f.data as AckData;
          p.info.messageId = d.message_id;
          p.info.queuePosition = d.queue_position;
          if (p.info.phase !== "cancelling") p.info.phase = "acked";
          this.emit("request", { ...p.info });
          if (p.cancelRequested) this.sendCancel(p);
        }
        break;
      }
      case "Error": {
        const d = f.data as ErrorData;
        const p = f.id !== undefined ? this.requests.get(f.id) : undefined;
        if (p) this.finish(p, "failed", d.code ? `${d.message ?? "error"} (${d.code})` : (d.message ?? "error"));
        else if (f.id !== undefined && f.id === this.joinId && !this.joined) {
          if (this.info.transport === "kernel") this.onKernelJoinError(d);
          // Refused for good (forbidden / no such room).
          else if (d.code === 403 || d.code === 404) this.fail(`cannot join room: ${d.message}`);
        }
        break;
      }
      case "Token": // a private completion: not a room event
        this.onToken(f.data as TokenData);
        break;
      default:
        break;
    }
    this.emit("frame", f);
  }

  private onToken(d: TokenData): void {
    if (!d.is_final) {
      for (const p of this.requests.values()) {
        if (p.info.messageId === d.message_id && p.info.phase === "acked" && p.info.queuePosition !== null) {
          p.info.queuePosition = null; // generating now
          this.emit("request", { ...p.info });
        }
      }
      return;
    }
    for (const p of [...this.requests.values()]) {
      if (p.info.messageId === d.message_id) this.finish(p, "done", d.finish_reason === "error" ? (d.error ?? "generation failed") : null);
    }
  }

  private enqueue(
    frame: Frame,
    type: "Text" | "Generate",
    text: string,
    more: Pick<RequestInfo, "private" | "regenerate" | "newThread"> = { private: false, regenerate: null, newThread: false },
  ): string {
    const id = frame.id as string;
    const existing = this.requests.get(id);
    if (existing) return id; // same id twice (e.g. two front ends relaying one kernel call)
    const p: Pending = {
      frame,
      sent: false,
      cancelRequested: false,
      info: { id, type, phase: "queued", text, messageId: null, queuePosition: null, error: null, ...more },
    };
    const limit = this._welcome?.limits?.message_size_limit;
    if (typeof limit === "number" && byteLength(JSON.stringify(frame)) > limit) {
      p.info.phase = "failed";
      p.info.error = `message too big (limit ${limit} bytes)`;
      this.emit("request", { ...p.info });
      return id;
    }
    this.requests.set(id, p);
    this.emit("request", { ...p.info });
    if (this.joined) this.deliver(p);
    return id;
  }

  /** After (re)joining: send what waited, re-send un-acked Generates (same id: the server dedupes). */
  private flush(): void {
    for (const p of [...this.requests.values()]) {
      if (p.info.type === "Text") {
        if (!p.sent) this.deliver(p);
      } else if (p.info.messageId === null && !(p.info.private && p.sent)) this.deliver(p);
      else if (p.cancelRequested) this.sendCancel(p);
    }
  }

  private deliver(p: Pending): void {
    if (!this.rawSend(p.frame)) return;
    this.lastSentRequest = p.info.id;
    p.sent = true;
    if (p.info.type === "Text") {
      this.finish(p, "done", null); // at most once: Text has no Ack to wait for
      return;
    }
    if (p.info.phase === "queued") {
      p.info.phase = "sent";
      this.emit("request", { ...p.info });
    }
  }

  private sendCancel(p: Pending): void {
    if (!p.info.messageId) return;
    const frame: Frame = { type: "Cancel", id: newId("c"), data: { message_id: p.info.messageId } };
    if (!p.info.private) frame.room = this._room;
    this.sendNow(frame);
  }

  /**
   * The socket went away: a private question already sent is lost with it (the server cancels
   * a private answer when its connection closes, and a re-sent one would get the old Ack and no
   * tokens), so it ends here, saying so, instead of waiting forever.
   */
  private failPrivateInFlight(): void {
    for (const p of [...this.requests.values()]) {
      if (p.info.private && p.sent) this.finish(p, "failed", "connection lost: a private answer ends with its connection; ask again");
    }
  }

  private finish(p: Pending, phase: RequestPhase, error: string | null): void {
    this.requests.delete(p.info.id);
    p.info.phase = phase;
    p.info.error = error;
    this.emit("request", { ...p.info });
  }

  private sendNow(frame: Frame): boolean {
    if (!this.joined) return false;
    return this.rawSend(frame);
  }

  private rawSend(frame: Frame): boolean {
    const sock = this.sock;
    if (!sock || !this.sockOpened || sock.readyState !== OPEN) return false;
    try {
      sock.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  // ---- plumbing --------------------------------------------------------------------

  private setStatus(patch: Partial<StatusInfo>): void {
    const next = { ...this.info, ...patch };
    if (patch.status === "live") next.reason = patch.reason ?? "";
    this.info = next;
    this.emit("status", { ...next });
  }

  private emit<K extends keyof EventMap>(event: K, value: EventMap[K]): void {
    for (const cb of [...this.listeners[event]]) {
      try {
        cb(value);
      } catch (err) {
        console.error("[llmchat] listener failed", err);
      }
    }
  }

  private clearRetryTimer(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
  private clearConnectTimer(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }
  private clearPongTimer(): void {
    if (this.pongTimer) clearTimeout(this.pongTimer);
    this.pongTimer = null;
  }
  private clearTimers(): void {
    this.clearRetryTimer();
    this.clearConnectTimer();
    this.stopHeartbeat();
  }
}

function safeClose(sock: SocketLike, code: number, reason: string): void {
  try {
    sock.close(code, reason);
  } catch {
    // already closed
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** Human words for a close code (the reason string is usually empty in browsers). */
export function describeClose(code: number, reason: string): string {
  const known: Record<number, string> = {
    1000: "closed",
    1001: "server going away",
    1006: "connection lost",
    1008: "refused by policy",
    1009: "message too big",
    1011: "server error",
    1013: "server full, backing off",
    4000: "no answer to Ping",
  };
  const base = known[code] ?? `closed (${code})`;
  return reason && !base.includes(reason) ? `${base}: ${reason}` : base;
}

/** `window`/`document` signals for the client (online, tab visible again). */
export function browserEnv(): ClientEnv | null {
  if (typeof window === "undefined" || typeof document === "undefined") return null;
  return {
    onOnline(cb) {
      window.addEventListener("online", cb);
      return () => window.removeEventListener("online", cb);
    },
    onVisible(cb) {
      const handler = () => {
        if (document.visibilityState === "visible") cb();
      };
      document.addEventListener("visibilitychange", handler);
      return () => document.removeEventListener("visibilitychange", handler);
    },
  };
}
