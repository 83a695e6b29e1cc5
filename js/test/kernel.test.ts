import { describe, expect, it } from "vitest";
import { KernelSocket, type CommModel } from "../src/kernel";

class FakeModel implements CommModel {
  sent: any[] = [];
  private handlers = new Set<(...args: any[]) => void>();
  send(content: unknown): void {
    this.sent.push(content);
  }
  on(_event: string, cb: (...args: any[]) => void): void {
    this.handlers.add(cb);
  }
  off(_event: string, cb?: (...args: any[]) => void): void {
    if (cb) this.handlers.delete(cb);
  }
  fromKernel(content: unknown): void {
    for (const cb of [...this.handlers]) cb(content);
  }
  get listeners(): number {
    return this.handlers.size;
  }
}

const opened = async (s: KernelSocket): Promise<void> => {
  await Promise.resolve();
  expect(s.readyState).toBe(1);
};

describe("KernelSocket", () => {
  it("tags frames with its connection id and only takes frames for it (or for everyone)", async () => {
    const model = new FakeModel();
    const a = new KernelSocket(model);
    const b = new KernelSocket(model);
    await opened(a);
    await opened(b);
    expect(a.cid).not.toBe(b.cid);
    a.send(JSON.stringify({ type: "Join", id: "j1", room: "r", data: {} }));
    expect(model.sent).toEqual([{ kind: "relay", cid: a.cid, frame: { type: "Join", id: "j1", room: "r", data: {} } }]);
    const gotA: unknown[] = [];
    const gotB: unknown[] = [];
    a.onmessage = (ev) => gotA.push(JSON.parse(String(ev.data)));
    b.onmessage = (ev) => gotB.push(JSON.parse(String(ev.data)));
    model.fromKernel({ kind: "relay", cid: a.cid, frame: { type: "Joined" } });
    model.fromKernel({ kind: "relay", frame: { type: "Pong" } }); // a plugged-in relay_handler: no cid
    model.fromKernel({ kind: "send", text: "not a relay frame" });
    expect(gotA).toEqual([{ type: "Joined" }, { type: "Pong" }]);
    expect(gotB).toEqual([{ type: "Pong" }]);
  });

  it("closes with the kernel's code when the kernel's server socket closed, without answering", async () => {
    const model = new FakeModel();
    const s = new KernelSocket(model);
    await opened(s);
    const closes: Array<{ code: number; reason: string }> = [];
    s.onclose = (ev) => closes.push(ev);
    model.fromKernel({ kind: "relay_closed", cid: "someone-else", code: 1001, reason: "x" });
    expect(closes).toEqual([]);
    model.fromKernel({ kind: "relay_closed", cid: s.cid, code: 1001, reason: "server going away" });
    expect(closes).toEqual([{ code: 1001, reason: "server going away" }]);
    expect(s.readyState).toBe(3);
    expect(model.sent).toEqual([]); // no relay_close back: the kernel already knows
    expect(model.listeners).toBe(0);
  });

  it("passes on what the kernel is doing meanwhile (relay_status), for every connection", async () => {
    const model = new FakeModel();
    const s = new KernelSocket(model);
    await opened(s);
    const said: string[] = [];
    s.onstatus = (text) => said.push(text);
    model.fromKernel({ kind: "relay_status", text: "starting the model service…" });
    model.fromKernel({ kind: "relay_status", text: 42 });
    expect(said).toEqual(["starting the model service…"]);
  });

  it("tells the kernel when it is closed from this side", async () => {
    const model = new FakeModel();
    const s = new KernelSocket(model);
    await opened(s);
    s.close(1000, "widget closed");
    s.close(); // twice is harmless
    expect(model.sent).toEqual([{ kind: "relay_close", cid: s.cid }]);
    expect(() => s.send("{}")).toThrow();
  });
});
