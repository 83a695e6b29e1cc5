// Running a room from the widget (docs/widget.md, Moderation): what each message's menu
// offers to whom, the room header's moderator toggles and Export, and the line that tells a
// user why they cannot post or ask. The server decides every one of these again: the widget
// only offers what would be accepted, and a refusal still comes back as an Error.

import type { RoomSettings } from "./protocol";
import type { ChatMessage, RoomStore } from "./store";

/** What a message's menu can do; a missing entry is not offered. */
export interface MessageMenu {
  edit?: (content: string) => void;
  remove?: () => void;
  mute?: (seconds: number) => void;
  unmute?: () => void;
}

export interface ModerationActions {
  deleteMessage(key: string): void;
  editMessage(key: string, content: string): void;
  mute(username: string, seconds: number): void;
  setModeration(change: { announce_only?: boolean; model_answers?: boolean }): void;
  /** Download the room's transcript; null where the page cannot reach the server's REST API. */
  exportRoom: ((format: "md" | "json") => void) | null;
}

/** The mute lengths a moderator picks from (seconds). */
export const MUTE_CHOICES: ReadonlyArray<[string, number]> = [
  ["Mute 10 minutes", 600],
  ["Mute 1 hour", 3600],
  ["Mute 1 day", 86400],
];

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Whether `until` (ISO time) is still ahead. */
export function stillMuted(until: string | null | undefined, now = Date.now()): boolean {
  if (!until) return false;
  const t = Date.parse(until);
  return Number.isFinite(t) && t > now;
}

function ownMessage(m: ChatMessage, store: RoomStore): boolean {
  const me = store.welcome?.user?.username;
  return !!me && m.author.username === me && (m.kind === "user" || m.kind === "bot");
}

/** The menu of one message for this user: edit their own Text; delete their own (a
 *  moderator: any); a moderator mutes (or unmutes) its author. Null: no menu at all. */
export function menuFor(m: ChatMessage, store: RoomStore, actions: ModerationActions): MessageMenu | null {
  if (m.private || m.seq === null || m.streaming) return null;
  const menu: MessageMenu = {};
  const own = ownMessage(m, store);
  if (own) menu.edit = (content) => actions.editMessage(m.key, content);
  if (own || store.isModerator || (m.kind === "assistant" && store.ownsAnswer(m))) menu.remove = () => actions.deleteMessage(m.key);
  const author = m.author.username;
  if (store.isModerator && !own && author && (m.kind === "user" || m.kind === "bot")) {
    if (stillMuted(store.mutes.get(author))) menu.unmute = () => actions.mute(author, 0);
    else menu.mute = (seconds) => actions.mute(author, seconds);
  }
  return Object.keys(menu).length ? menu : null;
}

/** Why this user cannot post or ask here now, as one line; "" when nothing stops them. */
export function roomRules(settings: RoomSettings | null, mutedUntil: string | null, moderator: boolean, now = Date.now()): string {
  const lines: string[] = [];
  if (stillMuted(mutedUntil, now)) {
    const until = new Date(Date.parse(mutedUntil as string)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    lines.push(`You are muted in this room until ${until}: your messages and questions are not accepted.`);
  }
  if (settings?.model_answers === false) lines.push("The model's answers are off in this room.");
  if (settings?.announce_only && !moderator) lines.push("Announcements only: only moderators post here (you can still ask privately).");
  return lines.join(" ");
}

/** The header's moderation part: badges for everyone, toggles and Export for moderators, and the rules line. */
export class ModerationBar {
  readonly el: HTMLDivElement;
  readonly rules: HTMLDivElement;
  private readonly announce: HTMLInputElement;
  private readonly answers: HTMLInputElement;
  private readonly toggles: HTMLSpanElement;
  private readonly badges: HTMLSpanElement;
  private readonly exportBtn: HTMLButtonElement;

  constructor(private readonly actions: ModerationActions) {
    this.el = el("div", "llmchat-moderation");
    this.badges = el("span", "llmchat-mod-badges");
    this.toggles = el("span", "llmchat-mod-toggles");
    const toggle = (label: string, title: string, change: (on: boolean) => void): HTMLInputElement => {
      const box = el("input");
      box.type = "checkbox";
      const wrap = el("label", "llmchat-mod-toggle");
      wrap.title = title;
      wrap.append(box, document.createTextNode(` ${label}`));
      box.addEventListener("change", () => change(box.checked));
      this.toggles.append(wrap);
      return box;
    };
    this.announce = toggle("Announce-only", "Only moderators post in this room; everyone may still ask privately", (on) =>
      this.actions.setModeration({ announce_only: on }),
    );
    this.answers = toggle("Model answers", "Untick to turn the model off in this room (e.g. for an exam)", (on) =>
      this.actions.setModeration({ model_answers: on }),
    );
    this.exportBtn = el("button", "llmchat-export", "Export");
    this.exportBtn.type = "button";
    this.exportBtn.title = "Download this room's transcript (Markdown; deleted messages left out)";
    this.exportBtn.addEventListener("click", () => this.actions.exportRoom?.("md"));
    this.toggles.append(this.exportBtn);
    this.el.append(this.badges, this.toggles);
    this.rules = el("div", "llmchat-rules");
    this.rules.setAttribute("role", "status");
  }

  update(store: RoomStore): void {
    const s = store.settings;
    const moderator = store.isModerator;
    this.badges.replaceChildren();
    if (s?.announce_only) this.badges.append(el("span", "llmchat-badge llmchat-badge-announce", "announce-only"));
    if (s?.model_answers === false) this.badges.append(el("span", "llmchat-badge llmchat-badge-answers-off", "answers off"));
    this.toggles.hidden = !moderator || s === null;
    this.announce.checked = s?.announce_only === true;
    this.answers.checked = s?.model_answers !== false;
    this.exportBtn.hidden = this.actions.exportRoom === null;
    this.el.hidden = this.toggles.hidden && this.badges.childElementCount === 0;
    const rules = roomRules(s, store.mutedUntil, moderator);
    this.rules.textContent = rules;
    this.rules.hidden = !rules;
  }
}
