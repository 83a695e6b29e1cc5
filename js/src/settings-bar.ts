// The room's system prompt under the header: shown to every member (so everyone knows what
// the model was told), with a small editor that sends RoomSettings. The server decides who
// may change it (write permission); a refusal comes back as an Error in the notice line.

import type { ContextMode, RoomSettings } from "./protocol";

export type SaveSettings = (settings: { system_prompt: string; context?: ContextMode }) => void;

const SHOWN_CHARS = 140;

export class SettingsBar {
  readonly el: HTMLDivElement;
  private readonly text: HTMLSpanElement;
  private readonly context: HTMLSpanElement;
  private readonly editBtn: HTMLButtonElement;
  // The editor is built on first use: a chat that is only read carries no second textarea.
  private editor: { form: HTMLFormElement; area: HTMLTextAreaElement; mode: HTMLSelectElement } | null = null;
  private current: RoomSettings | null = null;

  constructor(private readonly save: SaveSettings) {
    this.el = document.createElement("div");
    this.el.className = "llmchat-sysprompt";
    const label = document.createElement("span");
    label.className = "llmchat-sysprompt-label";
    label.textContent = "System prompt:";
    this.text = document.createElement("span");
    this.text.className = "llmchat-sysprompt-text";
    this.context = document.createElement("span");
    this.context.className = "llmchat-sysprompt-context";
    this.editBtn = document.createElement("button");
    this.editBtn.type = "button";
    this.editBtn.className = "llmchat-sysprompt-edit";
    this.editBtn.textContent = "Edit";
    this.editBtn.addEventListener("click", () => this.open());

    this.el.append(label, this.text, this.context, this.editBtn);
    this.el.hidden = true;
  }

  /** Show what the server last announced; hidden while it has said nothing (older servers). */
  update(settings: RoomSettings | null): void {
    this.current = settings;
    this.el.hidden = settings === null;
    if (!settings) return;
    const prompt = settings.system_prompt;
    this.text.textContent = prompt
      ? prompt.length > SHOWN_CHARS
        ? `${prompt.slice(0, SHOWN_CHARS - 1)}…`
        : prompt
      : "the server's default";
    this.text.title = prompt ?? "This room uses the server's default system prompt.";
    this.el.dataset.default = String(!prompt);
    this.context.textContent = settings.context === "shared" ? "(shared context)" : "";
  }

  private buildEditor(): { form: HTMLFormElement; area: HTMLTextAreaElement; mode: HTMLSelectElement } {
    const form = document.createElement("form");
    form.className = "llmchat-sysprompt-form";
    form.hidden = true;
    const area = document.createElement("textarea");
    area.rows = 3;
    area.setAttribute("aria-label", "Room system prompt");
    area.placeholder = "Empty: the server's default system prompt";
    area.addEventListener("keydown", (ev) => ev.stopPropagation()); // not notebook shortcuts
    const mode = document.createElement("select");
    mode.setAttribute("aria-label", "What the model sees");
    for (const [value, text] of [
      ["own", "model sees each asker's own exchanges"],
      ["shared", "model sees the whole room"],
    ] as const) {
      const opt = document.createElement("option");
      opt.value = value;
      opt.textContent = text;
      mode.append(opt);
    }
    const saveBtn = document.createElement("button");
    saveBtn.type = "submit";
    saveBtn.textContent = "Save";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.addEventListener("click", () => this.close());
    form.append(area, mode, saveBtn, cancel);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save({ system_prompt: area.value.trim(), context: mode.value as ContextMode });
      this.close();
    });

    this.el.append(form);
    return { form, area, mode };
  }

  private open(): void {
    this.editor ??= this.buildEditor();
    const { form, area, mode } = this.editor;
    area.value = this.current?.system_prompt ?? "";
    mode.value = this.current?.context === "shared" ? "shared" : "own";
    form.hidden = false;
    this.editBtn.hidden = true;
    area.focus();
  }

  private close(): void {
    if (this.editor) this.editor.form.hidden = true;
    this.editBtn.hidden = false;
  }
}
