// The heartbeat on its own: fake timers, a counter for Pings, a flag for "dead".
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Heartbeat } from "../src/heartbeat";

function make() {
  const rec = { pings: 0, dead: 0 };
  const hb = new Heartbeat({ everyMs: 15_000, timeoutMs: 10_000 }, () => (rec.pings += 1), () => (rec.dead += 1));
  return { hb, rec };
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("Heartbeat", () => {
  it("pings every period and calls the socket dead after silence", () => {
    const { hb, rec } = make();
    hb.start();
    vi.advanceTimersByTime(15_000);
    expect(rec).toEqual({ pings: 1, dead: 0 });
    vi.advanceTimersByTime(9_999);
    expect(rec.dead).toBe(0);
    vi.advanceTimersByTime(1);
    expect(rec.dead).toBe(1);
  });

  it("takes any frame as proof of life", () => {
    const { hb, rec } = make();
    hb.start();
    vi.advanceTimersByTime(15_000);
    for (let i = 0; i < 4; i++) {
      expect(rec.pings).toBe(i + 1);
      vi.advanceTimersByTime(9_000);
      hb.alive(); // a frame 9 s after the Ping: in time
      vi.advanceTimersByTime(6_000); // the next Ping
    }
    expect(rec.dead).toBe(0);
  });

  it("checks at once on demand, without a second Ping while one is waiting", () => {
    const { hb, rec } = make();
    hb.check();
    hb.check();
    expect(rec.pings).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(rec.dead).toBe(1);
  });

  it("leaves no timer behind once stopped", () => {
    const { hb, rec } = make();
    hb.start();
    hb.check();
    hb.stop();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(rec).toEqual({ pings: 1, dead: 0 });
  });
});
