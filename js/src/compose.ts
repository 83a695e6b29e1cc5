// The message box and what sits around it: Send / Stop, the ask / private toggles, "New
// thread", "Ask about the last error", and the `@name` popup and chips (mention-popup.ts).
// What is typed is routed by input.ts; a question naming the kernel's variables waits for
// their descriptions and goes with them attached.

import { parseInput } from "./input";
import { MentionBox } from "./mention-popup";
import { mentionNames } from "./mentions";
import { el as h } from "./message-node";
import type { RoomStore } from "./store";
import type { Described, VariableSource } from "./variables";
import type { SendOptions, ViewActions } from "./view-actions";

/** How long "Ask about the last error" stays disabled waiting for the kernel's answer. */
const ERROR_ASK_TIMEOUT_MS = 30_000;

export class ComposeBox {
  /** The box and its Send / Stop buttons. */
  readonly form: HTMLFormElement;
  /** The toggles and buttons under the box. */
  readonly options: HTMLDivElement;
  /** The chips of the variables the question will carry; null where there is no kernel. */
  readonly chips: HTMLDivElement | null;
  private readonly input: HTMLTextAreaElement;
  private readonly askBox: HTMLInputElement;
  private readonly privateBox: HTMLInputElement;
  private readonly errorBtn: HTMLButtonElement;
  private readonly sendBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly mentions: MentionBox | null;
  private attaching = false;
  private disposed = false;
  private errorAskTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    /** The view's root: its `data-private` / `data-attaching` say what the box is doing. */
    private readonly root: HTMLElement,
    private readonly store: RoomStore,
    private readonly actions: ViewActions,
  ) {
    this.form = h("form", "llmchat-compose");
    this.input = h("textarea", "llmchat-input");
    this.input.rows = 2;
    this.input.setAttribute("aria-label", "Message");
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
    buttons.append(this.sendBtn, this.stopBtn);
    this.form.append(this.input, buttons);
    const variables = this.actions.variables ?? null;
    this.mentions = variables ? new MentionBox(this.input, variables, () => this.willAsk()) : null;
    if (this.mentions) this.form.append(this.mentions.popup);
    this.chips = this.mentions?.chips ?? null;
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (ev) => {
      if (this.mentions?.handleKey(ev)) ev.preventDefault(); // the `@` popup's keys
      // Enter sends, Shift+Enter is a new line; never send mid-IME composition.
      else if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submit();
      }
      // Keep Jupyter's notebook shortcuts from seeing keys typed into the chat.
      ev.stopPropagation();
    });

    this.options = h("div", "llmchat-options");
    const askLabel = h("label", "llmchat-ask");
    this.askBox = h("input");
    this.askBox.type = "checkbox";
    this.askBox.checked = this.actions.getAskMode();
    askLabel.append(this.askBox, document.createTextNode(" Ask the model"));
    this.askBox.addEventListener("change", () => {
      this.actions.setAskMode(this.askBox.checked);
      this.updateInputState();
    });
    const privateLabel = h("label", "llmchat-private-toggle");
    privateLabel.title = "Ask without posting to the room: only you see the question and the answer, and nothing is stored";
    this.privateBox = h("input");
    this.privateBox.type = "checkbox";
    privateLabel.append(this.privateBox, document.createTextNode(" Private"));
    this.privateBox.addEventListener("change", () => this.updateInputState());
    const newThread = h("button", "llmchat-new-thread", "New thread");
    newThread.type = "button";
    newThread.title = "Your next question starts fresh: the model forgets your earlier questions in this room (same as typing /new)";
    newThread.addEventListener("click", () => this.actions.newThread());
    this.errorBtn = h("button", "llmchat-ask-error", "Ask about the last error");
    this.errorBtn.type = "button";
    this.errorBtn.title = "Send the last exception of this kernel (type, message, traceback) to the model with a question";
    this.errorBtn.hidden = this.actions.askAboutError === null;
    this.errorBtn.addEventListener("click", () => this.askAboutError());
    this.options.append(askLabel, privateLabel, newThread, this.errorBtn);
    this.updateInputState();
  }

  /** Re-read the ask mode (changed from Python). */
  refresh(): void {
    this.askBox.checked = this.actions.getAskMode();
    this.updateInputState();
  }

  /** The main Stop button shows while this view has requests open. */
  showStop(visible: boolean): void {
    this.stopBtn.hidden = !visible;
  }

  dispose(): void {
    this.disposed = true;
    if (this.errorAskTimer) clearTimeout(this.errorAskTimer);
  }

  /** The kernel answered "Ask about the last error" (asked, or why not): the button is usable again. */
  errorAskDone(): void {
    if (this.errorAskTimer) clearTimeout(this.errorAskTimer);
    this.errorAskTimer = null;
    this.errorBtn.disabled = false;
  }

  private askAboutError(): void {
    const ask = this.actions.askAboutError;
    if (!ask || this.errorBtn.disabled) return;
    this.errorBtn.disabled = true;
    this.actions.dismissNotice(); // the kernel's word on this attempt replaces any earlier one
    // A busy kernel answers once its cell ends; don't leave the button dead if it never does.
    this.errorAskTimer = setTimeout(() => this.errorAskDone(), ERROR_ASK_TIMEOUT_MS);
    ask();
  }

  private updateInputState(): void {
    this.mentions?.update();
    const ask = this.askBox.checked;
    this.privateBox.disabled = !ask;
    this.root.dataset.private = String(ask && this.privateBox.checked);
    this.input.placeholder = !ask
      ? "Message the room… (Enter sends, Shift+Enter new line, /ask to ask the model)"
      : this.privateBox.checked
        ? "Ask the model privately… (only you see it; Enter sends)"
        : "Ask the model… (Enter sends, Shift+Enter new line, /say for a plain message, /new for a new thread)";
  }

  /** Whether what the box holds would be asked (so its `@name` mentions are attached). */
  private willAsk(): boolean {
    const parsed = parseInput(this.input.value, this.askBox.checked);
    return parsed === null ? this.askBox.checked : "ask" in parsed && parsed.ask;
  }

  private submit(): void {
    if (this.attaching) return;
    const parsed = parseInput(this.input.value, this.askBox.checked);
    if (!parsed) return;
    if ("command" in parsed) {
      this.clearInput();
      this.actions.newThread();
      return;
    }
    const priv = parsed.ask && this.privateBox.checked && !parsed.newThread;
    const options: SendOptions = { private: priv, newThread: parsed.newThread === true };
    const names = parsed.ask && this.actions.variables ? mentionNames(parsed.text) : [];
    if (names.length && this.actions.variables) {
      void this.askWithMentions(this.actions.variables, parsed.text, names, options);
      return;
    }
    this.clearInput();
    this.actions.send(parsed.text, parsed.ask, options);
  }

  /**
   * Ask the kernel to describe the mentioned variables, then ask with them attached. Names
   * that are not variables stay text. If the kernel does not answer (a cell is running) and
   * the question names variables it listed, nothing is sent and the text stays in the box.
   */
  private async askWithMentions(source: VariableSource, text: string, names: string[], options: SendOptions): Promise<void> {
    this.setAttaching(true);
    let described: Described | null = null;
    try {
      described = await source.describe(names);
    } catch (error) {
      const known = names.filter((name) => this.mentions?.knows(name)).map((name) => `@${name}`);
      if (known.length) {
        this.setAttaching(false);
        const why = error instanceof Error ? error.message : String(error);
        this.store.showNotice(`Not sent: ${why}, so ${known.join(", ")} could not be attached. Send again when the kernel is idle, or remove the @.`, "error");
        return;
      }
    }
    this.setAttaching(false);
    if (this.disposed) return;
    this.clearInput();
    const attachments = described?.attachments ?? [];
    this.actions.send(text, true, attachments.length ? { ...options, attachments } : options);
    const skipped = described?.skipped ?? [];
    if (skipped.length) {
      this.store.showNotice(`A question carries at most 8 variables: ${skipped.map((name) => `@${name}`).join(", ")} went as text.`, "info");
    }
  }

  private setAttaching(on: boolean): void {
    this.attaching = on;
    this.input.readOnly = on;
    this.sendBtn.disabled = on;
    this.sendBtn.textContent = on ? "Attaching…" : "Send";
    this.root.dataset.attaching = String(on);
  }

  private clearInput(): void {
    this.input.value = "";
    this.mentions?.update();
  }
}
