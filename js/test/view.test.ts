// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ChatClient } from "../src/client";
import { RoomStore } from "../src/store";
import { roomActions } from "../src/actions";
import { ChatView, parseInput, type ViewActions } from "../src/view";
import { FakeEnv, FakeSocket, WELCOME, text, token } from "./fakes";
import { Frames, bodies, setup } from "./view-harness";

beforeEach(() => {
  FakeSocket.reset();
  document.body.replaceChildren();
});
afterEach(() => vi.useRealTimers());

describe("streaming", () => {
  it("appends tokens to one message, coalesced per animation frame, without touching the others", () => {
    const t = setup();
    t.sock.receive(text(42, "m-117", "Hi!"));
    const first = t.host.querySelector('[data-key="m-117"]');
    t.sock.receive(token(43, "m-118", 0, "Hello"));
    const streaming = t.host.querySelector('[data-key="m-118"]') as HTMLElement;
    expect(streaming.classList.contains("llmchat-streaming")).toBe(true);
    t.frames.run();
    expect(streaming.querySelector(".llmchat-body")?.textContent?.trim()).toBe("Hello");
    // many tokens between two frames: one scheduled flush, nothing painted until it runs
    t.sock.receive(token(44, "m-118", 1, " there"));
    t.sock.receive(token(45, "m-118", 2, ", **friend**"));
    expect(t.frames.queue).toHaveLength(1);
    expect(streaming.querySelector(".llmchat-body")?.textContent?.trim()).toBe("Hello");
    t.frames.run();
    expect(streaming.querySelector(".llmchat-body")?.textContent?.trim()).toBe("Hello there, friend");
    expect(streaming.querySelector("strong")?.textContent).toBe("friend");
    t.sock.receive(token(46, "m-118", 3, "", true));
    t.frames.run();
    expect(streaming.classList.contains("llmchat-streaming")).toBe(false);
    // the earlier message's node was never replaced
    expect(t.host.querySelector('[data-key="m-117"]')).toBe(first);
    expect(t.host.querySelector('[data-key="m-118"]')).toBe(streaming);
    expect(bodies(t.host)).toEqual(["Hi!", "Hello there, friend"]);
    expect(t.host.querySelector(".llmchat-stats")?.textContent).toContain("57.9 tok/s");
  });

  it("shows the server's queue and each stream's speed in the stats line", () => {
    const t = setup();
    const model = { active_sequences: 8, queue_depth: 2, tokens_per_second: 98.1, tokens_per_second_per_sequence: 12.3 };
    t.sock.receive({ type: "Stats", id: "s1", data: { model } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-stats")?.textContent).toBe("server queue 2 · generating 8 at 12.3 tok/s each");
    t.sock.receive({ type: "Stats", id: "s2", data: { model: { ...model, active_sequences: 0, queue_depth: 0 } } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-stats")?.textContent).toBe("server queue 0 · generating 0");
  });

  it("stops saying \"generating 1\" when the answer has ended, and fetches fresh figures", () => {
    vi.useFakeTimers();
    const t = setup({ poll: true });
    const stats = () => t.host.querySelector(".llmchat-stats")?.textContent ?? "";
    const answerStats = (active: number) => {
      const request = t.sock.sentOfType("Stats").at(-1);
      const model = { active_sequences: active, queue_depth: 0, tokens_per_second_per_sequence: active ? 20 : 0 };
      t.sock.receive({ type: "Stats", id: request?.id, data: { model } });
      t.frames.run();
    };
    answerStats(0); // the poll on join
    const asked = t.sock.sentOfType("Stats").length;
    t.sock.receive(token(42, "m-1", 0, "Hello"));
    vi.advanceTimersByTime(300); // an answer started: the figures are asked for again at once
    expect(t.sock.sentOfType("Stats")).toHaveLength(asked + 1);
    answerStats(1);
    expect(stats()).toContain("generating 1 at 20.0 tok/s each");
    t.sock.receive(token(43, "m-1", 1, "", true));
    t.frames.run();
    expect(stats()).not.toContain("generating 1"); // the answer is over: no stale figure
    vi.advanceTimersByTime(300);
    expect(t.sock.sentOfType("Stats")).toHaveLength(asked + 2);
    answerStats(0);
    expect(stats()).toContain("generating 0");
    t.client.stop();
  });

  it("renders streamed model output safely", () => {
    const t = setup();
    t.sock.receive(token(42, "m1", 0, "<img src=x onerror=alert(1)>"));
    t.sock.receive(token(43, "m1", 1, " [x](javascript:alert(1)) <script>alert(2)</script>"));
    t.frames.run();
    const msg = t.host.querySelector('[data-key="m1"]')!;
    expect(msg.querySelector("img,script")).toBeNull();
    expect(msg.innerHTML).not.toMatch(/href="javascript:/);
    expect(msg.querySelector("a")).toBeNull();
  });

  it("lets History's stored text replace a partially streamed answer", () => {
    const t = setup();
    t.sock.receive(token(42, "m-118", 0, "Hel"));
    t.frames.run();
    t.store.apply({ type: "History", room: "general", data: { messages: [text(44, "m-118", "Hello there", "assistant")], head_seq: 44 } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["Hello there"]);
    expect(t.host.querySelector('[data-key="m-118"]')?.getAttribute("data-kind")).toBe("assistant");
  });

  it("marks a stored answer that a server shutdown cut short, once, after Reset + History", () => {
    const t = setup();
    t.sock.receive(token(42, "m-cut", 0, "Once upon"));
    t.frames.run();
    t.sock.receive({ type: "Reset", room: "general", data: { head_seq: 44 } });
    const stored = text(42, "m-cut", "Once upon a time", "assistant") as any;
    stored.data.finish_reason = "error";
    stored.data.error = "server shutting down";
    t.sock.receive({ type: "History", room: "general", data: { messages: [stored], head_seq: 44, epoch: "e2" } });
    t.frames.run();
    const msgs = t.host.querySelectorAll('[data-key="m-cut"]');
    expect(msgs).toHaveLength(1);
    expect(msgs[0]!.getAttribute("data-finish")).toBe("error");
    expect(msgs[0]!.querySelector(".llmchat-body p")?.textContent).toBe("Once upon a time");
    expect(msgs[0]!.querySelector(".llmchat-finish")?.textContent).toBe(" [error: server shutting down]");
  });

  it("clears the log on Reset and shows the History that follows", () => {
    const t = setup();
    t.sock.receive(text(42, "m42", "old"));
    t.sock.receive({ type: "Reset", room: "general", data: { head_seq: 10 } });
    expect(bodies(t.host)).toEqual([]);
    t.sock.receive({ type: "History", room: "general", data: { messages: [text(9, "m9", "new", "bot")], head_seq: 10, epoch: "e2" } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["new"]);
  });
});

describe("joining mid-answer", () => {
  it("shows the running answer from its catch-up tokens and keeps streaming it", () => {
    const client = new ChatClient({ room: "general", urls: ["ws://x/llmchat/ws"], openSocket: (u) => new FakeSocket(u), env: new FakeEnv() });
    const store = new RoomStore(client);
    const frames = new Frames();
    const host = document.createElement("div");
    const actions: ViewActions = {
      ...roomActions({ client, store, config: () => undefined, askKernelAboutError: null }),
      getAskMode: () => true,
      setAskMode() {},
      room: () => "general",
    };
    new ChatView(host, store, actions, frames.schedule);
    client.start();
    const sock = FakeSocket.last;
    sock.open();
    sock.receive({ type: "Joined", room: "general", data: { seq: 12, epoch: "e", members: [] } });
    sock.receive({ type: "History", room: "general", data: { messages: [text(10, "m10", "question")], head_seq: 12 } });
    sock.receive(token(11, "m-run", 0, "Part"));
    sock.receive(token(12, "m-run", 1, "ial"));
    sock.receive(token(13, "m-run", 2, " answer"));
    sock.receive(token(14, "m-run", 3, "", true));
    frames.run();
    expect(bodies(host)).toEqual(["question", "Partial answer"]);
  });

  it("ignores tokens for an answer that History already has complete", () => {
    const t = setup();
    t.store.apply({ type: "History", room: "general", data: { messages: [text(40, "m-done", "Complete answer", "assistant")], head_seq: 41 } });
    t.store.apply(token(39, "m-done", 5, " extra"));
    t.frames.run();
    expect(bodies(t.host)).toEqual(["Complete answer"]);
  });

  it("puts an older page of History above what is shown and offers more while there may be some", () => {
    const t = setup();
    t.sock.receive({ type: "History", room: "general", data: { messages: [text(30, "m30", "thirty"), text(31, "m31", "thirty-one")], head_seq: 41 } });
    t.frames.run();
    expect(t.store.canLoadEarlier).toBe(true);
    expect((t.host.querySelector(".llmchat-earlier") as HTMLElement).hidden).toBe(false);
    t.sock.receive({ type: "History", id: "h-page", room: "general", data: { messages: [text(1, "m1", "one"), text(2, "m2", "two")], head_seq: 41 } });
    t.frames.run();
    expect(bodies(t.host)).toEqual(["one", "two", "thirty", "thirty-one"]);
    expect(t.store.canLoadEarlier).toBe(false);
    expect((t.host.querySelector(".llmchat-earlier") as HTMLElement).hidden).toBe(true);
  });

  it("notes an answer whose prompt was cut to fit, live and from History, as text", () => {
    const t = setup();
    const note = (key: string) => t.host.querySelector(`[data-key="${key}"] .llmchat-note`)?.textContent ?? null;
    t.sock.receive(token(42, "m-long", 0, "Rome"));
    t.sock.receive({ type: "Token", room: "general", seq: 43, data: { message_id: "m-long", index: 1, text: ".", is_final: true, finish_reason: "stop", truncated: true } });
    t.sock.receive(token(44, "m-short", 0, "Paris", true));
    t.frames.run();
    expect(note("m-long")).toBe("part of the conversation was left out to fit the model's context");
    expect(note("m-short")).toBeNull();
  });

  it("notes a stored answer whose prompt was cut, in a History loaded later", () => {
    const t = setup();
    const stored = text(42, "m-long", "Rome.", "assistant") as any;
    stored.data.truncated = true;
    t.sock.receive({ type: "History", room: "general", data: { messages: [stored, text(44, "m-short", "Paris", "assistant")], head_seq: 44, epoch: "e1" } });
    t.frames.run();
    const note = (key: string) => t.host.querySelector(`[data-key="${key}"] .llmchat-note`)?.textContent ?? null;
    expect(note("m-long")).toBe("part of the conversation was left out to fit the model's context");
    expect(note("m-short")).toBeNull();
  });

  it("says why a generation failed", () => {
    const t = setup();
    t.sock.receive(token(42, "m-e", 0, "Hm"));
    t.sock.receive({ type: "Token", room: "general", seq: 43, data: { message_id: "m-e", index: 1, text: "", is_final: true, finish_reason: "error", error: "<b>engine</b> broke" } });
    t.frames.run();
    const msg = t.host.querySelector('[data-key="m-e"]')!;
    expect(msg.getAttribute("data-finish")).toBe("error");
    expect(msg.querySelector(".llmchat-finish")?.textContent).toBe(" [error: <b>engine</b> broke]");
    expect(msg.querySelector("b")).toBeNull();
  });
});

describe("chrome", () => {
  it("says once why it cannot connect when a setting stopped llmchat", () => {
    const client = new ChatClient({ room: "general", urls: ["ws://x/llmchat/ws"], openSocket: (u) => new FakeSocket(u), env: new FakeEnv(), random: () => 0.5 });
    const store = new RoomStore(client);
    const frames = new Frames();
    const host = document.createElement("div");
    document.body.append(host);
    const actions = roomActions({ client, store, config: () => undefined, askKernelAboutError: null });
    new ChatView(host, store, { ...actions, loadEarlier: () => undefined, getAskMode: () => true, setAskMode: () => undefined, room: () => client.room, code: { copy: async () => true, insertCell: null } }, frames.schedule);
    client.start();
    const sock = FakeSocket.last;
    sock.open();
    const reason = "llmchat is not started: invalid setting: The 'max_tokens' trait of a LLMChat instance expected an int, not the str 'abc'.";
    sock.receive({ type: "Error", data: { code: 503, message: reason } });
    sock.drop(1011, "llmchat is not started");
    frames.run();
    expect(host.querySelector(".llmchat-notice-text")?.textContent).toBe(`Cannot connect: ${reason}`);
    expect(host.querySelector(".llmchat-status-text")?.textContent).toBe("failed");
  });

  it("keeps a 1,000-member room to its count and a bounded list of names", () => {
    const t = setup();
    const people = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ username: `u${from + i}`, name: `U${from + i}` }));
    for (let i = 0; i < 10; i++) {
      t.sock.receive({ type: "Presence", room: "general", seq: 42 + i, data: { joined: people(i * 100, 100), left: [], count: 2 + (i + 1) * 100 } });
    }
    t.frames.run();
    expect(t.host.querySelector(".llmchat-members")?.textContent).toBe("1002 here: Ada, Bob, U0, U1 +998");
    expect(t.store.members.length).toBeLessThanOrEqual(200);
    t.sock.receive({ type: "Presence", room: "general", seq: 52, data: { joined: [], left: [{ username: "bob", name: "Bob" }], count: 1001 } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-members")?.textContent).toBe("1001 here: Ada, U0, U1, U2 +997");
  });

  it("shows authors, kinds, members and the connection state", () => {
    const t = setup();
    t.sock.receive(text(42, "m1", "hello", "user"));
    t.sock.receive(text(43, "m2", "posted", "bot"));
    t.frames.run();
    const kinds = Array.from(t.host.querySelectorAll(".llmchat-msg")).map((m) => m.getAttribute("data-kind"));
    expect(kinds).toEqual(["user", "bot"]);
    expect(t.host.querySelector(".llmchat-msg")?.classList.contains("llmchat-own")).toBe(true);
    expect(t.host.querySelector(".llmchat-author")?.textContent).toBe("Ada");
    expect(t.host.querySelector(".llmchat-members")?.textContent).toBe("2 here: Ada, Bob");
    expect(t.host.querySelector(".llmchat")?.getAttribute("data-status")).toBe("live");
    expect(t.host.querySelector(".llmchat-status-text")?.textContent).toBe("live");
    t.sock.receive({ type: "Presence", room: "general", seq: 44, data: { joined: [], left: [{ username: "bob", name: "Bob" }], count: 1 } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-members")?.textContent).toBe("1 here: Ada");
  });

  it("counts down to the next attempt and offers Retry now", () => {
    vi.useFakeTimers();
    const t = setup();
    t.sock.drop();
    t.frames.run();
    const retry = t.host.querySelector(".llmchat-retry") as HTMLButtonElement;
    expect(retry.hidden).toBe(false);
    expect(t.host.querySelector(".llmchat-status-text")?.textContent).toMatch(/^reconnecting/);
    const n = FakeSocket.all.length;
    retry.click();
    expect(FakeSocket.all.length).toBe(n + 1);
    t.view.dispose();
    t.client.stop();
  });

  it("shows queue position and a Stop button from the moment a request is queued", () => {
    const t = setup();
    const id = t.client.generate("Hi!");
    t.frames.run();
    const stop = t.host.querySelector(".llmchat-stop") as HTMLButtonElement;
    expect(stop.hidden).toBe(false);
    t.sock.receive({ type: "Ack", id, data: { message_id: "m-9", queue_position: 3 } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-request-state")?.textContent).toBe("queued, position 3");
    stop.click();
    expect(t.cancelled).toEqual([id]);
    expect(t.sock.sentOfType("Cancel")[0]?.data).toEqual({ message_id: "m-9" });
    t.sock.receive(token(42, "m-9", 0, "", true));
    t.frames.run();
    expect(stop.hidden).toBe(true);
  });

  it("shows the model loading state from Welcome", () => {
    const t = setup();
    t.sock.receive({ ...WELCOME, data: { ...WELCOME.data, model: { name: "gemma", loaded: false } } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-model")?.textContent).toBe("gemma: loading…");
  });

  it("shows a download's progress from pushed Stats, then the model's name", () => {
    const t = setup();
    const downloading = {
      name: "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", loaded: false, n_ctx: 8192, parallel: 8,
      reference: "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", state: "downloading", progress: 0.43,
      detail: "downloading qwen2.5-1.5b-instruct-q4_k_m.gguf: 43 %", error: null,
    };
    t.sock.receive({ ...WELCOME, data: { ...WELCOME.data, model: downloading } });
    t.frames.run();
    const badge = t.host.querySelector<HTMLElement>(".llmchat-model")!;
    expect(badge.textContent).toBe("downloading qwen2.5-1.5b-instruct-q4_k_m.gguf: 43 %");
    expect(badge.dataset.state).toBe("downloading");
    expect(badge.querySelector("progress")?.value).toBeCloseTo(0.43);
    expect(t.host.querySelector(".llmchat-notice")?.textContent).toContain(
      "Downloading qwen2.5-1.5b-instruct-q4_k_m.gguf: 43 % — questions can be asked once the model is ready.",
    );
    const loaded = { ...downloading, name: "qwen2.5-1.5b-instruct-q4_k_m", loaded: true, state: "loaded",
      reference: "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M", progress: null, detail: "" };
    t.sock.receive({ type: "Stats", data: { model: loaded, rooms: { count: 1, members: {} } } });
    t.frames.run();
    expect(badge.textContent).toBe("qwen2.5-1.5b-instruct-q4_k_m");
    expect(badge.querySelector("progress")).toBeNull();
    expect(badge.title).toBe("qwen2.5-1.5b-instruct-q4_k_m (hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M)");
  });

  it("says why a model failed, as text", () => {
    const t = setup();
    const failed = { name: "x", loaded: false, n_ctx: 0, parallel: 0, reference: "hf:a/b", state: "failed",
      progress: null, detail: "cannot use hf:a/b", error: "no Hugging Face repository a/b <b>on</b> the Hub" };
    t.sock.receive({ ...WELCOME, data: { ...WELCOME.data, model: failed } });
    t.frames.run();
    expect(t.host.querySelector(".llmchat-model")?.textContent).toBe("x: failed");
    const notice = t.host.querySelector(".llmchat-notice")!;
    expect(notice.textContent).toContain("The model could not be loaded: no Hugging Face repository a/b <b>on</b> the Hub.");
    expect(notice.querySelector("b")).toBeNull();
  });

  it("sends on Enter, keeps Shift+Enter for new lines", () => {
    const t = setup();
    const input = t.host.querySelector("textarea")!;
    input.value = "line one";
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", shiftKey: true, bubbles: true }));
    expect(t.sent).toEqual([]);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(t.sent).toEqual([{ text: "line one", ask: true, options: { private: false, newThread: false } }]);
    expect(input.value).toBe("");
  });
});

describe("input routing", () => {
  it("uses the toggle, with /ask and /say overriding it", () => {
    expect(parseInput("  hi  ", true)).toEqual({ ask: true, text: "hi" });
    expect(parseInput("hi", false)).toEqual({ ask: false, text: "hi" });
    expect(parseInput("/ask what is 2+2?", false)).toEqual({ ask: true, text: "what is 2+2?" });
    expect(parseInput("/say hello all", true)).toEqual({ ask: false, text: "hello all" });
    expect(parseInput("/asking", false)).toEqual({ ask: false, text: "/asking" });
    expect(parseInput("/ask", true)).toBeNull();
    expect(parseInput("   ", true)).toBeNull();
  });
});
