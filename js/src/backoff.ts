// Full-jitter exponential backoff ("Exponential Backoff And Jitter", AWS architecture blog):
// the delay is uniform in [0, min(cap, base * 2^attempt)], which spreads a crowd of clients
// that lost the same server over the whole window instead of reconnecting in lock-step.

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

// Capped at 10 s: a user looking at "reconnecting in N s" after a short outage should never
// wait long once the server is back (with a 30 s cap, a 5 s outage could mean a 27 s wait).
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 10_000 };

/** Upper bound of the delay before retry number `attempt` (0-based). */
export function backoffCeiling(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  // Math.min before the power would overflow for large attempts; 2^31 is plenty.
  const exp = Math.min(Math.max(0, Math.floor(attempt)), 31);
  return Math.min(policy.capMs, policy.baseMs * 2 ** exp);
}

/** A delay drawn uniformly from [0, ceiling); `random` is injectable for tests. */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * backoffCeiling(attempt, policy));
}
