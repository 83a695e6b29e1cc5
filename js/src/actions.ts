// What the view's buttons and the message box do to the room: the glue between ChatView and
// ChatClient/RoomStore, kept apart from widget.ts so the tests drive exactly this code.

import type { Attachment, GenerateConfig } from "./protocol";
import type { ChatClient } from "./client";
import type { RoomStore } from "./store";
import type { ViewActions } from "./view-actions";

export type RoomActions = Pick<
  ViewActions,
  "send" | "cancel" | "retry" | "loadEarlier" | "newThread" | "regenerate" | "askAboutError" | "setRoomSettings" | "dismissNotice"
>;

export interface RoomActionDeps {
  client: ChatClient;
  store: RoomStore;
  /** Generation settings for prompts typed here (the widget's `config` trait). */
  config: () => GenerateConfig | undefined;
  /** Hand "Ask about the last error" to the kernel; null where there is no kernel. */
  askKernelAboutError: (() => void) | null;
}

export function roomActions({ client, store, config, askKernelAboutError }: RoomActionDeps): RoomActions {
  return {
    send: (text, ask, options) => {
      if (store.notice) store.dismissNotice();
      const attachments = options.attachments?.length ? { attachments: options.attachments } : {};
      if (!ask) client.sendText(text);
      else if (options.private) client.generate(text, config(), undefined, { private: true, ...attachments });
      else {
        const pending = store.takePendingNewThread(); // `/new` typed before: this question starts the thread
        client.generate(text, config(), undefined, options.newThread || pending ? { new_thread: true, ...attachments } : attachments);
      }
    },
    cancel: (id) => client.cancel(id),
    retry: () => client.retryNow(),
    loadEarlier: () => {
      const oldest = store.messages.find((m) => m.seq !== null)?.seq;
      if (oldest) client.requestHistory(oldest, 50);
    },
    newThread: () => store.setPendingNewThread(true),
    regenerate: (answerKey) => {
      // The server asks the stored question again; the prompt only has to be non-empty.
      const prompt = store.questionFor(answerKey) ?? "(regenerate)";
      client.generate(prompt, config(), undefined, { regenerate: answerKey });
    },
    askAboutError: askKernelAboutError,
    setRoomSettings: (settings) => {
      if (client.setRoomSettings(settings) === null) store.showNotice("Not connected: the system prompt was not changed.", "error");
    },
    dismissNotice: () => store.dismissNotice(),
  };
}

/** Attachments handed over by Python (the front-end fallback of `ask()`, the `@name` descriptions). */
export function attachmentsFrom(value: unknown): Attachment[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const list = value.filter(
    (a): a is Attachment => !!a && typeof a === "object" && typeof a.kind === "string" && typeof a.text === "string",
  );
  return list.length ? list.map((a) => ({ kind: a.kind, label: String(a.label ?? ""), text: a.text })) : undefined;
}
