// What a stored message and a room's settings say beyond the text, read defensively: the
// server's rows are passed on as stored, so a field may be missing or of another version.

import type { RoomSettings, RoomSettingsData, TextData } from "./protocol";
import type { ChatMessage } from "./store";

/** The fields a stored question or answer carries beyond its text (issue 14 additions). */
export function applyStoredFields(msg: ChatMessage, d: TextData): void {
  if (d.thread_start === true) msg.threadStart = true;
  if (d.truncated === true) msg.truncated = true; // the prompt was cut to fit: said with the answer in History too
  if (typeof d.in_reply_to === "string" && d.in_reply_to) msg.inReplyTo = d.in_reply_to;
  if (typeof d.regenerates === "string" && d.regenerates) msg.regenerates = d.regenerates;
  if (typeof d.edited === "string" && d.edited) msg.edited = d.edited;
  if (Array.isArray(d.attachments)) {
    msg.attachments = d.attachments
      .filter((a) => a && typeof a === "object")
      .map((a) => ({ kind: String(a.kind ?? ""), label: String(a.label ?? ""), chars: Number(a.chars) || 0 }));
  }
}

export function normaliseSettings(s: RoomSettingsData): RoomSettings {
  const prompt = typeof s.system_prompt === "string" && s.system_prompt ? s.system_prompt : null;
  const context = s.context === "own" || s.context === "shared" ? s.context : null;
  return { system_prompt: prompt, context, announce_only: s.announce_only === true, model_answers: s.model_answers !== false };
}
