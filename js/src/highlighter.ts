// Lazy loading of the syntax highlighter (src/highlight-bundle.ts, a separate ESM file).
//
// anywidget loads the widget's `_esm` from a string, so a relative chunk import would not
// resolve: the highlighter's source comes from the Python side (trait `_highlighter_esm`) and
// is imported through a Blob URL the first time a code block is rendered. Until then, and
// for good if loading fails, code blocks stay plain (escaped) text.

import type { Highlighted } from "./highlight-bundle";

export type { Highlighted };

export interface HighlighterModule {
  highlight(code: string, lang: string): Highlighted | null;
}

/** Where the bundle's source text comes from (a widget model's trait); null when it has none. */
export type SourceProvider = () => string | null;
export type Importer = (source: string) => Promise<HighlighterModule>;

export type HighlighterState = "idle" | "loading" | "ready" | "failed";

let state: HighlighterState = "idle";
let loaded: HighlighterModule | null = null;
let pending: Promise<boolean> | null = null;
let importer: Importer = importFromBlob;
const providers: SourceProvider[] = [];
const readyListeners = new Set<() => void>();

/** Import ESM source text through a Blob URL (the way anywidget loads the widget itself). */
export async function importFromBlob(source: string): Promise<HighlighterModule> {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return (await import(/* @vite-ignore */ url)) as HighlighterModule;
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** Register a source of the bundle (each widget model offers its trait); returns an unregister. */
export function addHighlighterSource(provider: SourceProvider): () => void {
  providers.push(provider);
  return () => {
    const i = providers.indexOf(provider);
    if (i >= 0) providers.splice(i, 1);
  };
}

export function highlighterState(): HighlighterState {
  return state;
}

/** Synchronous highlighting for markdown-it: null until the module is loaded (plain code then). */
export function highlightNow(code: string, lang: string): Highlighted | null {
  if (!loaded) return null;
  try {
    return loaded.highlight(code, lang);
  } catch {
    return null; // a highlighter bug must never cost the message its text
  }
}

/** Called once the highlighter is ready, so views can repaint the code they showed plain. */
export function onHighlighterReady(cb: () => void): () => void {
  readyListeners.add(cb);
  return () => readyListeners.delete(cb);
}

/** Load the highlighter (once; later calls share the first attempt). Resolves to "is it usable". */
export function ensureHighlighter(): Promise<boolean> {
  if (state === "ready") return Promise.resolve(true);
  if (state === "failed") return Promise.resolve(false);
  if (pending) return pending;
  state = "loading";
  pending = (async () => {
    try {
      const source = providers.map((p) => p()).find((s) => typeof s === "string" && s.length > 0);
      if (!source) throw new Error("no highlighter source");
      const mod = await importer(source);
      if (typeof mod?.highlight !== "function") throw new Error("not a highlighter module");
      loaded = mod;
      state = "ready";
    } catch (err) {
      state = "failed";
      console.warn("[llmchat] syntax highlighting unavailable, code stays plain:", err);
    }
    pending = null;
    if (state === "ready") for (const cb of [...readyListeners]) cb();
    return state === "ready";
  })();
  return pending;
}

/** Tests: start over with another importer. */
export function resetHighlighterForTests(next: Importer = importFromBlob): void {
  state = "idle";
  loaded = null;
  pending = null;
  importer = next;
  providers.length = 0;
  readyListeners.clear();
}
