// What a connection is to the transport: the part of the browser WebSocket API it uses. The
// browser's WebSocket, the kernel comm relay (kernel.ts) and the tests' fake all fit it.

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  /** What the far end is doing meanwhile, for people (the kernel relay: "starting the model service…"). */
  onstatus?: ((text: string) => void) | null;
}

/** `readyState` of an open socket. */
export const OPEN = 1;

/** Close without caring whether it is closed already. */
export function safeClose(sock: SocketLike, code: number, reason: string): void {
  try {
    sock.close(code, reason);
  } catch {
    // already closed
  }
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
