// Wire types of the llmchat.v1 protocol (SPEC sections 3-5). Field names are normative.

export const SUBPROTOCOL = "llmchat.v1";

export type AuthorKind = "user" | "assistant" | "bot" | "system";
export type FinishReason = "stop" | "length" | "cancelled" | "error";

export interface Person {
  username: string;
  name: string;
}

export interface Author extends Person {
  kind: AuthorKind;
}

/** The envelope every frame shares. */
export interface Frame<T extends string = string, D = unknown> {
  type: T;
  id?: string;
  room?: string;
  seq?: number;
  data: D;
}

export interface GenerateConfig {
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  seed?: number;
  stop?: string[];
}

export interface ModelInfo {
  name?: string;
  loaded?: boolean;
  n_ctx?: number;
  parallel?: number;
}

export interface WelcomeData {
  client_id: string;
  user: Person;
  protocol: string;
  server?: { version?: string };
  model?: ModelInfo;
  limits?: { message_size_limit?: number; max_tokens?: number; [k: string]: unknown };
}

/** How much of the room the model sees for a question (docs/protocol.md, context policy). */
export type ContextMode = "own" | "shared";

/** A room's own settings (Joined.settings, the RoomSettings reply, system Texts). */
export interface RoomSettings {
  /** null: the server's default system prompt. */
  system_prompt: string | null;
  context?: ContextMode | null;
}

export interface JoinedData {
  seq: number;
  epoch: string;
  members: Person[];
  settings?: RoomSettings;
}

/** A compact description of a live kernel object sent with a question. */
export interface Attachment {
  kind: string;
  label: string;
  text: string;
}

/** What a stored question shows of its attachments: never the text itself. */
export interface AttachmentSummary {
  kind: string;
  label: string;
  chars: number;
}

/** Generate fields beyond prompt and config (all optional; `private` means: no room). */
export interface GenerateExtras {
  new_thread?: boolean;
  reply_to?: string;
  regenerate?: string;
  attachments?: Attachment[];
  private?: boolean;
}

export interface TextData {
  message_id: string;
  content: string;
  author: Author;
  created?: string;
  /** Stored answers (History): the prompt they answer and how they ended. */
  in_reply_to?: string;
  finish_reason?: string;
  /** Why a stored answer ended with finish_reason "error" (e.g. "server shutting down"). */
  error?: string;
  /** A question that starts a new thread for its asker (Generate new_thread). */
  thread_start?: boolean;
  /** A question that replies to another room message. */
  reply_to?: string;
  /** A regenerated answer: the answer it replaces. */
  regenerates?: string;
  /** A question asked with kernel context: what was attached (kinds and sizes). */
  attachments?: AttachmentSummary[];
  /** A system message announcing new room settings. */
  settings?: RoomSettings;
}

export interface Timings {
  queue_ms?: number;
  ttft_ms?: number;
  tokens_per_second?: number;
}

export interface TokenData {
  message_id: string;
  index: number;
  text: string;
  is_final: boolean;
  finish_reason?: FinishReason;
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  timings?: Timings;
  error?: string;
  /** The prompt's context was cut to fit. */
  truncated?: boolean;
}

export interface AckData {
  message_id: string;
  queue_position: number;
}

export interface PresenceData {
  joined?: Person;
  left?: Person;
  members: Person[];
}

export interface HistoryData {
  messages: Frame<"Text", TextData>[];
  head_seq: number;
  epoch?: string;
}

export interface ResetData {
  head_seq: number;
}

export interface ErrorData {
  message: string;
  code: number;
}

export interface StatsData {
  active_connections?: number;
  rooms?: { count?: number; members?: Record<string, number> };
  model?: ModelInfo & {
    active_sequences?: number;
    queue_depth?: number;
    tokens_per_second?: number;
    tokens_per_second_per_sequence?: number;
    tokens_generated?: number;
  };
  [k: string]: unknown;
}

/** Room events carry `room` and `seq` and are delivered to every member in order. */
export const ROOM_EVENT_TYPES: ReadonlySet<string> = new Set(["Text", "Token", "Presence", "Custom", "Binary"]);

export function isRoomEvent(frame: Frame): boolean {
  return ROOM_EVENT_TYPES.has(frame.type) && typeof frame.seq === "number";
}

/** Room names the server accepts (SPEC section 3). */
export const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

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
