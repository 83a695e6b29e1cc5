// Page signals that mean "try again now": the browser is back online, or the tab is visible
// again (timers are throttled in hidden tabs, so a retry may be long overdue).

export interface ClientEnv {
  onOnline(cb: () => void): () => void;
  onVisible(cb: () => void): () => void;
}

/** The signals of this `window`/`document`, or null outside a browser. */
export function browserEnv(): ClientEnv | null {
  if (typeof window === "undefined" || typeof document === "undefined") return null;
  return {
    onOnline(cb) {
      window.addEventListener("online", cb);
      return () => window.removeEventListener("online", cb);
    },
    onVisible(cb) {
      const handler = () => {
        if (document.visibilityState === "visible") cb();
      };
      document.addEventListener("visibilitychange", handler);
      return () => document.removeEventListener("visibilitychange", handler);
    },
  };
}
