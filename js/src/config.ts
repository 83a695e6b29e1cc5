// Finding the Jupyter server that served this page, and how to reach llmchat on it.
//
// JupyterLab 4 / Notebook 7 embed JSON in <script id="jupyter-config-data"> (baseUrl, wsUrl,
// token); classic Notebook puts the base URL in <body data-base-url>. Pages without either
// (VS Code, Colab, a static export) have no server of ours: the widget relays via the kernel.

import type { ProbeResult } from "./connection-state";

export interface ServerConfig {
  /** Absolute http(s) base URL ending in "/", e.g. "https://hub.example/user/ada/". */
  baseUrl: string;
  /** Absolute ws(s) base URL ending in "/". */
  wsBase: string;
  /** The page's token for `baseUrl` (REST), if any and only if `baseUrl` is on the page's own
   * origin: used only as a fallback after cookie auth. */
  token: string;
  /** The same for `wsBase` (the socket): "" unless `wsBase` is on the page's own origin. */
  wsToken: string;
}

interface PageConfig {
  baseUrl?: unknown;
  wsUrl?: unknown;
  token?: unknown;
}

function withSlash(s: string): string {
  return s.endsWith("/") ? s : `${s}/`;
}

/** True when `target` (http(s) or ws(s)) is on the page's own origin: the only place the
 * page's Jupyter token may go. A `base_url` naming another server must not receive it. */
function onPageOrigin(target: URL, href: string): boolean {
  let page: URL;
  try {
    page = new URL(href);
  } catch {
    return false;
  }
  const scheme = target.protocol === "ws:" ? "http:" : target.protocol === "wss:" ? "https:" : target.protocol;
  return scheme === page.protocol && target.host === page.host;
}

/**
 * Read the server's base URL and token from the page.
 * `override` (the widget's `base_url` trait) wins when set, e.g. for a server on another path.
 */
export function discoverServer(doc: Document | null, href: string, override = ""): ServerConfig | null {
  let base = "";
  let ws = "";
  let token = "";
  if (doc) {
    const el = doc.getElementById("jupyter-config-data");
    if (el?.textContent) {
      try {
        const cfg = JSON.parse(el.textContent) as PageConfig;
        if (typeof cfg.baseUrl === "string") base = cfg.baseUrl;
        if (typeof cfg.wsUrl === "string") ws = cfg.wsUrl;
        if (typeof cfg.token === "string") token = cfg.token;
      } catch {
        // a broken config block is the same as none
      }
    }
    if (!base) {
      const classic = doc.body?.dataset?.baseUrl;
      if (typeof classic === "string" && classic) base = classic;
    }
  }
  if (override) base = override;
  if (!base) return null;
  let baseUrl: URL;
  try {
    baseUrl = new URL(withSlash(base), href);
  } catch {
    return null;
  }
  if (baseUrl.protocol !== "http:" && baseUrl.protocol !== "https:") return null;
  let wsBase: URL;
  try {
    wsBase = ws && !override ? new URL(withSlash(ws), baseUrl) : new URL(baseUrl.href);
  } catch {
    wsBase = new URL(baseUrl.href);
  }
  if (wsBase.protocol === "http:") wsBase.protocol = "ws:";
  else if (wsBase.protocol === "https:") wsBase.protocol = "wss:";
  return {
    baseUrl: baseUrl.href,
    wsBase: wsBase.href,
    token: onPageOrigin(baseUrl, href) ? token : "",
    wsToken: onPageOrigin(wsBase, href) ? token : "",
  };
}

/**
 * WebSocket URLs to try, in order: cookie auth (the browser sends Jupyter's login cookie with
 * the upgrade on the same origin), then `?token=` when the page knows a token and the socket is
 * on the page's own origin.
 */
export function socketUrls(cfg: ServerConfig): string[] {
  const plain = new URL("llmchat/ws", cfg.wsBase);
  const urls = [plain.href];
  if (cfg.wsToken) {
    const withToken = new URL(plain.href);
    withToken.searchParams.set("token", cfg.wsToken);
    urls.push(withToken.href);
  }
  return urls;
}

/** Ask the REST API whether the extension is there: 404 means "not installed here". */
export function makeProbe(cfg: ServerConfig, fetchFn: typeof fetch | undefined = globalThis.fetch): () => Promise<ProbeResult> {
  return async () => {
    if (!fetchFn) return "unreachable";
    const headers: Record<string, string> = {};
    if (cfg.token) headers.Authorization = `token ${cfg.token}`;
    try {
      const res = await fetchFn(new URL("llmchat/api/stats", cfg.baseUrl).href, {
        credentials: "same-origin",
        headers,
        cache: "no-store",
      });
      if (res.status === 404) return "missing";
      if (res.status === 401 || res.status === 403) return "forbidden";
      return "ok";
    } catch {
      return "unreachable";
    }
  };
}
