// @vitest-environment jsdom
// Issue 14 in the widget: /new, Regenerate, private asks, the room's system prompt, the
// loading/queued/error states, "Ask about the last error" and code-block buttons.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { attachmentsFrom } from "../src/actions";
import { copyText } from "../src/clipboard";
import type { Frame } from "../src/protocol";
import { parseInput } from "../src/view";
import { FakeSocket, WELCOME, text, token } from "./fakes";
import { bodies, setup } from "./view-harness";

type T = ReturnType<typeof setup>;

function type(t: T, value: string): void {
  const input = t.host.querySelector(".llmchat-input") as HTMLTextAreaElement;
  input.value = value;
  input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  t.frames.run();
}

/** A room Text with extra stored fields (thread_start, in_reply_to, attachments…). */
function stored(seq: number, id: string, content: string, kind: string, extra: Record<string, unknown> = {}, who = "ada"): Frame {
  const f = text(seq, id, content, kind);
  const data = f.data as Record<string, unknown>;
  data.author = kind === "assistant" ? { username: "model", name: "gemma", kind } : { username: who, name: who === "ada" ? "Ada" : "Bob", kind };
  Object.assign(data, extra);
  return f;
}

const generates = (t: T) => t.sock.sentOfType("Generate");
const node = (t: T, key: string) => t.host.querySelector(`.llmchat-msg[data-key="${key}"]`) as HTMLElement | null;

beforeEach(() => {
  FakeSocket.reset();
  document.body.replaceChildren();
});
afterEach(() => vi.useRealTimers());

describe("/new: a fresh thread", () => {
  it("typed alone, marks the next question; that question asks with new_thread and gets the divider", () => {
    const t = setup();
    const pending = t.host.querySelector(".llmchat-thread-pending") as HTMLElement;
    expect(pending.hidden).toBe(true);
    type(t, "/new");
    expect(generates(t)).toHaveLength(0);
    expect(pending.hidden).toBe(false);
    expect(pending.textContent).toContain("new thread");
    type(t, "What is 2 + 3?");
    expect(generates(t)[0]?.data).toEqual({ prompt: "What is 2 + 3?", new_thread: true });
    expect(pending.hidden).toBe(true);
    // The server stores the question with thread_start: a divider stands before it.
    t.sock.receive(stored(42, "q1", "What is 2 + 3?", "user", { thread_start: true }));
    t.frames.run();
    const q = node(t, "q1")!;
    const before = q.previousElementSibling as HTMLElement;
    expect(before.classList.contains("llmchat-thread")).toBe(true);
    expect(before.textContent).toBe("new thread (you)");
    // Only that question: the next one continues the thread.
    type(t, "And 3 + 4?");
    expect(generates(t)[1]?.data).toEqual({ prompt: "And 3 + 4?" });
  });

  it("`/new text` asks text in a new thread at once", () => {
    const t = setup();
    type(t, "/new Capital of France?");
    expect(generates(t)[0]?.data).toEqual({ prompt: "Capital of France?", new_thread: true });
    expect(generates(t)[0]?.room).toBe("general");
  });

  it("shows the divider for thread starts in History too, with the asker's name", () => {
    const t = setup();
    t.sock.receive({
      type: "History",
      room: "general",
      data: { head_seq: 41, messages: [stored(30, "a", "old", "user"), stored(31, "b", "fresh start", "user", { thread_start: true }, "bob")] },
    });
    t.frames.run();
    const dividers = [...t.host.querySelectorAll(".llmchat-thread:not(.llmchat-thread-pending)")];
    expect(dividers.map((d) => d.textContent)).toEqual(["new thread (Bob)"]);
    expect(dividers[0]!.nextElementSibling).toBe(node(t, "b"));
  });

  it("routes /new, /ask and /say", () => {
    expect(parseInput("/new", true)).toEqual({ command: "new" });
    expect(parseInput("/NEW  ", false)).toEqual({ command: "new" });
    expect(parseInput("/new why?", false)).toEqual({ ask: true, text: "why?", newThread: true });
    expect(parseInput("/newton", true)).toEqual({ ask: true, text: "/newton" });
  });
});

describe("Regenerate", () => {
  function askAndAnswer(t: T, prompt: string, answerId: string, seq: number): void {
    type(t, prompt);
    const g = generates(t).at(-1)!;
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: answerId, queue_position: 0 } });
    t.sock.receive(stored(seq, `q-${answerId}`, prompt, "user"));
    t.sock.receive(token(seq + 1, answerId, 0, "Paris."));
    t.sock.receive(token(seq + 2, answerId, 1, "", true));
    t.frames.run();
  }
  const regenButtons = (t: T) => [...t.host.querySelectorAll(".llmchat-regenerate")].map((b) => b.closest(".llmchat-msg")?.getAttribute("data-key"));

  it("is offered on the newest answer to my own question only, and asks that question again", () => {
    const t = setup();
    askAndAnswer(t, "Capital of France?", "m-a1", 42);
    expect(regenButtons(t)).toEqual(["m-a1"]);
    // Someone else's question and its answer come later: my newest answer keeps the button.
    t.sock.receive(stored(45, "q-bob", "And Spain?", "user", {}, "bob"));
    t.sock.receive(token(46, "m-bob", 0, "Madrid.", true));
    t.frames.run();
    expect(regenButtons(t)).toEqual(["m-a1"]);
    (t.host.querySelector(".llmchat-regenerate") as HTMLButtonElement).click();
    const g = generates(t).at(-1)!;
    expect(g.room).toBe("general");
    expect(g.data).toEqual({ prompt: "Capital of France?", regenerate: "m-a1" });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-request-prompt")?.textContent).toBe("regenerate: Capital of France?");
    // The new answer streams (no button while it does), then carries the button; the old one is marked.
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: "m-a2", queue_position: 0 } });
    t.sock.receive(token(47, "m-a2", 0, "Paris, France."));
    t.frames.run();
    expect(regenButtons(t)).toEqual([]);
    t.sock.receive(token(48, "m-a2", 1, "", true));
    t.frames.run();
    expect(regenButtons(t)).toEqual(["m-a2"]);
    expect(node(t, "m-a1")!.classList.contains("llmchat-replaced")).toBe(true);
    expect(node(t, "m-a1")!.textContent).toContain("regenerated below");
    // The question was not posted again.
    expect(t.sock.sentOfType("Text")).toHaveLength(0);
  });

  it("is offered on a stored answer to my question after a reload, never on others'", () => {
    const t = setup();
    t.sock.receive({
      type: "History",
      room: "general",
      data: {
        head_seq: 41,
        messages: [
          stored(30, "q-me", "Mine?", "user"),
          stored(31, "a-me", "Yes.", "assistant", { in_reply_to: "q-me", finish_reason: "stop" }),
          stored(32, "q-bob", "His?", "user", {}, "bob"),
          stored(33, "a-bob", "His.", "assistant", { in_reply_to: "q-bob", finish_reason: "stop" }),
        ],
      },
    });
    t.frames.run();
    expect(regenButtons(t)).toEqual(["a-me"]);
    (t.host.querySelector(".llmchat-regenerate") as HTMLButtonElement).click();
    expect(generates(t).at(-1)?.data).toEqual({ prompt: "Mine?", regenerate: "a-me" });
  });
});

describe("private asks", () => {
  function askPrivately(t: T, prompt: string): Frame {
    const box = t.host.querySelector(".llmchat-private-toggle input") as HTMLInputElement;
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    type(t, prompt);
    return generates(t).at(-1)!;
  }

  it("sends Generate without a room and shows question and answer locally, marked private", () => {
    const t = setup();
    const g = askPrivately(t, "Just between us?");
    expect(g.room).toBeUndefined();
    expect(g.data).toEqual({ prompt: "Just between us?" });
    const q = t.host.querySelector(".llmchat-msg.llmchat-private") as HTMLElement;
    expect(q.querySelector(".llmchat-body")?.textContent?.trim()).toBe("Just between us?");
    expect(q.querySelector(".llmchat-private-tag")?.textContent).toBe("private");
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: "p-1", queue_position: 0 } });
    // A private completion's tokens: the request id, no room, no seq.
    t.sock.receive({ type: "Token", id: g.id, data: { message_id: "p-1", index: 0, text: "Sure.", is_final: false } });
    t.sock.receive({ type: "Token", id: g.id, data: { message_id: "p-1", index: 1, text: "", is_final: true, finish_reason: "stop" } });
    t.frames.run();
    const answer = node(t, "p-1")!;
    expect(answer.classList.contains("llmchat-private")).toBe(true);
    expect(answer.querySelector(".llmchat-body")?.textContent?.trim()).toBe("Sure.");
    expect(answer.querySelector(".llmchat-regenerate")).toBeNull();
    // Not part of the room: not in the seq-ordered log, the resume point did not move.
    expect(t.store.messages).toHaveLength(0);
    expect(t.client.lastSeq).toBe(41);
    t.sock.receive(stored(42, "m42", "room goes on", "user", { created: new Date(Date.now() + 1000).toISOString() }, "bob"));
    t.frames.run();
    expect(t.client.lastSeq).toBe(42);
    expect(bodies(t.host)).toEqual(["Just between us?", "Sure.", "room goes on"]);
  });

  it("keeps private answers across a Reset; the room's History goes above them", () => {
    const t = setup();
    const g = askPrivately(t, "Mine only");
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: "p-2", queue_position: 0 } });
    t.sock.receive({ type: "Token", id: g.id, data: { message_id: "p-2", index: 0, text: "Ok", is_final: true, finish_reason: "stop" } });
    t.sock.receive({ type: "Reset", room: "general", data: { head_seq: 50 } });
    const old = stored(49, "m49", "stored earlier", "user", { created: "2020-01-01T00:00:00Z" }, "bob");
    t.sock.receive({ type: "History", room: "general", data: { messages: [old], head_seq: 50, epoch: "e2" } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["stored earlier", "Mine only", "Ok"]);
  });

  it("ends a private answer cut by a dropped socket, saying why, and does not send it again", () => {
    vi.useFakeTimers();
    const t = setup();
    const g = askPrivately(t, "Long private question");
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: "p-3", queue_position: 0 } });
    t.sock.receive({ type: "Token", id: g.id, data: { message_id: "p-3", index: 0, text: "Part", is_final: false } });
    t.sock.drop();
    t.frames.run();
    const answer = node(t, "p-3")!;
    expect(answer.getAttribute("data-finish")).toBe("error");
    expect(answer.querySelector(".llmchat-finish")?.textContent).toMatch(/connection lost: a private answer ends with its connection/);
    expect(t.store.openRequests).toHaveLength(0);
    vi.advanceTimersByTime(1_000);
    const again = FakeSocket.last;
    again.open();
    again.receive(WELCOME);
    again.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "e", members: [] } });
    expect(again.sentOfType("Generate")).toHaveLength(0);
    t.client.stop();
  });

  it("applies only to questions: a plain message with the toggle on still goes to the room", () => {
    const t = setup();
    askPrivately(t, "/say hello room");
    expect(t.sock.sentOfType("Text")[0]).toMatchObject({ room: "general", data: { content: "hello room" } });
  });
});

describe("the room's system prompt", () => {
  it("shows it from Joined, follows system messages, and edits send RoomSettings", () => {
    const t = setup();
    const bar = t.host.querySelector(".llmchat-sysprompt") as HTMLElement;
    expect(bar.hidden).toBe(true); // nothing announced yet
    t.sock.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "e", members: [], settings: { system_prompt: "Answer in French.", context: "own" } } });
    t.frames.run();
    expect(bar.hidden).toBe(false);
    expect(bar.querySelector(".llmchat-sysprompt-text")?.textContent).toBe("Answer in French.");
    const sys = stored(42, "s1", "Bob set this room's system prompt.", "system", { settings: { system_prompt: null, context: "shared" } }, "bob");
    t.sock.receive(sys);
    t.frames.run();
    expect(bar.querySelector(".llmchat-sysprompt-text")?.textContent).toBe("the server's default");
    expect(bar.textContent).toContain("(shared context)");
    expect(bodies(t.host)).toContain("Bob set this room's system prompt.");
    (bar.querySelector(".llmchat-sysprompt-edit") as HTMLButtonElement).click();
    const area = bar.querySelector("textarea") as HTMLTextAreaElement;
    area.value = "  Be brief.  ";
    (bar.querySelector("form") as HTMLFormElement).requestSubmit();
    const frame = t.sock.sentOfType("RoomSettings")[0];
    expect(frame).toMatchObject({ room: "general", data: { system_prompt: "Be brief.", context: "shared" } });
    t.sock.receive({ type: "RoomSettings", id: frame?.id, room: "general", data: { system_prompt: "Be brief.", context: "shared" } });
    t.frames.run();
    expect(bar.querySelector(".llmchat-sysprompt-text")?.textContent).toBe("Be brief.");
  });

  it("shows model text of the prompt as text, never markup", () => {
    const t = setup();
    t.sock.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "e", members: [], settings: { system_prompt: "<img src=x onerror=alert(1)>" } } });
    t.frames.run();
    const bar = t.host.querySelector(".llmchat-sysprompt") as HTMLElement;
    expect(bar.querySelector("img")).toBeNull();
    expect(bar.textContent).toContain("<img src=x onerror=alert(1)>");
  });
});

describe("states a user can see", () => {
  it("loading: the model is loading, said in the header and the notice line", () => {
    const t = setup({ welcome: false });
    t.sock.receive({ ...WELCOME, data: { ...WELCOME.data, model: { name: "gemma", loaded: false } } });
    t.frames.run();
    const root = t.host.querySelector(".llmchat") as HTMLElement;
    expect(root.dataset.model).toBe("loading");
    expect(t.host.querySelector(".llmchat-notice-text")?.textContent).toContain("The model is loading");
    t.sock.receive({ type: "Stats", data: { model: { loaded: true } } });
    t.frames.run();
    expect(root.dataset.model).toBe("ready");
    expect((t.host.querySelector(".llmchat-notice") as HTMLElement).hidden).toBe(true);
  });

  it("error: a refused question says why, with its code, until dismissed", () => {
    const t = setup();
    type(t, "Hello?");
    const g = generates(t)[0]!;
    t.sock.receive({ type: "Error", id: g.id, data: { message: "model not available: loading", code: 503 } });
    t.frames.run();
    const notice = t.host.querySelector(".llmchat-notice") as HTMLElement;
    expect(notice.hidden).toBe(false);
    expect(notice.dataset.level).toBe("error");
    expect(notice.textContent).toContain("The model did not answer: model not available: loading (503)");
    (t.host.querySelector(".llmchat-notice-close") as HTMLButtonElement).click();
    t.frames.run();
    expect(notice.hidden).toBe(true);
  });

  it("queued: the position in the server's queue", () => {
    const t = setup();
    type(t, "Hello?");
    const g = generates(t)[0]!;
    t.sock.receive({ type: "Ack", id: g.id, data: { message_id: "m-q", queue_position: 2 } });
    t.frames.run();
    expect((t.host.querySelector(".llmchat") as HTMLElement).dataset.queued).toBe("true");
    expect(t.host.querySelector(".llmchat-request-state")?.textContent).toBe("queued, position 2");
    t.sock.receive(token(42, "m-q", 0, "Hi"));
    t.frames.run();
    expect((t.host.querySelector(".llmchat") as HTMLElement).dataset.queued).toBe("false");
    expect(t.host.querySelector(".llmchat-request-state")?.textContent).toBe("generating…");
  });
});

describe("Ask about the last error", () => {
  it("hands the question to the kernel, waits for its answer, and shows its notice", () => {
    const t = setup();
    const button = t.host.querySelector(".llmchat-ask-error") as HTMLButtonElement;
    expect(button.hidden).toBe(false);
    button.click();
    button.click(); // a double click asks once
    expect(t.errorAsks).toHaveLength(1);
    expect(button.disabled).toBe(true);
    // The kernel: nothing failed yet (widget.ts turns its custom messages into these calls).
    t.store.showNotice("No error to ask about: run a cell that raises one first.");
    t.view.errorAskDone();
    t.frames.run();
    expect(button.disabled).toBe(false);
    expect(t.host.querySelector(".llmchat-notice-text")?.textContent).toBe("No error to ask about: run a cell that raises one first.");
    // A new attempt (after running the failing cell) clears the old word at once.
    button.click();
    t.frames.run();
    expect(t.errorAsks).toHaveLength(2);
    expect((t.host.querySelector(".llmchat-notice") as HTMLElement).hidden).toBe(true);
  });

  it("is not offered where there is no kernel to ask", () => {
    const t = setup({ askAboutError: null });
    expect((t.host.querySelector(".llmchat-ask-error") as HTMLButtonElement).hidden).toBe(true);
  });

  it("shows what a question was asked with, never the attached text", () => {
    const t = setup();
    const q = stored(42, "q-err", "What does this error mean?", "bot", { attachments: [{ kind: "error", label: "ZeroDivisionError", chars: 412 }] });
    t.sock.receive(q);
    t.frames.run();
    const chip = node(t, "q-err")!.querySelector(".llmchat-attachment") as HTMLElement;
    expect(chip.textContent).toBe("ZeroDivisionError");
    expect(chip.title).toContain("412 characters");
  });

  it("reads each word of an attachment's chip once", () => {
    const t = setup();
    const attachments = [
      { kind: "ndarray", label: "ndarray float64 (2, 3)", chars: 120 },
      { kind: "dataframe", label: "DataFrame 200×5", chars: 900 },
      { kind: "object", label: "", chars: 10 },
    ];
    t.sock.receive(stored(43, "q-arr", "What is in these?", "bot", { attachments }));
    t.frames.run();
    const chips = [...node(t, "q-arr")!.querySelectorAll(".llmchat-attachment")].map((c) => c.textContent);
    expect(chips).toEqual(["ndarray float64 (2, 3)", "DataFrame 200×5", "object"]);
  });

  it("passes kernel attachments on in the front-end fallback, dropping malformed ones", () => {
    expect(attachmentsFrom([{ kind: "error", label: "E", text: "Traceback…" }, { kind: 3 }, null])).toEqual([
      { kind: "error", label: "E", text: "Traceback…" },
    ]);
    expect(attachmentsFrom("nope")).toBeUndefined();
  });
});

describe("code blocks", () => {
  const answerWithCode = "Use:\n\n```python\nprint('hi')\n```\n";

  it("have a Copy button that copies the code exactly", async () => {
    const copied: string[] = [];
    const t = setup({ code: { copy: async (c) => (copied.push(c), true), insertCell: null } });
    t.sock.receive(token(42, "m-c", 0, answerWithCode, true));
    t.frames.run();
    const bar = t.host.querySelector(".llmchat-code .llmchat-code-bar") as HTMLElement;
    expect(bar.querySelector(".llmchat-code-lang")?.textContent).toBe("python");
    expect(bar.querySelector(".llmchat-insert")).toBeNull(); // no way to insert cells here
    const copy = bar.querySelector(".llmchat-copy") as HTMLButtonElement;
    copy.click();
    await Promise.resolve();
    await Promise.resolve();
    expect(copied).toEqual(["print('hi')"]);
    expect(copy.textContent).toBe("Copied");
  });

  it("offer \"Insert as cell\" where the front end allows it", async () => {
    const inserted: string[] = [];
    const t = setup({ code: { copy: async () => true, insertCell: async (c) => (inserted.push(c), true) } });
    t.sock.receive(token(42, "m-c", 0, answerWithCode, true));
    t.frames.run();
    (t.host.querySelector(".llmchat-insert") as HTMLButtonElement).click();
    await Promise.resolve();
    expect(inserted).toEqual(["print('hi')"]);
  });
});

describe("copyText", () => {
  it("uses the Clipboard API when there is one", async () => {
    const writeText = vi.fn(async () => undefined);
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    expect(await copyText("x = 1")).toBe(true);
    expect(writeText).toHaveBeenCalledWith("x = 1");
    Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true });
  });

  it("falls back to execCommand where the Clipboard API is missing (plain-http servers)", async () => {
    Object.defineProperty(navigator, "clipboard", { value: undefined, configurable: true });
    let selected = "";
    const exec = vi.fn(() => {
      selected = document.querySelector("textarea")?.value ?? "";
      return true;
    });
    Object.defineProperty(document, "execCommand", { value: exec, configurable: true });
    expect(await copyText("y = 2")).toBe(true);
    expect(exec).toHaveBeenCalledWith("copy");
    expect(selected).toBe("y = 2");
    expect(document.querySelector("textarea")).toBeNull(); // cleaned up
  });
});
