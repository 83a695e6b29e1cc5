// Copy text to the clipboard: the async Clipboard API where the page allows it (secure
// context, permission), else the old select + execCommand("copy") on a hidden textarea, which
// still works in plain-http Jupyter servers where navigator.clipboard is undefined.

export async function copyText(text: string, doc: Document = document): Promise<boolean> {
  const clipboard = doc.defaultView?.navigator?.clipboard;
  if (clipboard && typeof clipboard.writeText === "function") {
    try {
      await clipboard.writeText(text);
      return true;
    } catch {
      // denied (no permission, not focused): try the legacy way below
    }
  }
  return legacyCopy(text, doc);
}

function legacyCopy(text: string, doc: Document): boolean {
  const area = doc.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.top = "0";
  area.style.opacity = "0";
  doc.body.append(area);
  const previous = doc.activeElement instanceof HTMLElement ? doc.activeElement : null;
  area.select();
  let ok = false;
  try {
    ok = typeof doc.execCommand === "function" && doc.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  previous?.focus();
  return ok;
}
