// Wire types of the llmchat.v1 protocol (docs/protocol.md). The data of every frame is typed
// in ./wire.ts, generated from the Python structs (scripts/gen_wire_ts.py; a pytest fails
// when it is stale): this file names those types for the widget and adds what only the
// front end needs — the generic envelope, parsing, request ids.

import type * as wire from "./wire";
import { PROTOCOL, ROOM_RE } from "./wire";

export const SUBPROTOCOL = PROTOCOL;
/** Room names the server accepts (the server's own pattern). */
export { ROOM_RE };

export type AuthorKind = wire.Author["kind"];
export type FinishReason = NonNullable<wire.Token["finish_reason"]>;
export type Person = wire.Person;
export type Author = wire.Author;

/** The envelope every frame shares. */
export interface Frame<T extends string = string, D = unknown> {
  type: T;
  id?: string;
  room?: string;
  seq?: number;
  data: D;
}

export type GenerateConfig = wire.GenerateConfig;
/** How much of the room the model sees for a question (docs/protocol.md, context policy). */
export type ContextMode = wire.RoomSettings["context"];
/** A compact description of a live kernel object sent with a question. */
export type Attachment = wire.Attachment;
/** What a stored question shows of its attachments: never the text itself. */
export type AttachmentSummary = wire.AttachmentSummary;

/** Generate fields beyond prompt and config (`private` is the widget's: it means no room). */
export type GenerateExtras = Pick<wire.GenerateData, "new_thread" | "reply_to" | "regenerate" | "attachments"> & {
  private?: boolean;
};

/** What the widget knows of the model: nothing before `Welcome`, then more with each `Stats`. */
export type ModelInfo = Partial<wire.ModelSummary>;

/** What a client sends to change a room's settings (absent: unchanged; "" or null: the server's prompt). */
export type RoomSettingsChange = wire.RoomSettingsData;

/** A room's settings as the widget shows them: `null` = the server's default. */
export interface RoomSettings {
  system_prompt: string | null;
  context?: ContextMode | null;
  /** Only moderators post in the room (everyone may still ask privately). */
  announce_only?: boolean;
  /** False: nobody gets answers from the model in this room. */
  model_answers?: boolean;
}

/** A room's settings in force, as the server sends them (Joined, the RoomSettings reply, system Texts). */
export type RoomSettingsData = wire.RoomSettings;
export type WelcomeData = wire.Welcome;
export type JoinedData = wire.Joined;
export type TextData = wire.Text;
export type Timings = wire.Timings;
export type TokenData = wire.Token;
export type AckData = wire.Ack;
export type PresenceData = wire.Presence;
export type ResetData = wire.Reset;
export type ErrorData = wire.Error;
export type DeletedData = wire.Deleted;
export type EditedData = wire.Edited;

/** History's rows are passed on as the server stored them (see `History` in Python): Text events. */
export interface HistoryData extends Omit<wire.History, "messages"> {
  messages: Frame<"Text", TextData>[];
}

/** `Stats.model` is open (whatever the model backend reports); these are the figures the widget reads. */
export interface StatsData extends Omit<wire.Stats, "model"> {
  model: ModelInfo & {
    active_sequences?: number;
    queue_depth?: number;
    tokens_per_second?: number;
    tokens_per_second_per_sequence?: number;
    tokens_generated?: number;
    kv_disk?: wire.KVDisk;
    [figure: string]: unknown;
  };
}

/** Room events carry `room` and `seq` and are delivered to every member in order. */
export const ROOM_EVENT_TYPES: ReadonlySet<string> = new Set(["Text", "Token", "Presence", "Custom", "Binary", "Deleted", "Edited"]);

export function isRoomEvent(frame: Frame): boolean {
  return ROOM_EVENT_TYPES.has(frame.type) && typeof frame.seq === "number";
}

/** Parse one text frame; anything that is not an object with a string `type` is dropped. */
export function parseFrame(raw: unknown): Frame | null {
  if (typeof raw !== "string") return null;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const f = value as Partial<Frame>;
  if (typeof f.type !== "string") return null;
  if (typeof f.data !== "object" || f.data === null) f.data = {};
  return f as Frame;
}

let counter = 0;

/** A request id, unique per page (≤ 128 chars): a retried request keeps its id. */
export function newId(prefix: string): string {
  counter += 1;
  const rand =
    typeof globalThis.crypto?.randomUUID === "function"
      ? globalThis.crypto.randomUUID().slice(0, 8)
      : Math.random().toString(36).slice(2, 10);
  return `${prefix}-${rand}-${counter}`;
}
