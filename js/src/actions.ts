// What the view's buttons and the message box do to the room: the glue between ChatView and
// ChatClient/RoomStore, kept apart from widget.ts so the tests drive exactly this code.

import type { Attachment, GenerateConfig } from "./protocol";
import type { ChatClient } from "./client";
import type { RoomStore } from "./store";
import type { ViewActions } from "./view-actions";

export type RoomActions = Pick<
  ViewActions,
  | "send" | "cancel" | "retry" | "loadEarlier" | "newThread" | "regenerate" | "askAboutError" | "setRoomSettings" | "dismissNotice"
  | "deleteMessage" | "editMessage" | "mute" | "setModeration" | "exportRoom"
>;

export interface RoomActionDeps {
  client: ChatClient;
  store: RoomStore;
  /** Generation settings for prompts typed here (the widget's `config` trait). */
  config: () => GenerateConfig | undefined;
  /** Hand "Ask about the last error" to the kernel; null where there is no kernel. */
  askKernelAboutError: (() => void) | null;
  /** Download the room's transcript; null where the page cannot reach the server's REST API. */
  exportRoom?: ((format: "md" | "json") => void) | null;
}

export function roomActions({ client, store, config, askKernelAboutError, exportRoom = null }: RoomActionDeps): RoomActions {
  const offline = (what: string) => (sent: string | null) => {
    if (sent === null) store.showNotice(`Not connected: ${what}.`, "error");
  };
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
      // From the oldest seq any page gave (a page of deleted messages shows nothing but still counts).
      const shown = store.messages.find((m) => m.seq !== null)?.seq;
      const oldest = Math.min(shown ?? Infinity, store.oldestSeq ?? Infinity);
      if (Number.isFinite(oldest) && oldest > 0) client.requestHistory(oldest, 50);
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
    deleteMessage: (key) => offline("the message was not deleted")(client.deleteMessage(key)),
    editMessage: (key, content) => offline("the message was not edited")(client.editMessage(key, content)),
    mute: (username, seconds) => offline(seconds ? "nobody was muted" : "nobody was unmuted")(client.mute(username, seconds)),
    setModeration: (change) => offline("the room's settings were not changed")(client.setRoomSettings(change)),
    exportRoom,
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
