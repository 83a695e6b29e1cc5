// What a room looks like to the view: messages in order, members, requests in flight,
// model state and figures. Fed by ChatClient events; DOM-free. Emits fine-grained changes so
// the view can append/patch single messages instead of re-rendering the log.
//
// Private answers (asked without a room) live beside the room's log, never in it: they have
// no seq, nobody else sees them, and a Reset of the room must not lose them.

import type {
  AttachmentSummary,
  AuthorKind,
  DeletedData,
  EditedData,
  ErrorData,
  Frame,
  HistoryData,
  JoinedData,
  ModelInfo,
  Person,
  PresenceData,
  RoomSettings,
  RoomSettingsData,
  StatsData,
  TextData,
  Timings,
  TokenData,
  WelcomeData,
} from "./protocol";
import type { MuteNotice } from "./wire";
import type { ChatClient } from "./client";
import { applyStoredFields, normaliseSettings } from "./message-fields";
import type { RequestInfo } from "./outbox";
import type { StatusInfo } from "./connection-state";

export interface ChatMessage {
  key: string; // message_id (a private question: "q:" + its request id)
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
  /** Asked without a room: shown to this user only, never part of the room's log. */
  private: boolean;
  /** A question that starts a new thread (the model forgets the asker's earlier exchanges). */
  threadStart: boolean;
  /** What a question was asked with (kinds and sizes, never the text). */
  attachments: AttachmentSummary[];
  /** An answer: the question it answers (stored answers only). */
  inReplyTo: string | null;
  /** A regenerated answer: the answer it replaces. */
  regenerates: string | null;
  /** An answer that a later one regenerated. */
  replaced: boolean;
  /** The model's context was cut to fit (final Token `truncated`). */
  truncated: boolean;
  /** When its author last edited it (ISO time), or null. */
  edited: string | null;
}

export type Change =
  | { type: "reset"; keepPrivate: boolean }
  | { type: "append"; message: ChatMessage }
  | { type: "prepend"; messages: ChatMessage[] }
  | { type: "update"; message: ChatMessage }
  | { type: "remove"; message: ChatMessage } // deleted: gone for everyone
  | { type: "meta" }; // status, members, model, requests, stats, error, settings

export interface LastRun {
  tokensPerSecond: number | null;
  ttftMs: number | null;
  queueMs: number | null;
  completionTokens: number | null;
}

export interface Notice {
  text: string;
  level: "info" | "error";
}

/** Members a view keeps by name: a room of 1,000 shows its count, and names this many. */
export const MEMBERS_KNOWN = 200;

export class RoomStore {
  readonly messages: ChatMessage[] = [];
  readonly privateMessages: ChatMessage[] = [];
  private readonly byKey = new Map<string, ChatMessage>();
  private readonly privateByKey = new Map<string, ChatMessage>();
  /** People known to be here (the first ones `Joined` listed, then every `Presence` delta),
   *  at most MEMBERS_KNOWN of them; `memberCount` is the server's true count. */
  members: Person[] = [];
  memberCount = 0;
  private readonly known = new Map<string, Person>();
  status: StatusInfo;
  welcome: WelcomeData | null = null;
  model: ModelInfo = {};
  requests = new Map<string, RequestInfo>();
  lastRun: LastRun | null = null;
  stats: StatsData | null = null;
  /**
   * The server's figures (queue, active sequences) are known to be out of date: an answer
   * started or ended since they were taken. The view hides them until fresh Stats arrive.
   */
  figuresStale = false;
  error = "";
  /** A local notice (e.g. "no error to ask about"), shown until dismissed or replaced. */
  notice: Notice | null = null;
  /** The room's own settings as last announced (null: not told, e.g. an older server). */
  settings: RoomSettings | null = null;
  /** This user is muted in the room until then (ISO time; the server's word, from Joined or a notice). */
  mutedUntil: string | null = null;
  /** Others known to be muted here (from the room's notices): username → until. */
  readonly mutes = new Map<string, string>();
  /** `/new` was typed: the next question to the model starts a new thread. */
  pendingNewThread = false;
  /** True when the oldest message shown may have older ones before it. */
  canLoadEarlier = false;
  /** The oldest seq any History gave, deleted messages included: where "Load earlier" goes on from. */
  oldestSeq: number | null = null;
  // Answers to this user's own questions that the store learnt of from Acks, with their prompts.
  private readonly ownAnswers = new Set<string>();
  private readonly answerPrompts = new Map<string, string>();
  private readonly replacedIds = new Set<string>();
  private readonly failedRequests = new Set<string>();
  private readonly removed = new Set<string>(); // deleted message ids: late tokens must not bring one back
  private listeners = new Set<(c: Change) => void>();
  private unsubs: Array<() => void> = [];

  constructor(private readonly client: ChatClient) {
    this.status = client.status;
    this.unsubs.push(
      client.on("status", (s) => {
        this.status = s;
        this.emit({ type: "meta" });
      }),
      client.on("reset", (r) => this.clear(r.reason === "room")),
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

  /** The server says this user moderates its rooms (Welcome). */
  get isModerator(): boolean {
    return this.welcome?.user?.moderator === true;
  }

  /** Requests of this client that are still open (for Stop buttons and queue positions). */
  get openRequests(): RequestInfo[] {
    return [...this.requests.values()].filter((r) => r.type === "Generate");
  }

  /** The newest answer to this user's own question, if it is finished: the one "Regenerate" is offered on. */
  get newestOwnAnswer(): ChatMessage | null {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const m = this.messages[i];
      if (!m || m.kind !== "assistant" || !this.isOwnAnswer(m)) continue;
      return m.streaming ? null : m;
    }
    return null;
  }

  /** The text of the question an answer answers, when known. */
  questionFor(answerKey: string): string | null {
    const known = this.answerPrompts.get(answerKey);
    if (known !== undefined) return known;
    const answer = this.byKey.get(answerKey);
    const question = answer?.inReplyTo ? this.byKey.get(answer.inReplyTo) : undefined;
    return question ? question.content : null;
  }

  setPendingNewThread(on: boolean): void {
    if (this.pendingNewThread === on) return;
    this.pendingNewThread = on;
    this.emit({ type: "meta" });
  }

  /** Use up a pending `/new`: true when the question being asked starts a new thread. */
  takePendingNewThread(): boolean {
    const was = this.pendingNewThread;
    this.setPendingNewThread(false);
    return was;
  }

  showNotice(text: string, level: Notice["level"] = "info"): void {
    this.notice = { text, level };
    this.emit({ type: "meta" });
  }

  /** The user closed the notice line: forget the local notice and the last request error. */
  dismissNotice(): void {
    this.notice = null;
    this.error = "";
    this.emit({ type: "meta" });
  }

  private emit(c: Change): void {
    for (const cb of [...this.listeners]) cb(c);
  }

  private clear(roomChanged: boolean): void {
    this.messages.length = 0;
    this.byKey.clear();
    this.canLoadEarlier = false;
    this.oldestSeq = null;
    if (roomChanged) {
      this.privateMessages.length = 0;
      this.privateByKey.clear();
      this.pendingNewThread = false;
      this.settings = null;
      this.ownAnswers.clear();
      this.answerPrompts.clear();
      this.replacedIds.clear();
      this.removed.clear();
      this.mutes.clear();
      this.mutedUntil = null;
    }
    this.emit({ type: "reset", keepPrivate: !roomChanged });
  }

  private markFiguresStale(): void {
    this.figuresStale = true;
  }

  private onRequest(r: RequestInfo): void {
    if (r.private) this.trackPrivateRequest(r);
    else if (r.type === "Generate" && r.messageId && !this.ownAnswers.has(r.messageId)) {
      this.ownAnswers.add(r.messageId);
      this.answerPrompts.set(r.messageId, r.text);
      if (r.regenerate) this.markReplaced(r.regenerate);
      const answer = this.byKey.get(r.messageId);
      if (answer) this.emit({ type: "update", message: answer });
    }
    if (r.phase === "done" || r.phase === "dropped" || r.phase === "failed") {
      this.requests.delete(r.id);
      if (r.phase === "failed" && r.error) {
        this.error = `${r.type === "Text" ? "Message not sent" : "The model did not answer"}: ${r.error}`;
        if (this.failedRequests.size > 64) this.failedRequests.clear(); // failures without an Error frame
        this.failedRequests.add(r.id); // its Error frame follows: already said
      }
    } else this.requests.set(r.id, r);
    this.emit({ type: "meta" });
  }

  /** A private question shows at once, marked private; a failure ends it (or its answer) visibly. */
  private trackPrivateRequest(r: RequestInfo): void {
    const qKey = `q:${r.id}`;
    let question = this.privateByKey.get(qKey);
    if (!question) {
      question = this.newMessage(qKey, "user", this.welcome?.user ?? { username: "", name: "you" }, r.text);
      question.own = true;
      question.private = true;
      this.addPrivate(question);
    }
    if (r.phase !== "failed" && r.phase !== "dropped") return;
    const answer = r.messageId ? this.privateByKey.get(r.messageId) : undefined;
    const target = answer ?? question;
    target.streaming = false;
    target.finishReason = r.phase === "dropped" ? "cancelled" : "error";
    target.finishError = r.phase === "dropped" ? null : r.error;
    this.emit({ type: "update", message: target });
  }

  private addPrivate(m: ChatMessage): void {
    this.privateByKey.set(m.key, m);
    this.privateMessages.push(m);
    this.emit({ type: "append", message: m });
  }

  private markReplaced(answerKey: string): void {
    this.replacedIds.add(answerKey);
    const old = this.byKey.get(answerKey);
    if (old && !old.replaced) {
      old.replaced = true;
      this.emit({ type: "update", message: old });
    }
  }

  private addMembers(people: Person[]): void {
    for (const p of people) if (this.known.size < MEMBERS_KNOWN || this.known.has(p.username)) this.known.set(p.username, p);
    this.members = [...this.known.values()];
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
        const d = f.data as JoinedData;
        this.known.clear();
        this.addMembers(d.members ?? []);
        this.memberCount = typeof d.count === "number" ? d.count : this.known.size;
        if (d.settings && typeof d.settings === "object") this.settings = normaliseSettings(d.settings);
        this.mutedUntil = typeof d.muted_until === "string" ? d.muted_until : null;
        this.error = "";
        this.emit({ type: "meta" });
        break;
      }
      case "Presence": {
        const d = f.data as PresenceData;
        for (const gone of d.left ?? []) this.known.delete(gone.username);
        this.addMembers(d.joined ?? []);
        this.memberCount = typeof d.count === "number" ? d.count : this.known.size;
        this.emit({ type: "meta" });
        break;
      }
      case "Text":
        this.upsertText(f.data as TextData, f.seq ?? null, false);
        break;
      case "Token":
        // Room tokens always carry a seq; a Token without one is a private completion's.
        if (typeof f.seq === "number") this.onToken(f.data as TokenData, f.seq);
        else this.onPrivateToken(f.data as TokenData);
        break;
      case "History":
        this.onHistory(f);
        break;
      case "Deleted":
        this.remove((f.data as DeletedData).message_id);
        break;
      case "Edited": {
        const d = f.data as EditedData;
        const msg = this.byKey.get(d.message_id);
        if (msg && typeof d.content === "string") {
          msg.content = d.content;
          msg.edited = d.edited || new Date().toISOString();
          this.emit({ type: "update", message: msg });
        }
        break;
      }
      case "RoomSettings": {
        this.settings = normaliseSettings(f.data as RoomSettingsData);
        this.emit({ type: "meta" });
        break;
      }
      case "Stats": {
        this.stats = f.data as StatsData;
        this.figuresStale = false;
        if (this.stats.model) this.model = { ...this.model, ...this.stats.model };
        this.emit({ type: "meta" });
        break;
      }
      case "Error": {
        const d = f.data as ErrorData;
        // Errors answering our own requests are reported through the request lifecycle.
        const ours = !!f.id && (this.requests.has(f.id) || this.failedRequests.delete(f.id));
        if (!ours) this.error = d.code ? `${d.message} (${d.code})` : d.message;
        this.emit({ type: "meta" });
        break;
      }
      default:
        break;
    }
  }

  /** A message was deleted: it leaves the log for good (a late token or a tombstone never brings it back). */
  private remove(key: string): void {
    if (typeof key !== "string") return;
    this.removed.add(key);
    const msg = this.byKey.get(key);
    if (!msg) return;
    this.byKey.delete(key);
    const at = this.messages.indexOf(msg);
    if (at >= 0) this.messages.splice(at, 1);
    this.emit({ type: "remove", message: msg });
  }

  /** A notice that someone was muted or unmuted: remember it (and say so when it is this user). */
  private noteMute(notice: MuteNotice): void {
    if (typeof notice.username !== "string") return;
    if (notice.until) this.mutes.set(notice.username, notice.until);
    else this.mutes.delete(notice.username);
    if (notice.username === this.welcome?.user?.username) this.mutedUntil = notice.until ?? null;
    this.emit({ type: "meta" });
  }

  private isOwnAuthor(author: Person | undefined): boolean {
    const me = this.welcome?.user?.username;
    return !!me && author?.username === me;
  }

  /** An answer to a question this user asked: theirs to delete. */
  ownsAnswer(m: ChatMessage): boolean {
    return this.isOwnAnswer(m);
  }

  /** An answer to a question this user asked (typed here, or posted by their own kernel). */
  private isOwnAnswer(m: ChatMessage): boolean {
    if (m.private) return false;
    if (this.ownAnswers.has(m.key)) return true;
    const question = m.inReplyTo ? this.byKey.get(m.inReplyTo) : undefined;
    return !!question && (question.kind === "user" || question.kind === "bot") && this.isOwnAuthor(question.author);
  }

  private newMessage(key: string, kind: AuthorKind, author: Person, content: string): ChatMessage {
    return {
      key,
      seq: null,
      kind,
      author: { username: author.username ?? "", name: author.name ?? author.username ?? "" },
      content,
      created: new Date().toISOString(),
      streaming: false,
      finishReason: null,
      finishError: null,
      own: false,
      private: false,
      threadStart: false,
      attachments: [],
      inReplyTo: null,
      regenerates: null,
      replaced: false,
      truncated: false,
      edited: null,
    };
  }

  private upsertText(d: TextData, seq: number | null, quiet: boolean): ChatMessage | null {
    if (!d || typeof d.message_id !== "string") return null;
    if (d.deleted === true || this.removed.has(d.message_id)) {
      this.remove(d.message_id); // a tombstone: the message is gone
      return null;
    }
    if (d.author?.kind === "system" && d.mute && typeof d.mute === "object") this.noteMute(d.mute);
    // A stored answer says how it ended (an answer cut by a server shutdown: "error", and why).
    const finishReason = typeof d.finish_reason === "string" && d.finish_reason ? d.finish_reason : null;
    const finishError = typeof d.error === "string" && d.error ? d.error : null;
    if (d.author?.kind === "system" && d.settings && typeof d.settings === "object") {
      this.settings = normaliseSettings(d.settings);
      this.emit({ type: "meta" });
    }
    if (typeof d.regenerates === "string" && d.regenerates) this.markReplaced(d.regenerates);
    const existing = this.byKey.get(d.message_id);
    if (existing) {
      // The same message again (History after a live stream): the stored text is authoritative.
      existing.content = String(d.content ?? "");
      existing.streaming = false;
      if (finishReason) existing.finishReason = finishReason;
      if (finishError) existing.finishError = finishError;
      if (seq !== null) existing.seq = seq;
      applyStoredFields(existing, d);
      if (!quiet) this.emit({ type: "update", message: existing });
      return existing;
    }
    const kind = d.author?.kind ?? "user";
    const msg = this.newMessage(d.message_id, kind, d.author ?? { username: "", name: "" }, String(d.content ?? ""));
    msg.seq = seq;
    msg.created = d.created ?? msg.created;
    msg.finishReason = kind === "assistant" ? finishReason : null;
    msg.finishError = kind === "assistant" ? finishError : null;
    msg.own = kind === "user" && this.isOwnAuthor(d.author);
    msg.replaced = this.replacedIds.has(msg.key);
    applyStoredFields(msg, d);
    this.byKey.set(msg.key, msg);
    if (!quiet) {
      this.messages.push(msg);
      this.emit({ type: "append", message: msg });
    }
    return msg;
  }

  private onToken(d: TokenData, seq: number): void {
    if (!d || typeof d.message_id !== "string" || this.removed.has(d.message_id)) return;
    let msg = this.byKey.get(d.message_id);
    if (!msg) {
      msg = this.newMessage(d.message_id, "assistant", { username: "", name: this.model.name ?? "model" }, "");
      msg.seq = seq;
      msg.streaming = true;
      msg.replaced = this.replacedIds.has(msg.key);
      this.byKey.set(msg.key, msg);
      this.messages.push(msg);
      this.markFiguresStale(); // one more answer running than the last Stats said
      this.emit({ type: "append", message: msg });
    }
    this.streamInto(msg, d);
  }

  private onPrivateToken(d: TokenData): void {
    if (!d || typeof d.message_id !== "string") return;
    let msg = this.privateByKey.get(d.message_id);
    if (!msg) {
      msg = this.newMessage(d.message_id, "assistant", { username: "", name: this.model.name ?? "model" }, "");
      msg.private = true;
      msg.streaming = true;
      this.markFiguresStale();
      this.addPrivate(msg);
    }
    this.streamInto(msg, d);
  }

  private streamInto(msg: ChatMessage, d: TokenData): void {
    if (!msg.streaming) return; // already complete (History or the final token won)
    msg.content += d.text ?? "";
    if (d.is_final) {
      msg.streaming = false;
      msg.finishReason = d.finish_reason ?? "stop";
      if (typeof d.error === "string" && d.error) msg.finishError = d.error;
      if (d.truncated === true) msg.truncated = true;
      if ((d.timings || d.usage) && msg.finishReason !== "error") {
        this.lastRun = {
          tokensPerSecond: d.timings?.tokens_per_second ?? null,
          ttftMs: d.timings?.ttft_ms ?? null,
          queueMs: (d.timings as Timings | undefined)?.queue_ms ?? null,
          completionTokens: d.usage?.completion_tokens ?? null,
        };
      }
      this.markFiguresStale(); // the answer that ended was counted as running
      this.emit({ type: "meta" });
    }
    this.emit({ type: "update", message: msg });
  }

  private onHistory(f: Frame): void {
    const d = f.data as HistoryData;
    const list = Array.isArray(d.messages) ? d.messages : [];
    const fresh: ChatMessage[] = [];
    let tombstones = 0;
    for (const m of list) {
      if (!m || typeof m !== "object") continue;
      if (typeof m.seq === "number" && (this.oldestSeq === null || m.seq < this.oldestSeq)) this.oldestSeq = m.seq;
      if (m.data?.deleted === true) tombstones += 1;
      const known = m.data?.message_id ? this.byKey.has(m.data.message_id) : false;
      const msg = this.upsertText(m.data, m.seq ?? null, true);
      if (msg && !known) fresh.push(msg);
      else if (msg && known) this.emit({ type: "update", message: msg });
    }
    if (fresh.length === 0) {
      // Nothing we did not have: there is nothing earlier to load either, unless the page
      // held only deleted messages (a flood removed): older ones may be before them.
      this.canLoadEarlier = tombstones > 0 && (this.oldestSeq ?? 0) > 1;
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
    this.canLoadEarlier = Math.min(fresh[0]?.seq ?? 0, this.oldestSeq ?? Infinity) > 1;
    this.emit({ type: "meta" });
  }
}
