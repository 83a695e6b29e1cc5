// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { markdownToSafeHtml, renderInto } from "../src/render";

function dom(src: string): HTMLDivElement {
  const el = document.createElement("div");
  renderInto(el, src);
  return el;
}

describe("markdown is rendered safely", () => {
  it("keeps <img onerror> inert: raw HTML is text, never an element", () => {
    const el = dom("<img src=x onerror=alert(1)>");
    expect(el.querySelector("img")).toBeNull();
    expect(el.innerHTML).not.toMatch(/<img/i);
    expect(el.textContent).toContain("<img src=x onerror=alert(1)>"); // shown as typed
    for (const node of Array.from(el.querySelectorAll("*"))) {
      expect(node.getAttributeNames().some((a) => a.startsWith("on"))).toBe(false);
    }
  });

  it("neutralises javascript: links", () => {
    for (const src of ["[x](javascript:alert(1))", "[x](JAVASCRIPT:alert(1))", "[x](  javascript:alert(1))", "[x](vbscript:msgbox)", "[x](data:text/html;base64,PHNjcmlwdD4=)"]) {
      const el = dom(src);
      for (const a of Array.from(el.querySelectorAll("a"))) {
        expect(a.getAttribute("href") ?? "").not.toMatch(/^\s*(javascript|vbscript|data):/i);
      }
      expect(el.innerHTML).not.toMatch(/href="\s*(javascript|vbscript|data):/i);
    }
  });

  it("renders a raw <script> as inert text", () => {
    const el = dom("hello <script>alert(1)</script> world\n\n<script>window.x=1</script>");
    expect(el.querySelector("script")).toBeNull();
    expect(el.textContent).toContain("<script>alert(1)</script>");
  });

  it("strips other HTML vectors", () => {
    const payloads = [
      "<iframe src=https://evil.example></iframe>",
      "<svg onload=alert(1)>",
      '<a href="javascript:alert(1)">x</a>',
      "<style>body{display:none}</style>",
      '<div style="background:url(https://evil.example/t.png)">x</div>',
      "[a](https://ok.example \"t\" onmouseover=alert(1))",
    ];
    for (const p of payloads) {
      const el = dom(p);
      expect(el.querySelector("iframe,svg,style,script,img,div,object,embed,form")).toBeNull();
      for (const node of Array.from(el.querySelectorAll("*"))) {
        for (const name of node.getAttributeNames()) {
          expect(["href", "title", "class", "start", "target", "rel"]).toContain(name);
        }
      }
    }
  });

  it("never loads remote images", () => {
    const el = dom("![tracker](https://evil.example/pixel.png) and ![inline](data:image/png;base64,AAAA)");
    expect(el.querySelector("img")).toBeNull();
    const a = el.querySelector("a");
    expect(a?.getAttribute("href")).toBe("https://evil.example/pixel.png");
    expect(el.textContent).toContain("[image: tracker]");
    expect(el.textContent).toContain("[image: inline]");
  });

  it("shows a link's real target and opens it safely", () => {
    const el = dom("[your bank](https://evil.example/login)");
    const a = el.querySelector("a")!;
    expect(a.getAttribute("href")).toBe("https://evil.example/login");
    expect(a.getAttribute("target")).toBe("_blank");
    expect(a.getAttribute("rel")).toBe("noopener noreferrer nofollow");
    expect(el.textContent).toContain("your bank");
    expect(el.textContent).toContain("(https://evil.example/login)");
  });

  it("does not repeat the target of a bare URL", () => {
    const el = dom("see https://example.org/x");
    expect(el.querySelector("a")?.getAttribute("href")).toBe("https://example.org/x");
    expect(el.querySelector(".llmchat-href")).toBeNull();
  });

  it("keeps code blocks as code", () => {
    const html = markdownToSafeHtml("```python\nprint('<b>hi</b>')\n```");
    expect(html).toContain('<pre><code class="language-python">');
    expect(html).toContain("&lt;b&gt;hi&lt;/b&gt;");
  });

  it("renders ordinary markdown", () => {
    const el = dom("**bold** _it_ `code`\n\n- a\n- b");
    expect(el.querySelector("strong")?.textContent).toBe("bold");
    expect(el.querySelector("em")?.textContent).toBe("it");
    expect(el.querySelectorAll("li")).toHaveLength(2);
  });
});
