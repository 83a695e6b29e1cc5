// anywidget entry point. `initialize` runs once per widget model and owns the one socket
// (ChatClient) and the RoomStore; `render` runs once per displayed view and only draws.
//
// Traits written here (read them from Python): status, status_reason, last_seq, members,
// error, model_info, user. Traits read here (set from Python): room, ask_mode, config,
// base_url, transport, height, _uid.

import "./widget.css";
import { discoverServer, makeProbe, socketUrls } from "./config";
import { KernelSocket, type CommModel } from "./kernel";
import { newId, ROOM_RE, SUBPROTOCOL, type GenerateConfig } from "./protocol";
import { browserEnv, ChatClient, type SocketLike, type TransportMode } from "./socket";
import { RoomStore } from "./store";
import { ChatView } from "./view";

export interface Model extends CommModel {
  get(key: string): any;
  set(key: string, value: unknown): void;
  save_changes(): void;
}

interface Hub {
  client: ChatClient;
  store: RoomStore;
  model: Model;
}

// initialize and render get different proxy objects for one model, so the hub is found
// through `_uid`, a per-instance id set by Python.
const hubs = new Map<string, Hub>();

const STATS_EVERY_MS = 30_000;
const STATS_WHILE_LOADING_MS = 5_000;
const SYNC_EVERY_MS = 250;

function asConfig(v: unknown): GenerateConfig | undefined {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as GenerateConfig) : undefined;
}

function initialize({ model }: { model: Model }): () => void {
  const uid = String(model.get("_uid") || newId("w"));
  const room = String(model.get("room") || "general");
  const mode = (["auto", "websocket", "kernel"].includes(model.get("transport")) ? model.get("transport") : "auto") as TransportMode;
  const server =
    typeof document !== "undefined" ? discoverServer(document, location.href, String(model.get("base_url") || "")) : null;

  const client = new ChatClient({
    room,
    urls: server ? socketUrls(server) : [],
    openSocket: (url) => new WebSocket(url, SUBPROTOCOL) as unknown as SocketLike,
    openKernel: () => new KernelSocket(model),
    probe: server ? makeProbe(server) : null,
    mode,
    env: browserEnv(),
  });
  const store = new RoomStore(client);
  hubs.set(uid, { client, store, model });

  // Mirror state into traits, throttled: last_seq moves on every token.
  let syncTimer: ReturnType<typeof setTimeout> | null = null;
  const sync = (): void => {
    syncTimer = null;
    const st = store.status;
    model.set("status", st.status);
    model.set("status_reason", st.reason);
    model.set("last_seq", client.lastSeq);
    model.set("members", store.members.map((m) => ({ username: m.username, name: m.name })));
    model.set("error", store.error || (st.status === "failed" ? st.reason : ""));
    model.set("model_info", { ...store.model });
    model.set("user", store.welcome?.user ?? {});
    model.save_changes();
  };
  const scheduleSync = (): void => {
    if (!syncTimer) syncTimer = setTimeout(sync, SYNC_EVERY_MS);
  };
  const unsubStore = store.subscribe((c) => {
    if (c.type === "meta" || c.type === "reset") scheduleSync();
    else if (c.type === "append" || (c.type === "update" && !c.message.streaming)) scheduleSync();
  });
  // Status changes go out at once, so Python sees "live" as soon as it happens.
  const unsubStatus = client.on("status", () => {
    if (syncTimer) clearTimeout(syncTimer);
    sync();
  });

  // Live figures: ask for Stats on join and periodically (more often while the model loads).
  let statsTimer: ReturnType<typeof setTimeout> | null = null;
  const pollStats = (): void => {
    if (statsTimer) clearTimeout(statsTimer);
    client.requestStats();
    statsTimer = setTimeout(pollStats, store.model.loaded === false ? STATS_WHILE_LOADING_MS : STATS_EVERY_MS);
  };
  const unsubJoin = client.on("frame", (f) => {
    if (f.type === "Joined") pollStats();
  });

  const onRoom = (): void => {
    const next = String(model.get("room") || "");
    if (ROOM_RE.test(next)) client.setRoom(next);
  };
  model.on("change:room", onRoom);

  // Python → room, fallback only: ChatWidget.send()/ask()/cancel() post through the kernel's
  // own client; only where the kernel cannot reach the server do they come here, as custom
  // messages with a request id, to go out over this socket.
  const onMsg = (content: unknown): void => {
    const msg = content as Record<string, unknown> | null;
    if (!msg || typeof msg !== "object") return;
    const id = typeof msg.id === "string" && msg.id ? msg.id : undefined;
    if (msg.kind === "send" && typeof msg.text === "string") client.sendText(msg.text, id);
    else if (msg.kind === "ask" && typeof msg.prompt === "string") {
      const config = { ...(asConfig(model.get("config")) ?? {}), ...(asConfig(msg.config) ?? {}) };
      client.generate(msg.prompt, config, id);
    } else if (msg.kind === "cancel" && id) client.cancel(id);
    else if (msg.kind === "retry") client.retryNow();
  };
  model.on("msg:custom", onMsg);

  client.start();

  return () => {
    model.off("change:room", onRoom);
    model.off("msg:custom", onMsg);
    unsubStore();
    unsubStatus();
    unsubJoin();
    if (syncTimer) clearTimeout(syncTimer);
    if (statsTimer) clearTimeout(statsTimer);
    store.dispose();
    client.stop();
    hubs.delete(uid);
  };
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const hub = hubs.get(String(model.get("_uid")));
  if (!hub) {
    el.textContent = "llmchat: this widget's model is not initialised (re-run the cell).";
    return () => undefined;
  }
  const { client, store } = hub;
  const view = new ChatView(el, store, {
    send: (text, ask) => {
      if (ask) client.generate(text, asConfig(model.get("config")));
      else client.sendText(text);
    },
    cancel: (id) => client.cancel(id),
    retry: () => client.retryNow(),
    loadEarlier: () => {
      const oldest = store.messages.find((m) => m.seq !== null)?.seq;
      if (oldest) client.requestHistory(oldest, 50);
    },
    getAskMode: () => model.get("ask_mode") !== false,
    setAskMode: (on) => {
      model.set("ask_mode", on);
      model.save_changes();
    },
    room: () => client.room,
  });
  const applyHeight = (): void => {
    const height = String(model.get("height") || "");
    view.root.style.setProperty("--llmchat-height", height || "420px");
  };
  applyHeight();
  const refresh = (): void => view.refresh();
  model.on("change:ask_mode", refresh);
  model.on("change:room", refresh);
  model.on("change:height", applyHeight);
  return () => {
    model.off("change:ask_mode", refresh);
    model.off("change:room", refresh);
    model.off("change:height", applyHeight);
    view.dispose();
  };
}

export default { initialize, render };
