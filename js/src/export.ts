// "Export" in the room header: the room's transcript downloaded through the server's REST API
// (`GET llmchat/api/rooms/{room}/export`, moderators only), saved as a file by the browser.

import type { ServerConfig } from "./config";

export type Notify = (text: string, level: "info" | "error") => void;

/** An exporter for the page's server; `save` hands the file to the browser (a link click by default). */
export function makeExporter(
  cfg: ServerConfig,
  room: () => string,
  notify: Notify,
  fetchFn: typeof fetch = globalThis.fetch,
  save: (blob: Blob, filename: string) => void = download,
): (format: "md" | "json") => void {
  return (format) => {
    const name = room();
    const url = new URL(`llmchat/api/rooms/${encodeURIComponent(name)}/export`, cfg.baseUrl);
    url.searchParams.set("format", format);
    const headers: Record<string, string> = {};
    if (cfg.token) headers.Authorization = `token ${cfg.token}`;
    void (async () => {
      try {
        const res = await fetchFn(url.href, { credentials: "same-origin", headers, cache: "no-store" });
        if (!res.ok) {
          const body = (await res.json().catch(() => null)) as { message?: string } | null;
          notify(`Export failed: ${body?.message ?? `HTTP ${res.status}`}`, "error");
          return;
        }
        save(await res.blob(), `${name}.${format}`);
        notify(`Exported #${name} as ${name}.${format}.`, "info");
      } catch (err) {
        notify(`Export failed: ${String(err)}`, "error");
      }
    })();
  };
}

function download(blob: Blob, filename: string): void {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
