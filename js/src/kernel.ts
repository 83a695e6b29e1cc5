// The kernel comm relay, shaped like a WebSocket so ChatClient needs no second code path.
// Frames go to Python as `{kind: "relay", cid, frame}` custom messages; the kernel
// (`ChatWidget` → `KernelRelay`) forwards them over a socket of its own to the llmchat server
// and sends every server frame back as `{kind: "relay", cid, frame}`. `cid` names this
// connection, so several tabs (or a reload) relaying through one kernel never see each
// other's frames. When the kernel's socket to the server closes, Python says
// `{kind: "relay_closed", cid, code, reason}` and this socket closes with that code; closing
// it from here tells Python `{kind: "relay_close", cid}`. While the kernel starts the user's
// llmchat service for it, Python says `{kind: "relay_status", text}` (for every connection).

import { newId } from "./protocol";
import type { SocketLike } from "./socket-like";

export interface CommModel {
  send(content: unknown, callbacks?: unknown, buffers?: unknown): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event: string, cb?: (...args: any[]) => void): void;
}

export class KernelSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onstatus: ((text: string) => void) | null = null;
  readonly cid = newId("k");

  private readonly handler = (content: unknown): void => {
    if (this.readyState !== 1) return;
    const msg = content as { kind?: unknown; frame?: unknown; cid?: unknown; code?: unknown; reason?: unknown } | null;
    if (!msg || typeof msg !== "object") return;
    // Frames without a cid (a plugged-in relay_handler) are for every relay connection.
    if (msg.cid !== undefined && msg.cid !== null && msg.cid !== this.cid) return;
    if (msg.kind === "relay" && typeof msg.frame === "object" && msg.frame !== null) {
      this.onmessage?.({ data: JSON.stringify(msg.frame) });
    } else if (msg.kind === "relay_status" && typeof (msg as { text?: unknown }).text === "string") {
      this.onstatus?.((msg as { text: string }).text);
    } else if (msg.kind === "relay_closed") {
      const code = typeof msg.code === "number" ? msg.code : 1006;
      this.finish(code, typeof msg.reason === "string" ? msg.reason : "", false);
    }
  };

  constructor(private readonly model: CommModel) {
    model.on("msg:custom", this.handler);
    // The comm is already up when the widget exists: "open" on the next tick, like a socket.
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("kernel relay closed");
    this.model.send({ kind: "relay", cid: this.cid, frame: JSON.parse(data) as unknown });
  }

  close(code = 1000, reason = ""): void {
    this.finish(code, reason, true);
  }

  private finish(code: number, reason: string, tellKernel: boolean): void {
    if (this.readyState === 3) return;
    const wasOpen = this.readyState === 1;
    this.readyState = 3;
    this.model.off("msg:custom", this.handler);
    if (tellKernel && wasOpen) {
      try {
        this.model.send({ kind: "relay_close", cid: this.cid });
      } catch {
        // the comm is gone already (widget closed, kernel dead)
      }
    }
    this.onclose?.({ code, reason });
  }
}
