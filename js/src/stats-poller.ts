// Live server figures for the stats line: a Stats request on every join, then every 30 s
// (every 5 s while the model loads, which is how "loading…" clears), and soon after an answer
// starts or ends, because the figures held then counted it wrongly ("generating 1" after the
// answer ended, until the next 30 s poll, was the stale state this fixes).

import type { ChatClient } from "./client";
import type { RoomStore } from "./store";

export interface PollTiming {
  everyMs: number;
  whileLoadingMs: number;
  afterChangeMs: number;
}

export const DEFAULT_POLL: PollTiming = { everyMs: 30_000, whileLoadingMs: 5_000, afterChangeMs: 300 };

/** Start polling; returns the stop function. */
export function pollStats(client: ChatClient, store: RoomStore, timing: PollTiming = DEFAULT_POLL): () => void {
  let periodic: ReturnType<typeof setTimeout> | null = null;
  let refresh: ReturnType<typeof setTimeout> | null = null;
  const poll = (): void => {
    if (periodic) clearTimeout(periodic);
    client.requestStats();
    periodic = setTimeout(poll, store.model.loaded === false ? timing.whileLoadingMs : timing.everyMs);
  };
  const offJoin = client.on("frame", (f) => {
    if (f.type === "Joined") poll();
  });
  const offStore = store.subscribe(() => {
    if (!store.figuresStale || refresh) return;
    refresh = setTimeout(() => {
      refresh = null;
      if (store.figuresStale) client.requestStats();
    }, timing.afterChangeMs);
  });
  return () => {
    offJoin();
    offStore();
    if (periodic) clearTimeout(periodic);
    if (refresh) clearTimeout(refresh);
  };
}
