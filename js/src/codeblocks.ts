// A toolbar on each code block of a rendered message: "Copy" and, where the page allows it,
// "Insert as cell". Added after sanitising, as DOM built here (never from message text).

export interface CodeBlockActions {
  copy(code: string): Promise<boolean>;
  /** Null where the front end gives no way to insert cells (see notebook.ts). */
  insertCell: ((code: string) => Promise<boolean>) | null;
}

const FEEDBACK_MS = 1500;

function button(label: string, cls: string, title: string): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.title = title;
  return b;
}

/** Say what happened on the button itself for a moment, then restore its label. */
function flash(b: HTMLButtonElement, text: string): void {
  const label = b.dataset.label ?? b.textContent ?? "";
  b.dataset.label = label;
  b.textContent = text;
  setTimeout(() => {
    b.textContent = label;
  }, FEEDBACK_MS);
}

/** Wrap every `pre` under `body` with a toolbar acting on its code's text. */
export function decorateCodeBlocks(body: HTMLElement, actions: CodeBlockActions): void {
  for (const pre of Array.from(body.querySelectorAll("pre"))) {
    // The code as written, without the fence's closing newline (a cell needs none).
    const code = (): string => ((pre.querySelector("code") ?? pre).textContent ?? "").replace(/\n$/, "");
    const wrap = document.createElement("div");
    wrap.className = "llmchat-code";
    const bar = document.createElement("div");
    bar.className = "llmchat-code-bar";
    const lang = /(?:^|\s)language-([\w+#.-]+)/.exec(pre.querySelector("code")?.className ?? "")?.[1];
    if (lang) {
      const tag = document.createElement("span");
      tag.className = "llmchat-code-lang";
      tag.textContent = lang;
      bar.append(tag);
    }
    const copy = button("Copy", "llmchat-copy", "Copy this code to the clipboard");
    copy.addEventListener("click", () => {
      void actions.copy(code()).then((ok) => flash(copy, ok ? "Copied" : "Copy failed"));
    });
    bar.append(copy);
    const insert = actions.insertCell;
    if (insert) {
      const add = button("Insert as cell", "llmchat-insert", "Insert this code as a new cell below the chat");
      add.addEventListener("click", () => {
        void insert(code())
          .catch(() => false)
          .then((ok) => flash(add, ok ? "Inserted" : "Not possible here"));
      });
      bar.append(add);
    }
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }
}
