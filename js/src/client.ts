// ChatClient: one room over one healed connection, for the store and the widget. It composes
// three parts and routes frames between them:
//
//   transport.ts  the socket: connect, backoff, heartbeat, kernel fallback, status
//   cursor.ts     the resume point: seq, epoch, catch-up, deduplication
//   outbox.ts     the requests: queued, sent, acknowledged, cancelled, done
//
// Consumers see each room event once (duplicates are dropped by the cursor), in order.

import { Cursor } from "./cursor";
import { Outbox, type RequestInfo } from "./outbox";
import {
  isRoomEvent,
  newId,
  type ErrorData,
  type Frame,
  type GenerateConfig,
  type GenerateExtras,
  type RoomSettingsChange,
  type TokenData,
  type WelcomeData,
} from "./protocol";
import type { ConnectionState, StatusInfo } from "./connection-state";
import { Transport, type TransportOptions } from "./transport";

export interface ClientOptions extends TransportOptions {
  room: string;
}

type Listener<T> = (value: T) => void;

interface EventMap {
  status: StatusInfo;
  frame: Frame; // accepted frames, room events deduplicated
  reset: { reason: "reset" | "room" }; // the log must be cleared (Reset, or another room)
  request: RequestInfo; // lifecycle of requests made through this client
}

export class ChatClient {
  private readonly listeners: { [K in keyof EventMap]: Set<Listener<EventMap[K]>> } = {
    status: new Set(),
    frame: new Set(),
    reset: new Set(),
    request: new Set(),
  };
  private readonly cursor: Cursor;
  private readonly outbox: Outbox;
  private readonly transport: Transport;
  private _welcome: WelcomeData | null = null;
  private joinId: string | null = null;

  constructor(opts: ClientOptions) {
    this.cursor = new Cursor(opts.room);
    this.outbox = new Outbox({
      send: (frame) => this.sendNow(frame),
      changed: (info) => this.emit("request", info),
      sizeLimit: () => this._welcome?.limits?.message_size_limit,
    });
    this.transport = new Transport(opts, {
      opened: () => this.sendJoin(),
      frame: (f) => this.handleFrame(f),
      lost: () => this.outbox.connectionLost(),
      closed: (code) => {
        if (code === 1009) this.outbox.lastTooBig();
      },
      status: (info) => this.emit("status", info),
    });
  }

  // ---- read-only state -------------------------------------------------------------

  get room(): string {
    return this.cursor.room;
  }
  get lastSeq(): number {
    return this.cursor.lastSeq;
  }
  get epoch(): string | null {
    return this.cursor.epoch;
  }
  get welcome(): WelcomeData | null {
    return this._welcome;
  }
  get status(): StatusInfo {
    return this.transport.status;
  }
  /** The connection's state machine, as one value (for tests and debugging). */
  get state(): ConnectionState {
    return this.transport.state;
  }
  get pending(): RequestInfo[] {
    return this.outbox.pending;
  }

  on<K extends keyof EventMap>(event: K, cb: Listener<EventMap[K]>): () => void {
    this.listeners[event].add(cb);
    return () => this.listeners[event].delete(cb);
  }

  // ---- lifecycle -------------------------------------------------------------------

  start(): void {
    this.transport.start();
  }

  /** Close everything for good (widget model destroyed). */
  stop(): void {
    this.transport.stop();
  }

  /** Retry at once (button, `online`, tab visible again); on a live socket check it with a Ping. */
  retryNow(): void {
    this.transport.retryNow();
  }

  // ---- requests --------------------------------------------------------------------

  /** Post a chat message; queued while offline, sent once (at most once) when back. */
  sendText(content: string, id: string = newId("t")): string {
    return this.outbox.add({ type: "Text", id, room: this.room, data: { content } }, "Text", content);
  }

  /**
   * Ask the model in the room; re-sent with the same id until acknowledged (the server dedupes).
   * `extras.private`: no room, the answer streams to this connection only; such a request is
   * sent at most once, because the server drops a private answer when its connection closes.
   */
  generate(prompt: string, config?: GenerateConfig, id: string = newId("g"), extras: GenerateExtras = {}): string {
    const data: Record<string, unknown> = { prompt };
    if (config && Object.keys(config).length > 0) data.config = config;
    const priv = extras.private === true;
    if (!priv) {
      // Threads, replies and regeneration are about a room; a private question has none.
      if (extras.new_thread) data.new_thread = true;
      if (extras.reply_to) data.reply_to = extras.reply_to;
      if (extras.regenerate) data.regenerate = extras.regenerate;
    }
    if (extras.attachments && extras.attachments.length > 0) data.attachments = extras.attachments;
    const frame: Frame = priv ? { type: "Generate", id, data } : { type: "Generate", id, room: this.room, data };
    return this.outbox.add(frame, "Generate", prompt, {
      private: priv,
      regenerate: priv ? null : (extras.regenerate ?? null),
      newThread: !priv && extras.new_thread === true,
    });
  }

  /** Change the room's own settings (system prompt, context mode); the reply is a `RoomSettings` frame. */
  setRoomSettings(settings: RoomSettingsChange): string | null {
    const id = newId("r");
    return this.sendNow({ type: "RoomSettings", id, room: this.room, data: { ...settings } }) ? id : null;
  }

  /** Remove a message (own, or any for a moderator); everyone gets `Deleted`. Null when not joined. */
  deleteMessage(messageId: string): string | null {
    const id = newId("d");
    return this.sendNow({ type: "Delete", id, room: this.room, data: { message_id: messageId } }) ? id : null;
  }

  /** Replace the content of this user's own message; everyone gets `Edited`. */
  editMessage(messageId: string, content: string): string | null {
    const id = newId("e");
    return this.sendNow({ type: "Edit", id, room: this.room, data: { message_id: messageId, content } }) ? id : null;
  }

  /** A moderator mutes `username` in this room for `seconds` (0: unmute). */
  mute(username: string, seconds: number): string | null {
    const id = newId("m");
    return this.sendNow({ type: "Mute", id, room: this.room, data: { username, seconds } }) ? id : null;
  }

  /** Stop a request: forget it if it never left, otherwise `Cancel` once its message id is known. */
  cancel(id: string): void {
    this.outbox.cancel(id);
  }

  /** Ask for older messages (before `beforeSeq`); the reply arrives as a `History` frame with this id. */
  requestHistory(beforeSeq: number, limit = 50): string | null {
    const id = newId("h");
    if (!this.sendNow({ type: "History", id, room: this.room, data: { before_seq: beforeSeq, limit } })) return null;
    this.cursor.pageRequested(id);
    return id;
  }

  requestStats(): string | null {
    const id = newId("s");
    return this.sendNow({ type: "Stats", id, data: {} }) ? id : null;
  }

  /** Switch rooms on the same socket: leave, forget the old log, join fresh. */
  setRoom(room: string): void {
    if (room === this.room) return;
    if (this.transport.joined) this.sendNow({ type: "Leave", id: newId("l"), room: this.room, data: {} });
    this.outbox.dropAll("room changed");
    this.cursor.switchTo(room);
    this.transport.markRejoining();
    this.emit("reset", { reason: "room" });
    if (this.transport.isOpen) this.sendJoin();
  }

  // ---- frames ----------------------------------------------------------------------

  private sendJoin(): void {
    this.joinId = newId("j");
    this.transport.send({ type: "Join", id: this.joinId, room: this.room, data: this.cursor.joinData() });
  }

  /** Only once joined: requests and room frames wait for `Joined`. */
  private sendNow(frame: Frame): boolean {
    return this.transport.joined && this.transport.send(frame);
  }

  private handleFrame(f: Frame): void {
    if (isRoomEvent(f)) {
      if (!this.cursor.accept(f)) return;
      if (f.type === "Token") this.outbox.token(f.data as TokenData);
      this.emit("frame", f);
      return;
    }
    switch (f.type) {
      case "Welcome":
        this._welcome = f.data as WelcomeData;
        break;
      case "Joined":
        if (!this.cursor.joined(f)) return;
        this.transport.markJoined();
        this.emit("frame", f);
        this.outbox.flush();
        return;
      case "Reset":
        if (!this.cursor.reset(f)) return;
        this.emit("reset", { reason: "reset" });
        break;
      case "History":
        if (!this.cursor.history(f)) return;
        break;
      case "Ack":
        this.outbox.ack(f);
        break;
      case "Error":
        if (f.id === undefined && !this.transport.joined && (f.data as ErrorData).code === 503) {
          // Before any Join is answered, an Error for no request is the server refusing to
          // serve at all (llmchat did not start: a bad setting); its message says why, once:
          // as the connection's failure, not also as an error of the room.
          this.transport.serverRefused(f.data as ErrorData);
          return;
        } else if (!this.outbox.error(f) && f.id !== undefined && f.id === this.joinId && !this.transport.joined) {
          this.transport.joinRefused(f.data as ErrorData);
        }
        break;
      case "Token": // a private completion: not a room event
        this.outbox.token(f.data as TokenData);
        break;
      default:
        break;
    }
    this.emit("frame", f);
  }

  private emit<K extends keyof EventMap>(event: K, value: EventMap[K]): void {
    for (const cb of [...this.listeners[event]]) {
      try {
        cb(value);
      } catch (err) {
        console.error("[llmchat] listener failed", err);
      }
    }
  }
}
