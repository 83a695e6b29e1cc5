// The resume point on its own: no socket, no clock, frames in and answers out.
import { describe, expect, it } from "vitest";
import { Cursor } from "../src/cursor";
import type { Frame } from "../src/protocol";
import { text, token } from "./fakes";

const joined = (seq: number, epoch = "e1", room = "general"): Frame => ({ type: "Joined", room, data: { seq, epoch, members: [] } });
const history = (head: number, epoch = "e1", id?: string): Frame => ({
  type: "History",
  ...(id ? { id } : {}),
  room: "general",
  data: { messages: [], head_seq: head, epoch },
});

/** Feed room events; returns the seqs accepted. */
const feed = (c: Cursor, frames: Frame[]): number[] => frames.filter((f) => c.accept(f)).map((f) => f.seq as number);

describe("Cursor", () => {
  it("joins fresh until it knows the epoch, then resumes from the last seq", () => {
    const c = new Cursor("general");
    expect(c.joinData()).toEqual({});
    c.joined(joined(41, "9f3a"));
    expect(c.joinData()).toEqual({ since: 41, epoch: "9f3a" });
    feed(c, [text(42, "m42", "a")]);
    expect(c.joinData()).toEqual({ since: 42, epoch: "9f3a" });
  });

  it("accepts each seq once and never goes back", () => {
    const c = new Cursor("general");
    c.joined(joined(41));
    expect(feed(c, [42, 43, 43, 41, 42, 44].map((s) => text(s, `m${s}`, "x")))).toEqual([42, 43, 44]);
    expect(c.lastSeq).toBe(44);
  });

  it("after a fresh join takes the running answers' tokens at or below the head once each, until the first live event", () => {
    const c = new Cursor("general");
    c.joined(joined(47));
    expect(c.lastSeq).toBe(47);
    const accepted = feed(c, [
      ...[41, 42, 44, 44, 46].map((s) => token(s, "m-run", s - 41, "t")),
      text(48, "m48", "live"),
      token(46, "m-run", 5, "late duplicate"), // catch-up is over: ≤ last seq is a duplicate
    ]);
    expect(accepted).toEqual([41, 42, 44, 46, 48]);
    expect(c.lastSeq).toBe(48);
  });

  it("a resumed join has no catch-up: replays at or below the last seq are dropped", () => {
    const c = new Cursor("general");
    c.joined(joined(41));
    feed(c, [text(44, "m44", "x")]);
    c.joined(joined(46)); // same epoch: the server replays seq > since
    expect(feed(c, [token(44, "m43", 1, "lo"), token(45, "m43", 2, "!"), token(46, "m43", 3, "", true)])).toEqual([45, 46]);
  });

  it("ignores what belongs to another room", () => {
    const c = new Cursor("general");
    c.joined(joined(41));
    expect(c.accept(text(99, "other", "elsewhere", "user", "random"))).toBe(false);
    expect(c.joined(joined(5, "x", "random"))).toBe(false);
    expect(c.reset({ type: "Reset", room: "random", data: { head_seq: 1 } })).toBe(false);
    expect(c.history({ ...history(99), room: "random" })).toBe(false);
    expect(c.lastSeq).toBe(41);
    expect(c.epoch).toBe("e1");
  });

  it("Reset starts the log again at the server's head, with a catch-up", () => {
    const c = new Cursor("general");
    c.joined(joined(41, "old"));
    feed(c, [text(42, "m42", "a")]);
    expect(c.reset({ type: "Reset", room: "general", data: { head_seq: 7 } })).toBe(true);
    expect(c.lastSeq).toBe(7);
    c.history(history(7, "new"));
    expect(c.epoch).toBe("new");
    expect(feed(c, [token(6, "m-run", 0, "t"), token(6, "m-run", 0, "t"), text(8, "m8", "after")])).toEqual([6, 8]);
  });

  it("the room's own History moves the resume point forward (never back) and sets the epoch", () => {
    const c = new Cursor("general");
    c.joined(joined(41));
    c.history(history(45, "e2"));
    expect([c.lastSeq, c.epoch]).toEqual([45, "e2"]);
    c.history(history(30, "e2"));
    expect(c.lastSeq).toBe(45);
  });

  it("an older History page it asked for moves neither the seq nor the epoch", () => {
    const c = new Cursor("general");
    c.joined(joined(41, "9f3a"));
    c.pageRequested("h1");
    expect(c.history(history(44, "other", "h1"))).toBe(true); // handed on, to be prepended
    expect([c.lastSeq, c.epoch]).toEqual([41, "9f3a"]);
    expect(feed(c, [text(42, "m42", "still coming"), text(43, "m43", "also")])).toEqual([42, 43]);
    // A History whose id was not asked for is the room's own.
    c.history(history(50, "9f3a", "h-unknown"));
    expect(c.lastSeq).toBe(50);
  });

  it("another room starts from nothing", () => {
    const c = new Cursor("general");
    c.joined(joined(41));
    c.pageRequested("h1");
    c.switchTo("random");
    expect([c.room, c.lastSeq, c.epoch]).toEqual(["random", 0, null]);
    expect(c.joinData()).toEqual({});
    expect(c.joined(joined(3, "r1", "random"))).toBe(true);
    expect(c.lastSeq).toBe(3);
  });
});
