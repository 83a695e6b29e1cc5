// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  addHighlighterSource,
  ensureHighlighter,
  highlighterState,
  resetHighlighterForTests,
  type HighlighterModule,
} from "../src/highlighter";
import { markdownToSafeHtml } from "../src/render";

const FENCE = "Try:\n\n```python\ndef f(x):\n    return x + 1  # add one\n```\n";

/** The real highlighter bundle, imported as the widget would after fetching it. */
let imports = 0;
async function realImporter(): Promise<HighlighterModule> {
  imports += 1;
  return (await import("../src/highlight-bundle")) as HighlighterModule;
}

beforeEach(() => {
  imports = 0;
  resetHighlighterForTests(realImporter);
  addHighlighterSource(() => "/* the bundle's source text */");
});
afterEach(() => resetHighlighterForTests());

describe("syntax highlighting", () => {
  it("shows code plain (escaped) until the highlighter is loaded, then highlighted", async () => {
    const plain = markdownToSafeHtml(FENCE);
    expect(plain).toContain('<code class="language-python">def f(x):');
    expect(plain).not.toContain("hljs-");
    expect(await ensureHighlighter()).toBe(true);
    const html = markdownToSafeHtml(FENCE);
    expect(html).toContain('<span class="hljs-keyword">def</span>');
    expect(html).toContain('<span class="hljs-comment"># add one</span>');
  });

  it("keeps hostile text inside code blocks inert after highlighting", async () => {
    await ensureHighlighter();
    const html = markdownToSafeHtml("```javascript\nconst x = '<img src=x onerror=alert(1)>'; // </code><script>alert(2)</script>\n```");
    const holder = document.createElement("div");
    holder.innerHTML = html;
    expect(holder.querySelector("img,script")).toBeNull();
    expect(holder.textContent).toContain("<img src=x onerror=alert(1)>");
    expect(holder.querySelector(".hljs-string")).not.toBeNull();
  });

  it("leaves unknown languages and unrecognisable blocks plain", async () => {
    await ensureHighlighter();
    expect(markdownToSafeHtml("```klingon\nqapla'\n```")).not.toContain("hljs-");
    expect(markdownToSafeHtml("```\nhello world\n```")).not.toContain("hljs-");
  });

  it("loads once for any number of callers", async () => {
    const results = await Promise.all([ensureHighlighter(), ensureHighlighter(), ensureHighlighter()]);
    expect(results).toEqual([true, true, true]);
    expect(imports).toBe(1);
  });

  it("falls back to plain code for good when loading fails, without retrying", async () => {
    resetHighlighterForTests(async () => {
      imports += 1;
      throw new Error("blocked by a content security policy");
    });
    addHighlighterSource(() => "source");
    expect(await ensureHighlighter()).toBe(false);
    expect(await ensureHighlighter()).toBe(false);
    expect(imports).toBe(1);
    expect(highlighterState()).toBe("failed");
    expect(markdownToSafeHtml(FENCE)).toContain("def f(x):");
  });

  it("fails cleanly when no widget model offers the bundle (front end built without it)", async () => {
    resetHighlighterForTests(realImporter);
    addHighlighterSource(() => null);
    expect(await ensureHighlighter()).toBe(false);
    expect(imports).toBe(0);
  });
});
