// A ChatView over a real ChatClient + RoomStore and a fake socket, with the widget's own
// actions (actions.ts) and a frame scheduler the test runs by hand.
import { roomActions } from "../src/actions";
import type { CodeBlockActions } from "../src/codeblocks";
import { ChatClient } from "../src/client";
import { pollStats } from "../src/stats-poller";
import { RoomStore } from "../src/store";
import type { VariableSource } from "../src/variables";
import { ChatView, type SendOptions, type ViewActions } from "../src/view";
import { FakeEnv, FakeSocket, WELCOME } from "./fakes";

/** A frame scheduler the test flushes by hand (stands in for requestAnimationFrame). */
export class Frames {
  queue: Array<() => void> = [];
  schedule = (cb: () => void): void => {
    this.queue.push(cb);
  };
  run(): void {
    const q = this.queue;
    this.queue = [];
    for (const cb of q) cb();
  }
}

export interface SetupOptions {
  code?: CodeBlockActions;
  /** Run the widget's Stats poller (stats-poller.ts) from before the join. */
  poll?: boolean;
  askAboutError?: (() => void) | null;
  welcome?: boolean;
  /** The kernel's variables for `@name` (none by default, as where there is no kernel). */
  variables?: VariableSource;
  /** The Welcome says this user moderates the server's rooms. */
  moderator?: boolean;
  exportRoom?: ((format: "md" | "json") => void) | null;
}

export function setup(opts: SetupOptions = {}) {
  const client = new ChatClient({
    room: "general",
    urls: ["ws://x/llmchat/ws"],
    openSocket: (u) => new FakeSocket(u),
    env: new FakeEnv(),
    random: () => 0.5,
  });
  const store = new RoomStore(client);
  const frames = new Frames();
  const sent: Array<{ text: string; ask: boolean; options: SendOptions }> = [];
  const cancelled: string[] = [];
  const errorAsks: number[] = [];
  let ask = true;
  // The widget's own glue (actions.ts) over the real client, with the calls recorded.
  const glue = roomActions({
    client,
    store,
    config: () => undefined,
    askKernelAboutError: opts.askAboutError === null ? null : () => errorAsks.push(1),
    exportRoom: opts.exportRoom ?? null,
  });
  const actions: ViewActions = {
    ...glue,
    send: (t, a, o) => {
      sent.push({ text: t, ask: a, options: o });
      glue.send(t, a, o);
    },
    cancel: (id) => {
      cancelled.push(id);
      client.cancel(id);
    },
    loadEarlier: () => undefined,
    getAskMode: () => ask,
    setAskMode: (on) => (ask = on),
    room: () => client.room,
    code: opts.code ?? { copy: async () => true, insertCell: null },
    variables: opts.variables ?? null,
  };
  const host = document.createElement("div");
  document.body.append(host);
  const view = new ChatView(host, store, actions, frames.schedule);
  if (opts.poll) pollStats(client, store);
  client.start();
  const sock = FakeSocket.last;
  sock.open();
  if (opts.welcome !== false) {
    sock.receive(opts.moderator ? { ...WELCOME, data: { ...WELCOME.data, user: { ...WELCOME.data.user, moderator: true } } } : WELCOME);
  }
  sock.receive({ type: "Joined", room: "general", data: { seq: 41, epoch: "e", count: 2, members: [{ username: "ada", name: "Ada" }, { username: "bob", name: "Bob" }] } });
  frames.run();
  return { client, store, view, host, sock, frames, sent, cancelled, errorAsks };
}

export const bodies = (host: HTMLElement) => Array.from(host.querySelectorAll(".llmchat-msg .llmchat-body")).map((b) => b.textContent?.trim());

