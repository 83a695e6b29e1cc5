// How a message typed into the box is routed (docs/widget.md, "Input").

export type ParsedInput =
  | { ask: boolean; text: string; newThread?: true }
  /** `/new` alone: the next question starts a new thread. */
  | { command: "new" };

/**
 * The toggle decides between asking the model and posting; `/ask …` always asks, `/say …`
 * always posts, `/new` alone marks the next question as a new thread and `/new …` asks in one.
 */
export function parseInput(raw: string, askMode: boolean): ParsedInput | null {
  const text = raw.trim();
  if (!text) return null;
  const rest = (cmd: string): string | null => (new RegExp(`^/${cmd}(\\s|$)`, "i").test(text) ? text.slice(cmd.length + 1).trim() : null);
  const ask = rest("ask");
  if (ask !== null) return ask ? { ask: true, text: ask } : null;
  const say = rest("say");
  if (say !== null) return say ? { ask: false, text: say } : null;
  const fresh = rest("new");
  if (fresh !== null) return fresh ? { ask: true, text: fresh, newThread: true } : { command: "new" };
  return { ask: askMode, text };
}
