// ChatClient end to end: transport, cursor and outbox composed, driven through fake sockets
// and timers. Each part also has tests of its own (transport/cursor/outbox.test.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ChatClient, type ClientOptions } from "../src/client";
import type { RequestInfo } from "../src/outbox";
import type { ProbeResult, StatusInfo } from "../src/connection-state";
import type { Frame } from "../src/protocol";
import { FakeEnv, FakeSocket, WELCOME, text, token } from "./fakes";

const URL1 = "ws://localhost/llmchat/ws";
const URL2 = "ws://localhost/llmchat/ws?token=abc";

interface Harness {
  client: ChatClient;
  env: FakeEnv;
  frames: Frame[];
  statuses: StatusInfo[];
  requests: RequestInfo[];
  resets: number;
}

function make(opts: Partial<ClientOptions> = {}): Harness {
  const env = new FakeEnv();
  const client = new ChatClient({
    room: "general",
    urls: [URL1, URL2],
    openSocket: (url) => new FakeSocket(url),
    env,
    random: () => 0.5,
    ...opts,
  });
  const h: Harness = { client, env, frames: [], statuses: [], requests: [], resets: 0 };
  client.on("frame", (f) => h.frames.push(f));
  client.on("status", (s) => h.statuses.push(s));
  client.on("request", (r) => h.requests.push(r));
  client.on("reset", () => (h.resets += 1));
  return h;
}

/** Open the newest socket and answer like the server: Welcome, then Joined at `head`. */
function goLive(head = 41, epoch = "9f3a"): FakeSocket {
  const sock = FakeSocket.last;
  sock.open();
  sock.receive(WELCOME);
  const join = sock.sentOfType("Join").at(-1);
  sock.receive({ type: "Joined", id: join?.id, room: "general", data: { seq: head, epoch, members: [{ username: "ada", name: "Ada" }] } });
  return sock;
}

/** Advance the clock exactly to the pending retry (not past it: the connect timeout would fire). */
function waitRetry(h: Harness): void {
  const at = h.client.status.retryAt;
  if (at === null) throw new Error("no retry pending");
  vi.advanceTimersByTime(Math.max(0, at - Date.now()));
}

const seqs = (h: Harness) => h.frames.filter((f) => typeof f.seq === "number").map((f) => f.seq);

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("connecting", () => {
  it("joins without since on the first connection, then is live", () => {
    const h = make();
    h.client.start();
    expect(h.client.status.status).toBe("connecting");
    const sock = FakeSocket.last;
    expect(sock.url).toBe(URL1); // cookie auth first
    sock.open();
    expect(sock.sent[0]).toMatchObject({ type: "Join", room: "general", data: {} });
    goLive(41);
    expect(h.client.status.status).toBe("live");
    expect(h.client.lastSeq).toBe(41);
    expect(h.client.epoch).toBe("9f3a");
    expect(h.client.welcome?.user.username).toBe("ada");
  });

  it("never sends a user name", () => {
    const h = make();
    h.client.start();
    goLive();
    h.client.sendText("hello");
    h.client.generate("hi");
    for (const f of FakeSocket.last.sent) {
      expect(JSON.stringify(f)).not.toMatch(/username|"name"|author/);
    }
  });

  it("tries ?token= after the cookie-only upgrade is refused", () => {
    const h = make();
    h.client.start();
    FakeSocket.last.refuse();
    waitRetry(h);
    expect(FakeSocket.last.url).toBe(URL2);
    FakeSocket.last.refuse();
    waitRetry(h);
    expect(FakeSocket.last.url).toBe(URL1); // keeps alternating until one works
  });

  it("gives up on an upgrade that never answers (connect timeout)", () => {
    const h = make();
    h.client.start();
    const first = FakeSocket.last;
    vi.advanceTimersByTime(10_000);
    expect(first.closedWith).not.toBeNull();
    expect(h.client.status.status).toBe("reconnecting");
  });

  it("shows the server's reason, not a retry loop, when a setting stopped llmchat (Error 503 before any Join)", () => {
    const h = make();
    h.client.start();
    const sock = FakeSocket.last;
    sock.open();
    const reason = "llmchat is not started: invalid setting: The 'max_tokens' trait of a LLMChat instance expected an int, not the str 'abc'.";
    sock.receive({ type: "Error", data: { code: 503, message: reason } });
    sock.drop(1011, "llmchat is not started");
    expect(h.client.status.status).toBe("failed");
    expect(h.client.status.reason).toBe(reason);
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all.length).toBe(1); // no reconnecting to a server that cannot serve until restarted
    h.client.retryNow();
    expect(FakeSocket.all.length).toBe(2); // the user may still try again (after fixing it)
  });
});

describe("state", () => {
  it("is one value of ConnectionState: the phase, the transport and the socket together", () => {
    const h = make();
    expect(h.client.state).toEqual({ phase: "idle" });
    h.client.start();
    expect(h.client.state).toMatchObject({ phase: "opening", via: "websocket", sock: FakeSocket.last });
    const sock = goLive();
    expect(h.client.state).toEqual({ phase: "joined", via: "websocket", sock });
    sock.drop();
    expect(h.client.state).toEqual({ phase: "waiting", via: "websocket", retryAt: h.client.status.retryAt });
    h.client.stop();
    expect(h.client.state).toEqual({ phase: "stopped" });
  });
});

describe("reconnecting with backoff", () => {
  it("waits a jittered delay that grows per failed attempt", () => {
    const h = make(); // random = 0.5 → half the ceiling
    h.client.start();
    goLive();
    FakeSocket.last.drop(1006);
    expect(h.client.status.status).toBe("reconnecting");
    const s = h.client.status;
    expect(s.retryAt! - Date.now()).toBe(250); // attempt 0: ceiling 500
    const before = FakeSocket.all.length;
    vi.advanceTimersByTime(249);
    expect(FakeSocket.all.length).toBe(before);
    vi.advanceTimersByTime(1);
    expect(FakeSocket.all.length).toBe(before + 1);
    FakeSocket.last.refuse(); // attempt 1: ceiling 1000 → 500
    expect(h.client.status.retryAt! - Date.now()).toBe(500);
    vi.advanceTimersByTime(500);
    FakeSocket.last.refuse(); // attempt 2: ceiling 2000 → 1000
    expect(h.client.status.retryAt! - Date.now()).toBe(1000);
  });

  it("keeps every delay within [0, cap] whatever the jitter", () => {
    let r = 0.999;
    const h = make({ random: () => r });
    h.client.start();
    goLive();
    FakeSocket.last.drop();
    for (let i = 0; i < 20; i++) {
      const wait = h.client.status.retryAt! - Date.now();
      expect(wait).toBeGreaterThanOrEqual(0);
      expect(wait).toBeLessThanOrEqual(10_000);
      vi.advanceTimersByTime(wait);
      FakeSocket.last.refuse();
      r = i % 2 ? 0.999 : 0.001;
    }
    r = 0.999;
    waitRetry(h);
    FakeSocket.last.refuse();
    expect(h.client.status.retryAt! - Date.now()).toBeGreaterThan(9_000);
  });

  it("never waits more than 10 s once the server is back after a 5 s outage", () => {
    // The reported case: quick refusals during a short outage ran the attempt count up, so
    // the first draw after the server came back could be anything up to 30 s (27 s was seen).
    let r = 0.001; // refusals come fast: many attempts within the outage
    const h = make({ random: () => r });
    h.client.start();
    goLive();
    FakeSocket.last.drop();
    const outageEnds = Date.now() + 5_000;
    while (h.client.status.retryAt! < outageEnds - 100) {
      waitRetry(h);
      FakeSocket.last.refuse();
    }
    r = 0.999; // the last refusal, just before the server returns, draws the unluckiest wait
    waitRetry(h);
    FakeSocket.last.refuse();
    expect(Date.now()).toBeLessThan(outageEnds);
    vi.advanceTimersByTime(outageEnds - Date.now()); // the server is back now
    waitRetry(h);
    goLive();
    expect(h.client.status.status).toBe("live");
    expect(Date.now() - outageEnds).toBeLessThanOrEqual(10_000);
    // ...and that successful connection starts the backoff over: the next drop retries within 0.5 s.
    FakeSocket.last.drop();
    expect(h.client.status.retryAt! - Date.now()).toBeLessThan(500);
  });

  it("resets the backoff once live again", () => {
    const h = make();
    h.client.start();
    goLive();
    FakeSocket.last.drop();
    for (let i = 0; i < 4; i++) {
      waitRetry(h);
      FakeSocket.last.refuse();
    }
    expect(h.client.status.attempt).toBe(5);
    waitRetry(h);
    goLive(41);
    FakeSocket.last.drop();
    expect(h.client.status.retryAt! - Date.now()).toBe(250);
  });

  it("backs off at least 5 s when the server is full (1013)", () => {
    const h = make({ random: () => 0 });
    h.client.start();
    goLive();
    FakeSocket.last.drop(1013, "server full");
    expect(h.client.status.retryAt! - Date.now()).toBe(5_000);
    expect(h.client.status.reason).toMatch(/full/);
  });

  it("retries at once on `online`, on the tab becoming visible, and on retryNow()", () => {
    const h = make({ random: () => 0.99 });
    h.client.start();
    goLive();
    FakeSocket.last.drop();
    let n = FakeSocket.all.length;
    h.env.goOnline();
    expect(FakeSocket.all.length).toBe(n + 1);
    FakeSocket.last.refuse();
    n = FakeSocket.all.length;
    h.env.becomeVisible();
    expect(FakeSocket.all.length).toBe(n + 1);
    FakeSocket.last.refuse();
    n = FakeSocket.all.length;
    h.client.retryNow();
    expect(FakeSocket.all.length).toBe(n + 1);
    // the pending retry timer was replaced, not doubled: only the connect timeout is left
    expect(vi.getTimerCount()).toBe(1);
  });
});

describe("heartbeat", () => {
  it("pings every 15 s and treats 10 s of silence after a Ping as a dead socket", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    vi.advanceTimersByTime(15_000);
    expect(sock.sentOfType("Ping")).toHaveLength(1);
    vi.advanceTimersByTime(9_999);
    expect(sock.closedWith).toBeNull();
    vi.advanceTimersByTime(1);
    expect(sock.closedWith?.code).toBe(4000);
    expect(h.client.status.status).toBe("reconnecting");
    expect(h.client.status.reason).toMatch(/Ping/);
  });

  it("stays up while Pongs come back", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(15_000);
      const ping = sock.sentOfType("Ping").at(-1);
      vi.advanceTimersByTime(100);
      sock.receive({ type: "Pong", id: ping?.id });
    }
    expect(sock.sentOfType("Ping")).toHaveLength(5);
    expect(sock.closedWith).toBeNull();
    expect(h.client.status.status).toBe("live");
  });

  it("checks a live socket at once when the tab becomes visible", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    h.env.becomeVisible();
    expect(sock.sentOfType("Ping")).toHaveLength(1);
    vi.advanceTimersByTime(10_000);
    expect(sock.closedWith?.code).toBe(4000);
  });
});

describe("ordering and resume", () => {
  it("drops duplicate and old seqs", () => {
    const h = make();
    h.client.start();
    const sock = goLive(41);
    for (const s of [42, 43, 43, 41, 42, 44]) sock.receive(text(s, `m${s}`, `x${s}`));
    expect(seqs(h)).toEqual([42, 43, 44]);
    expect(h.client.lastSeq).toBe(44);
  });

  it("ignores room events of another room", () => {
    const h = make();
    h.client.start();
    const sock = goLive(41);
    sock.receive(text(99, "other", "elsewhere", "user", "random"));
    expect(seqs(h)).toEqual([]);
    expect(h.client.lastSeq).toBe(41);
  });

  it("resumes with since = last seq and the room's epoch, and gets each event once", () => {
    const h = make();
    h.client.start();
    let sock = goLive(41, "9f3a");
    sock.receive(text(42, "m42", "a"));
    sock.receive(token(43, "m43", 0, "Hel"));
    sock.receive(token(44, "m43", 1, "lo"));
    sock.drop();
    waitRetry(h);
    sock = FakeSocket.last;
    sock.open();
    expect(sock.sentOfType("Join")[0]?.data).toEqual({ since: 44, epoch: "9f3a" });
    sock.receive(WELCOME);
    sock.receive({ type: "Joined", room: "general", data: { seq: 46, epoch: "9f3a", members: [] } });
    // a server replaying a little too much: 44 again, then 45, 46
    sock.receive(token(44, "m43", 1, "lo"));
    sock.receive(token(45, "m43", 2, "!"));
    sock.receive(token(46, "m43", 3, "", true));
    expect(seqs(h)).toEqual([42, 43, 44, 45, 46]);
    expect(h.client.status.status).toBe("live");
  });

  it("honours Reset: clears, then takes the History that follows", () => {
    const h = make();
    h.client.start();
    let sock = goLive(41, "old");
    sock.receive(text(42, "m42", "a"));
    sock.drop();
    waitRetry(h);
    sock = FakeSocket.last;
    sock.open();
    sock.receive({ type: "Joined", room: "general", data: { seq: 7, epoch: "new", members: [] } });
    sock.receive({ type: "Reset", room: "general", data: { head_seq: 7 } });
    expect(h.resets).toBe(1);
    sock.receive({ type: "History", room: "general", data: { messages: [text(6, "m6", "kept")], head_seq: 7, epoch: "new" } });
    expect(h.client.epoch).toBe("new");
    expect(h.client.lastSeq).toBe(7);
    sock.receive(text(8, "m8", "after"));
    expect(seqs(h).slice(-1)).toEqual([8]);
    expect(h.frames.some((f) => f.type === "History")).toBe(true);
  });

  it("does not move the resume point for an older History page it asked for", () => {
    // The page's head_seq is the room's head when the server answered; events up to that head
    // may still be on their way. Taking it as our resume point would drop them as duplicates.
    const h = make();
    h.client.start();
    let sock = goLive(41, "9f3a");
    sock.receive(text(42, "m42", "a"));
    const id = h.client.requestHistory(30);
    expect(sock.sentOfType("History")[0]).toMatchObject({ id, room: "general", data: { before_seq: 30, limit: 50 } });
    sock.receive({ type: "History", id: id!, room: "general", data: { messages: [text(29, "m29", "old")], head_seq: 44, epoch: "other" } });
    expect(h.frames.at(-1)).toMatchObject({ type: "History", id }); // still handed on, to be prepended
    expect(h.client.lastSeq).toBe(42);
    expect(h.client.epoch).toBe("9f3a");
    sock.receive(text(43, "m43", "b"));
    expect(seqs(h)).toEqual([42, 43]);
    sock.drop();
    waitRetry(h);
    sock = FakeSocket.last;
    sock.open();
    expect(sock.sentOfType("Join")[0]?.data).toEqual({ since: 43, epoch: "9f3a" });
  });

  it("after a fresh join takes the running answer's tokens (seq ≤ head) once, then live events", () => {
    const h = make();
    h.client.start();
    const sock = FakeSocket.last;
    sock.open();
    sock.receive({ type: "Joined", room: "general", data: { seq: 47, epoch: "e", members: [] } });
    sock.receive({ type: "History", room: "general", data: { messages: [text(45, "m45", "x")], head_seq: 47, epoch: "e" } });
    expect(h.client.lastSeq).toBe(47);
    for (const s of [41, 42, 44, 44, 46]) sock.receive(token(s, "m-run", s - 41, "t"));
    sock.receive(text(48, "m48", "live"));
    sock.receive(token(46, "m-run", 5, "late duplicate"));
    sock.receive(text(48, "m48", "live again"));
    expect(seqs(h)).toEqual([41, 42, 44, 46, 48]);
    expect(h.client.lastSeq).toBe(48);
  });

  it("switches rooms: Leave, forget, fresh Join", () => {
    const h = make();
    h.client.start();
    const sock = goLive(41);
    h.client.setRoom("random");
    expect(sock.sentOfType("Leave")[0]).toMatchObject({ room: "general" });
    const join = sock.sentOfType("Join").at(-1);
    expect(join).toMatchObject({ room: "random", data: {} });
    expect(h.resets).toBe(1);
    expect(h.client.lastSeq).toBe(0);
  });
});

describe("requests while offline", () => {
  it("queues a prompt while offline and sends it once when back", () => {
    const h = make();
    h.client.start();
    let sock = goLive(41);
    sock.drop();
    const id = h.client.generate("Hi!", { max_tokens: 64 });
    expect(h.client.pending[0]).toMatchObject({ id, phase: "queued" });
    vi.advanceTimersByTime(1_000);
    sock = FakeSocket.last;
    sock.open();
    expect(sock.sentOfType("Generate")).toHaveLength(0); // not before Joined
    sock.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "9f3a", members: [] } });
    const sent = sock.sentOfType("Generate");
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ id, room: "general", data: { prompt: "Hi!", config: { max_tokens: 64 } } });
    sock.receive({ type: "Ack", id, data: { message_id: "m-118", queue_position: 2 } });
    expect(h.client.pending[0]).toMatchObject({ phase: "acked", messageId: "m-118", queuePosition: 2 });
    // another drop after the Ack: not sent again
    sock.drop();
    waitRetry(h);
    const sock2 = FakeSocket.last;
    sock2.open();
    sock2.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "9f3a", members: [] } });
    expect(sock2.sentOfType("Generate")).toHaveLength(0);
    sock2.receive(token(42, "m-118", 0, "Hello"));
    expect(h.client.pending[0]?.queuePosition).toBeNull();
    sock2.receive(token(43, "m-118", 1, "", true));
    expect(h.client.pending).toHaveLength(0);
    expect(h.requests.at(-1)).toMatchObject({ id, phase: "done" });
  });

  it("re-sends an un-acknowledged Generate with the same id (the server dedupes)", () => {
    const h = make();
    h.client.start();
    let sock = goLive();
    const id = h.client.generate("Hi!");
    expect(sock.sentOfType("Generate")).toHaveLength(1);
    sock.drop();
    waitRetry(h);
    sock = goLive();
    expect(sock.sentOfType("Generate").map((f) => f.id)).toEqual([id]);
  });

  it("sends a queued Text exactly once", () => {
    const h = make();
    h.client.start();
    let sock = goLive();
    sock.drop();
    h.client.sendText("hello");
    h.client.sendText("hello"); // two messages, two ids
    vi.advanceTimersByTime(1_000);
    sock = goLive();
    expect(sock.sentOfType("Text")).toHaveLength(2);
    sock.drop();
    waitRetry(h);
    sock = goLive();
    expect(sock.sentOfType("Text")).toHaveLength(0);
    expect(h.client.pending).toHaveLength(0);
  });

  it("ignores a second request with an id it already holds", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    h.client.generate("x", undefined, "py-1");
    h.client.generate("x", undefined, "py-1");
    expect(sock.sentOfType("Generate")).toHaveLength(1);
  });
});

describe("cancel", () => {
  it("drops a request that never left", () => {
    const h = make();
    h.client.start();
    const id = h.client.generate("x");
    h.client.cancel(id);
    expect(h.client.pending).toHaveLength(0);
    goLive();
    expect(FakeSocket.last.sentOfType("Generate")).toHaveLength(0);
  });

  it("sends Cancel {message_id} once the Ack has told it", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    const id = h.client.generate("x");
    h.client.cancel(id); // before the Ack: remembered
    expect(sock.sentOfType("Cancel")).toHaveLength(0);
    sock.receive({ type: "Ack", id, data: { message_id: "m-9", queue_position: 0 } });
    expect(sock.sentOfType("Cancel")[0]).toMatchObject({ data: { message_id: "m-9" } });
    sock.receive({ ...token(42, "m-9", 0, "", true), data: { message_id: "m-9", index: 0, text: "", is_final: true, finish_reason: "cancelled" } });
    expect(h.client.pending).toHaveLength(0);
  });

  it("reports an Error answering a request and forgets it", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    const id = h.client.generate("x");
    sock.receive({ type: "Error", id, data: { message: "model not available", code: 503 } });
    expect(h.client.pending).toHaveLength(0);
    expect(h.requests.at(-1)).toMatchObject({ phase: "failed", error: "model not available (503)" });
  });

  it("drops the request that was too big when the server closes with 1009", () => {
    const h = make();
    h.client.start();
    let sock = goLive();
    const id = h.client.generate("huge");
    sock.drop(1009, "message too big");
    vi.advanceTimersByTime(1_000);
    sock = goLive();
    expect(sock.sentOfType("Generate")).toHaveLength(0);
    expect(h.requests.find((r) => r.id === id && r.phase === "failed")?.error).toMatch(/too big/);
  });

  it("refuses locally a message above Welcome.limits.message_size_limit", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    h.client.sendText("x".repeat(1_100_000));
    expect(sock.sentOfType("Text")).toHaveLength(0);
    expect(h.requests.at(-1)).toMatchObject({ phase: "failed" });
  });
});

describe("kernel relay fallback", () => {
  /** A page with no Jupyter server: the client can only relay through the kernel. */
  function makeKernelOnly() {
    const kernelSockets: FakeSocket[] = [];
    const h = make({
      urls: [],
      openKernel: () => {
        const s = new FakeSocket("kernel");
        kernelSockets.push(s);
        return s;
      },
    });
    return { h, kernelSockets };
  }

  it("uses the kernel at once when the page has no server", () => {
    const { h, kernelSockets } = makeKernelOnly();
    h.client.start();
    expect(h.client.status).toMatchObject({ status: "via_kernel", transport: "kernel" });
    const k = kernelSockets[0]!;
    k.open();
    const join = k.sentOfType("Join")[0];
    expect(join).toBeDefined();
    k.receive(WELCOME);
    k.receive({ type: "Joined", id: join?.id, room: "general", data: { seq: 3, epoch: "e1", members: [] } });
    expect(h.client.status).toMatchObject({ status: "via_kernel", reason: "no Jupyter server on this page" });
    vi.advanceTimersByTime(60_000);
    expect(k.sentOfType("Ping")).toHaveLength(0); // no heartbeat over the comm
  });

  it("fails with the kernel's reason when the kernel finds no server either, and retries only on demand", () => {
    const { h, kernelSockets } = makeKernelOnly();
    h.client.start();
    const k = kernelSockets[0]!;
    k.open();
    const join = k.sentOfType("Join")[0];
    const message = "no llmchat server reachable from the kernel: no running Jupyter server found";
    k.receive({ type: "Error", id: join?.id, data: { message, code: 503 } });
    expect(h.client.status).toMatchObject({ status: "failed", transport: "kernel" });
    expect(h.client.status.reason).toBe(`${message} (503)`);
    expect(k.closedWith?.code).toBe(1000); // the relay connection is released
    vi.advanceTimersByTime(120_000);
    expect(kernelSockets).toHaveLength(1); // no retry loop
    h.client.retryNow();
    expect(kernelSockets).toHaveLength(2);
    expect(h.client.status.status).toBe("via_kernel");
  });

  it("heals a relay whose server socket closed: backoff, then Join {since} through the kernel", () => {
    const kernelSockets: FakeSocket[] = [];
    const h = make({
      mode: "kernel",
      openKernel: () => {
        const s = new FakeSocket("kernel");
        kernelSockets.push(s);
        return s;
      },
    });
    h.client.start();
    const k1 = kernelSockets[0]!;
    k1.open();
    k1.receive(WELCOME);
    k1.receive({ type: "Joined", id: k1.sentOfType("Join")[0]?.id, room: "general", data: { seq: 5, epoch: "e1", members: [] } });
    k1.receive(text(6, "m6", "hello"));
    expect(h.client.status.status).toBe("via_kernel");
    k1.drop(1001, "server going away");
    expect(h.client.status).toMatchObject({ status: "reconnecting", transport: "kernel" });
    expect(h.client.status.reason).toMatch(/kernel relay/);
    waitRetry(h);
    expect(kernelSockets).toHaveLength(2);
    const k2 = kernelSockets[1]!;
    k2.open();
    expect(k2.sentOfType("Join")[0]?.data).toEqual({ since: 6, epoch: "e1" });
    // Still unreachable (server restarting): a relay that worked keeps healing on 503.
    k2.receive({ type: "Error", id: k2.sentOfType("Join")[0]?.id, data: { message: "no llmchat server reachable from the kernel", code: 503 } });
    expect(h.client.status.status).toBe("reconnecting");
    waitRetry(h);
    const k3 = kernelSockets[2]!;
    k3.open();
    k3.receive(WELCOME);
    k3.receive({ type: "Joined", id: k3.sentOfType("Join")[0]?.id, room: "general", data: { seq: 7, epoch: "e1", members: [] } });
    k3.receive(text(6, "m6", "hello")); // replay overlap: dropped
    k3.receive(text(7, "m7", "missed"));
    expect(h.client.status).toMatchObject({ status: "via_kernel", reason: "kernel transport requested", attempt: 0 });
    expect(seqs(h)).toEqual([6, 7]);
  });

  it("fails (no loop) when a relay that never joined is closed by the kernel", () => {
    const h = make({ urls: [], openKernel: () => new FakeSocket("kernel") });
    h.client.start();
    const k = FakeSocket.last;
    k.open();
    k.drop(1006, "connection to the server lost");
    expect(h.client.status.status).toBe("failed");
    expect(h.client.status.reason).toMatch(/kernel relay closed/);
  });

  it("falls back after repeated refused upgrades when never connected", () => {
    const h = make({ openKernel: () => new FakeSocket("kernel") });
    h.client.start();
    FakeSocket.last.refuse();
    waitRetry(h);
    FakeSocket.last.refuse();
    waitRetry(h);
    expect(h.client.status.status).not.toBe("via_kernel");
    FakeSocket.last.refuse();
    expect(h.client.status.status).toBe("via_kernel");
  });

  it("falls back at once when the REST probe says the extension is missing", async () => {
    let probes = 0;
    const probe = async (): Promise<ProbeResult> => {
      probes += 1;
      return "missing";
    };
    const h = make({ openKernel: () => new FakeSocket("kernel"), probe });
    h.client.start();
    FakeSocket.last.refuse();
    await vi.waitFor(() => expect(h.client.status.status).toBe("via_kernel"));
    expect(probes).toBe(1);
  });

  it("fails with the reason when the server says 403", async () => {
    const h = make({ openKernel: () => new FakeSocket("kernel"), probe: async () => "forbidden" });
    h.client.start();
    FakeSocket.last.refuse();
    await vi.waitFor(() => expect(h.client.status.status).toBe("failed"));
    expect(h.client.status.reason).toMatch(/403/);
    const n = FakeSocket.all.length;
    vi.advanceTimersByTime(120_000);
    expect(FakeSocket.all.length).toBe(n); // no retry loop against a 403
    h.client.retryNow();
    expect(FakeSocket.all.length).toBe(n + 1);
  });

  it("never switches to the kernel after having been live (a server restart is just a drop)", () => {
    const h = make({ openKernel: () => new FakeSocket("kernel") });
    h.client.start();
    goLive();
    FakeSocket.last.drop();
    for (let i = 0; i < 6; i++) {
      waitRetry(h);
      FakeSocket.last.refuse();
    }
    expect(h.client.status.status).toBe("reconnecting");
  });
});

describe("stop", () => {
  it("closes the socket and schedules nothing more", () => {
    const h = make();
    h.client.start();
    const sock = goLive();
    h.client.stop();
    expect(sock.closedWith?.code).toBe(1000);
    const n = FakeSocket.all.length;
    vi.advanceTimersByTime(120_000);
    h.env.goOnline();
    expect(FakeSocket.all.length).toBe(n);
    expect(vi.getTimerCount()).toBe(0);
  });
});
