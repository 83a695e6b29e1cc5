// The DOM of one message: meta line, rendered body (with code-block toolbars), what it was
// asked with, how it ended, and its actions. Built from ChatMessage fields as text nodes;
// only the body is Markdown, and that goes through render.ts's sanitiser.

import { decorateCodeBlocks, type CodeBlockActions } from "./codeblocks";
import { hasCodeBlock, renderInto } from "./render";
import type { ChatMessage } from "./store";

export interface MessageNode {
  el: HTMLElement;
  body: HTMLElement;
  extra: HTMLElement;
  /** "new thread" line shown before a question that starts one. */
  divider: HTMLElement | null;
}

export interface PaintOptions {
  code: CodeBlockActions;
  /** Offer "Regenerate" on this message (the newest answer to this user's own question). */
  regenerate: (() => void) | null;
}

const KIND_LABEL: Record<string, string> = { user: "user", assistant: "model", bot: "bot", system: "system" };

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function threadDivider(text: string, cls = "llmchat-thread"): HTMLElement {
  const line = el("div", cls);
  line.setAttribute("role", "separator");
  line.append(el("span", "llmchat-thread-label", text));
  return line;
}

function dividerFor(m: ChatMessage): HTMLElement {
  const who = m.own ? "you" : m.author.name || m.author.username;
  return threadDivider(who ? `new thread (${who})` : "new thread");
}

export function createMessageNode(m: ChatMessage): MessageNode {
  const root = el("div", "llmchat-msg");
  root.dataset.kind = m.kind;
  root.dataset.key = m.key;
  if (m.own) root.classList.add("llmchat-own");
  if (m.private) root.classList.add("llmchat-private");
  const meta = el("div", "llmchat-meta");
  const author = el("span", "llmchat-author", m.author.name || m.author.username || KIND_LABEL[m.kind] || m.kind);
  if (m.author.username) author.title = m.author.username;
  const kind = el("span", "llmchat-kind", KIND_LABEL[m.kind] ?? m.kind);
  meta.append(author, kind);
  if (m.private) {
    const tag = el("span", "llmchat-private-tag", "private");
    tag.title = "Asked privately: only you see this question and its answer, and it is not stored in the room.";
    meta.append(tag);
  }
  const time = el("time", "llmchat-time", formatTime(m.created));
  time.dateTime = m.created;
  time.title = m.created;
  meta.append(time);
  const body = el("div", "llmchat-body");
  const extra = el("div", "llmchat-extra");
  root.append(meta, body, extra);
  return { el: root, body, extra, divider: m.threadStart ? dividerFor(m) : null };
}

/** Re-render what can change: the body while streaming, the ending, the actions. Returns "has code". */
export function paintMessage(node: MessageNode, m: ChatMessage, opts: PaintOptions): boolean {
  renderInto(node.body, m.content);
  const code = hasCodeBlock(node.body);
  if (code) decorateCodeBlocks(node.body, opts.code);
  node.el.classList.toggle("llmchat-streaming", m.streaming);
  node.el.classList.toggle("llmchat-replaced", m.replaced);
  node.el.dataset.finish = m.finishReason ?? "";
  if (m.finishReason && m.finishReason !== "stop") {
    let label = m.finishReason === "length" ? "truncated" : m.finishReason;
    if (m.kind !== "assistant" && m.finishReason === "error") label = "not answered";
    if (m.finishError) label = `${label}: ${m.finishError}`;
    node.body.append(el("span", "llmchat-finish", ` [${label}]`)); // text node: never markup
  }
  if (m.threadStart && !node.divider) {
    node.divider = dividerFor(m);
    node.el.before(node.divider);
  }
  paintExtra(node.extra, m, opts);
  return code;
}

function paintExtra(extra: HTMLElement, m: ChatMessage, opts: PaintOptions): void {
  extra.replaceChildren();
  if (m.attachments.length > 0) {
    const list = el("div", "llmchat-attachments");
    list.append(el("span", "llmchat-attachments-label", "attached:"));
    for (const a of m.attachments) {
      // The label already says what it is ("ndarray float64 (2, 3)", "DataFrame 200×5",
      // "ZeroDivisionError"): the kind is shown only when there is no label.
      const chip = el("span", "llmchat-attachment", a.label.trim() || a.kind);
      chip.title = `${chip.textContent}: ${a.chars.toLocaleString()} characters given to the model`;
      list.append(chip);
    }
    extra.append(list);
  }
  const notes: string[] = [];
  if (m.truncated) notes.push("part of the conversation was left out to fit the model's context");
  if (m.replaced) notes.push("regenerated below");
  if (notes.length) extra.append(el("div", "llmchat-note", notes.join(" · ")));
  if (opts.regenerate) {
    const again = el("button", "llmchat-regenerate", "Regenerate");
    again.type = "button";
    again.title = "Ask the model the same question again (this answer is left out of its context)";
    again.addEventListener("click", opts.regenerate);
    extra.append(again);
  }
  extra.hidden = extra.childElementCount === 0;
}
