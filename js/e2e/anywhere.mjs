// End-to-end: ChatWidget where no Jupyter server has the llmchat extension. The kernel finds
// nothing, starts the user's `jupyter llmchat serve`, and the widget reaches it through the
// kernel relay (its comm's custom messages):
//   - in marimo (`marimo run` and `marimo edit`: anywidget support of marimo itself);
//   - in JupyterLab with the extension disabled.
// Each shows "starting the model service…" (never "failed"), then streams an answer typed in
// the widget, as the user's own message.
//
//   npm run e2e:anywhere      # from js/, after `npm run build`; needs marimo (the test extra)
//   LLMCHAT_E2E_ONLY=marimo   # a subset, by name
//
// Prints "N passed, N failed" and exits non-zero on any failure.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  launchBrowser,
  openNotebook,
  pythonPath,
  screenshot,
  serviceEnv,
  servicesOf,
  startJupyter,
  startMarimo,
  stopServices,
  waitFor,
  writeNotebook,
} from "./harness.mjs";

const only = process.env.LLMCHAT_E2E_ONLY || "";
const STARTING = "starting the model service…";

const marimoNotebook = (room) => `import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    from jupyter_llmchat import ChatWidget

    chat = mo.ui.anywidget(ChatWidget(room=${JSON.stringify(room)}, config={"max_tokens": 24, "temperature": 0}))
    chat
    return


if __name__ == "__main__":
    app.run()
`;

/** Every status and notice the widget shows from now on (a MutationObserver: short ones too). */
async function watchWidget(page) {
  await page.waitForSelector(".llmchat", { timeout: 120_000 });
  await page.$eval(".llmchat", (el) => {
    const seen = (window.__llmchatSeen = { statuses: [], notices: [] });
    const look = () => {
      const status = el.getAttribute("data-status");
      if (seen.statuses.at(-1) !== status) seen.statuses.push(status);
      const notice = el.querySelector(".llmchat-notice-text")?.textContent ?? "";
      if (notice && seen.notices.at(-1) !== notice) seen.notices.push(notice);
    };
    look();
    new MutationObserver(look).observe(el, { attributes: true, childList: true, subtree: true, characterData: true });
  });
  return () => page.evaluate(() => window.__llmchatSeen);
}

/** The widget relays, says the service is starting, joins, and streams an answer to a typed question. */
async function askInTheWidget(page, question) {
  const seen = await watchWidget(page);
  await waitFor(async () => (await seen()).notices.some((n) => n.includes(STARTING)) || (await page.textContent(".llmchat-members"))?.includes("1 here"), {
    timeout: 60_000,
    what: "the starting notice (or already joined)",
  });
  await waitFor(async () => /1 here/.test((await page.textContent(".llmchat-members")) ?? ""), { timeout: 240_000, what: "joined through the kernel" });
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 60_000, what: "model loaded" });
  const box = page.locator(".llmchat-input");
  await box.fill(question);
  await box.press("Enter");
  const key = await waitFor(
    async () => (await page.$$eval(".llmchat-msg[data-kind='assistant']", (els) => els.map((e) => e.dataset.key))).at(-1),
    { timeout: 120_000, what: "an answer" },
  );
  await waitFor(async () => (await page.getAttribute(`.llmchat-msg[data-key="${key}"]`, "data-finish")) !== "", { timeout: 120_000, what: "the answer to finish" });
  const answer = (await page.textContent(`.llmchat-msg[data-key="${key}"] .llmchat-body`))?.trim() ?? "";
  assert.ok(answer.length > 0, "a non-empty answer");
  assert.match(await page.getAttribute(`.llmchat-msg[data-key="${key}"]`, "data-finish"), /^(stop|length)$/);
  const { statuses, notices } = await seen();
  assert.ok(!statuses.includes("failed"), `never failed: ${statuses.join(" → ")}`);
  assert.equal(await page.getAttribute(".llmchat", "data-status"), "via_kernel");
  // The question is the user's own (a "user" message, not the kernel's "bot" post).
  const mine = await page.$$eval(".llmchat-msg[data-kind='user'] .llmchat-body", (els) => els.map((e) => e.textContent.trim()));
  assert.ok(mine.includes(question), `the question as the user's message: ${JSON.stringify(mine)}`);
  return { answer, statuses, notices };
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

for (const mode of ["run", "edit"]) {
  test(`marimo ${mode}: the widget starts the service through its kernel and streams an answer`, async (ctx) => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-anywhere-"));
    const env = serviceEnv(tmp);
    const marimo = await startMarimo({ source: marimoNotebook(`marimo-${mode}`), mode, env });
    ctx.cleanups.push(() => marimo.stop(), () => stopServices(env));
    const page = await ctx.page();
    await page.goto(marimo.url); // both modes run the cells on open (marimo's auto_instantiate)
    const { notices } = await askInTheWidget(page, `Say hello to marimo ${mode}.`);
    assert.ok(notices.some((n) => n.includes(STARTING)), `"${STARTING}" shown: ${JSON.stringify(notices)}`);
    const services = servicesOf(env);
    assert.equal(services.length, 1, "one service");
    await screenshot(page, `marimo-${mode}`);
  });
}

test("JupyterLab with the extension disabled: the kernel starts the service and the widget streams through it", async (ctx) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-anywhere-"));
  const env = serviceEnv(tmp);
  const lab = await startJupyter({ extension: false, env });
  ctx.cleanups.push(() => lab.stop(), () => stopServices(env));
  writeNotebook(lab.root, "anywhere.ipynb", [
    'from jupyter_llmchat import ChatWidget\nw = ChatWidget(room="lab-no-extension", config={"max_tokens": 24, "temperature": 0})\nw',
  ]);
  const page = await openNotebook(ctx.browser, { pageBase: lab.url, token: lab.token, name: "anywhere.ipynb" });
  ctx.pages.push(page);
  const { notices } = await askInTheWidget(page, "Say hello to JupyterLab.");
  assert.ok(notices.some((n) => n.includes(STARTING)), `"${STARTING}" shown: ${JSON.stringify(notices)}`);
  // The server itself has no llmchat (404); the kernel's service answered.
  assert.equal((await fetch(`${lab.url}llmchat/api/stats?token=${lab.token}`)).status, 404);
  assert.equal(servicesOf(env).length, 1);
  await screenshot(page, "lab-no-extension");
});

async function main() {
  const probe = spawnSync(pythonPath(), ["-c", "import marimo"]);
  if (probe.status !== 0) {
    console.log("e2e:anywhere: marimo is not installed (pip install -e '.[test]')");
    return 1;
  }
  const selected = tests.filter((t) => !only || only.split("|").some((o) => t.name.includes(o)));
  const browser = await launchBrowser();
  let passed = 0;
  let failed = 0;
  for (const t of selected) {
    const ctx = { browser, pages: [], cleanups: [] };
    ctx.page = async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      page.consoleErrors = [];
      page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
      ctx.pages.push(page);
      return page;
    };
    const started = Date.now();
    try {
      await t.fn(ctx);
      passed += 1;
      console.log(`ok   ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${t.name}\n     ${String(err?.stack ?? err).split("\n").slice(0, 6).join("\n     ")}`);
      const last = ctx.pages.at(-1);
      if (last) {
        const state = await last.evaluate(() => [...document.querySelectorAll(".llmchat")].map((el) => `${el.getAttribute("data-status")}: ${el.textContent.slice(0, 300)}`)).catch((e) => String(e));
        console.log(`     widget(s): ${JSON.stringify(state)}`);
        await screenshot(last, `FAILED-${t.name.replace(/\W+/g, "-").slice(0, 60)}`).catch(() => undefined);
      }
    } finally {
      for (const p of ctx.pages) await p.context().close().catch(() => undefined);
      for (const cleanup of ctx.cleanups.reverse()) await cleanup();
    }
  }
  await browser.close().catch(() => undefined);
  console.log(`e2e:anywhere: ${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main()
  .then((code) => process.exit(code))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
