// anywidget entry point. The default export is a factory that anywidget calls once per widget
// model, so its closure holds that model's state and nothing lives at module level.
// `initialize` runs once per model and owns the one socket (ChatClient) and the RoomStore;
// `render` runs once per displayed view and only draws what `initialize` left in the closure
// (the two get different proxies of the model, so the closure is where they meet).
//
// Traits written here (read them from Python): status, status_reason, last_seq, members,
// error, model_info, user. Traits read here (set from Python): room, ask_mode, config,
// base_url, transport, height, _highlighter_esm (the lazily imported highlighter).

import "./widget.css";
import { discoverServer, makeProbe, socketUrls, type ServerConfig } from "./config";
import { makeExporter } from "./export";
import { attachmentsFrom, roomActions } from "./actions";
import { addHighlighterSource } from "./highlighter";
import { KernelSocket, type CommModel } from "./kernel";
import { newId, ROOM_RE, SUBPROTOCOL, type GenerateConfig, type GenerateExtras } from "./protocol";
import { ChatClient } from "./client";
import { browserEnv } from "./page-env";
import type { SocketLike } from "./socket-like";
import type { TransportMode } from "./connection-state";
import { pollStats } from "./stats-poller";
import { RoomStore } from "./store";
import { KernelVariables } from "./variables";
import { ChatView } from "./view";

export interface Model extends CommModel {
  get(key: string): any;
  set(key: string, value: unknown): void;
  save_changes(): void;
}

/** What one widget model's views share. */
interface Hub {
  client: ChatClient;
  /** The page's server (REST), or null where the widget only reaches the room through the kernel. */
  server: ServerConfig | null;
  store: RoomStore;
  views: Set<ChatView>;
  /** The kernel's variables, for `@name` in the box. */
  variables: KernelVariables;
  close: () => void;
}

const SYNC_EVERY_MS = 250;

function asConfig(v: unknown): GenerateConfig | undefined {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as GenerateConfig) : undefined;
}

/** The model's one connection and store, mirrored into traits and driven by Python's messages. */
function connect(model: Model): Hub {
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
  const views = new Set<ChatView>();
  const unsubHighlighter = addHighlighterSource(() => {
    const source = model.get("_highlighter_esm");
    return typeof source === "string" && source ? source : null;
  });

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

  // Live figures: on join, periodically, and soon after an answer starts or ends.
  const stopStats = pollStats(client, store);

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
      const extras: GenerateExtras = {};
      const attachments = attachmentsFrom(msg.attachments);
      if (attachments) extras.attachments = attachments;
      if (msg.new_thread === true) extras.new_thread = true;
      client.generate(msg.prompt, config, id, extras);
    } else if (msg.kind === "cancel" && id) client.cancel(id);
    else if (msg.kind === "retry") client.retryNow();
    else if (msg.kind === "notice" && typeof msg.text === "string") {
      store.showNotice(msg.text, msg.level === "error" ? "error" : "info");
    } else if (msg.kind === "ask_error_done") {
      for (const view of views) view.errorAskDone();
    }
  };
  model.on("msg:custom", onMsg);

  client.start();

  const close = (): void => {
    model.off("change:room", onRoom);
    model.off("msg:custom", onMsg);
    unsubStore();
    unsubStatus();
    stopStats();
    unsubHighlighter();
    if (syncTimer) clearTimeout(syncTimer);
    store.dispose();
    client.stop();
  };
  return { client, store, views, variables: new KernelVariables(model), close, server };
}

/** Draw one view of the model's room. */
function render(hub: Hub, model: Model, el: HTMLElement): () => void {
  const { client, store, views } = hub;
  const view = new ChatView(el, store, {
    ...roomActions({
      client,
      store,
      config: () => asConfig(model.get("config")),
      askKernelAboutError: () => model.send({ kind: "ask_error", id: newId("e") }),
      exportRoom: hub.server ? makeExporter(hub.server, () => client.room, (text, level) => store.showNotice(text, level)) : null,
    }),
    variables: hub.variables,
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
  views.add(view);
  const refresh = (): void => view.refresh();
  model.on("change:ask_mode", refresh);
  model.on("change:room", refresh);
  model.on("change:height", applyHeight);
  return () => {
    model.off("change:ask_mode", refresh);
    model.off("change:room", refresh);
    model.off("change:height", applyHeight);
    views.delete(view);
    view.dispose();
  };
}

export default () => {
  let hub: Hub | null = null;
  return {
    initialize({ model }: { model: Model }): () => void {
      const mine = connect(model);
      hub = mine;
      return () => {
        mine.close();
        if (hub === mine) hub = null;
      };
    },
    render({ model, el }: { model: Model; el: HTMLElement }): () => void {
      // anywidget renders only after `initialize` has finished; this is for a model closed since.
      if (!hub) {
        el.textContent = "llmchat: this widget's model is not initialised (re-run the cell).";
        return () => undefined;
      }
      return render(hub, model, el);
    },
  };
};
