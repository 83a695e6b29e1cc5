// The model in the widget's header: its name once it answers; until then what the server is
// doing ("downloading qwen2.5-1.5b-instruct-q4_k_m.gguf: 43 %") with a progress bar, from the
// `Stats` the server pushes while it downloads and loads (docs/protocol.md, model state).
// Text only (textContent): the detail comes from the server and is never HTML.

import type { ModelInfo } from "./protocol";

/** Paint `el` for `model`; `data-state` says resolving|downloading|loading|loaded|failed. */
export function paintModel(el: HTMLElement, model: ModelInfo): void {
  const name = model.name ?? "model";
  const state = model.state ?? (model.loaded === false ? "loading" : model.loaded ? "loaded" : "");
  el.dataset.state = state;
  el.dataset.loaded = String(model.loaded ?? "");
  el.title = model.reference ? `${name} (${model.reference})` : name;
  el.replaceChildren();
  if (!state) return;
  if (state === "failed" && !model.loaded) {
    el.textContent = `${name}: failed`;
    el.title = model.error ?? "";
    return;
  }
  if (state === "loaded") {
    el.textContent = name;
    return;
  }
  // Not loaded yet, or a switch under way while the current model still answers.
  const label = document.createElement("span");
  label.className = "llmchat-model-detail";
  label.textContent = (model.loaded ? `${name} · ` : "") + (model.detail || `${name}: loading…`);
  el.append(label);
  if (typeof model.progress === "number") {
    const bar = document.createElement("progress");
    bar.className = "llmchat-model-progress";
    bar.max = 1;
    bar.value = model.progress;
    bar.setAttribute("aria-label", label.textContent);
    el.append(bar);
  }
}

/** The notice line's sentence about the model, or null when it answers. */
export function modelNotice(model: ModelInfo): { text: string; level: "info" | "error" } | null {
  if (model.loaded !== false) return null;
  if (model.state === "failed") return { text: `The model could not be loaded: ${model.error ?? "unknown reason"}.`, level: "error" };
  const doing = model.detail ? model.detail.charAt(0).toUpperCase() + model.detail.slice(1) : "The model is loading";
  return { text: `${doing} — questions can be asked once the model is ready.`, level: "info" };
}
