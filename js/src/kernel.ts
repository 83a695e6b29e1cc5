// The kernel comm relay, shaped like a WebSocket so ChatClient needs no second code path.
// Frames go to Python as `{kind: "relay", frame}` custom messages and come back the same way;
// the kernel side forwards them to the llmchat server (or answers with an Error for now).

import type { SocketLike } from "./socket";

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

  private readonly handler = (content: unknown): void => {
    if (this.readyState !== 1) return;
    const msg = content as { kind?: unknown; frame?: unknown } | null;
    if (!msg || msg.kind !== "relay" || typeof msg.frame !== "object" || msg.frame === null) return;
    this.onmessage?.({ data: JSON.stringify(msg.frame) });
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
    this.model.send({ kind: "relay", frame: JSON.parse(data) as unknown });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.model.off("msg:custom", this.handler);
    this.onclose?.({ code, reason });
  }
}
