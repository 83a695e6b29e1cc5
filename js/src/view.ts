// The DOM of one widget view. Many views can show one RoomStore (the same widget displayed
// twice); each keeps its own elements. Store changes mark things dirty and one flush per
// animation frame applies them, so a burst of tokens costs one re-render of one message.

import { renderInto } from "./render";
import type { Change, ChatMessage, RoomStore } from "./store";
import type { RequestInfo, StatusInfo } from "./socket";

export interface ViewActions {
  send(text: string, ask: boolean): void;
  cancel(requestId: string): void;
  retry(): void;
  loadEarlier(): void;
  getAskMode(): boolean;
  setAskMode(on: boolean): void;
  room(): string;
}

export type Scheduler = (cb: () => void) => void;

const defaultScheduler: Scheduler = (cb) => {
  // rAF pauses in hidden tabs (fine: nothing to see); fall back where there is no rAF.
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => cb());
  else setTimeout(cb, 16);
};

/** How a message typed into the box is routed: see docs (Enter sends, `/ask ` asks the model). */
export function parseInput(raw: string, askMode: boolean): { ask: boolean; text: string } | null {
  const text = raw.trim();
  if (!text) return null;
  const ask = /^\/ask(\s|$)/i.exec(text);
  if (ask) {
    const rest = text.slice(4).trim();
    return rest ? { ask: true, text: rest } : null;
  }
  const say = /^\/say(\s|$)/i.exec(text);
  if (say) {
    const rest = text.slice(4).trim();
    return rest ? { ask: false, text: rest } : null;
  }
  return { ask: askMode, text };
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const KIND_LABEL: Record<string, string> = { user: "user", assistant: "model", bot: "bot", system: "system" };

export class ChatView {
  readonly root: HTMLDivElement;
  private readonly log: HTMLDivElement;
  private readonly earlier: HTMLButtonElement;
  private readonly statusText: HTMLSpanElement;
  private readonly retryBtn: HTMLButtonElement;
  private readonly roomEl: HTMLSpanElement;
  private readonly modelEl: HTMLSpanElement;
  private readonly membersEl: HTMLSpanElement;
  private readonly notice: HTMLDivElement;
  private readonly requestsEl: HTMLDivElement;
  private readonly input: HTMLTextAreaElement;
  private readonly askBox: HTMLInputElement;
  private readonly sendBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly statsEl: HTMLDivElement;

  private readonly nodes = new Map<string, { el: HTMLElement; body: HTMLElement }>();
  private readonly dirty = new Set<ChatMessage>();
  private metaDirty = true;
  private scheduled = false;
  private disposed = false;
  private countdown: ReturnType<typeof setInterval> | null = null;
  private unsub: () => void;

  constructor(
    private readonly host: HTMLElement,
    private readonly store: RoomStore,
    private readonly actions: ViewActions,
    private readonly schedule: Scheduler = defaultScheduler,
  ) {
    this.root = h("div", "llmchat");
    const header = h("div", "llmchat-header");
    this.roomEl = h("span", "llmchat-room");
    const status = h("span", "llmchat-status");
    status.setAttribute("role", "status");
    status.append(h("span", "llmchat-dot"));
    this.statusText = h("span", "llmchat-status-text");
    this.retryBtn = h("button", "llmchat-retry", "Retry now");
    this.retryBtn.type = "button";
    this.retryBtn.addEventListener("click", () => this.actions.retry());
    status.append(this.statusText, this.retryBtn);
    this.modelEl = h("span", "llmchat-model");
    this.membersEl = h("span", "llmchat-members");
    header.append(this.roomEl, status, this.modelEl, this.membersEl);

    this.notice = h("div", "llmchat-notice");
    this.notice.setAttribute("role", "alert");

    this.log = h("div", "llmchat-log");
    this.log.setAttribute("role", "log");
    this.log.setAttribute("aria-live", "polite");
    this.earlier = h("button", "llmchat-earlier", "Load earlier messages");
    this.earlier.type = "button";
    this.earlier.addEventListener("click", () => this.actions.loadEarlier());
    this.log.append(this.earlier);

    this.requestsEl = h("div", "llmchat-requests");

    const compose = h("form", "llmchat-compose");
    this.input = h("textarea", "llmchat-input");
    this.input.rows = 2;
    this.input.setAttribute("aria-label", "Message");
    const askLabel = h("label", "llmchat-ask");
    this.askBox = h("input");
    this.askBox.type = "checkbox";
    this.askBox.checked = this.actions.getAskMode();
    askLabel.append(this.askBox, document.createTextNode(" Ask the model"));
    this.askBox.addEventListener("change", () => {
      this.actions.setAskMode(this.askBox.checked);
      this.updatePlaceholder();
    });
    this.sendBtn = h("button", "llmchat-send", "Send");
    this.sendBtn.type = "submit";
    this.stopBtn = h("button", "llmchat-stop", "Stop");
    this.stopBtn.type = "button";
    this.stopBtn.addEventListener("click", () => {
      // The main Stop button stops this view's newest request; each row has its own too.
      const open = this.store.openRequests;
      const last = open[open.length - 1];
      if (last) this.actions.cancel(last.id);
    });
    const buttons = h("div", "llmchat-buttons");
    buttons.append(askLabel, this.sendBtn, this.stopBtn);
    compose.append(this.input, buttons);
    compose.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (ev) => {
      // Enter sends, Shift+Enter is a new line; never send mid-IME composition.
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submit();
      }
      // Keep Jupyter's notebook shortcuts from seeing keys typed into the chat.
      ev.stopPropagation();
    });

    this.statsEl = h("div", "llmchat-stats");

    this.root.append(header, this.notice, this.log, this.requestsEl, compose, this.statsEl);
    host.append(this.root);
    this.updatePlaceholder();

    for (const m of store.messages) this.log.append(this.createNode(m));
    this.unsub = store.subscribe((c) => this.onChange(c));
    this.flush();
    this.scrollToBottom();
  }

  dispose(): void {
    this.disposed = true;
    this.unsub();
    if (this.countdown) clearInterval(this.countdown);
    this.root.remove();
  }

  /** Re-read model traits (room, ask mode) after a change from Python. */
  refresh(): void {
    this.askBox.checked = this.actions.getAskMode();
    this.updatePlaceholder();
    this.metaDirty = true;
    this.request();
  }

  private updatePlaceholder(): void {
    this.input.placeholder = this.askBox.checked
      ? "Ask the model… (Enter sends, Shift+Enter new line, /say for a plain message)"
      : "Message the room… (Enter sends, Shift+Enter new line, /ask to ask the model)";
  }

  private submit(): void {
    const parsed = parseInput(this.input.value, this.askBox.checked);
    if (!parsed) return;
    this.actions.send(parsed.text, parsed.ask);
    this.input.value = "";
  }

  private onChange(c: Change): void {
    switch (c.type) {
      case "reset":
        for (const { el } of this.nodes.values()) el.remove();
        this.nodes.clear();
        this.dirty.clear();
        break;
      case "append": {
        const stick = this.nearBottom();
        this.log.append(this.createNode(c.message));
        if (stick) this.scrollToBottom();
        break;
      }
      case "prepend": {
        const before = this.log.scrollHeight;
        const anchor = this.earlier.nextSibling;
        for (const m of c.messages) this.log.insertBefore(this.createNode(m), anchor);
        this.log.scrollTop += this.log.scrollHeight - before; // keep the reader's place
        break;
      }
      case "update":
        this.dirty.add(c.message);
        break;
      case "meta":
        this.metaDirty = true;
        break;
    }
    this.request();
  }

  private request(): void {
    if (this.scheduled || this.disposed) return;
    this.scheduled = true;
    this.schedule(() => {
      this.scheduled = false;
      if (!this.disposed) this.flush();
    });
  }

  /** Apply everything that changed since the last frame. */
  flush(): void {
    const stick = this.nearBottom();
    for (const m of this.dirty) this.paint(m);
    this.dirty.clear();
    if (this.metaDirty) {
      this.metaDirty = false;
      this.paintMeta();
    }
    if (stick) this.scrollToBottom();
  }

  private createNode(m: ChatMessage): HTMLElement {
    const el = h("div", "llmchat-msg");
    el.dataset.kind = m.kind;
    el.dataset.key = m.key;
    if (m.own) el.classList.add("llmchat-own");
    const meta = h("div", "llmchat-meta");
    const author = h("span", "llmchat-author", m.author.name || m.author.username || KIND_LABEL[m.kind] || m.kind);
    if (m.author.username) author.title = m.author.username;
    const kind = h("span", "llmchat-kind", KIND_LABEL[m.kind] ?? m.kind);
    const time = h("time", "llmchat-time", formatTime(m.created));
    time.dateTime = m.created;
    time.title = m.created;
    meta.append(author, kind, time);
    const body = h("div", "llmchat-body");
    el.append(meta, body);
    this.nodes.set(m.key, { el, body });
    this.paint(m);
    return el;
  }

  private paint(m: ChatMessage): void {
    const node = this.nodes.get(m.key);
    if (!node) return;
    renderInto(node.body, m.content);
    node.el.classList.toggle("llmchat-streaming", m.streaming);
    node.el.dataset.finish = m.finishReason ?? "";
    if (m.finishReason && m.finishReason !== "stop") {
      let label = m.finishReason === "length" ? "truncated" : m.finishReason;
      if (m.finishError) label = `${label}: ${m.finishError}`;
      node.body.append(h("span", "llmchat-finish", ` [${label}]`)); // text node: never markup
    }
  }

  private paintMeta(): void {
    const s = this.store;
    this.roomEl.textContent = `#${this.actions.room()}`;
    this.paintStatus(s.status);

    const model = s.model;
    const name = model.name ?? "model";
    this.modelEl.textContent = model.loaded === false ? `${name}: loading…` : model.loaded ? name : "";
    this.modelEl.dataset.loaded = String(model.loaded ?? "");

    const names = s.members.map((m) => m.name || m.username);
    const shown = names.slice(0, 4).join(", ") + (names.length > 4 ? ` +${names.length - 4}` : "");
    this.membersEl.textContent = names.length ? `${names.length} here: ${shown}` : "";
    this.membersEl.title = names.join(", ");

    let notice = "";
    if (s.status.status === "via_kernel") {
      notice = `Relaying through the kernel${s.status.reason ? ` (${s.status.reason})` : ""}.`;
    } else if (s.status.status === "failed") notice = `Cannot connect: ${s.status.reason || "unknown reason"}.`;
    if (s.error && !notice.includes(s.error)) notice = notice ? `${notice} ${s.error}` : s.error;
    this.notice.textContent = notice;
    this.notice.hidden = !notice;

    this.earlier.hidden = !(s.canLoadEarlier && s.status.status === "live");

    this.paintRequests(s.openRequests);

    const parts: string[] = [];
    const run = s.lastRun;
    if (run?.tokensPerSecond != null && (run.completionTokens ?? 1) > 0) parts.push(`last answer ${run.tokensPerSecond.toFixed(1)} tok/s`);
    if (run?.ttftMs != null) parts.push(`first token ${Math.round(run.ttftMs)} ms`);
    if (run?.queueMs != null && run.queueMs > 0) parts.push(`waited ${Math.round(run.queueMs)} ms`);
    const sm = s.stats?.model;
    if (sm?.queue_depth != null) parts.push(`server queue ${sm.queue_depth}`);
    if (sm?.active_sequences != null) {
      const each = sm.tokens_per_second_per_sequence;
      parts.push(`generating ${sm.active_sequences}` + (sm.active_sequences > 0 && each ? ` at ${each.toFixed(1)} tok/s each` : ""));
    }
    this.statsEl.textContent = parts.join(" · ");
  }

  private paintStatus(st: StatusInfo): void {
    this.root.dataset.status = st.status;
    const label = (): string => {
      switch (st.status) {
        case "connecting":
          return "connecting…";
        case "live":
          return "live";
        case "via_kernel":
          return "via kernel";
        case "failed":
          return "failed";
        case "reconnecting": {
          if (st.retryAt === null) return "reconnecting…";
          const secs = Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000));
          return secs > 0 ? `reconnecting in ${secs} s` : "reconnecting…";
        }
      }
    };
    this.statusText.textContent = label();
    this.statusText.title = st.reason;
    this.retryBtn.hidden = !(st.status === "reconnecting" || st.status === "failed");
    // Tick the countdown once a second while waiting to retry.
    const waiting = st.status === "reconnecting" && st.retryAt !== null;
    if (waiting && !this.countdown) {
      this.countdown = setInterval(() => {
        this.metaDirty = true;
        this.request();
      }, 1000);
    } else if (!waiting && this.countdown) {
      clearInterval(this.countdown);
      this.countdown = null;
    }
  }

  private paintRequests(open: RequestInfo[]): void {
    this.requestsEl.replaceChildren();
    for (const r of open) {
      const row = h("div", "llmchat-request");
      row.dataset.phase = r.phase;
      let state: string;
      if (r.phase === "queued") state = this.store.status.status === "live" ? "sending…" : "waiting for the connection";
      else if (r.phase === "sent") state = "sent, waiting for the server";
      else if (r.phase === "cancelling") state = "stopping…";
      else if (r.queuePosition !== null && r.queuePosition > 0) state = `queued, position ${r.queuePosition}`;
      else if (r.queuePosition !== null) state = "starting…";
      else state = "generating…";
      const prompt = r.text.length > 60 ? `${r.text.slice(0, 57)}…` : r.text;
      row.append(h("span", "llmchat-request-state", state), h("span", "llmchat-request-prompt", prompt));
      const stop = h("button", "llmchat-request-stop", "Stop");
      stop.type = "button";
      stop.disabled = r.phase === "cancelling";
      stop.addEventListener("click", () => this.actions.cancel(r.id));
      row.append(stop);
      this.requestsEl.append(row);
    }
    this.requestsEl.hidden = open.length === 0;
    this.stopBtn.hidden = open.length === 0;
  }

  private nearBottom(): boolean {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
  }

  private scrollToBottom(): void {
    this.log.scrollTop = this.log.scrollHeight;
  }
}
