// What a room looks like to the view: messages in order, members, requests in flight,
// model state and figures. Fed by ChatClient events; DOM-free. Emits fine-grained changes so
// the view can append/patch single messages instead of re-rendering the log.

import type {
  AuthorKind,
  ErrorData,
  Frame,
  HistoryData,
  JoinedData,
  ModelInfo,
  Person,
  PresenceData,
  StatsData,
  TextData,
  Timings,
  TokenData,
  WelcomeData,
} from "./protocol";
import type { ChatClient, RequestInfo, StatusInfo } from "./socket";

export interface ChatMessage {
  key: string; // message_id
  seq: number | null;
  kind: AuthorKind;
  author: Person;
  content: string;
  created: string; // ISO time
  streaming: boolean;
  finishReason: string | null;
  /** Why a generation ended with finish_reason "error". */
  finishError: string | null;
  own: boolean;
}

export type Change =
  | { type: "reset" }
  | { type: "append"; message: ChatMessage }
  | { type: "prepend"; messages: ChatMessage[] }
  | { type: "update"; message: ChatMessage }
  | { type: "meta" }; // status, members, model, requests, stats, error

export interface LastRun {
  tokensPerSecond: number | null;
  ttftMs: number | null;
  queueMs: number | null;
  completionTokens: number | null;
}

export class RoomStore {
  readonly messages: ChatMessage[] = [];
  private readonly byKey = new Map<string, ChatMessage>();
  members: Person[] = [];
  status: StatusInfo;
  welcome: WelcomeData | null = null;
  model: ModelInfo = {};
  requests = new Map<string, RequestInfo>();
  lastRun: LastRun | null = null;
  stats: StatsData | null = null;
  error = "";
  /** True when the oldest message shown may have older ones before it. */
  canLoadEarlier = false;
  private listeners = new Set<(c: Change) => void>();
  private unsubs: Array<() => void> = [];

  constructor(private readonly client: ChatClient) {
    this.status = client.status;
    this.unsubs.push(
      client.on("status", (s) => {
        this.status = s;
        this.emit({ type: "meta" });
      }),
      client.on("reset", () => this.clear()),
      client.on("frame", (f) => this.apply(f)),
      client.on("request", (r) => this.onRequest(r)),
    );
  }

  dispose(): void {
    for (const u of this.unsubs) u();
    this.unsubs = [];
    this.listeners.clear();
  }

  subscribe(cb: (c: Change) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Requests of this client that are still open (for Stop buttons and queue positions). */
  get openRequests(): RequestInfo[] {
    return [...this.requests.values()].filter((r) => r.type === "Generate");
  }

  private emit(c: Change): void {
    for (const cb of [...this.listeners]) cb(c);
  }

  private clear(): void {
    this.messages.length = 0;
    this.byKey.clear();
    this.canLoadEarlier = false;
    this.emit({ type: "reset" });
  }

  private onRequest(r: RequestInfo): void {
    if (r.phase === "done" || r.phase === "dropped" || r.phase === "failed") {
      this.requests.delete(r.id);
      if (r.phase === "failed" && r.error) this.error = r.error;
    } else this.requests.set(r.id, r);
    this.emit({ type: "meta" });
  }

  /** Apply one accepted frame from the client. */
  apply(f: Frame): void {
    switch (f.type) {
      case "Welcome": {
        this.welcome = f.data as WelcomeData;
        this.model = { ...(this.welcome.model ?? {}) };
        this.emit({ type: "meta" });
        break;
      }
      case "Joined": {
        this.members = (f.data as JoinedData).members ?? this.members;
        this.error = "";
        this.emit({ type: "meta" });
        break;
      }
      case "Presence": {
        this.members = (f.data as PresenceData).members ?? this.members;
        this.emit({ type: "meta" });
        break;
      }
      case "Text":
        this.upsertText(f.data as TextData, f.seq ?? null, false);
        break;
      case "Token":
        this.onToken(f.data as TokenData, f.seq ?? null);
        break;
      case "History":
        this.onHistory(f);
        break;
      case "Stats": {
        this.stats = f.data as StatsData;
        if (this.stats.model) this.model = { ...this.model, ...this.stats.model };
        this.emit({ type: "meta" });
        break;
      }
      case "Error": {
        const d = f.data as ErrorData;
        // Errors answering our own requests are reported through the request lifecycle.
        if (!(f.id && this.requests.has(f.id))) this.error = d.code ? `${d.message} (${d.code})` : d.message;
        this.emit({ type: "meta" });
        break;
      }
      default:
        break;
    }
  }

  private isOwn(author: Person | undefined): boolean {
    const me = this.welcome?.user?.username;
    return !!me && author?.username === me;
  }

  private upsertText(d: TextData, seq: number | null, quiet: boolean): ChatMessage | null {
    if (!d || typeof d.message_id !== "string") return null;
    // A stored answer says how it ended (an answer cut by a server shutdown: "error", and why).
    const finishReason = typeof d.finish_reason === "string" && d.finish_reason ? d.finish_reason : null;
    const finishError = typeof d.error === "string" && d.error ? d.error : null;
    const existing = this.byKey.get(d.message_id);
    if (existing) {
      // The same message again (History after a live stream): the stored text is authoritative.
      existing.content = String(d.content ?? "");
      existing.streaming = false;
      if (finishReason) existing.finishReason = finishReason;
      if (finishError) existing.finishError = finishError;
      if (seq !== null) existing.seq = seq;
      if (!quiet) this.emit({ type: "update", message: existing });
      return existing;
    }
    const kind = d.author?.kind ?? "user";
    const msg: ChatMessage = {
      key: d.message_id,
      seq,
      kind,
      author: { username: d.author?.username ?? "", name: d.author?.name ?? d.author?.username ?? "" },
      content: String(d.content ?? ""),
      created: d.created ?? new Date().toISOString(),
      streaming: false,
      finishReason: kind === "assistant" ? finishReason : null,
      finishError: kind === "assistant" ? finishError : null,
      own: kind === "user" && this.isOwn(d.author),
    };
    this.byKey.set(msg.key, msg);
    if (!quiet) {
      this.messages.push(msg);
      this.emit({ type: "append", message: msg });
    }
    return msg;
  }

  private onToken(d: TokenData, seq: number | null): void {
    if (!d || typeof d.message_id !== "string") return;
    let msg = this.byKey.get(d.message_id);
    if (!msg) {
      const name = this.model.name ?? "model";
      msg = {
        key: d.message_id,
        seq,
        kind: "assistant",
        author: { username: "", name },
        content: "",
        created: new Date().toISOString(),
        streaming: true,
        finishReason: null,
        finishError: null,
        own: false,
      };
      this.byKey.set(msg.key, msg);
      this.messages.push(msg);
      this.emit({ type: "append", message: msg });
    }
    if (!msg.streaming) return; // already complete (History or the final token won)
    msg.content += d.text ?? "";
    if (d.is_final) {
      msg.streaming = false;
      msg.finishReason = d.finish_reason ?? "stop";
      if (typeof d.error === "string" && d.error) msg.finishError = d.error;
      if ((d.timings || d.usage) && msg.finishReason !== "error") {
        this.lastRun = {
          tokensPerSecond: d.timings?.tokens_per_second ?? null,
          ttftMs: d.timings?.ttft_ms ?? null,
          queueMs: (d.timings as Timings | undefined)?.queue_ms ?? null,
          completionTokens: d.usage?.completion_tokens ?? null,
        };
      }
      this.emit({ type: "meta" });
    }
    this.emit({ type: "update", message: msg });
  }

  private onHistory(f: Frame): void {
    const d = f.data as HistoryData;
    const list = Array.isArray(d.messages) ? d.messages : [];
    const fresh: ChatMessage[] = [];
    for (const m of list) {
      if (!m || typeof m !== "object") continue;
      const known = m.data?.message_id ? this.byKey.has(m.data.message_id) : false;
      const msg = this.upsertText(m.data, m.seq ?? null, true);
      if (msg && !known) fresh.push(msg);
      else if (msg && known) this.emit({ type: "update", message: msg });
    }
    if (fresh.length === 0) {
      // Nothing we did not have: there is nothing earlier to load either.
      this.canLoadEarlier = false;
      this.emit({ type: "meta" });
      return;
    }
    const oldestShown = this.messages[0]?.seq ?? Number.POSITIVE_INFINITY;
    const newestFresh = fresh[fresh.length - 1]?.seq ?? 0;
    if (this.messages.length > 0 && newestFresh < oldestShown) {
      this.messages.unshift(...fresh);
      this.emit({ type: "prepend", messages: fresh });
    } else {
      for (const msg of fresh) {
        this.messages.push(msg);
        this.emit({ type: "append", message: msg });
      }
    }
    // Older messages may exist when the oldest one we got is not the room's first event.
    this.canLoadEarlier = (fresh[0]?.seq ?? 0) > 1;
    this.emit({ type: "meta" });
  }
}
