// The transport on its own: fake sockets and timers, the client replaced by a recorder of
// its hooks. The end-to-end behaviour with rooms and requests is in client.test.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Frame } from "../src/protocol";
import type { ConnectionState, ProbeResult, StatusInfo } from "../src/connection-state";
import { Transport, type TransportOptions } from "../src/transport";
import { FakeEnv, FakeSocket } from "./fakes";

const URL1 = "ws://localhost/llmchat/ws";
const URL2 = "ws://localhost/llmchat/ws?token=abc";

function make(opts: Partial<TransportOptions> = {}) {
  const env = new FakeEnv();
  const rec = { opened: 0, lost: 0, closed: [] as number[], frames: [] as Frame[], statuses: [] as StatusInfo[], phases: [] as string[] };
  const t = new Transport(
    { urls: [URL1, URL2], openSocket: (url) => new FakeSocket(url), env, random: () => 0.5, ...opts },
    {
      opened: () => (rec.opened += 1),
      frame: (f) => rec.frames.push(f),
      lost: () => (rec.lost += 1),
      closed: (code) => rec.closed.push(code),
      status: (s) => rec.statuses.push(s),
    },
  );
  /** The phase now, recorded so a test can read the walk. */
  const phase = (): ConnectionState["phase"] => {
    rec.phases.push(t.state.phase);
    return t.state.phase;
  };
  return { t, env, rec, phase };
}

/** Open the newest socket and have the client say it joined. */
function join(t: Transport): FakeSocket {
  const sock = FakeSocket.last;
  sock.open();
  t.markJoined();
  return sock;
}

function waitRetry(t: Transport): void {
  const s = t.state;
  if (s.phase !== "waiting") throw new Error(`no retry pending (${s.phase})`);
  vi.advanceTimersByTime(Math.max(0, s.retryAt - Date.now()));
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("Transport: one state at a time", () => {
  it("walks idle → opening → open → joined → dropped/waiting → opening, the socket only where there is one", () => {
    const { t, rec, phase } = make();
    expect(phase()).toBe("idle");
    t.start();
    expect(t.state).toMatchObject({ phase: "opening", via: "websocket", sock: FakeSocket.last });
    expect(t.status.status).toBe("connecting");
    FakeSocket.last.open();
    expect(phase()).toBe("open");
    expect(rec.opened).toBe(1); // the client says Join now
    expect(t.joined).toBe(false);
    t.markJoined();
    expect(phase()).toBe("joined");
    expect(t.status).toMatchObject({ status: "live", transport: "websocket", reason: "", attempt: 0 });
    FakeSocket.last.drop(1006);
    expect(t.state).toEqual({ phase: "waiting", via: "websocket", retryAt: Date.now() + 250 });
    expect(rec.lost).toBe(1);
    expect(rec.closed).toEqual([1006]);
    expect(t.status).toMatchObject({ status: "reconnecting", reason: "connection lost", attempt: 1 });
    waitRetry(t);
    expect(phase()).toBe("opening");
    expect(t.status.status).toBe("reconnecting"); // it has been live: this is a reconnection
  });

  it("sends only on an open socket", () => {
    const { t } = make();
    const ping: Frame = { type: "Ping", id: "p1", data: {} };
    t.start();
    expect(t.send(ping)).toBe(false);
    const sock = join(t);
    expect(t.send(ping)).toBe(true);
    expect(sock.sentOfType("Ping")).toHaveLength(1);
    sock.readyState = 2; // closing
    expect(t.send(ping)).toBe(false);
  });

  it("switching rooms makes a joined socket open again; retryNow then checks it with a Ping", () => {
    const { t } = make();
    t.start();
    const sock = join(t);
    t.markRejoining();
    expect(t.state).toMatchObject({ phase: "open", sock });
    expect(t.status.status).toBe("live"); // nothing the user sees changes for a room switch
    t.retryNow();
    expect(sock.sentOfType("Ping")).toHaveLength(1);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("starts over when asked to retry on a socket that opened but never joined", () => {
    const { t, rec } = make();
    t.start();
    const first = FakeSocket.last;
    first.refuse();
    waitRetry(t);
    FakeSocket.last.open();
    expect(t.status.status).toBe("reconnecting");
    const opened = FakeSocket.last;
    t.retryNow();
    expect(opened.closedWith?.code).toBe(4001); // replaced
    expect(FakeSocket.all).toHaveLength(3);
    expect(rec.lost).toBe(2);
  });

  it("tells the client the close code of a WebSocket (1009: its last frame was too big)", () => {
    const { t, rec } = make();
    t.start();
    join(t).drop(1009, "message too big");
    expect(rec.closed).toEqual([1009]);
    expect(t.status.reason).toBe("message too big");
  });

  it("treats silence after a Ping as a dead socket and drops it without a handshake", () => {
    const { t, rec } = make();
    t.start();
    const sock = join(t);
    vi.advanceTimersByTime(15_000);
    expect(sock.sentOfType("Ping")).toHaveLength(1);
    sock.receive({ type: "Pong" }); // any frame proves it alive
    vi.advanceTimersByTime(15_000 + 10_000);
    expect(sock.closedWith?.code).toBe(4000);
    expect(t.state.phase).toBe("waiting");
    expect(rec.closed).toEqual([4000]);
    expect(rec.frames.map((f) => f.type)).toEqual(["Pong"]);
  });

  it("abandons an upgrade that neither opens nor fails", () => {
    const { t } = make();
    t.start();
    const first = FakeSocket.last;
    vi.advanceTimersByTime(10_000);
    expect(first.closedWith?.code).toBe(4002);
    expect(t.state.phase).toBe("waiting");
  });

  it("stops for good: closes the socket, forgets its requests, schedules nothing", () => {
    const { t, env, rec } = make();
    t.start();
    const sock = join(t);
    t.stop();
    expect(t.state).toEqual({ phase: "stopped" });
    expect(sock.closedWith?.code).toBe(1000);
    expect(rec.lost).toBe(1);
    env.goOnline();
    t.retryNow();
    t.start();
    expect(FakeSocket.all).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("Transport: failing and falling back", () => {
  const kernelOnly = (opts: Partial<TransportOptions> = {}) => {
    const kernels: FakeSocket[] = [];
    const m = make({
      urls: [],
      openKernel: () => {
        const s = new FakeSocket("kernel");
        kernels.push(s);
        return s;
      },
      ...opts,
    });
    return { ...m, kernels };
  };

  it("fails with no socket left when the page has no server and no kernel", () => {
    const { t } = make({ urls: [] });
    t.start();
    expect(t.state).toEqual({ phase: "failed", via: null });
    expect(t.status).toMatchObject({ status: "failed", reason: "no Jupyter server URL on this page" });
    t.retryNow();
    expect(FakeSocket.all).toHaveLength(0);
  });

  it("relays through the kernel where there is no server, without a heartbeat", () => {
    const { t, kernels } = kernelOnly();
    t.start();
    expect(t.state).toMatchObject({ phase: "opening", via: "kernel" });
    expect(t.status).toMatchObject({ status: "via_kernel", transport: "kernel", reason: "no Jupyter server on this page" });
    join(t);
    expect(t.status.status).toBe("via_kernel");
    vi.advanceTimersByTime(60_000);
    expect(kernels[0]!.sentOfType("Ping")).toHaveLength(0);
  });

  it("shows what the relay is doing before it joins (the service starting), then its own reason again", () => {
    const { t, kernels } = kernelOnly();
    t.start();
    kernels[0]!.onstatus?.("starting the model service…");
    expect(t.status).toMatchObject({ status: "via_kernel", reason: "starting the model service…" });
    join(t);
    expect(t.status).toMatchObject({ status: "via_kernel", reason: "no Jupyter server on this page" });
    kernels[0]!.onstatus?.("late news");
    expect(t.status.reason).toBe("no Jupyter server on this page"); // joined: nothing to wait for
  });

  it("a refused Join through a relay that never worked: failed, the relay released", () => {
    const { t, kernels } = kernelOnly();
    t.start();
    kernels[0]!.open();
    t.joinRefused({ message: "no llmchat server reachable from the kernel", code: 503 });
    expect(t.state).toEqual({ phase: "failed", via: "kernel" });
    expect(kernels[0]!.closedWith?.code).toBe(1000);
    t.retryNow();
    expect(kernels).toHaveLength(2);
  });

  it("a refused Join on the WebSocket (403) fails for good and closes the socket", () => {
    const { t, rec } = make();
    t.start();
    const sock = FakeSocket.last;
    sock.open();
    t.joinRefused({ message: "forbidden", code: 403 });
    expect(t.state).toEqual({ phase: "failed", via: "websocket" });
    expect(t.status.reason).toBe("cannot join room: forbidden");
    expect(sock.closedWith?.code).toBe(1000);
    expect(rec.lost).toBe(1);
    sock.drop(1000); // the close event of a released socket changes nothing
    vi.advanceTimersByTime(120_000);
    expect(t.state.phase).toBe("failed");
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("a 403 from the probe also ends an attempt already under way", async () => {
    let answer: (r: ProbeResult) => void = () => undefined;
    const { t } = make({ openKernel: () => new FakeSocket("kernel"), probe: () => new Promise((r) => (answer = r)) });
    t.start();
    FakeSocket.last.refuse();
    waitRetry(t); // the probe is slower than the first retry
    const attempt = FakeSocket.last;
    expect(t.state).toMatchObject({ phase: "opening", sock: attempt });
    answer("forbidden");
    await vi.waitFor(() => expect(t.state.phase).toBe("failed"));
    expect(attempt.closedWith?.code).toBe(1000);
    attempt.refuse();
    vi.advanceTimersByTime(120_000);
    expect(t.state.phase).toBe("failed");
  });

  it("asks the probe once, and falls back to the kernel after repeated refusals when never joined", () => {
    let probes = 0;
    const { t } = make({
      openKernel: () => new FakeSocket("kernel"),
      probe: async () => {
        probes += 1;
        return "unreachable";
      },
    });
    t.start();
    for (let i = 0; i < 2; i++) {
      FakeSocket.last.refuse();
      waitRetry(t);
    }
    FakeSocket.last.refuse();
    expect(t.state).toMatchObject({ phase: "opening", via: "kernel" });
    expect(t.status.reason).toBe("the llmchat WebSocket is not reachable from this page");
    expect(probes).toBe(1);
    expect(FakeSocket.all.map((s) => s.url)).toEqual([URL1, URL2, URL1, "kernel"]);
  });
});
