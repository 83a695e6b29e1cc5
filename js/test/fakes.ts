// Test doubles: a WebSocket that the test drives by hand, and page signals.
import type { ClientEnv } from "../src/page-env";
import type { SocketLike } from "../src/socket-like";
import type { Frame } from "../src/protocol";

export class FakeSocket implements SocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Frame[] = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onstatus: ((text: string) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  static reset(): void {
    FakeSocket.all = [];
  }
  static get last(): FakeSocket {
    const s = FakeSocket.all[FakeSocket.all.length - 1];
    if (!s) throw new Error("no socket opened");
    return s;
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data) as Frame);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // --- driven by the test ---
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(frame: Partial<Frame> & { type: string }): void {
    this.onmessage?.({ data: JSON.stringify({ data: {}, ...frame }) });
  }
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Refuse the upgrade: browsers report error then close 1006 without an open. */
  refuse(): void {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: "" });
  }
  sentOfType(type: string): Frame[] {
    return this.sent.filter((f) => f.type === type);
  }
}

export class FakeEnv implements ClientEnv {
  private online = new Set<() => void>();
  private visible = new Set<() => void>();
  onOnline(cb: () => void): () => void {
    this.online.add(cb);
    return () => this.online.delete(cb);
  }
  onVisible(cb: () => void): () => void {
    this.visible.add(cb);
    return () => this.visible.delete(cb);
  }
  goOnline(): void {
    for (const cb of this.online) cb();
  }
  becomeVisible(): void {
    for (const cb of this.visible) cb();
  }
}

export const WELCOME = {
  type: "Welcome",
  data: {
    client_id: "c1",
    user: { username: "ada", name: "Ada" },
    protocol: "llmchat.v1",
    server: { version: "0.1.0" },
    model: { name: "gemma", loaded: true, n_ctx: 8192, parallel: 8 },
    limits: { message_size_limit: 1048576, max_tokens: 1024 },
  },
};

export function text(seq: number, id: string, content: string, kind = "user", room = "general"): Frame {
  return {
    type: "Text",
    room,
    seq,
    data: { message_id: id, content, author: { username: "ada", name: "Ada", kind }, created: "2026-11-22T10:00:00Z" },
  };
}

export function token(seq: number, id: string, index: number, t: string, final = false, room = "general"): Frame {
  const data: Record<string, unknown> = { message_id: id, index, text: t, is_final: final };
  if (final) {
    data.finish_reason = "stop";
    data.usage = { prompt_tokens: 3, completion_tokens: index };
    data.timings = { queue_ms: 0, ttft_ms: 61, tokens_per_second: 57.9 };
  }
  return { type: "Token", room, seq, data };
}
