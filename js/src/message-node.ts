// The DOM of one message: meta line, rendered body (with code-block toolbars), what it was
// asked with, how it ended, and its actions. Built from ChatMessage fields as text nodes;
// only the body is Markdown, and that goes through render.ts's sanitiser.

import { decorateCodeBlocks, type CodeBlockActions } from "./codeblocks";
import { MUTE_CHOICES, type MessageMenu } from "./moderation";
import { hasCodeBlock, renderInto } from "./render";
import type { ChatMessage } from "./store";

export interface MessageNode {
  el: HTMLElement;
  meta: HTMLElement;
  body: HTMLElement;
  extra: HTMLElement;
  /** "new thread" line shown before a question that starts one. */
  divider: HTMLElement | null;
}

export interface PaintOptions {
  code: CodeBlockActions;
  /** Offer "Regenerate" on this message (the newest answer to this user's own question). */
  regenerate: (() => void) | null;
  /** This user's menu on the message (edit, delete, mute its author), asked again each time
   *  it opens (a mute since the paint changes it); null: none. */
  menu?: (() => MessageMenu | null) | null;
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
  return { el: root, meta, body, extra, divider: m.threadStart ? dividerFor(m) : null };
}

/** Re-render what can change: the body while streaming, the ending, the actions. Returns "has code". */
export function paintMessage(node: MessageNode, m: ChatMessage, opts: PaintOptions): boolean {
  if (node.el.dataset.editing === "true") return false; // the author is editing: their draft stays
  renderInto(node.body, m.content);
  paintMeta(node, m, opts.menu ?? null);
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

/** "(edited)" and the message's menu button, on its meta line. */
function paintMeta(node: MessageNode, m: ChatMessage, menuNow: (() => MessageMenu | null) | null): void {
  node.meta.querySelector(".llmchat-edited")?.remove();
  node.meta.querySelector(".llmchat-menu")?.remove();
  if (m.edited) {
    const edited = el("span", "llmchat-edited", "(edited)");
    edited.title = `edited ${m.edited}`;
    node.meta.append(edited);
  }
  if (!menuNow?.()) return;
  const wrap = el("span", "llmchat-menu");
  const button = el("button", "llmchat-menu-button", "⋯");
  button.type = "button";
  button.title = "Message actions";
  button.setAttribute("aria-haspopup", "menu");
  const list = el("div", "llmchat-menu-list");
  list.setAttribute("role", "menu");
  list.hidden = true;
  const fill = (menu: MessageMenu): void => {
    list.replaceChildren();
    if (menu.edit) item("Edit", "llmchat-menu-edit", () => openEditor(node, m, menu.edit as (content: string) => void));
    if (menu.remove) item("Delete", "llmchat-menu-delete", menu.remove);
    if (menu.mute) for (const [label, seconds] of MUTE_CHOICES) item(label, "llmchat-menu-mute", () => menu.mute?.(seconds));
    if (menu.unmute) item("Unmute", "llmchat-menu-unmute", menu.unmute);
  };
  const item = (label: string, cls: string, act: () => void): void => {
    const entry = el("button", `llmchat-menu-item ${cls}`, label);
    entry.type = "button";
    entry.setAttribute("role", "menuitem");
    entry.addEventListener("click", () => {
      list.hidden = true;
      act();
    });
    list.append(entry);
  };
  fill(menuNow() ?? {});
  button.addEventListener("click", () => {
    if (list.hidden) fill(menuNow() ?? {}); // what applies now (a mute since, a new moderator flag)
    list.hidden = !list.hidden;
  });
  wrap.append(button, list);
  node.meta.append(wrap);
}

/** Edit in place: the body becomes a text box with Save and Cancel (Enter saves, Escape cancels). */
function openEditor(node: MessageNode, m: ChatMessage, save: (content: string) => void): void {
  node.el.dataset.editing = "true";
  const form = el("form", "llmchat-edit");
  const area = el("textarea", "llmchat-edit-input");
  area.value = m.content;
  area.rows = Math.min(8, Math.max(2, m.content.split("\n").length));
  area.setAttribute("aria-label", "Edit message");
  const ok = el("button", "llmchat-edit-save", "Save");
  ok.type = "submit";
  const cancel = el("button", "llmchat-edit-cancel", "Cancel");
  cancel.type = "button";
  const close = (): void => {
    delete node.el.dataset.editing;
    form.remove();
    node.body.hidden = false;
  };
  cancel.addEventListener("click", close);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const content = area.value.trim();
    if (content && content !== m.content) save(content);
    close();
  });
  area.addEventListener("keydown", (ev) => {
    ev.stopPropagation(); // not notebook shortcuts
    if (ev.key === "Escape") close();
    else if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  form.append(area, ok, cancel);
  node.body.hidden = true;
  node.body.after(form);
  area.focus();
}
