// @vitest-environment jsdom
import { beforeEach, describe, expect, it } from "vitest";
import { discoverServer, makeProbe, socketUrls } from "../src/config";

function page(config: object | null, classicBase?: string): Document {
  document.head.replaceChildren();
  document.body.replaceChildren();
  delete document.body.dataset.baseUrl;
  if (config) {
    const s = document.createElement("script");
    s.id = "jupyter-config-data";
    s.type = "application/json";
    s.textContent = JSON.stringify(config);
    document.head.append(s);
  }
  if (classicBase) document.body.dataset.baseUrl = classicBase;
  return document;
}

beforeEach(() => page(null));

describe("finding the server", () => {
  it("reads JupyterLab's page config under a non-root base_url, cookie first then ?token=", () => {
    const cfg = discoverServer(page({ baseUrl: "/user/ada/", token: "s3cret" }), "https://hub.example/user/ada/lab/tree/x.ipynb");
    expect(cfg).toEqual({ baseUrl: "https://hub.example/user/ada/", wsBase: "wss://hub.example/user/ada/", token: "s3cret", wsToken: "s3cret" });
    expect(socketUrls(cfg!)).toEqual(["wss://hub.example/user/ada/llmchat/ws", "wss://hub.example/user/ada/llmchat/ws?token=s3cret"]);
  });

  it("uses ws: for http pages and only the cookie URL without a token", () => {
    const cfg = discoverServer(page({ baseUrl: "/", token: "" }), "http://127.0.0.1:8888/lab");
    expect(socketUrls(cfg!)).toEqual(["ws://127.0.0.1:8888/llmchat/ws"]);
  });

  it("honours wsUrl from the page config", () => {
    const cfg = discoverServer(page({ baseUrl: "/x/", wsUrl: "wss://ws.example/x/" }), "https://app.example/x/lab");
    expect(socketUrls(cfg!)[0]).toBe("wss://ws.example/x/llmchat/ws");
  });

  it("reads classic Notebook's body data-base-url", () => {
    const cfg = discoverServer(page(null, "/nb/"), "http://localhost:8888/nb/notebooks/a.ipynb");
    expect(socketUrls(cfg!)).toEqual(["ws://localhost:8888/nb/llmchat/ws"]);
  });

  it("finds nothing outside Jupyter (VS Code, Colab) or in a broken config", () => {
    expect(discoverServer(page(null), "vscode-webview://abc/index.html")).toBeNull();
    const broken = page(null);
    const s = broken.createElement("script");
    s.id = "jupyter-config-data";
    s.type = "application/json";
    s.textContent = "{not json";
    broken.head.append(s);
    expect(discoverServer(broken, "http://localhost/")).toBeNull();
    expect(discoverServer(null, "http://localhost/")).toBeNull();
  });

  it("sends the page's token only to the page's own origin", async () => {
    const lab = page({ baseUrl: "/", token: "s3cret" });
    const elsewhere = discoverServer(lab, "https://lab.example/lab", "https://evil.example/");
    expect(elsewhere).toMatchObject({ baseUrl: "https://evil.example/", token: "", wsToken: "" });
    expect(socketUrls(elsewhere!)).toEqual(["wss://evil.example/llmchat/ws"]);
    const asked: RequestInit[] = [];
    await makeProbe(elsewhere!, (async (_url: string, init: RequestInit) => {
      asked.push(init);
      return new Response("{}");
    }) as unknown as typeof fetch)();
    expect(asked).toHaveLength(1);
    expect(JSON.stringify(asked[0]?.headers)).not.toContain("s3cret");
    for (const other of ["http://lab.example/", "https://lab.example:8443/"]) {
      expect(discoverServer(lab, "https://lab.example/lab", other)).toMatchObject({ token: "", wsToken: "" });
    }
    const samePlace = discoverServer(lab, "https://lab.example/lab", "https://lab.example/other/");
    expect(samePlace).toMatchObject({ token: "s3cret", wsToken: "s3cret" });
    const wsElsewhere = discoverServer(page({ baseUrl: "/", wsUrl: "wss://ws.example/", token: "s3cret" }), "https://lab.example/lab");
    expect(wsElsewhere).toMatchObject({ token: "s3cret", wsToken: "" });
  });

  it("lets the base_url trait override the page", () => {
    const cfg = discoverServer(page({ baseUrl: "/" }), "http://localhost:8888/lab", "/other/");
    expect(socketUrls(cfg!)[0]).toBe("ws://localhost:8888/other/llmchat/ws");
  });
});

describe("probe", () => {
  const cfg = { baseUrl: "http://h/u/", wsBase: "ws://h/u/", token: "t", wsToken: "t" };
  const fakeFetch = (status: number | Error) =>
    (async (url: string, init?: RequestInit) => {
      expect(url).toBe("http://h/u/llmchat/api/stats");
      expect((init?.headers as Record<string, string>).Authorization).toBe("token t");
      if (status instanceof Error) throw status;
      return { status } as Response;
    }) as unknown as typeof fetch;

  it("tells missing, forbidden, ok and unreachable apart", async () => {
    expect(await makeProbe(cfg, fakeFetch(404))()).toBe("missing");
    expect(await makeProbe(cfg, fakeFetch(403))()).toBe("forbidden");
    expect(await makeProbe(cfg, fakeFetch(200))()).toBe("ok");
    expect(await makeProbe(cfg, fakeFetch(new Error("down")))()).toBe("unreachable");
  });
});
