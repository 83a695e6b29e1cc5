// Markdown → safe DOM. Model and user text is untrusted: markdown-it runs with raw HTML off,
// DOMPurify then keeps only a small allow-list, and a last pass fixes up what remains:
// links show their real target and open safely, images never load (no tracking pixels,
// no remote fetches from a chat message), anything but http(s)/mailto links is neutralised.

import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";
import { highlightNow } from "./highlighter";

// Fenced code goes through the lazily loaded highlighter once it is there ("" = markdown-it's
// own escaping, i.e. plain code). Its <span class="hljs-…"> output is sanitised like the rest.
const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: true,
  typographer: false,
  highlight: (code, lang) => highlightNow(code, lang)?.html ?? "",
});

// Images become a plain link to their target (or bare text for data: URLs): never fetched.
md.renderer.rules.image = (tokens, idx) => {
  const token = tokens[idx];
  if (!token) return "";
  const src = String(token.attrGet("src") ?? "");
  const alt = md.utils.escapeHtml(String(token.content || "image"));
  if (/^https?:/i.test(src)) return `<a href="${md.utils.escapeHtml(src)}">[image: ${alt}]</a>`;
  return `<span class="llmchat-image-removed">[image: ${alt}]</span>`;
};

const ALLOWED_TAGS = [
  "a", "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
  "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td", "span",
];
const ALLOWED_ATTR = ["href", "title", "class", "start"];
const SAFE_LINK = /^(https?:|mailto:)/i;

let purifier: ReturnType<typeof DOMPurify> | null = null;

function getPurifier(): ReturnType<typeof DOMPurify> {
  if (!purifier) purifier = DOMPurify(window);
  return purifier;
}

/** Markdown source → sanitised HTML string (for tests and for callers that need a string). */
export function markdownToSafeHtml(src: string): string {
  const holder = document.createElement("div");
  holder.appendChild(renderMarkdown(src));
  return holder.innerHTML;
}

/** Markdown source → a sanitised, post-processed DocumentFragment ready to insert. */
export function renderMarkdown(src: string): DocumentFragment {
  const html = md.render(src);
  const frag = getPurifier().sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  }) as DocumentFragment;
  fixLinks(frag);
  return frag;
}

/** Replace an element's content with the rendered markdown. */
export function renderInto(el: Element, src: string): void {
  el.replaceChildren(renderMarkdown(src));
}

function fixLinks(root: DocumentFragment): void {
  for (const a of Array.from(root.querySelectorAll("a"))) {
    const href = a.getAttribute("href") ?? "";
    if (!SAFE_LINK.test(href.trim())) {
      // javascript:, data:, relative paths into the Jupyter server: show as text, not a link.
      const span = a.ownerDocument.createElement("span");
      span.className = "llmchat-link-removed";
      span.textContent = a.textContent ?? "";
      a.replaceWith(span);
      continue;
    }
    a.setAttribute("target", "_blank");
    a.setAttribute("rel", "noopener noreferrer nofollow");
    a.setAttribute("title", href);
    const text = (a.textContent ?? "").trim();
    const same = text === href || `mailto:${text}` === href || text === href.replace(/\/$/, "");
    if (!same) {
      // The visible text of a link can lie; the real target is always shown next to it.
      const shown = a.ownerDocument.createElement("span");
      shown.className = "llmchat-href";
      shown.textContent = ` (${href})`;
      a.after(shown);
    }
  }
}

/** True when rendered content has a fenced or indented code block (the highlighter's cue). */
export function hasCodeBlock(root: ParentNode): boolean {
  return root.querySelector("pre > code") !== null;
}

/** Plain text, for places that must never interpret markup (names, errors). */
export function setText(el: Element, text: string): void {
  el.textContent = text;
}
