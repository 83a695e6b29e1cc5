// Requests made through the client (Text and Generate) from the call until they are done.
//
// Queued while offline and sent once joined. A Text goes at most once (it has no Ack to wait
// for). A Generate is re-sent with the same id until acknowledged (the server dedupes ids),
// except a private one: the server drops a private answer when its connection closes, so a
// private question is sent at most once and ends with the connection that carried it.

import { newId, type AckData, type ErrorData, type Frame, type TokenData } from "./protocol";

/** queued → sent → acked (→ cancelling) → done | dropped | failed. */
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

export type RequestExtras = Pick<RequestInfo, "private" | "regenerate" | "newThread">;

interface Pending {
  frame: Frame;
  info: RequestInfo;
  /** How many times the frame left this client. */
  sends: number;
}

export interface OutboxOptions {
  /** Send a frame once joined; false when there is no joined socket. */
  send: (frame: Frame) => boolean;
  /** Every change of a request (a copy). */
  changed: (info: RequestInfo) => void;
  /** The server's `message_size_limit`, once its Welcome said it. */
  sizeLimit: () => number | undefined;
}

const NONE: RequestExtras = { private: false, regenerate: null, newThread: false };

export class Outbox {
  private readonly requests = new Map<string, Pending>();
  private lastSent: string | null = null;

  constructor(private readonly opts: OutboxOptions) {}

  get pending(): RequestInfo[] {
    return [...this.requests.values()].map((p) => ({ ...p.info }));
  }

  /** Take a request (the frame's id names it) and send it if we can; returns the id. */
  add(frame: Frame, type: "Text" | "Generate", text: string, more: RequestExtras = NONE): string {
    const id = frame.id as string;
    if (this.requests.has(id)) return id; // same id twice (e.g. two front ends relaying one kernel call)
    const p: Pending = { frame, sends: 0, info: { id, type, phase: "queued", text, messageId: null, queuePosition: null, error: null, ...more } };
    const limit = this.opts.sizeLimit();
    if (typeof limit === "number" && byteLength(JSON.stringify(frame)) > limit) {
      p.info.phase = "failed";
      p.info.error = `message too big (limit ${limit} bytes)`;
      this.emit(p);
      return id;
    }
    this.requests.set(id, p);
    this.emit(p);
    this.deliver(p);
    return id;
  }

  /** After (re)joining: send what waited, re-send un-acked Generates, Cancel what was asked to stop. */
  flush(): void {
    for (const p of [...this.requests.values()]) {
      if (p.info.type === "Text") this.deliver(p);
      else if (p.info.messageId === null && !(p.info.private && sent(p))) this.deliver(p);
      else if (p.info.phase === "cancelling") this.sendCancel(p);
    }
  }

  /** Stop a request: forget it if it never left, otherwise `Cancel` once its message id is known. */
  cancel(id: string): void {
    const p = this.requests.get(id);
    if (!p) return;
    if (!sent(p)) {
      this.finish(p, "dropped", "cancelled before it was sent");
      return;
    }
    if (p.info.type !== "Generate") return;
    p.info.phase = "cancelling";
    this.emit(p);
    if (p.info.messageId) this.sendCancel(p);
  }

  ack(f: Frame): void {
    const p = f.id !== undefined ? this.requests.get(f.id) : undefined;
    if (!p) return;
    const d = f.data as AckData;
    p.info.messageId = d.message_id;
    p.info.queuePosition = d.queue_position;
    const cancelling = p.info.phase === "cancelling";
    if (!cancelling) p.info.phase = "acked";
    this.emit(p);
    if (cancelling) this.sendCancel(p);
  }

  /** An `Error`: true if it answered one of our requests (which then ends failed). */
  error(f: Frame): boolean {
    const p = f.id !== undefined ? this.requests.get(f.id) : undefined;
    if (!p) return false;
    const d = f.data as ErrorData;
    if (p.info.type === "Generate" && d.code === 409 && p.sends > 1) {
      // Re-sent after a reconnect, but its answer ended meanwhile: the server remembers the id
      // and says so. The answer itself reached the room (replayed, or in History).
      this.finish(p, "done", null);
      return true;
    }
    this.finish(p, "failed", d.code ? `${d.message ?? "error"} (${d.code})` : (d.message ?? "error"));
    return true;
  }

  /** A token of some answer: the first says ours is generating now, the final one ends it. */
  token(d: TokenData): void {
    if (!d.is_final) {
      for (const p of this.requests.values()) {
        if (p.info.messageId === d.message_id && p.info.phase === "acked" && p.info.queuePosition !== null) {
          p.info.queuePosition = null; // generating now
          this.emit(p);
        }
      }
      return;
    }
    for (const p of [...this.requests.values()]) {
      if (p.info.messageId === d.message_id) this.finish(p, "done", d.finish_reason === "error" ? (d.error ?? "generation failed") : null);
    }
  }

  /**
   * The socket went away: a private question already sent is lost with it (a re-sent one would
   * get the old Ack and no tokens), so it ends here, saying so, instead of waiting forever.
   */
  connectionLost(): void {
    for (const p of [...this.requests.values()]) {
      if (p.info.private && sent(p)) this.finish(p, "failed", "connection lost: a private answer ends with its connection; ask again");
    }
  }

  /** The server closed with 1009: our last frame was over its size limit, never resend it. */
  lastTooBig(): void {
    const p = this.lastSent !== null ? this.requests.get(this.lastSent) : undefined;
    if (p) this.finish(p, "failed", "message too big for the server (close 1009)");
  }

  /** Forget every request (another room), saying why. */
  dropAll(reason: string): void {
    for (const p of [...this.requests.values()]) this.finish(p, "dropped", reason);
  }

  private deliver(p: Pending): void {
    if (!this.opts.send(p.frame)) return;
    p.sends += 1;
    this.lastSent = p.info.id;
    if (p.info.type === "Text") {
      this.finish(p, "done", null); // at most once: Text has no Ack to wait for
      return;
    }
    if (p.info.phase === "queued") {
      p.info.phase = "sent";
      this.emit(p);
    }
  }

  private sendCancel(p: Pending): void {
    if (!p.info.messageId) return;
    const frame: Frame = { type: "Cancel", id: newId("c"), data: { message_id: p.info.messageId } };
    // Requests never outlive their room (dropAll on a switch): the frame's room is the current one.
    if (p.frame.room !== undefined) frame.room = p.frame.room;
    this.opts.send(frame);
  }

  private finish(p: Pending, phase: RequestPhase, error: string | null): void {
    this.requests.delete(p.info.id);
    p.info.phase = phase;
    p.info.error = error;
    this.emit(p);
  }

  private emit(p: Pending): void {
    this.opts.changed({ ...p.info });
  }
}

/** Left this client at least once (every phase after "queued" means it was sent). */
function sent(p: Pending): boolean {
  return p.info.phase !== "queued";
}

function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}
