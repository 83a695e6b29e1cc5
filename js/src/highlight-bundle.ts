// The syntax highlighter, built as a SECOND bundle (jupyter_llmchat/static/highlight.js) that
// the widget imports only when the first code block appears: highlight.js core with a handful
// of languages common in notebooks. Nothing here runs on the widget's first paint.

import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import julia from "highlight.js/lib/languages/julia";
import plaintext from "highlight.js/lib/languages/plaintext";
import python from "highlight.js/lib/languages/python";
import r from "highlight.js/lib/languages/r";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import yaml from "highlight.js/lib/languages/yaml";

const LANGUAGES = { bash, javascript, json, julia, plaintext, python, r, shell, sql, typescript, yaml };
for (const [name, language] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, language);
hljs.registerAliases(["ipython", "py3"], { languageName: "python" });

/** Below this relevance an unlabelled block is left plain: a wrong guess is worse than none. */
const AUTO_MIN_RELEVANCE = 5;

export interface Highlighted {
  /** HTML of <span class="hljs-…"> runs with the code HTML-escaped (sanitised again by the caller). */
  html: string;
  language: string;
}

/** Highlight `code` as `lang` (a fence's info string), or guess for an unlabelled block. */
export function highlight(code: string, lang: string): Highlighted | null {
  const name = lang.trim().split(/\s+/)[0]?.toLowerCase() ?? "";
  if (name) {
    if (!hljs.getLanguage(name)) return null;
    const result = hljs.highlight(code, { language: name, ignoreIllegals: true });
    return { html: result.value, language: result.language ?? name };
  }
  const guess = hljs.highlightAuto(code);
  if (!guess.language || guess.relevance < AUTO_MIN_RELEVANCE) return null;
  return { html: guess.value, language: guess.language };
}

export const languages: string[] = hljs.listLanguages();
