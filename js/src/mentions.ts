// `@name` in the message box: finding the mentions in what is typed, and filtering the
// kernel's variables for the popup. No DOM here (mention-popup.ts draws it).

/** One of the kernel's variables, as `jupyter_llmchat.kernel.namespace` lists it. */
export interface Variable {
  name: string;
  /** As an attachment's kind: "dataframe", "ndarray", "error", "object". */
  kind: string;
  /** Type and size: "DataFrame 200×5", "list, 12 items". */
  label: string;
}

/** What the kernel answers for a list request; `truncated`: more names start with the prefix. */
export interface VariableList {
  items: Variable[];
  truncated: boolean;
}

const NAME_START = /[\p{L}_]/u;
const NAME_CHAR = /[\p{L}\p{N}_]/u;
/** A mention: `@` then a name, not inside a word or an address (`a@b.org`, `x.@y`). */
const MENTION = /(?<![\p{L}\p{N}_@.])@([\p{L}_][\p{L}\p{N}_]{0,99})(?![\p{L}\p{N}_])/gu;
/** Mentions looked at per message (the kernel attaches at most 8 of them). */
export const MAX_MENTIONS = 32;

/** The distinct names mentioned in `text`, in order of first mention. */
export function mentionNames(text: string): string[] {
  const names: string[] = [];
  for (const match of text.matchAll(MENTION)) {
    const name = match[1] ?? "";
    if (!names.includes(name)) names.push(name);
    if (names.length === MAX_MENTIONS) break;
  }
  return names;
}

/** The mention being typed at `caret`: where its `@` is and the name typed so far, or null. */
export function mentionAt(text: string, caret: number): { start: number; query: string } | null {
  let i = caret;
  while (i > 0 && NAME_CHAR.test(text.charAt(i - 1))) i -= 1;
  if (i === 0 || text.charAt(i - 1) !== "@") return null;
  const at = i - 1;
  const before = text.charAt(at - 1);
  if (before && (NAME_CHAR.test(before) || before === "@" || before === ".")) return null;
  const query = text.slice(i, caret);
  if (query && !NAME_START.test(query.charAt(0))) return null;
  return query.length > 100 ? null : { start: at, query };
}

/** Variables whose name starts with `query` (any case) first, then those containing it. */
export function filterVariables(items: readonly Variable[], query: string, limit = 50): Variable[] {
  const q = query.toLowerCase();
  const starts = items.filter((v) => v.name.toLowerCase().startsWith(q));
  const contains = q ? items.filter((v) => !v.name.toLowerCase().startsWith(q) && v.name.toLowerCase().includes(q)) : [];
  return [...starts, ...contains].slice(0, limit);
}

/** `text` with the mention from `start` to `caret` replaced by `@name` and a space; the new caret. */
export function completeMention(text: string, start: number, caret: number, name: string): { text: string; caret: number } {
  let end = caret;
  while (end < text.length && NAME_CHAR.test(text.charAt(end))) end += 1; // the rest of a name typed over
  const after = text.slice(end);
  const spaced = after.startsWith(" ") || after.startsWith("\n");
  const inserted = `@${name}` + (spaced ? "" : " ");
  return { text: text.slice(0, start) + inserted + after, caret: start + inserted.length + (after.startsWith(" ") ? 1 : 0) };
}

/** `text` with every mention of `name` turned into plain text (the `@` dropped). */
export function unmention(text: string, name: string): string {
  return text.replace(MENTION, (whole, found: string) => (found === name ? whole.slice(1) : whole));
}
