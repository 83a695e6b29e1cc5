// The widget's states as a user sees them, walked through in the scripted (fake) room of
// fake_relay.py: the model downloading (a progress bar), a question queued, a refused question, the server away.
// Used by the e2e run (screenshots into test-artifacts/) and by docs-screenshot.mjs
// (docs/img/widget-state-*.png, shown in docs/widget.md).
import assert from "node:assert/strict";
import { kernelExec, waitFor } from "./harness.mjs";

/** Notebook cells: the fake server (model still loading), then the widget relaying to it. */
export function statesNotebook(fakeSource) {
  return [
    fakeSource,
    'FAKE["loading"] = True',
    'from jupyter_llmchat import ChatWidget\nw = ChatWidget(room="states", transport="kernel", height="340px")\nw',
  ];
}

const attr = (page, name) => page.getAttribute(".llmchat", name);

async function send(page, text) {
  const box = page.locator(".llmchat-input");
  await box.fill(text);
  await box.press("Enter");
}

/** Walk loading → queued → error → reconnecting → back; `shoot(name)` is called in each state. */
export async function walkStates(page, shoot) {
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitFor(async () => (await attr(page, "data-model")) === "loading", { timeout: 60_000, what: "model loading" });
  assert.match(await page.textContent(".llmchat-notice"), /Downloading fake-model-q4_k_m\.gguf: 43 % — questions can be asked/);
  assert.equal(await page.textContent(".llmchat-model"), "downloading fake-model-q4_k_m.gguf: 43 %");
  assert.equal(await page.getAttribute(".llmchat-model", "data-state"), "downloading");
  assert.equal(await page.locator(".llmchat-model progress").evaluate((bar) => bar.value), 0.43);
  await shoot("loading");

  // The model is ready: the next Stats poll (every 5 s while loading) clears the state.
  await kernelExec(page, 'FAKE["loading"] = False');
  await waitFor(async () => (await attr(page, "data-model")) === "ready", { timeout: 20_000, what: "model ready" });
  assert.equal(await page.isVisible(".llmchat-notice-text >> text=Downloading"), false);
  assert.equal(await page.textContent(".llmchat-model"), "fake-model");

  await send(page, "queued: what is a closure?");
  await waitFor(async () => (await page.textContent(".llmchat-requests")).includes("queued, position 2"), { what: "queued" });
  assert.equal(await attr(page, "data-queued"), "true");
  await shoot("queued");
  await waitFor(async () => (await page.textContent(".llmchat-log")).includes("You said: queued: what is a closure?"), {
    timeout: 20_000,
    what: "the queued question answered",
  });

  await send(page, "overload");
  await waitFor(async () => (await page.getAttribute(".llmchat-notice", "data-level")) === "error", { what: "error notice" });
  assert.match(await page.textContent(".llmchat-notice"), /generation queue full, try again later \(429\)/);
  await shoot("error");
  await page.click(".llmchat-notice-close");

  await kernelExec(page, "fake_drop()");
  await waitFor(async () => (await attr(page, "data-status")) === "reconnecting", { what: "reconnecting" });
  // A wait of 2 s or more (the backoff grows while the server is away): a steady state to show.
  await waitFor(async () => /reconnecting in ([2-9]|10) s/.test(await page.textContent(".llmchat-status-text")), {
    timeout: 30_000,
    interval: 50,
    what: "countdown",
  });
  assert.ok(await page.isVisible(".llmchat-retry"), "Retry now offered");
  await shoot("reconnecting");
  await kernelExec(page, "fake_up()");
  // "Retry now" unless the backoff timer got there first (then the button is gone).
  if (await page.isVisible(".llmchat-retry")) await page.click(".llmchat-retry", { timeout: 2_000 }).catch(() => undefined);
  await waitFor(async () => (await attr(page, "data-status")) === "via_kernel", { what: "back" });
}
