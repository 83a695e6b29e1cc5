// @vitest-environment jsdom
// The anywidget entry, loaded the way anywidget loads it: the module's default export is
// resolved once per widget model, `initialize` runs once per model and `render` once per
// view, each with its own proxy of the model. On a page without a Jupyter server the client
// relays through the kernel, so every frame it sends shows up as a custom message here.
import { afterEach, describe, expect, it } from "vitest";
import widgetModule from "../src/widget";

type Handler = (...args: any[]) => void;

/** The model anywidget holds for one Python ChatWidget. */
class FakeModel {
  sent: any[] = [];
  private handlers = new Map<string, Set<Handler>>();
  constructor(private state: Record<string, unknown>) {}
  get(key: string): any {
    return this.state[key];
  }
  set(key: string, value: unknown): void {
    this.state[key] = value;
  }
  save_changes(): void {}
  send(content: unknown): void {
    this.sent.push(content);
  }
  on(event: string, cb: Handler): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(cb);
  }
  off(event: string, cb?: Handler): void {
    if (cb) this.handlers.get(event)?.delete(cb);
    else this.handlers.delete(event);
  }
  /** A custom message from the kernel. */
  fromKernel(content: unknown): void {
    for (const cb of [...(this.handlers.get("msg:custom") ?? [])]) cb(content);
  }
  /** A different object over the same model, as anywidget gives `initialize` and each `render`. */
  proxy(): FakeModel {
    const proxy = Object.create(this) as FakeModel;
    return proxy;
  }
  relayed(type: string): any[] {
    return this.sent.filter((m) => m.kind === "relay" && m.frame.type === type).map((m) => m.frame);
  }
}

type WidgetDef = {
  initialize(ctx: { model: FakeModel }): () => void;
  render(ctx: { model: FakeModel; el: HTMLElement }): () => void;
};

/** What anywidget's loader does for each model: a factory is called, an object used as is. */
async function loadFor(): Promise<WidgetDef> {
  const def = widgetModule as unknown;
  return (typeof def === "function" ? await (def as () => unknown)() : def) as WidgetDef;
}

let uids = 0;
function model(room: string): FakeModel {
  uids += 1;
  return new FakeModel({ room, transport: "kernel", ask_mode: true, config: {}, height: "", base_url: "", _uid: `uid-${uids}`, _highlighter_esm: "" });
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const off of cleanups.splice(0).reverse()) off();
  document.body.replaceChildren();
});

async function initialize(m: FakeModel): Promise<WidgetDef> {
  const def = await loadFor();
  cleanups.push(def.initialize({ model: m.proxy() }));
  await Promise.resolve(); // the relay "opens" on the next microtask, then says Join
  return def;
}

function render(def: WidgetDef, m: FakeModel): HTMLElement {
  const el = document.createElement("div");
  document.body.append(el);
  cleanups.push(def.render({ model: m.proxy(), el }));
  return el;
}

describe("the anywidget entry", () => {
  it("opens one connection per model, however many views show it", async () => {
    const m = model("alpha");
    const def = await initialize(m);
    const a = render(def, m);
    const b = render(def, m);
    expect(m.relayed("Join")).toHaveLength(1);
    expect(m.relayed("Join")[0]).toMatchObject({ room: "alpha" });
    for (const el of [a, b]) expect(el.querySelector(".llmchat-room")?.textContent).toBe("#alpha");
    expect(m.get("status")).toBe("via_kernel"); // status goes to Python at once
  });

  it("keeps two models apart: each view draws its own model's room", async () => {
    const first = model("alpha");
    const second = model("beta");
    const defFirst = await initialize(first);
    const defSecond = await initialize(second);
    const b = render(defSecond, second);
    const a = render(defFirst, first);
    expect(first.relayed("Join").map((f) => f.room)).toEqual(["alpha"]);
    expect(second.relayed("Join").map((f) => f.room)).toEqual(["beta"]);
    expect(a.querySelector(".llmchat-room")?.textContent).toBe("#alpha");
    expect(b.querySelector(".llmchat-room")?.textContent).toBe("#beta");

    // A frame relayed to the second model reaches its views only.
    const cid = second.sent.find((msg) => msg.kind === "relay").cid;
    const join = second.relayed("Join")[0];
    second.fromKernel({ kind: "relay", cid, frame: { type: "Joined", id: join.id, room: "beta", data: { seq: 1, epoch: "e", members: [] } } });
    second.fromKernel({
      kind: "relay",
      cid,
      frame: { type: "Text", room: "beta", seq: 2, data: { message_id: "m2", content: "only in beta", author: { username: "ada", name: "Ada", kind: "user" }, created: "2026-11-22T10:00:00Z" } },
    });
    await new Promise((r) => setTimeout(r, 40)); // the views paint on the next frame
    expect(b.textContent).toContain("only in beta");
    expect(a.textContent).not.toContain("only in beta");
  });

  it("needs no synced id to find a model's state: the per-model closure holds it", async () => {
    // The module once kept a map keyed by the `_uid` trait; two models with the same id (or
    // none) would have shared one entry.
    const first = model("alpha");
    const second = model("beta");
    for (const m of [first, second]) m.set("_uid", "");
    const defFirst = await initialize(first);
    const defSecond = await initialize(second);
    const a = render(defFirst, first);
    const b = render(defSecond, second);
    expect(a.querySelector(".llmchat-room")?.textContent).toBe("#alpha");
    expect(b.querySelector(".llmchat-room")?.textContent).toBe("#beta");
  });

  it("closes the model's connection on cleanup; a view after that says so", async () => {
    const m = model("alpha");
    const def = await loadFor();
    const stop = def.initialize({ model: m.proxy() });
    await Promise.resolve();
    const cid = m.sent.find((msg) => msg.kind === "relay").cid;
    stop();
    expect(m.sent.at(-1)).toEqual({ kind: "relay_close", cid });
    const el = render(def, m);
    expect(el.textContent).toMatch(/not initialised/);
  });
});
