// The `@` popup under the message box and the chips of the variables a question will carry.
//
// Typing `@` asks the kernel for its variables (VariableSource) and lists them, filtered by
// what follows the `@`; ArrowUp/ArrowDown move, Enter or Tab complete, Escape closes, a click
// completes. The box keeps the focus throughout (a combobox-like textbox: aria-expanded,
// aria-controls and aria-activedescendant point at the listbox and its active option). Each
// mention of a variable the kernel listed shows as a chip (kind, size) with × to make it text.

import { filterVariables, completeMention, mentionAt, mentionNames, unmention, type Variable, type VariableList } from "./mentions";
import { el as h } from "./message-node";
import { newId } from "./protocol";
import type { VariableSource } from "./variables";

interface Fetched {
  /** The `@` this list was fetched for, and the prefix asked for. */
  start: number;
  prefix: string;
  list: VariableList;
}

export class MentionBox {
  /** Placed right after the box, inside its (relatively positioned) form. */
  readonly popup: HTMLDivElement;
  /** Placed above the box: the variables the question will carry. */
  readonly chips: HTMLDivElement;
  private readonly listbox: HTMLUListElement;
  private readonly statusEl: HTMLDivElement;
  private readonly idBase = newId("mention");
  private readonly known = new Map<string, Variable>();
  private mention: { start: number; query: string } | null = null;
  private fetched: Fetched | null = null;
  private requested: { start: number; prefix: string } | null = null;
  private fetching = 0; // the latest request's number: older answers are dropped
  private failed = false;
  private shown: Variable[] = [];
  private active = -1;
  /** Escape closed the popup for the `@` at this position: it stays closed until that changes. */
  private dismissed: number | null = null;

  constructor(
    private readonly input: HTMLTextAreaElement,
    private readonly source: VariableSource,
    /** Whether what is typed now would be asked (only questions carry attachments). */
    private readonly willAsk: () => boolean,
  ) {
    this.popup = h("div", "llmchat-mentions");
    this.popup.hidden = true;
    this.statusEl = h("div", "llmchat-mentions-status");
    this.statusEl.setAttribute("role", "status"); // "no variable named like …", "the kernel did not answer"
    this.listbox = h("ul", "llmchat-mentions-list");
    this.listbox.id = `${this.idBase}-list`;
    this.listbox.setAttribute("role", "listbox");
    this.listbox.setAttribute("aria-label", "Variables of the kernel");
    this.popup.append(this.statusEl, this.listbox);
    // Clicking an option must not take the focus (and the caret) away from the box.
    this.popup.addEventListener("mousedown", (ev) => ev.preventDefault());
    this.chips = h("div", "llmchat-chips");
    this.chips.hidden = true;
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", this.listbox.id);
    input.setAttribute("aria-expanded", "false");
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => this.close());
  }

  get isOpen(): boolean {
    return !this.popup.hidden;
  }

  /** The variables the kernel listed so far, by name (to tell a mention from plain text). */
  knows(name: string): boolean {
    return this.known.has(name);
  }

  /** A key pressed in the box: true when the popup used it (the box must not act on it too). */
  handleKey(ev: KeyboardEvent): boolean {
    if (!this.isOpen || ev.isComposing) return false;
    const n = this.shown.length;
    if (ev.key === "Escape") {
      this.dismissed = this.mention?.start ?? null;
      this.close();
      return true;
    }
    if (n === 0) return false;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      this.setActive((this.active + (ev.key === "ArrowDown" ? 1 : n - 1)) % n);
      return true;
    }
    const active = this.shown[this.active];
    if ((ev.key === "Enter" || ev.key === "Tab") && !ev.shiftKey && active) {
      this.choose(active);
      return true;
    }
    return false;
  }

  /** Re-read the box (after typing, a caret move, the ask mode changed, or the box was cleared). */
  update(): void {
    const caret = this.input.selectionStart ?? 0;
    const collapsed = caret === (this.input.selectionEnd ?? caret);
    const found = collapsed && this.willAsk() ? mentionAt(this.input.value, caret) : null;
    if (found?.start !== this.dismissed) this.dismissed = null;
    if (!found || found.start === this.dismissed) this.close();
    else this.open(found);
    this.paintChips();
  }

  close(): void {
    this.mention = null;
    this.popup.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  private open(found: { start: number; query: string }): void {
    const fresh = this.mention?.start !== found.start;
    this.mention = found;
    const asked = this.requested;
    const have = this.fetched;
    const query = found.query.toLowerCase();
    // Ask again for a new `@`, or when the list asked for cannot hold what is typed now: a
    // request in flight (or one that failed) for this `@` is not repeated on every key.
    const stale =
      fresh ||
      !asked ||
      asked.start !== found.start ||
      !query.startsWith(asked.prefix.toLowerCase()) ||
      (have !== null && have.list.truncated && query !== have.prefix.toLowerCase());
    if (stale) this.fetch(found.start, fresh ? "" : found.query);
    this.popup.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.paintList();
  }

  private fetch(start: number, prefix: string): void {
    const number = ++this.fetching;
    this.requested = { start, prefix };
    this.failed = false;
    if (this.fetched?.start !== start) this.fetched = null;
    this.source.list(prefix).then(
      (list) => {
        if (number !== this.fetching) return;
        this.fetched = { start, prefix, list };
        if (!prefix && !list.truncated) this.known.clear(); // the whole namespace as it is now
        for (const v of list.items) this.known.set(v.name, v);
        if (this.mention) this.paintList();
        this.paintChips();
      },
      () => {
        if (number !== this.fetching) return;
        this.failed = true;
        if (this.mention) this.paintList();
      },
    );
  }

  private paintList(): void {
    const query = this.mention?.query ?? "";
    const have = this.fetched;
    const previous = this.shown[this.active]?.name;
    this.shown = have ? filterVariables(have.list.items, query) : [];
    this.listbox.replaceChildren(
      ...this.shown.map((v, i) => {
        const option = h("li", "llmchat-mention");
        option.id = `${this.idBase}-${i}`;
        option.setAttribute("role", "option");
        option.dataset.name = v.name;
        option.append(h("span", "llmchat-mention-name", v.name), h("span", "llmchat-mention-label", v.label));
        option.title = `${v.kind}: ${v.label}`;
        option.addEventListener("click", () => this.choose(v));
        return option;
      }),
    );
    const keep = this.shown.findIndex((v) => v.name === previous);
    this.setActive(this.shown.length ? Math.max(keep, 0) : -1);
    let status = "";
    if (this.failed) status = "The kernel did not answer (is a cell running?): @ names stay text for now.";
    else if (!have) status = "Looking up the kernel's variables…";
    else if (!this.shown.length) status = query ? `No variable named like "${query}": it stays text.` : "No variables in the kernel yet.";
    else if (have.list.truncated) status = "More variables than shown: type to narrow.";
    this.statusEl.textContent = status;
    this.statusEl.hidden = !status;
    this.listbox.hidden = this.shown.length === 0;
  }

  private setActive(index: number): void {
    this.active = index;
    this.listbox.querySelectorAll<HTMLElement>("[role=option]").forEach((option, i) => {
      option.setAttribute("aria-selected", String(i === index));
      if (i === index) option.scrollIntoView?.({ block: "nearest" });
    });
    if (index >= 0 && this.isOpen) this.input.setAttribute("aria-activedescendant", `${this.idBase}-${index}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  private choose(v: Variable): void {
    const m = this.mention;
    if (!m) return;
    const caret = this.input.selectionStart ?? m.start + 1 + m.query.length;
    const done = completeMention(this.input.value, m.start, caret, v.name);
    this.input.value = done.text;
    this.input.setSelectionRange(done.caret, done.caret);
    this.known.set(v.name, v);
    this.close();
    this.paintChips();
    this.input.focus();
  }

  private paintChips(): void {
    const names = this.willAsk() ? mentionNames(this.input.value).filter((name) => this.known.has(name)) : [];
    this.chips.replaceChildren(
      ...names.map((name) => {
        const v = this.known.get(name) as Variable;
        const chip = h("span", "llmchat-chip");
        chip.dataset.name = name;
        chip.dataset.kind = v.kind;
        chip.title = `${v.kind}: ${v.label} — its description goes to the model with your question`;
        const remove = h("button", "llmchat-chip-remove", "×");
        remove.type = "button";
        remove.setAttribute("aria-label", `Do not attach ${name}`);
        remove.addEventListener("click", () => {
          this.input.value = unmention(this.input.value, name);
          this.update();
          this.input.focus();
        });
        chip.append(h("span", "llmchat-chip-kind", v.kind), h("span", "llmchat-chip-name", `@${name}`), h("span", "llmchat-chip-label", v.label), remove);
        return chip;
      }),
    );
    this.chips.hidden = names.length === 0;
  }
}
