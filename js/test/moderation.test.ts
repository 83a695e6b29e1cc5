// @vitest-environment jsdom
// Running a room from the widget: each message's menu (edit and delete own; a moderator
// deletes any and mutes its author), "(edited)", a deleted message leaving for good, the
// moderator toggles and Export in the header, and the line that says why one cannot post.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { roomActions } from "../src/actions";
import { makeExporter } from "../src/export";
import { menuFor, roomRules, stillMuted } from "../src/moderation";
import type { Frame } from "../src/protocol";
import { FakeSocket, text, token } from "./fakes";
import { bodies, setup } from "./view-harness";

type T = ReturnType<typeof setup>;

function from(seq: number, id: string, content: string, who: "ada" | "bob", kind = "user"): Frame {
  const f = text(seq, id, content, kind);
  (f.data as Record<string, unknown>).author = { username: who, name: who === "ada" ? "Ada" : "Bob", kind };
  return f;
}

const node = (t: T, key: string) => t.host.querySelector(`.llmchat-msg[data-key="${key}"]`) as HTMLElement | null;
const menuItems = (t: T, key: string) =>
  Array.from(node(t, key)?.querySelectorAll(".llmchat-menu-item") ?? []).map((b) => b.textContent);
function click(t: T, key: string, label: string): void {
  (node(t, key)?.querySelector(".llmchat-menu-button") as HTMLButtonElement).click();
  const item = Array.from(node(t, key)?.querySelectorAll(".llmchat-menu-item") ?? []).find((b) => b.textContent === label);
  (item as HTMLButtonElement).click();
  t.frames.run();
}

beforeEach(() => {
  FakeSocket.reset();
  document.body.replaceChildren();
});

describe("each message's menu", () => {
  it("offers edit and delete on my own text, nothing on someone else's, delete on the answer to my question", () => {
    const t = setup();
    t.sock.receive(from(42, "m-mine", "mine", "ada"));
    t.sock.receive(from(43, "m-bob", "bob's", "bob"));
    t.sock.receive({ ...from(44, "m-ans", "an answer", "ada", "assistant"), data: { ...from(44, "m-ans", "an answer", "ada", "assistant").data as object, author: { username: "model", name: "gemma", kind: "assistant" }, in_reply_to: "m-mine" } } as Frame);
    t.frames.run();
    expect(menuItems(t, "m-mine")).toEqual(["Edit", "Delete"]);
    expect(node(t, "m-bob")?.querySelector(".llmchat-menu")).toBeNull();
    expect(menuItems(t, "m-ans")).toEqual(["Delete"]);
    click(t, "m-mine", "Delete");
    expect(t.sock.sentOfType("Delete")[0]).toMatchObject({ room: "general", data: { message_id: "m-mine" } });
  });

  it("a moderator deletes anyone's message and mutes or unmutes its author", () => {
    const t = setup({ moderator: true });
    t.sock.receive(from(42, "m-bob", "rude", "bob"));
    t.frames.run();
    expect(menuItems(t, "m-bob")).toEqual(["Delete", "Mute 10 minutes", "Mute 1 hour", "Mute 1 day"]);
    click(t, "m-bob", "Mute 1 hour");
    expect(t.sock.sentOfType("Mute")[0]).toMatchObject({ room: "general", data: { username: "bob", seconds: 3600 } });
    const until = new Date(Date.now() + 3_600_000).toISOString();
    const notice = from(43, "m-sys", "Ada muted bob for 1 hour.", "ada", "system");
    (notice.data as Record<string, unknown>).mute = { username: "bob", until };
    t.sock.receive(notice);
    t.frames.run();
    expect(t.store.mutes.get("bob")).toBe(until);
    // The menu painted before the mute offers Unmute when it opens now.
    click(t, "m-bob", "Unmute");
    expect(menuItems(t, "m-bob")).toEqual(["Delete", "Unmute"]);
    expect(t.sock.sentOfType("Mute")[1]?.data).toEqual({ username: "bob", seconds: 0 });
  });

  it("has no menu on a private message or one still streaming", () => {
    const t = setup({ moderator: true });
    t.sock.receive(token(42, "m-run", 0, "Hel"));
    t.frames.run();
    expect(node(t, "m-run")?.querySelector(".llmchat-menu")).toBeNull();
    const m = t.store.messages[0];
    expect(m && menuFor({ ...m, streaming: false, private: true }, t.store, {} as never)).toBeNull();
  });
});

describe("edit", () => {
  it("edits in place and sends Edit; everyone's copy shows the new text and (edited)", () => {
    const t = setup();
    t.sock.receive(from(42, "m-mine", "teh answer", "ada"));
    t.frames.run();
    click(t, "m-mine", "Edit");
    const area = node(t, "m-mine")?.querySelector(".llmchat-edit-input") as HTMLTextAreaElement;
    expect(area.value).toBe("teh answer");
    area.value = "the answer";
    area.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(t.sock.sentOfType("Edit")[0]?.data).toEqual({ message_id: "m-mine", content: "the answer" });
    expect(node(t, "m-mine")?.querySelector(".llmchat-edit")).toBeNull();
    t.sock.receive({ type: "Edited", room: "general", seq: 43, data: { message_id: "m-mine", content: "the answer", edited: "2026-11-22T10:05:00Z" } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["the answer"]);
    expect(node(t, "m-mine")?.querySelector(".llmchat-edited")?.textContent).toBe("(edited)");
  });

  it("Escape cancels without sending", () => {
    const t = setup();
    t.sock.receive(from(42, "m-mine", "keep", "ada"));
    t.frames.run();
    click(t, "m-mine", "Edit");
    const area = node(t, "m-mine")?.querySelector(".llmchat-edit-input") as HTMLTextAreaElement;
    area.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
    expect(t.sock.sentOfType("Edit")).toHaveLength(0);
    expect((node(t, "m-mine")?.querySelector(".llmchat-body") as HTMLElement).hidden).toBe(false);
  });
});

describe("a deleted message", () => {
  it("disappears live and a late token or a tombstone in History never brings it back", () => {
    const t = setup();
    t.sock.receive(token(42, "m-ans", 0, "secret"));
    t.sock.receive(from(43, "m-bob", "stays", "bob"));
    t.frames.run();
    t.sock.receive({ type: "Deleted", room: "general", seq: 44, data: { message_id: "m-ans" } });
    t.frames.run();
    expect(node(t, "m-ans")).toBeNull();
    t.sock.receive(token(45, "m-ans", 1, "", true));
    t.sock.receive({ type: "History", room: "general", data: { head_seq: 45, epoch: "e", messages: [
      { type: "Text", room: "general", seq: 42, data: { message_id: "m-ans", content: "", deleted: true, author: { username: "model", name: "g", kind: "assistant" }, created: "x" } },
      from(43, "m-bob", "stays", "bob"),
    ] } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["stays"]);
    expect(t.store.messages.map((m) => m.key)).toEqual(["m-bob"]);
  });
});

describe("a flood of deleted messages", () => {
  it("does not stop Load earlier: the next page is asked for from before the tombstones", () => {
    const t = setup();
    const tomb = (seq: number) => ({ type: "Text", room: "general", seq, data: { message_id: `m-${seq}`, content: "", deleted: true, author: { username: "bob", name: "Bob", kind: "user" }, created: "x" } });
    t.sock.receive({ type: "History", room: "general", data: { head_seq: 41, epoch: "e", messages: [tomb(40), tomb(41)] } });
    t.frames.run();
    expect(bodies(t.host)).toEqual([]);
    expect(t.store.canLoadEarlier).toBe(true);
    roomActions({ client: t.client, store: t.store, config: () => undefined, askKernelAboutError: null }).loadEarlier();
    expect(t.sock.sentOfType("History").at(-1)?.data).toEqual({ before_seq: 40, limit: 50 });
  });
});

describe("the room's rules", () => {
  it("moderators get the toggles and Export; everyone sees the badges and why they cannot post", () => {
    const exports: string[] = [];
    const teacher = setup({ moderator: true, exportRoom: (f) => exports.push(f) });
    const toggles = teacher.host.querySelector(".llmchat-mod-toggles") as HTMLElement;
    teacher.sock.receive({ type: "RoomSettings", room: "general", data: { system_prompt: "", context: "own", announce_only: false, model_answers: true } });
    teacher.frames.run();
    expect(toggles.hidden).toBe(false);
    const [announce, answers] = Array.from(toggles.querySelectorAll("input")) as HTMLInputElement[];
    expect([announce?.checked, answers?.checked]).toEqual([false, true]);
    (answers as HTMLInputElement).checked = false;
    answers?.dispatchEvent(new Event("change"));
    expect(teacher.sock.sentOfType("RoomSettings")[0]?.data).toEqual({ model_answers: false });
    (teacher.host.querySelector(".llmchat-export") as HTMLButtonElement).click();
    expect(exports).toEqual(["md"]);

    const student = setup();
    student.sock.receive({ type: "RoomSettings", room: "general", data: { system_prompt: "", context: "own", announce_only: true, model_answers: false } });
    student.frames.run();
    expect((student.host.querySelector(".llmchat-mod-toggles") as HTMLElement).hidden).toBe(true);
    expect(student.host.querySelector(".llmchat-mod-badges")?.textContent).toBe("announce-onlyanswers off");
    const rules = student.host.querySelector(".llmchat-rules") as HTMLElement;
    expect(rules.hidden).toBe(false);
    expect(rules.textContent).toContain("The model's answers are off in this room.");
    expect(rules.textContent).toContain("only moderators post here");
  });

  it("a muted user is told until when, from Joined or from the room's notice, and it clears on unmute", () => {
    const t = setup();
    const until = new Date(Date.now() + 600_000).toISOString();
    const notice = from(42, "m-sys", "Teacher muted ada.", "bob", "system");
    (notice.data as Record<string, unknown>).mute = { username: "ada", until };
    t.sock.receive(notice);
    t.frames.run();
    const rules = t.host.querySelector(".llmchat-rules") as HTMLElement;
    expect(rules.hidden).toBe(false);
    expect(rules.textContent).toMatch(/^You are muted in this room until /);
    const unmute = from(43, "m-sys2", "Teacher unmuted ada.", "bob", "system");
    (unmute.data as Record<string, unknown>).mute = { username: "ada", until: null };
    t.sock.receive(unmute);
    t.frames.run();
    expect(rules.hidden).toBe(true);
    expect(roomRules(null, until, false, Date.parse(until) + 1)).toBe(""); // expired
    expect(stillMuted("not a time")).toBe(false);
  });
});

describe("Export", () => {
  it("downloads the transcript with the page's token, and says why when refused", async () => {
    const saved: Array<[string, string]> = [];
    const notes: string[] = [];
    const ok = vi.fn(async (_url: string, _init?: RequestInit) => new Response("# Room general\n", { status: 200 }));
    const run = makeExporter({ baseUrl: "http://h/base/", token: "tok" } as never, () => "general", (t) => notes.push(t), ok as unknown as typeof fetch, async (b, n) => {
      saved.push([n, await b.text()]);
    });
    run("md");
    await vi.waitFor(() => expect(saved).toHaveLength(1));
    expect(ok.mock.calls[0]?.[0]).toBe("http://h/base/llmchat/api/rooms/general/export?format=md");
    expect(ok.mock.calls[0]?.[1]?.headers).toEqual({ Authorization: "token tok" });
    expect(saved[0]).toEqual(["general.md", "# Room general\n"]);
    const refused = vi.fn(async () => new Response(JSON.stringify({ message: "only moderators can export a room", code: 403 }), { status: 403 }));
    makeExporter({ baseUrl: "http://h/", token: "" } as never, () => "general", (t) => notes.push(t), refused as unknown as typeof fetch, () => undefined)("json");
    await vi.waitFor(() => expect(notes.at(-1)).toBe("Export failed: only moderators can export a room"));
  });
});
