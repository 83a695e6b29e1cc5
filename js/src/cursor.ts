// Where this client stands in its room's event log: the last `seq` seen and the epoch it
// belongs to. With them a dropped socket rejoins with `Join {since, epoch}` and gets only what
// it missed, and every room event reaches consumers once (docs/protocol.md, Rooms).
//
// No I/O and no clock: the client feeds it frames and asks what to send.

import type { Frame, HistoryData, JoinedData, ResetData } from "./protocol";

/** What `Join` says: resume from `since`, or nothing (a fresh join gets the room's History). */
export type JoinData = { since: number; epoch: string } | Record<string, never>;

export class Cursor {
  private _room: string;
  private _lastSeq = 0;
  private _epoch: string | null = null;
  // After a fresh join (or a Reset) the server sends the tokens of answers still running,
  // with seqs at or below the head it announced: each of those is accepted once, by seq.
  private catchUp: { head: number; seen: Set<number> } | null = null;
  // Ids of the older History pages asked for: their head_seq must not move the resume point.
  private readonly pages = new Set<string>();

  constructor(room: string) {
    this._room = room;
  }

  get room(): string {
    return this._room;
  }
  get lastSeq(): number {
    return this._lastSeq;
  }
  get epoch(): string | null {
    return this._epoch;
  }

  /** Resume only when we know which history our seq belongs to; otherwise a fresh History. */
  joinData(): JoinData {
    return this._epoch !== null ? { since: this._lastSeq, epoch: this._epoch } : {};
  }

  /** A room event: true if it is new here, false for a duplicate or another room's leftover. */
  accept(f: Frame): boolean {
    if (this.foreign(f)) return false;
    const seq = f.seq as number;
    if (this.catchUp && seq <= this.catchUp.head) {
      if (this.catchUp.seen.has(seq)) return false;
      this.catchUp.seen.add(seq);
      return true;
    }
    this.catchUp = null; // the first live event ends the catch-up
    if (seq <= this._lastSeq) return false; // replay overlap
    this._lastSeq = seq;
    return true;
  }

  /** `Joined`: false if it is for another room. A fresh join starts at the announced head. */
  joined(f: Frame): boolean {
    if (f.room !== this._room) return false;
    const d = f.data as JoinedData;
    const fresh = this._epoch === null;
    if (typeof d.epoch === "string") this._epoch = d.epoch;
    if (fresh && typeof d.seq === "number") {
      this._lastSeq = d.seq; // History covers ≤ seq; running answers follow as catch-up
      this.catchUp = { head: d.seq, seen: new Set() };
    } else this.catchUp = null;
    return true;
  }

  /** `Reset`: false if it is for another room. The log restarts at the server's head. */
  reset(f: Frame): boolean {
    if (this.foreign(f)) return false;
    this._lastSeq = (f.data as ResetData).head_seq ?? 0;
    this.catchUp = { head: this._lastSeq, seen: new Set() };
    return true;
  }

  /** A History page of older messages is being asked for with this request id. */
  pageRequested(id: string): void {
    this.pages.add(id);
  }

  /**
   * `History`: false if it is for another room. The room's own History (after a join or a
   * Reset) moves the resume point to its head; a page we asked for must not, because events
   * up to that head may still be on their way and would then be dropped as duplicates.
   */
  history(f: Frame): boolean {
    if (this.foreign(f)) return false;
    const paged = f.id !== undefined && this.pages.delete(f.id);
    if (!paged) {
      const d = f.data as HistoryData;
      if (typeof d.epoch === "string") this._epoch = d.epoch;
      if (typeof d.head_seq === "number") this._lastSeq = Math.max(this._lastSeq, d.head_seq);
    }
    return true;
  }

  /** Another room: start from nothing (the next Join is a fresh one). */
  switchTo(room: string): void {
    this._room = room;
    this._lastSeq = 0;
    this._epoch = null;
    this.catchUp = null;
    this.pages.clear(); // pages of the old room are dropped as another room's anyway
  }

  private foreign(f: Frame): boolean {
    return f.room !== undefined && f.room !== this._room;
  }
}
