// The DOM of one widget view. Many views can show one RoomStore (the same widget displayed
// twice); each keeps its own elements. Store changes mark things dirty and one flush per
// animation frame applies them, so a burst of tokens costs one re-render of one message.

import { copyText } from "./clipboard";
import type { CodeBlockActions } from "./codeblocks";
import { ensureHighlighter, highlighterState, onHighlighterReady } from "./highlighter";
import { ComposeBox } from "./compose";
import { createMessageNode, el as h, paintMessage, threadDivider, type MessageNode } from "./message-node";
import { menuFor, ModerationBar } from "./moderation";
import { canInsertCell, insertCellBelow } from "./notebook";
import { paintModel } from "./model-badge";
import { SettingsBar } from "./settings-bar";
import { noticeLine, requestState, statsLine, statusLabel } from "./status-lines";
import type { RequestInfo } from "./outbox";
import type { StatusInfo } from "./connection-state";
import type { Change, ChatMessage, RoomStore } from "./store";
import type { ViewActions } from "./view-actions";

export { parseInput } from "./input";
export type { SendOptions, ViewActions } from "./view-actions";

export type Scheduler = (cb: () => void) => void;

const defaultScheduler: Scheduler = (cb) => {
  // rAF pauses in hidden tabs (fine: nothing to see); fall back where there is no rAF.
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(() => cb());
  else setTimeout(cb, 16);
};

export class ChatView {
  readonly root: HTMLDivElement;
  private readonly log: HTMLDivElement;
  private readonly earlier: HTMLButtonElement;
  private readonly pendingThread: HTMLElement;
  private readonly statusText: HTMLSpanElement;
  private readonly retryBtn: HTMLButtonElement;
  private readonly roomEl: HTMLSpanElement;
  private readonly modelEl: HTMLSpanElement;
  private readonly membersEl: HTMLSpanElement;
  private readonly settingsBar: SettingsBar;
  private readonly moderationBar: ModerationBar;
  private readonly notice: HTMLDivElement;
  private readonly noticeText: HTMLSpanElement;
  private readonly noticeClose: HTMLButtonElement;
  private readonly requestsEl: HTMLDivElement;
  private readonly compose: ComposeBox;
  private readonly statsEl: HTMLDivElement;
  private readonly code: CodeBlockActions;

  private readonly nodes = new Map<ChatMessage, MessageNode>();
  private readonly dirty = new Set<ChatMessage>();
  private readonly withCode = new Set<ChatMessage>();
  private regenKey: string | null = null;
  private metaDirty = true;
  private scheduled = false;
  private disposed = false;
  private countdown: ReturnType<typeof setInterval> | null = null;
  private unsub: () => void;
  private unsubHighlighter: () => void;

  constructor(
    private readonly host: HTMLElement,
    private readonly store: RoomStore,
    private readonly actions: ViewActions,
    private readonly schedule: Scheduler = defaultScheduler,
  ) {
    this.root = h("div", "llmchat");
    this.code = actions.code ?? {
      copy: (text) => copyText(text),
      insertCell: canInsertCell() ? (text) => insertCellBelow(this.root, text) : null,
    };
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
    this.settingsBar = new SettingsBar((s) => this.actions.setRoomSettings(s));
    this.moderationBar = new ModerationBar(actions);

    this.notice = h("div", "llmchat-notice");
    this.notice.setAttribute("role", "alert");
    this.noticeText = h("span", "llmchat-notice-text");
    this.noticeClose = h("button", "llmchat-notice-close", "×");
    this.noticeClose.type = "button";
    this.noticeClose.title = "Dismiss";
    this.noticeClose.addEventListener("click", () => this.actions.dismissNotice());
    this.notice.append(this.noticeText, this.noticeClose);

    this.log = h("div", "llmchat-log");
    this.log.setAttribute("role", "log");
    this.log.setAttribute("aria-live", "polite");
    this.earlier = h("button", "llmchat-earlier", "Load earlier messages");
    this.earlier.type = "button";
    this.earlier.addEventListener("click", () => this.actions.loadEarlier());
    // Always the log's last child: shown while `/new` waits for the next question.
    this.pendingThread = threadDivider("new thread: your next question starts fresh", "llmchat-thread llmchat-thread-pending");
    this.pendingThread.hidden = true;
    this.log.append(this.earlier, this.pendingThread);

    this.requestsEl = h("div", "llmchat-requests");
    this.compose = new ComposeBox(this.root, store, actions);
    this.statsEl = h("div", "llmchat-stats");

    const { chips, form, options } = this.compose;
    this.root.append(header, this.settingsBar.el, this.moderationBar.el, this.notice, this.log, this.requestsEl);
    this.root.append(...(chips ? [chips] : []), this.moderationBar.rules, form, options, this.statsEl);
    host.append(this.root);

    for (const m of [...store.messages, ...store.privateMessages]) this.place(m);
    this.unsub = store.subscribe((c) => this.onChange(c));
    this.unsubHighlighter = onHighlighterReady(() => {
      // Code shown plain while the highlighter loaded: paint it again, highlighted.
      for (const m of this.withCode) this.dirty.add(m);
      this.request();
    });
    this.flush();
    this.scrollToBottom();
  }

  dispose(): void {
    this.disposed = true;
    this.unsub();
    this.unsubHighlighter();
    if (this.countdown) clearInterval(this.countdown);
    this.compose.dispose();
    this.root.remove();
  }

  /** Re-read model traits (room, ask mode) after a change from Python. */
  refresh(): void {
    this.compose.refresh();
    this.metaDirty = true;
    this.request();
  }

  /** The kernel answered "Ask about the last error" (asked, or why not): the button is usable again. */
  errorAskDone(): void {
    this.compose.errorAskDone();
  }

  private onChange(c: Change): void {
    switch (c.type) {
      case "reset":
        for (const [m, node] of [...this.nodes]) {
          if (c.keepPrivate && m.private) continue; // a private answer is not part of the room's log
          node.el.remove();
          node.divider?.remove();
          this.nodes.delete(m);
          this.dirty.delete(m);
          this.withCode.delete(m);
        }
        break;
      case "append": {
        const stick = this.nearBottom();
        this.place(c.message);
        if (stick) this.scrollToBottom();
        break;
      }
      case "prepend": {
        const before = this.log.scrollHeight;
        const anchor = this.earlier.nextSibling;
        for (const m of c.messages) this.insert(this.createNode(m), anchor);
        this.log.scrollTop += this.log.scrollHeight - before; // keep the reader's place
        break;
      }
      case "update":
        this.dirty.add(c.message);
        break;
      case "remove": {
        const node = this.nodes.get(c.message);
        node?.el.remove();
        node?.divider?.remove();
        this.nodes.delete(c.message);
        this.dirty.delete(c.message);
        this.withCode.delete(c.message);
        break;
      }
      case "meta":
        this.metaDirty = true;
        break;
    }
    this.request();
  }

  /**
   * Add a message at the end of the log. A room message goes before private ones that are
   * newer than it (after a Reset the room's History comes back below kept private answers).
   */
  private place(m: ChatMessage): void {
    let anchor: ChildNode = this.pendingThread;
    if (!m.private) {
      const created = Date.parse(m.created);
      for (let prev = anchor.previousSibling; prev instanceof HTMLElement; prev = prev.previousSibling) {
        if (!prev.classList.contains("llmchat-private")) break;
        const time = Date.parse(prev.querySelector("time")?.dateTime ?? "");
        if (!(time > created)) break;
        anchor = prev;
      }
    }
    this.insert(this.createNode(m), anchor);
  }

  private insert(node: MessageNode, before: ChildNode | null): void {
    if (node.divider) this.log.insertBefore(node.divider, before);
    this.log.insertBefore(node.el, before);
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
    this.trackRegenerate();
    for (const m of this.dirty) this.paint(m);
    this.dirty.clear();
    if (this.metaDirty) {
      this.metaDirty = false;
      this.paintMeta();
    }
    if (stick) this.scrollToBottom();
  }

  /** "Regenerate" sits on the newest answer to this user's own question: repaint when that moves. */
  private trackRegenerate(): void {
    const key = this.store.newestOwnAnswer?.key ?? null;
    if (key === this.regenKey) return;
    for (const m of this.nodes.keys()) if (m.key === key || m.key === this.regenKey) this.dirty.add(m);
    this.regenKey = key;
  }

  private createNode(m: ChatMessage): MessageNode {
    const node = createMessageNode(m);
    this.nodes.set(m, node);
    this.paint(m);
    return node;
  }

  private paint(m: ChatMessage): void {
    const node = this.nodes.get(m);
    if (!node) return;
    const regenerate = !m.private && m.key === this.regenKey ? () => this.actions.regenerate(m.key) : null;
    const hasCode = paintMessage(node, m, { code: this.code, regenerate, menu: () => menuFor(m, this.store, this.actions) });
    if (!hasCode) return;
    this.withCode.add(m);
    // The first code block on the page loads the highlighter; until then it shows plain.
    if (highlighterState() === "idle") {
      void ensureHighlighter().then(() => {
        this.metaDirty = true; // data-highlighter says how it went
        this.request();
      });
    }
  }

  private paintMeta(): void {
    const s = this.store;
    this.roomEl.textContent = `#${this.actions.room()}`;
    this.paintStatus(s.status);
    this.settingsBar.update(s.settings);
    this.moderationBar.update(s);
    this.root.dataset.moderator = String(s.isModerator);

    const model = s.model;
    paintModel(this.modelEl, model);
    this.root.dataset.model = model.loaded === false ? "loading" : model.loaded ? "ready" : "";
    this.root.dataset.highlighter = highlighterState();

    const names = s.members.map((m) => m.name || m.username);
    const count = Math.max(s.memberCount, names.length);
    const shown = names.slice(0, 4).join(", ") + (count > 4 ? ` +${count - 4}` : "");
    this.membersEl.textContent = count ? `${count} here: ${shown}` : "";
    this.membersEl.title = names.join(", ") + (count > names.length ? ` and ${count - names.length} more` : "");

    this.paintNotice();
    this.pendingThread.hidden = !s.pendingNewThread;
    this.earlier.hidden = !(s.canLoadEarlier && s.status.status === "live");
    this.paintRequests(s.openRequests);
    this.statsEl.textContent = statsLine(s);
  }

  private paintNotice(): void {
    const line = noticeLine(this.store);
    this.noticeText.textContent = line.text;
    this.notice.hidden = !line.text;
    this.notice.dataset.level = line.level;
    this.noticeClose.hidden = !line.dismissable;
  }

  private paintStatus(st: StatusInfo): void {
    this.root.dataset.status = st.status;
    this.statusText.textContent = statusLabel(st);
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
    let queued = false;
    for (const r of open) {
      const row = h("div", "llmchat-request");
      row.dataset.phase = r.phase;
      const state = requestState(r, this.store.status.status === "live");
      if (r.queuePosition !== null && r.queuePosition > 0) queued = true;
      row.dataset.queued = String(r.queuePosition !== null && r.queuePosition > 0);
      const what = r.private ? "private: " : r.regenerate ? "regenerate: " : "";
      const prompt = what + (r.text.length > 60 ? `${r.text.slice(0, 57)}…` : r.text);
      row.append(h("span", "llmchat-request-state", state), h("span", "llmchat-request-prompt", prompt));
      const stop = h("button", "llmchat-request-stop", "Stop");
      stop.type = "button";
      stop.disabled = r.phase === "cancelling";
      stop.addEventListener("click", () => this.actions.cancel(r.id));
      row.append(stop);
      this.requestsEl.append(row);
    }
    this.root.dataset.queued = String(queued);
    this.requestsEl.hidden = open.length === 0;
    this.compose.showStop(open.length > 0);
  }

  private nearBottom(): boolean {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
  }

  private scrollToBottom(): void {
    this.log.scrollTop = this.log.scrollHeight;
  }
}
