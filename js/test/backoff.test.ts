import { describe, expect, it } from "vitest";
import { backoffCeiling, backoffDelay, DEFAULT_BACKOFF } from "../src/backoff";

const policy = { baseMs: 500, capMs: 30_000 };

describe("full-jitter backoff", () => {
  it("doubles the ceiling per attempt up to the cap", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffCeiling(a, policy))).toEqual([
      500, 1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(backoffCeiling(1000, policy)).toBe(30_000); // no overflow
  });

  it("waits at most 10 s by default, from 0.5 s up", () => {
    expect(backoffCeiling(0)).toBe(500);
    expect(backoffCeiling(5)).toBe(10_000);
    expect(backoffCeiling(60)).toBe(10_000);
    expect(DEFAULT_BACKOFF.capMs).toBe(10_000);
  });

  it("draws delays uniformly in [0, ceiling)", () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = backoffCeiling(attempt, policy);
      expect(backoffDelay(attempt, policy, () => 0)).toBe(0);
      expect(backoffDelay(attempt, policy, () => 0.5)).toBe(Math.floor(ceiling / 2));
      expect(backoffDelay(attempt, policy, () => 0.999999)).toBeLessThan(ceiling);
    }
  });

  it("spreads clients out (jitter) and never exceeds the cap", () => {
    const delays = Array.from({ length: 500 }, () => backoffDelay(10, policy));
    expect(Math.max(...delays)).toBeLessThan(30_000);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(new Set(delays).size).toBeGreaterThan(400); // not lock-step
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
    expect(mean).toBeGreaterThan(10_000);
    expect(mean).toBeLessThan(20_000);
  });
});
