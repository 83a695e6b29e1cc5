// The app-level heartbeat of a WebSocket. Browsers cannot see protocol pings, and a half-open
// TCP connection can sit silent for minutes, so: a `Ping` every `everyMs`, and if no frame at
// all arrives within `timeoutMs` of one, the socket is dead. Any frame counts as proof of
// life, so a long token stream never trips it.

export interface HeartbeatTiming {
  everyMs: number;
  timeoutMs: number;
}

export class Heartbeat {
  private interval: ReturnType<typeof setInterval> | null = null;
  private deadline: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly timing: HeartbeatTiming,
    /** Send a Ping now. */
    private readonly ping: () => void,
    /** No frame came back in time. */
    private readonly dead: () => void,
  ) {}

  /** The socket opened: ping periodically from now on. */
  start(): void {
    this.stop();
    this.interval = setInterval(() => this.check(), this.timing.everyMs);
  }

  /** Ping now (unless a Ping is already waiting for an answer) and start the deadline. */
  check(): void {
    if (this.deadline) return;
    this.ping();
    this.deadline = setTimeout(() => {
      this.deadline = null;
      this.dead();
    }, this.timing.timeoutMs);
  }

  /** A frame arrived: the socket is alive. */
  alive(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
  }

  stop(): void {
    if (this.interval) clearInterval(this.interval);
    this.interval = null;
    this.alive();
  }
}
