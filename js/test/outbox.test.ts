// The requests on their own: a switch for "joined or not" stands in for the connection.
import { describe, expect, it } from "vitest";
import { Outbox, type RequestInfo } from "../src/outbox";
import type { Frame } from "../src/protocol";

function make(limit?: number) {
  const t = { online: false, sent: [] as Frame[], changes: [] as RequestInfo[] };
  const box = new Outbox({
    send: (f) => {
      if (!t.online) return false;
      t.sent.push(f);
      return true;
    },
    changed: (info) => t.changes.push(info),
    sizeLimit: () => limit,
  });
  const sentOf = (type: string) => t.sent.filter((f) => f.type === type);
  const last = () => t.changes.at(-1);
  return { box, t, sentOf, last };
}

const gen = (id: string, room: string | null = "general"): Frame =>
  room === null ? { type: "Generate", id, data: { prompt: "p" } } : { type: "Generate", id, room, data: { prompt: "p" } };
const txt = (id: string): Frame => ({ type: "Text", id, room: "general", data: { content: "hi" } });
const ack = (id: string, message_id: string, queue_position = 0): Frame => ({ type: "Ack", id, data: { message_id, queue_position } });
const NOT_PRIVATE = { private: false, regenerate: null, newThread: false };
const PRIVATE = { private: true, regenerate: null, newThread: false };

describe("Outbox", () => {
  it("queues while offline and sends once joined; a Text is done when sent and never sent again", () => {
    const { box, t, sentOf, last } = make();
    box.add(txt("t1"), "Text", "hi");
    expect(box.pending).toMatchObject([{ id: "t1", phase: "queued" }]);
    t.online = true;
    box.flush();
    expect(sentOf("Text")).toHaveLength(1);
    expect(last()).toMatchObject({ id: "t1", phase: "done" });
    box.flush();
    expect(sentOf("Text")).toHaveLength(1);
    expect(box.pending).toEqual([]);
  });

  it("sends at once when joined", () => {
    const { box, t, sentOf } = make();
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    expect(sentOf("Generate")).toHaveLength(1);
    expect(box.pending).toMatchObject([{ id: "g1", phase: "sent" }]);
  });

  it("re-sends a Generate with the same id until it is acknowledged", () => {
    const { box, t, sentOf } = make();
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    box.flush(); // rejoined before the Ack
    expect(sentOf("Generate").map((f) => f.id)).toEqual(["g1", "g1"]);
    box.ack(ack("g1", "m-1", 2));
    expect(box.pending).toMatchObject([{ phase: "acked", messageId: "m-1", queuePosition: 2 }]);
    box.flush();
    expect(sentOf("Generate")).toHaveLength(2);
  });

  it("ends a re-sent Generate whose answer ended meanwhile (Error 409) as done; a first send's 409 fails", () => {
    const { box, t, last } = make();
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    box.flush(); // rejoined before the Ack came: sent again, after the answer ended
    const answered = "request id 'g1' was already answered (message m-1); send a new id to ask again";
    expect(box.error({ type: "Error", id: "g1", data: { code: 409, message: answered } })).toBe(true);
    expect(last()).toMatchObject({ id: "g1", phase: "done", error: null });
    box.add(gen("g2"), "Generate", "p");
    box.error({ type: "Error", id: "g2", data: { code: 409, message: "not a member of room 'general': send Join first" } });
    expect(last()).toMatchObject({ id: "g2", phase: "failed" });
  });

  it("follows an answer: generating at its first token, done at its final one (with the error, if it failed)", () => {
    const { box, t, last } = make();
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    box.add(gen("g2"), "Generate", "p");
    box.ack(ack("g1", "m-1", 1));
    box.ack(ack("g2", "m-2", 0));
    box.token({ message_id: "m-1", index: 0, text: "Hel", is_final: false });
    expect(box.pending.find((r) => r.id === "g1")?.queuePosition).toBeNull();
    box.token({ message_id: "m-1", index: 1, text: "", is_final: true, finish_reason: "stop" });
    expect(last()).toMatchObject({ id: "g1", phase: "done", error: null });
    box.token({ message_id: "m-2", index: 0, text: "", is_final: true, finish_reason: "error", error: "server shutting down" });
    expect(last()).toMatchObject({ id: "g2", phase: "done", error: "server shutting down" });
    expect(box.pending).toEqual([]);
  });

  it("sends a private question at most once, and ends it when its connection is lost", () => {
    const { box, t, sentOf, last } = make();
    box.add(gen("p-queued", null), "Generate", "p", PRIVATE);
    box.connectionLost(); // it never left: nothing to lose
    expect(box.pending.map((r) => r.id)).toEqual(["p-queued"]);
    t.online = true;
    box.add(gen("p1", null), "Generate", "p", PRIVATE);
    box.flush(); // p1 already went: not again
    expect(sentOf("Generate").map((f) => f.id)).toEqual(["p1", "p-queued"]);
    box.connectionLost();
    expect(t.changes.filter((c) => c.phase === "failed").map((c) => c.id).sort()).toEqual(["p-queued", "p1"]);
    expect(last()?.error).toMatch(/private answer ends with its connection/);
    box.add(gen("g1"), "Generate", "p", NOT_PRIVATE);
    box.connectionLost(); // a room question is not tied to its connection
    expect(box.pending.map((r) => r.id)).toEqual(["g1"]);
  });

  it("cancels: drops what never left, Cancels by message id once known (with the room, or without for a private one)", () => {
    const { box, t, sentOf, last } = make();
    box.add(gen("g0"), "Generate", "p");
    box.cancel("g0");
    expect(last()).toMatchObject({ id: "g0", phase: "dropped" });
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    box.cancel("g1"); // before the Ack: remembered
    expect(last()).toMatchObject({ id: "g1", phase: "cancelling" });
    expect(sentOf("Cancel")).toHaveLength(0);
    box.ack(ack("g1", "m-1"));
    expect(box.pending[0]?.phase).toBe("cancelling");
    expect(sentOf("Cancel")).toMatchObject([{ room: "general", data: { message_id: "m-1" } }]);
    box.flush(); // rejoined: Cancel again, in case the first was lost with the socket
    expect(sentOf("Cancel")).toHaveLength(2);
    box.add(gen("p1", null), "Generate", "p", PRIVATE);
    box.ack(ack("p1", "m-p"));
    box.cancel("p1");
    const cancelPrivate = sentOf("Cancel").at(-1)!;
    expect(cancelPrivate.data).toEqual({ message_id: "m-p" });
    expect(cancelPrivate.room).toBeUndefined();
  });

  it("ends a request the server refused, and says whether an Error was about a request", () => {
    const { box, t, last } = make();
    t.online = true;
    box.add(gen("g1"), "Generate", "p");
    expect(box.error({ type: "Error", id: "j-1", data: { message: "not ours", code: 409 } })).toBe(false);
    expect(box.error({ type: "Error", id: "g1", data: { message: "model not available", code: 503 } })).toBe(true);
    expect(last()).toMatchObject({ id: "g1", phase: "failed", error: "model not available (503)" });
    expect(box.pending).toEqual([]);
  });

  it("refuses locally a frame over the server's size limit, and fails the last one sent on close 1009", () => {
    const { box, t, sentOf, last } = make(200);
    t.online = true;
    box.add({ type: "Text", id: "big", room: "general", data: { content: "x".repeat(300) } }, "Text", "x");
    expect(last()).toMatchObject({ id: "big", phase: "failed", error: "message too big (limit 200 bytes)" });
    expect(sentOf("Text")).toHaveLength(0);
    box.add(gen("g1"), "Generate", "p");
    box.lastTooBig();
    expect(last()).toMatchObject({ id: "g1", phase: "failed", error: "message too big for the server (close 1009)" });
    box.flush();
    expect(sentOf("Generate")).toHaveLength(1);
  });

  it("keeps one request per id, and drops them all on a room change", () => {
    const { box, last } = make();
    box.add(gen("py-1"), "Generate", "p");
    box.add(gen("py-1"), "Generate", "p");
    expect(box.pending).toHaveLength(1);
    box.dropAll("room changed");
    expect(last()).toMatchObject({ id: "py-1", phase: "dropped", error: "room changed" });
    expect(box.pending).toEqual([]);
  });
});
