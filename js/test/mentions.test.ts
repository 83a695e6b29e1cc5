// @vitest-environment jsdom
// `@name` in the box: the mention grammar, the popup (filtering, keys, mouse, ARIA), the chips,
// and what is sent: mentions of variables as attachments, anything else as plain text.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { completeMention, filterVariables, mentionAt, mentionNames, unmention, type Variable, type VariableList } from "../src/mentions";
import { KernelBusy, KernelVariables, type Described, type VariableSource } from "../src/variables";
import { FakeSocket } from "./fakes";
import { setup } from "./view-harness";

beforeEach(() => {
  FakeSocket.reset();
  document.body.replaceChildren();
});
afterEach(() => vi.useRealTimers());

const VARS: Variable[] = [
  { name: "error", kind: "error", label: "ZeroDivisionError" },
  { name: "data", kind: "object", label: "dict, 3 items" },
  { name: "df", kind: "dataframe", label: "DataFrame 200×5" },
  { name: "df_small", kind: "dataframe", label: "DataFrame 3×2" },
  { name: "x", kind: "ndarray", label: "ndarray float64 (3, 4)" },
  { name: "my_df", kind: "dataframe", label: "DataFrame 1×1" },
];

describe("mention grammar", () => {
  it("finds mentions, not addresses, decorators inside words or repeats", () => {
    expect(mentionNames("compare @df and @x, then @df again")).toEqual(["df", "x"]);
    expect(mentionNames("mail ada@example.org or see x.@y")).toEqual([]);
    expect(mentionNames("@données et @_tmp @1st")).toEqual(["données", "_tmp"]);
    expect(mentionNames("(@df)")).toEqual(["df"]);
  });

  it("knows the mention being typed at the caret", () => {
    expect(mentionAt("look at @d", 10)).toEqual({ start: 8, query: "d" });
    expect(mentionAt("@", 1)).toEqual({ start: 0, query: "" });
    expect(mentionAt("look at @df now", 15)).toBeNull();
    expect(mentionAt("ada@ex", 6)).toBeNull();
    expect(mentionAt("@1", 2)).toBeNull();
  });

  it("filters by prefix first, any case, then by what the name contains", () => {
    expect(filterVariables(VARS, "DF").map((v) => v.name)).toEqual(["df", "df_small", "my_df"]);
    expect(filterVariables(VARS, "").map((v) => v.name)).toEqual(VARS.map((v) => v.name));
    expect(filterVariables(VARS, "zzz")).toEqual([]);
  });

  it("completes a mention with a space, over a half-typed name, and turns one back into text", () => {
    expect(completeMention("see @d", 4, 6, "df")).toEqual({ text: "see @df ", caret: 8 });
    expect(completeMention("see @dxx please", 4, 6, "df")).toEqual({ text: "see @df please", caret: 8 });
    expect(unmention("@df vs @df_small and @df", "df")).toBe("df vs @df_small and df");
  });
});

/** A kernel stand-in: lists VARS, describes what it knows; `busy` makes it never answer. */
class FakeKernel implements VariableSource {
  lists: string[] = [];
  describes: string[][] = [];
  busy = false;
  truncateAt = Infinity;
  async list(prefix: string): Promise<VariableList> {
    this.lists.push(prefix);
    if (this.busy) throw new KernelBusy();
    const items = VARS.filter((v) => v.name.toLowerCase().startsWith(prefix.toLowerCase()));
    return { items: items.slice(0, this.truncateAt), truncated: items.length > this.truncateAt };
  }
  async describe(names: string[]): Promise<Described> {
    this.describes.push(names);
    if (this.busy) throw new KernelBusy();
    const found = names.filter((n) => VARS.some((v) => v.name === n));
    return {
      attachments: found.slice(0, 8).map((n) => ({ kind: "object", label: `${n} (…)`, text: `the value of ${n}` })),
      attached: found.slice(0, 8),
      skipped: found.slice(8),
    };
  }
}

const settle = () => new Promise((r) => setTimeout(r, 0));

function withKernel(kernel = new FakeKernel()) {
  const t = setup({ variables: kernel });
  const box = t.host.querySelector(".llmchat-input") as HTMLTextAreaElement;
  const type = async (text: string) => {
    box.focus();
    box.value += text;
    box.setSelectionRange(box.value.length, box.value.length);
    box.dispatchEvent(new Event("input"));
    await settle();
  };
  const key = (k: string, extra: KeyboardEventInit = {}) => {
    const ev = new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true, ...extra });
    box.dispatchEvent(ev);
    return ev;
  };
  const options = () => Array.from(t.host.querySelectorAll<HTMLElement>(".llmchat-mentions [role=option]"));
  const popup = () => t.host.querySelector(".llmchat-mentions") as HTMLElement;
  const chips = () => Array.from(t.host.querySelectorAll<HTMLElement>(".llmchat-chip")).map((c) => c.textContent);
  return { ...t, kernel, box, type, key, options, popup, chips };
}

describe("the @ popup", () => {
  it("lists the kernel's variables with kind and size, filtered as you type", async () => {
    const t = withKernel();
    await t.type("what is in @");
    expect(t.kernel.lists).toEqual([""]);
    expect(t.popup().hidden).toBe(false);
    expect(t.options().map((o) => o.dataset.name)).toEqual(VARS.map((v) => v.name));
    expect(t.options()[2]?.textContent).toBe("dfDataFrame 200×5");
    await t.type("df");
    expect(t.options().map((o) => o.dataset.name)).toEqual(["df", "df_small", "my_df"]);
    expect(t.kernel.lists).toEqual([""]); // filtered here, not asked again
    await t.type("zz");
    expect(t.options()).toEqual([]);
    expect(t.popup().textContent).toContain('No variable named like "dfzz": it stays text.');
  });

  it("is a listbox the box points at: aria-expanded, aria-controls, aria-activedescendant", async () => {
    const t = withKernel();
    expect(t.box.getAttribute("aria-expanded")).toBe("false");
    await t.type("@d");
    const list = t.host.querySelector("[role=listbox]") as HTMLElement;
    expect(t.box.getAttribute("aria-expanded")).toBe("true");
    expect(t.box.getAttribute("aria-controls")).toBe(list.id);
    const first = t.options()[0] as HTMLElement;
    expect(t.box.getAttribute("aria-activedescendant")).toBe(first.id);
    expect(first.getAttribute("aria-selected")).toBe("true");
  });

  it("ArrowDown/ArrowUp move (wrapping), Enter completes instead of sending", async () => {
    const t = withKernel();
    await t.type("plot @d");
    expect(t.options().map((o) => o.dataset.name)).toEqual(["data", "df", "df_small", "my_df"]);
    expect(t.key("ArrowDown").defaultPrevented).toBe(true);
    expect(t.box.getAttribute("aria-activedescendant")).toBe(t.options()[1]?.id);
    t.key("ArrowUp");
    t.key("ArrowUp");
    expect(t.options()[3]?.getAttribute("aria-selected")).toBe("true"); // wrapped to the last
    t.key("ArrowDown"); // back to the first
    t.key("ArrowDown");
    t.key("Enter");
    expect(t.box.value).toBe("plot @df ");
    expect(t.popup().hidden).toBe(true);
    expect(t.sent).toEqual([]); // Enter chose; it did not send
    expect(t.chips()).toEqual(["dataframe@dfDataFrame 200×5×"]);
  });

  it("Tab completes too, Escape closes until another @, a click chooses", async () => {
    const t = withKernel();
    await t.type("@x");
    t.key("Tab");
    expect(t.box.value).toBe("@x ");
    await t.type("and @");
    expect(t.key("Escape").defaultPrevented).toBe(true);
    expect(t.popup().hidden).toBe(true);
    await t.type("m");
    expect(t.popup().hidden).toBe(true); // the same @: stays closed
    await t.type(" @");
    expect(t.popup().hidden).toBe(false);
    const option = t.options().find((o) => o.dataset.name === "my_df") as HTMLElement;
    option.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, cancelable: true }));
    option.click();
    expect(t.box.value).toBe("@x and @m @my_df ");
    expect(t.chips().map((c) => c?.split("@")[1])).toEqual(["xndarray float64 (3, 4)×", "my_dfDataFrame 1×1×"]);
  });

  it("asks the kernel again with the prefix when its list was cut", async () => {
    const kernel = new FakeKernel();
    kernel.truncateAt = 2;
    const t = withKernel(kernel);
    await t.type("@");
    expect(t.popup().textContent).toContain("More variables than shown");
    await t.type("df");
    expect(kernel.lists).toEqual(["", "df"]);
    expect(t.options().map((o) => o.dataset.name)).toEqual(["df", "df_small"]);
  });

  it("says so when the kernel does not answer, and does not ask on every key", async () => {
    const kernel = new FakeKernel();
    kernel.busy = true;
    const t = withKernel(kernel);
    await t.type("@");
    await t.type("d");
    expect(t.popup().textContent).toContain("The kernel did not answer");
    expect(kernel.lists).toEqual([""]);
  });

  it("does not open for a plain message (/say or the ask toggle off)", async () => {
    const t = withKernel();
    await t.type("/say hi @");
    expect(t.popup().hidden).toBe(true);
    expect(t.kernel.lists).toEqual([]);
  });
});

describe("sending with @mentions", () => {
  it("attaches the variables mentioned, leaves other names as text", async () => {
    const t = withKernel();
    await t.type("compare @df with @nobody and @x");
    t.key("Escape");
    t.key("Enter");
    await settle();
    expect(t.kernel.describes).toEqual([["df", "nobody", "x"]]);
    expect(t.box.value).toBe("");
    const [generate] = t.sock.sentOfType("Generate");
    expect(generate?.data).toMatchObject({
      prompt: "compare @df with @nobody and @x",
      attachments: [
        { kind: "object", label: "df (…)", text: "the value of df" },
        { kind: "object", label: "x (…)", text: "the value of x" },
      ],
    });
  });

  it("a question without mentions, or a plain message, never asks the kernel", async () => {
    const t = withKernel();
    await t.type("no mentions here");
    t.key("Enter");
    await t.type("/say hi @df");
    t.key("Enter");
    await settle();
    expect(t.kernel.describes).toEqual([]);
    expect(t.sock.sentOfType("Generate")[0]?.data).not.toHaveProperty("attachments");
    expect(t.sock.sentOfType("Text")[0]?.data).toEqual({ content: "hi @df" });
  });

  it("a busy kernel: nothing is sent, the text stays, the notice says why", async () => {
    const kernel = new FakeKernel();
    const t = withKernel(kernel);
    await t.type("@d");
    t.key("Enter"); // chose "data" (listed, so known)
    kernel.busy = true;
    await t.type("summary");
    t.key("Enter");
    await settle();
    t.frames.run();
    expect(t.sock.sentOfType("Generate")).toEqual([]);
    expect(t.box.value).toBe("@data summary");
    expect(t.host.querySelector(".llmchat-notice-text")?.textContent).toMatch(/Not sent: the kernel did not answer.*@data could not be attached/);
  });

  it("a busy kernel and names it never listed: sent as plain text", async () => {
    const kernel = new FakeKernel();
    kernel.busy = true;
    const t = withKernel(kernel);
    t.box.value = "ping @bob";
    t.key("Enter");
    await settle();
    expect(t.sock.sentOfType("Generate")[0]?.data).toEqual({ prompt: "ping @bob" });
  });
});

describe("KernelVariables over the widget's comm", () => {
  class FakeModel {
    sent: Array<Record<string, unknown>> = [];
    handlers = new Set<(c: unknown) => void>();
    send(content: unknown): void {
      this.sent.push(content as Record<string, unknown>);
    }
    on(_e: string, cb: (c: unknown) => void): void {
      this.handlers.add(cb);
    }
    off(_e: string, cb?: (c: unknown) => void): void {
      if (cb) this.handlers.delete(cb);
    }
    reply(content: unknown): void {
      for (const h of [...this.handlers]) h(content);
    }
  }

  it("matches replies by id and cleans up; ignores others' replies", async () => {
    const model = new FakeModel();
    const vars = new KernelVariables(model);
    const listed = vars.list("d");
    const request = model.sent[0] as { kind: string; id: string; prefix: string };
    expect(request).toMatchObject({ kind: "variables", prefix: "d" });
    model.reply({ kind: "variables", id: "someone-else", items: [], truncated: false });
    model.reply({ kind: "variables", id: request.id, items: [VARS[2], { bad: 1 }], truncated: true });
    expect(await listed).toEqual({ items: [VARS[2]], truncated: true });
    expect(model.handlers.size).toBe(0);
    const described = vars.describe(["df"]);
    const ask = model.sent[1] as { id: string };
    model.reply({ kind: "described", id: ask.id, attachments: [{ kind: "dataframe", label: "df (DataFrame 200×5)", text: "t" }], attached: ["df"], skipped: [] });
    expect(await described).toEqual({ attachments: [{ kind: "dataframe", label: "df (DataFrame 200×5)", text: "t" }], attached: ["df"], skipped: [] });
  });

  it("gives up after its timeout (a kernel busy running a cell)", async () => {
    vi.useFakeTimers();
    const model = new FakeModel();
    const listed = new KernelVariables(model).list("");
    vi.advanceTimersByTime(5_000);
    await expect(listed).rejects.toBeInstanceOf(KernelBusy);
    expect(model.handlers.size).toBe(0);
  });
});
