// What the view's text lines say, worked out from the store without any DOM: the status label,
// the notice line (connection trouble, the model loading, an error), the figures line and a
// request's state. view.ts puts them on the page; tests can read them without a page.

import type { StatusInfo } from "./connection-state";
import type { RequestInfo } from "./outbox";
import type { RoomStore } from "./store";
import { modelNotice } from "./model-badge";

export interface NoticeLine {
  text: string;
  level: "info" | "error";
  /** The user may dismiss it (an error or a local notice, not a lasting condition). */
  dismissable: boolean;
}

/** The status label; "reconnecting in N s" counts down to `retryAt` (as of `now`). */
export function statusLabel(st: StatusInfo, now: number = Date.now()): string {
  switch (st.status) {
    case "connecting":
      return "connecting…";
    case "live":
      return "live";
    case "via_kernel":
      return "via kernel";
    case "failed":
      return "failed";
    case "reconnecting": {
      if (st.retryAt === null) return "reconnecting…";
      const secs = Math.max(0, Math.ceil((st.retryAt - now) / 1000));
      return secs > 0 ? `reconnecting in ${secs} s` : "reconnecting…";
    }
  }
}

/** One line for what the user must know now: connection trouble, the model loading, an error. */
export function noticeLine(s: RoomStore): NoticeLine {
  const parts: string[] = [];
  let level: NoticeLine["level"] = "info";
  if (s.status.status === "via_kernel") {
    parts.push(`Relaying through the kernel${s.status.reason ? ` (${s.status.reason})` : ""}.`);
  } else if (s.status.status === "failed") {
    const reason = s.status.reason || "unknown reason";
    parts.push(`Cannot connect: ${reason}${/[.!?]$/.test(reason) ? "" : "."}`);
    level = "error";
  }
  const aboutModel = modelNotice(s.model);
  if (aboutModel) {
    parts.push(aboutModel.text);
    if (aboutModel.level === "error") level = "error";
  }
  if (s.error && !parts.some((p) => p.includes(s.error))) {
    parts.push(s.error);
    level = "error";
  }
  if (s.notice) {
    parts.push(s.notice.text);
    if (s.notice.level === "error") level = "error";
  }
  return { text: parts.join(" "), level, dismissable: !!(s.error || s.notice) };
}

/** The figures line: the last answer's speed, and the server's queue while its figures are current. */
export function statsLine(s: RoomStore): string {
  const parts: string[] = [];
  const run = s.lastRun;
  if (run?.tokensPerSecond != null && (run.completionTokens ?? 1) > 0) parts.push(`last answer ${run.tokensPerSecond.toFixed(1)} tok/s`);
  if (run?.ttftMs != null) parts.push(`first token ${Math.round(run.ttftMs)} ms`);
  if (run?.queueMs != null && run.queueMs > 0) parts.push(`waited ${Math.round(run.queueMs)} ms`);
  // The server's figures only while they are current: an answer that started or ended since
  // they were taken makes them wrong ("generating 1" after the answer ended) until refreshed.
  const sm = s.figuresStale ? undefined : s.stats?.model;
  if (sm?.queue_depth != null) parts.push(`server queue ${sm.queue_depth}`);
  if (sm?.active_sequences != null) {
    const each = sm.tokens_per_second_per_sequence;
    parts.push(`generating ${sm.active_sequences}` + (sm.active_sequences > 0 && each ? ` at ${each.toFixed(1)} tok/s each` : ""));
  }
  return parts.join(" · ");
}

/** Where one of this user's requests is, in words ("queued, position 2", "generating…"). */
export function requestState(r: RequestInfo, live: boolean): string {
  if (r.phase === "queued") return live ? "sending…" : "waiting for the connection";
  if (r.phase === "sent") return "sent, waiting for the server";
  if (r.phase === "cancelling") return "stopping…";
  if (r.queuePosition !== null && r.queuePosition > 0) return `queued, position ${r.queuePosition}`;
  if (r.queuePosition !== null) return "starting…";
  return "generating…";
}
