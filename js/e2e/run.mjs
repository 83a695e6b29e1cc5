// End-to-end tests of ChatWidget in JupyterLab + headless Chromium.
//
//   npm run e2e                      # from js/, after `npm run build`
//   LLMCHAT_E2E_SERVER=0|1           # force server tests off/on (default: on when
//                                    # jupyter_llmchat/extension.py exists)
//   LLMCHAT_PYTHON=/path/to/python   # default: ../.venv/bin/python, then python3
//   CHROMIUM=/usr/bin/chromium       # never downloaded by Playwright
//
// Prints "N passed, N failed" and exits non-zero on any failure. Screenshots go to
// test-artifacts/e2e/.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  kernelExec,
  launchBrowser,
  openNotebook,
  repo,
  screenshot,
  sleep,
  startJupyter,
  startProxy,
  waitFor,
  writeNotebook,
} from "./harness.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const serverMode =
  process.env.LLMCHAT_E2E_SERVER !== undefined
    ? process.env.LLMCHAT_E2E_SERVER === "1"
    : fs.existsSync(path.join(repo, "jupyter_llmchat", "extension.py"));
const only = process.env.LLMCHAT_E2E_ONLY || "";
const runId = Math.random().toString(36).slice(2, 8); // rooms unique per run

const widgetCell = (args) =>
  `from jupyter_llmchat.widget import ChatWidget\nw = ChatWidget(${args})\nw`;

const statusOf = (page) => page.$eval(".llmchat", (el) => el.getAttribute("data-status")).catch(() => null);
const py = async (page, expr) => (await kernelExec(page, `print(${expr})`)).trim();

async function waitStatus(page, want, timeout = 60_000) {
  await waitFor(async () => (await statusOf(page)) === want, { timeout, what: `status ${want} (now ${await statusOf(page)})` });
}

async function typeAndSend(page, text) {
  const box = page.locator(".llmchat textarea");
  await box.fill(text);
  await box.press("Enter");
}

const tests = [];
const test = (name, opts, fn) => tests.push({ name, ...opts, fn });

// ---------------------------------------------------------------------------------------
// Without the server extension: the kernel relay path.

test("falls back to the kernel relay and says so when the server has no llmchat", { server: false }, async (ctx) => {
  const page = await ctx.notebook("fallback.ipynb", [widgetCell('room="e2e"')], { jupyter: ctx.bare });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "via_kernel", 30_000);
  await waitFor(async () => (await page.textContent(".llmchat-notice"))?.includes("kernel relay not available yet"), {
    what: "the relay stub's error in the notice",
  });
  assert.match(await page.textContent(".llmchat-status-text"), /via kernel/);
  await waitFor(async () => (await py(page, "w.status")) === "via_kernel", { what: "w.status in Python" });
  await waitFor(async () => /kernel relay not available yet/.test(await py(page, "w.error")), { what: "w.error in Python" });
  assert.match(await py(page, "w.status_reason"), /not installed/);
  await screenshot(page, "fallback-via-kernel");
});

test("renders a room through the kernel relay: streaming, markdown, safety, Stop", { server: false }, async (ctx) => {
  const fake = fs.readFileSync(path.join(here, "fake_relay.py"), "utf8");
  const page = await ctx.notebook(
    "fake.ipynb",
    [fake, widgetCell('room="fake", transport="kernel", height="520px"')],
    { jupyter: ctx.bare },
  );
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "via_kernel");
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("the fake room"), { what: "History" });
  assert.equal(await page.textContent(".llmchat-members"), "2 here: Ada, Bob");
  assert.equal(await page.textContent(".llmchat-model"), "fake-model");

  // Ask from the UI (ask mode is on by default): prompt echoed, answer streamed, stats shown.
  await typeAndSend(page, "hello there");
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("You said: hello there."), { what: "streamed answer" });
  const answer = page.locator('.llmchat-msg[data-kind="assistant"]').last();
  await waitFor(async () => !(await answer.evaluate((el) => el.classList.contains("llmchat-streaming"))), { what: "final token" });
  assert.equal(await answer.locator("code").textContent(), "code");
  assert.equal(await answer.locator("a").getAttribute("rel"), "noopener noreferrer nofollow");
  assert.match(await page.textContent(".llmchat-stats"), /123\.4 tok\/s/);

  // Plain chat message with /say, and a post from Python.
  await typeAndSend(page, "/say just chatting");
  await kernelExec(page, 'w.send("from the kernel")');
  await waitFor(async () => {
    const t = await page.textContent(".llmchat-log");
    return t.includes("just chatting") && t.includes("from the kernel");
  }, { what: "plain messages" });

  // Hostile model output stays inert in a real browser.
  await kernelExec(page, 'w.ask("xss")');
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("[image: pixel]"), { what: "xss answer" });
  await sleep(300);
  assert.deepEqual(page.dialogs, []);
  assert.equal(await page.locator(".llmchat-log img, .llmchat-log script, .llmchat-log iframe").count(), 0);
  const hrefs = await page.$$eval(".llmchat-log a", (as) => as.map((a) => a.getAttribute("href")));
  assert.ok(hrefs.every((h) => /^https?:/.test(h)), `unsafe href in ${hrefs}`);
  assert.ok((await page.textContent(".llmchat-log")).includes("(https://evil.example/login)"), "link target shown");

  // Stop: visible from the moment of asking, sends Cancel, answer marked cancelled.
  await typeAndSend(page, "slow one two three four five six seven eight");
  await page.waitForSelector(".llmchat-request", { timeout: 10_000 });
  assert.match(await page.textContent(".llmchat-requests"), /queued, position 1|generating|starting/);
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("You said: slow"), { what: "slow stream" });
  await page.click(".llmchat-stop");
  await page.waitForSelector('.llmchat-msg[data-finish="cancelled"]', { timeout: 10_000 });
  assert.equal(await page.locator(".llmchat-request").count(), 0);
  assert.ok(Number(await py(page, "w.last_seq")) > 0);
  await screenshot(page, "fake-room");
  // The same room in JupyterLab's dark theme: the widget follows the --jp-* variables.
  await page.evaluate(() => window.jupyterapp.commands.execute("apputils:change-theme", { theme: "JupyterLab Dark" }));
  await waitFor(async () => (await page.evaluate(() => document.body.dataset.jpThemeLight)) === "false", { what: "dark theme" });
  await sleep(500);
  const bg = await page.$eval(".llmchat", (el) => getComputedStyle(el).backgroundColor);
  assert.notEqual(bg, "rgb(255, 255, 255)", "widget background follows the dark theme");
  await screenshot(page, "fake-room-dark");
  await page.evaluate(() => window.jupyterapp.commands.execute("apputils:change-theme", { theme: "JupyterLab Light" }));
  assert.deepEqual(page.consoleErrors.filter((e) => /llmchat/i.test(e)), []);
});

// ---------------------------------------------------------------------------------------
// With the server extension (after the server lands).

test("goes live under a non-root base_url and reports it to Python", { server: true }, async (ctx) => {
  const page = await ctx.notebook("live.ipynb", [widgetCell(`room="e2e-live-${runId}"`)], { jupyter: ctx.full, viaProxy: true });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "live", 60_000);
  await waitFor(async () => (await py(page, "w.status")) === "live", { what: "w.status live" });
  assert.match(await page.textContent(".llmchat-members"), /1 here/);
  await typeAndSend(page, "/say hello from the browser");
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("hello from the browser"), { what: "echo" });
  await kernelExec(page, 'w.send("<img src=x onerror=alert(1)> [x](javascript:alert(1))")');
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("<img src=x onerror=alert(1)>"), { what: "xss echo" });
  assert.deepEqual(page.dialogs, []);
  assert.equal(await page.locator(".llmchat-log img").count(), 0);
  await screenshot(page, "live");
  ctx.livePage = page;
});

test("heals after the connection is cut and resumes without duplicates", { server: true }, async (ctx) => {
  const page = ctx.livePage;
  assert.ok(page, "needs the previous test's page");
  const before = await page.locator(".llmchat-msg").count();
  ctx.proxy.cut({ refuse: true });
  await waitFor(async () => ["reconnecting", "connecting"].includes(await statusOf(page)), { what: "reconnecting", timeout: 40_000 });
  assert.match(await page.textContent(".llmchat-status-text"), /reconnecting/);
  // A message posted while we are away (through REST, by "another client")...
  const res = await fetch(`${ctx.full.url}llmchat/api/rooms/e2e-live-${runId}/messages`, {
    method: "POST",
    headers: { Authorization: `token ${ctx.full.token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ content: "missed while away", author_name: "e2e" }),
  });
  assert.ok(res.ok, `REST post: ${res.status}`);
  // ...and one typed while offline, queued until back.
  await typeAndSend(page, "/say typed while offline");
  ctx.proxy.resume();
  await page.click(".llmchat-retry").catch(() => undefined);
  await waitStatus(page, "live", 60_000);
  await waitFor(async () => {
    const t = await page.textContent(".llmchat-log");
    return t.includes("missed while away") && t.includes("typed while offline");
  }, { what: "missed + queued messages" });
  await sleep(500);
  const texts = await page.$$eval(".llmchat-msg .llmchat-body", (els) => els.map((e) => e.textContent.trim()));
  assert.equal(texts.filter((t) => t === "missed while away").length, 1);
  assert.equal(texts.filter((t) => t === "typed while offline").length, 1);
  assert.equal(await page.locator(".llmchat-msg").count(), before + 2);
});

test("two users in one room see each other and each other's messages", { server: true }, async (ctx) => {
  const a = ctx.livePage;
  assert.ok(a, "needs the live page");
  const b = await ctx.notebook("second.ipynb", [widgetCell(`room="e2e-live-${runId}", ask_mode=False`)], { jupyter: ctx.full });
  await b.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(b, "live", 60_000);
  await waitFor(async () => /2 here/.test(await a.textContent(".llmchat-members")), { what: "presence of the second user" });
  await typeAndSend(b, "hi from the second user");
  await waitFor(async () => (await a.textContent(".llmchat-log")).includes("hi from the second user"), { what: "message on A" });
  // B saw the backlog (History) too, and marks only its own message as own.
  assert.ok((await b.textContent(".llmchat-log")).includes("missed while away"));
  assert.equal(await b.locator(".llmchat-msg.llmchat-own").count(), 1);
  await b.context().close();
  ctx.pages.pop();
  await waitFor(async () => /1 here/.test(await a.textContent(".llmchat-members")), { what: "B left", timeout: 60_000 });
});

test("asks the shared model and streams the answer", { server: true }, async (ctx) => {
  const page = ctx.livePage;
  assert.ok(page, "needs the live page");
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", {
    timeout: 180_000,
    what: "model loaded",
  });
  await kernelExec(page, 'w.ask("Say hello.", max_tokens=16, temperature=0)');
  const answer = page.locator('.llmchat-msg[data-kind="assistant"]').last();
  await answer.waitFor({ timeout: 120_000 });
  await waitFor(async () => (await answer.getAttribute("data-finish")) !== "", { timeout: 120_000, what: "final token" });
  const finish = await answer.getAttribute("data-finish");
  assert.ok(["stop", "length"].includes(finish), `finish_reason ${finish}: ${await answer.textContent()}`);
  assert.ok((await answer.locator(".llmchat-body").textContent()).trim().length > 0);
  assert.match(await page.textContent(".llmchat-stats"), /tok\/s/);
  await screenshot(page, "live-answer");
});

// ---------------------------------------------------------------------------------------

async function main() {
  const selected = tests.filter((t) => (t.server ? serverMode : true) && (!only || t.name.includes(only)));
  const skipped = tests.length - selected.length;
  let passed = 0;
  let failed = 0;
  const ctx = { pages: [] };
  const browser = await launchBrowser();
  try {
    ctx.bare = await startJupyter({ extension: false });
    if (serverMode) {
      ctx.full = await startJupyter({ extension: true });
      ctx.proxy = await startProxy(ctx.full.port);
    }
    ctx.notebook = async (name, cells, { jupyter, viaProxy = false }) => {
      writeNotebook(jupyter.root, name, cells);
      const base = viaProxy ? jupyter.url.replace(`:${jupyter.port}/`, `:${ctx.proxy.port}/`) : jupyter.url;
      const page = await openNotebook(browser, { pageBase: base, token: jupyter.token, name });
      ctx.pages.push(page);
      return page;
    };
    for (const t of selected) {
      const started = Date.now();
      try {
        await Promise.race([
          t.fn(ctx),
          sleep(t.timeout ?? 300_000).then(() => {
            throw new Error("test timed out");
          }),
        ]);
        passed += 1;
        console.log(`ok   ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (err) {
        failed += 1;
        console.log(`FAIL ${t.name}\n     ${String(err?.stack ?? err).split("\n").slice(0, 6).join("\n     ")}`);
        const last = ctx.pages[ctx.pages.length - 1];
        if (last) {
          const state = await last
            .evaluate(() => [...document.querySelectorAll(".llmchat")].map((el) => `${el.getAttribute("data-status")}: ${el.textContent.slice(0, 300)}`))
            .catch((e) => String(e));
          console.log(`     widget(s): ${JSON.stringify(state)}`);
        }
        if (last) await screenshot(last, `FAILED-${t.name.replace(/\W+/g, "-").slice(0, 60)}`).catch(() => undefined);
      }
    }
  } finally {
    for (const p of ctx.pages) await p.context().close().catch(() => undefined);
    await browser.close().catch(() => undefined);
    await ctx.proxy?.close();
    for (const j of [ctx.bare, ctx.full]) {
      if (!j) continue;
      if (failed) console.log(`--- ${j.logPath} (tail) ---\n${j.log().slice(-2000)}`);
      await j.stop();
    }
  }
  console.log(`e2e: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
