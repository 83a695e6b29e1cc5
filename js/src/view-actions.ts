// What a view asks of the widget: the buttons' and the box's actions (actions.ts implements
// the room's part), and how it reads the model's traits.

import type { CodeBlockActions } from "./codeblocks";
import type { ModerationActions } from "./moderation";
import type { Attachment, ContextMode } from "./protocol";
import type { VariableSource } from "./variables";

export interface SendOptions {
  /** Ask without a room: the answer is shown to this view's user only. */
  private: boolean;
  /** This question starts a new thread (`/new …`). */
  newThread: boolean;
  /** Descriptions of the kernel's variables mentioned as `@name`. */
  attachments?: Attachment[];
}

export interface ViewActions extends ModerationActions {
  send(text: string, ask: boolean, options: SendOptions): void;
  cancel(requestId: string): void;
  retry(): void;
  loadEarlier(): void;
  getAskMode(): boolean;
  setAskMode(on: boolean): void;
  room(): string;
  /** `/new` alone: the next question starts a new thread. */
  newThread(): void;
  /** Ask the question of this answer again. */
  regenerate(answerKey: string): void;
  /** Ask the kernel to describe its last error and ask about it; null where there is no kernel. */
  askAboutError: (() => void) | null;
  setRoomSettings(settings: { system_prompt: string; context?: ContextMode }): void;
  dismissNotice(): void;
  /** Code-block buttons; the default copies with the Clipboard API and inserts cells where the page allows. */
  code?: CodeBlockActions;
  /** The kernel's variables for `@name` in the box; absent or null where there is no kernel. */
  variables?: VariableSource | null;
}
