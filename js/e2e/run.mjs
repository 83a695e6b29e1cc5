// End-to-end tests of ChatWidget in JupyterLab + headless Chromium.
//
//   npm run e2e                      # from js/, after `npm run build`
//   LLMCHAT_E2E_SERVER=0|1           # force server tests off/on (default: on when the
//                                    # package has its server extension: extension.py or server/)
//   LLMCHAT_PYTHON=/path/to/python   # default: ../.venv/bin/python, then python3
//   CHROMIUM=/usr/bin/chromium       # never downloaded by Playwright
//
// Prints "N passed, N failed" and exits non-zero on any failure. Screenshots go to
// test-artifacts/e2e/.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import * as esbuild from "esbuild";
import { moderationTests } from "./moderation.mjs";
import { statesNotebook, walkStates } from "./states.mjs";
import {
  copyNotebook,
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
    : ["extension.py", "server"].some((p) => fs.existsSync(path.join(repo, "jupyter_llmchat", p)));
const only = process.env.LLMCHAT_E2E_ONLY || "";
const runId = Math.random().toString(36).slice(2, 8); // rooms unique per run

const widgetCell = (args) =>
  `from jupyter_llmchat import ChatWidget\nw = ChatWidget(${args})\nw`;

const t0 = Date.now();
/** With LLMCHAT_E2E_VERBOSE=1, a timestamped line per step of the long tests. */
const step = (what) => {
  if (process.env.LLMCHAT_E2E_VERBOSE) console.log(`     ${((Date.now() - t0) / 1000).toFixed(1)} s  ${what}`);
};
const statusOf = (page) => page.$eval(".llmchat", (el) => el.getAttribute("data-status")).catch(() => null);
const py = async (page, expr) => (await kernelExec(page, `print(${expr})`)).trim();

/**
 * Record every status the widget passes through from now on, repeats folded (a MutationObserver
 * in the page: a state as short as a zero-delay retry is seen, which polling can miss);
 * returns a getter.
 */
async function recordStatuses(page) {
  await page.$eval(".llmchat", (el) => {
    const seen = (window.__llmchatStatuses = []);
    new MutationObserver(() => {
      const now = el.getAttribute("data-status");
      if (seen[seen.length - 1] !== now) seen.push(now);
    }).observe(el, {
      attributes: true,
      attributeFilter: ["data-status"],
    });
  });
  return () => page.evaluate(() => [...(window.__llmchatStatuses ?? [])]);
}

async function waitStatus(page, want, timeout = 60_000) {
  await waitFor(async () => (await statusOf(page)) === want, { timeout, what: `status ${want} (now ${await statusOf(page)})` });
}

async function typeAndSend(page, text) {
  const box = page.locator(".llmchat-input");
  await box.fill(text);
  await box.press("Enter");
}

const tests = [];
const test = (name, opts, fn) => tests.push({ name, ...opts, fn });

// ---------------------------------------------------------------------------------------
// Without the server extension: the kernel relay path.

test("falls back to the kernel relay, which finds no llmchat either (no autostart): failed, with the reason", { server: false }, async (ctx) => {
  const page = await ctx.notebook("fallback.ipynb", [widgetCell('room="e2e"')], { jupyter: ctx.bare });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  const statuses = new Set();
  await waitFor(async () => {
    statuses.add(await statusOf(page));
    return statuses.has("failed");
  }, { interval: 50, timeout: 30_000, what: "status failed" });
  assert.ok(statuses.has("via_kernel") || statuses.has("failed"), [...statuses].join());
  const notice = await page.textContent(".llmchat-notice");
  // This server has no llmchat, and its kernels may not start the service (LLMCHAT_AUTOSTART=0;
  // e2e/anywhere.mjs has the autostart): the kernel says both.
  assert.match(notice, /Cannot connect: no llmchat server reachable from the kernel: .*not enabled.*LLMCHAT_AUTOSTART=0.*\(503\)/);
  assert.match(await page.textContent(".llmchat-status-text"), /failed/);
  assert.ok(await page.isVisible(".llmchat-retry"), "Retry button offered");
  await waitFor(async () => (await py(page, "w.status")) === "failed", { what: "w.status in Python" });
  assert.match(await py(page, "w.error"), /no llmchat server reachable from the kernel/);
  // No retry loop: it stays failed (until the user presses Retry).
  await sleep(3_000);
  assert.equal(await statusOf(page), "failed");
  await screenshot(page, "fallback-failed");
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
  // "sending…" / "sent, waiting for the server" until the Ack, then the server's word on it.
  await waitFor(async () => /queued, position 1|generating|starting/.test(await page.textContent(".llmchat-requests")), {
    timeout: 10_000,
    what: "the request's queue state",
  });
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

test("code blocks: highlighted once the first one shows, Copy fills the clipboard, Insert as cell adds the cell", { server: false }, async (ctx) => {
  const fake = fs.readFileSync(path.join(here, "fake_relay.py"), "utf8");
  const page = await ctx.notebook("code.ipynb", [fake, widgetCell('room="code", transport="kernel", height="480px"')], { jupyter: ctx.bare });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "via_kernel");
  await waitFor(async () => (await page.textContent(".llmchat-log"))?.includes("the fake room"), { what: "History" });
  // Nothing with code on screen yet: the highlighter has not even been imported.
  assert.equal(await page.getAttribute(".llmchat", "data-highlighter"), "idle");
  await typeAndSend(page, "code");
  const block = page.locator('.llmchat-msg[data-kind="assistant"] .llmchat-code').last();
  await block.waitFor({ timeout: 30_000 });
  await waitFor(async () => (await page.getAttribute(".llmchat", "data-highlighter")) === "ready", { what: "highlighter loaded" });
  await waitFor(async () => (await block.locator('[class^="hljs-"]').count()) >= 2, { what: "highlighted tokens" });
  assert.equal(await block.locator(".hljs-built_in").textContent(), "print");
  assert.equal(await block.locator(".hljs-string").textContent(), "'hi'");
  assert.equal(await block.locator(".llmchat-code-lang").textContent(), "python");

  // Copy: the clipboard holds exactly the code.
  const origin = new URL(page.url()).origin;
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  await page.evaluate(() => navigator.clipboard.writeText("something else"));
  await block.locator(".llmchat-copy").click();
  await waitFor(async () => (await block.locator(".llmchat-copy").textContent()) === "Copied", { what: "Copied" });
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "print('hi')");

  // Insert as cell (this JupyterLab exposes its app: see docs/widget.md): a new cell below the widget's.
  const sources = () =>
    page.evaluate(() => window.jupyterapp.shell.currentWidget.content.widgets.map((c) => c.model.sharedModel.getSource()));
  const before = await sources();
  await block.locator(".llmchat-insert").click();
  await waitFor(async () => (await sources()).length === before.length + 1, { what: "a new cell" });
  const after = await sources();
  const widgetCellIndex = before.findIndex((s) => s.includes("ChatWidget("));
  assert.equal(after[widgetCellIndex + 1], "print('hi')");
  await screenshot(page, "code-block");
  assert.deepEqual(page.consoleErrors.filter((e) => /llmchat/i.test(e)), []);
});

test("states a user can see: loading, queued, error, reconnecting", { server: false }, async (ctx) => {
  const fake = fs.readFileSync(path.join(here, "fake_relay.py"), "utf8");
  const page = await ctx.notebook("states.ipynb", statesNotebook(fake), { jupyter: ctx.bare });
  await walkStates(page, (name) => screenshot(page, `state-${name}`));
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

test("a bad LLMChat setting: the widget fails at once with the reason, naming the setting", { server: true }, async (ctx) => {
  const jupyter = await startJupyter({ extension: true, extraArgs: ["--LLMChat.max_tokens=abc"] });
  try {
    const page = await ctx.notebook("bad-setting.ipynb", [widgetCell(`room="e2e-bad-${runId}"`)], { jupyter });
    await page.waitForSelector(".llmchat", { timeout: 60_000 });
    await waitStatus(page, "failed", 60_000);
    const notice = (await page.textContent(".llmchat-notice-text")) ?? "";
    assert.match(notice, /^Cannot connect: llmchat is not started: invalid setting: The 'max_tokens' trait .* 'abc'\.$/, notice);
    assert.ok(!/enabled/.test(notice), notice);
    await sleep(3000);
    assert.equal(await statusOf(page), "failed"); // no retry loop against a server that cannot serve
    await screenshot(page, "bad-setting");
  } finally {
    await jupyter.stop();
  }
});

test("heals after the connection is cut and resumes without duplicates", { server: true }, async (ctx) => {
  const page = ctx.livePage;
  assert.ok(page, "needs the previous test's page");
  const before = await page.locator(".llmchat-msg").count();
  ctx.proxy.cut({ refuse: true });
  step("heal: cut");
  await waitFor(async () => ["reconnecting", "connecting"].includes(await statusOf(page)), { what: "reconnecting", timeout: 40_000 });
  step("heal: reconnecting");
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
  step("heal: resumed");
  // "Retry now" if the widget is still waiting out its backoff (it may be live already: then
  // the button is hidden, and a plain click would wait for it for Playwright's 30 s).
  if (await page.isVisible(".llmchat-retry")) await page.click(".llmchat-retry", { timeout: 2_000 }).catch(() => undefined);
  await waitStatus(page, "live", 60_000);
  step("heal: live");
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
  await waitFor(async () => (await b.locator(".llmchat-msg.llmchat-own").count()) === 1, { what: "B's own message marked own" });
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

test("relays through the kernel to the real server (transport=\"kernel\") and heals a dropped relay", { server: true }, async (ctx) => {
  const room = `e2e-kr-${runId}`;
  const page = await ctx.notebook("relay.ipynb", [widgetCell(`room="${room}", transport="kernel", ask_mode=False`)], { jupyter: ctx.full });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "via_kernel", 60_000);
  await waitFor(async () => /1 here/.test(await page.textContent(".llmchat-members")), { what: "joined through the kernel" });
  assert.match(await page.textContent(".llmchat-notice"), /Relaying through the kernel \(kernel transport requested\)/);
  await typeAndSend(page, "/say through the kernel");
  await waitFor(async () => (await page.textContent(".llmchat-log")).includes("through the kernel"), { what: "own message relayed" });
  const post = (content) =>
    fetch(`${ctx.full.url}llmchat/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { Authorization: `token ${ctx.full.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ content, author_name: "e2e" }),
    });
  assert.ok((await post("hello relay")).ok);
  await waitFor(async () => (await page.textContent(".llmchat-log")).includes("hello relay"), { what: "REST post relayed" });
  // The kernel's socket dies (as in a network failure): the front end heals through the kernel.
  const statuses = await recordStatuses(page);
  await kernelExec(page, "w._relay.drop_sockets()");
  assert.ok((await post("missed via kernel")).ok);
  await waitFor(async () => {
    return (await statuses()).includes("reconnecting") && (await statusOf(page)) === "via_kernel" && (await page.textContent(".llmchat-log")).includes("missed via kernel");
  }, { interval: 50, timeout: 30_000, what: "healed relay: reconnecting, then via_kernel with the missed message" });
  assert.deepEqual((await statuses()).slice(-2), ["reconnecting", "via_kernel"]);
  await sleep(500);
  const texts = await page.$$eval(".llmchat-msg .llmchat-body", (els) => els.map((e) => e.textContent.trim()));
  for (const t of ["through the kernel", "hello relay", "missed via kernel"]) assert.equal(texts.filter((x) => x === t).length, 1, t);
  assert.equal(await py(page, "w.status"), "via_kernel");
  assert.equal(await py(page, "w._relay.connections"), "1");
  await screenshot(page, "kernel-relay-real-server");
});

// ---------------------------------------------------------------------------------------
// Issue 14 on the real server: /new, Regenerate, private asks, the room's system prompt,
// "Ask about the last error".

/** The room's stored messages (REST), oldest first. */
async function stored(jupyter, room) {
  const res = await fetch(`${jupyter.url}llmchat/api/rooms/${room}/messages?limit=100`, { headers: { Authorization: `token ${jupyter.token}` } });
  assert.ok(res.ok, `history of ${room}: ${res.status}`);
  return (await res.json()).messages.map((m) => m.data);
}

/** Wait for the newest answer on the page to finish; returns its key. */
async function finishedAnswer(page, notIn = new Set()) {
  const key = await waitFor(async () => (await assistantKeys(page)).filter((k) => !notIn.has(k)).at(-1), { timeout: 120_000, what: "an answer" });
  await waitFor(async () => (await page.getAttribute(`.llmchat-msg[data-key="${key}"]`, "data-finish")) !== "", { timeout: 120_000, what: "answer finished" });
  return key;
}

async function liveWidget(ctx, name, room, { run = "all", extraCells = [] } = {}) {
  const cells = [widgetCell(`room="${room}", config={"max_tokens": 24, "temperature": 0}`), ...extraCells];
  writeNotebook(ctx.full.root, name, cells);
  const page = await ctx.open({ jupyter: ctx.full, name, run });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "live", 60_000);
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 180_000, what: "model loaded" });
  return page;
}

test("/new starts a new thread, shown as a divider; the room's system prompt is in the header", { server: true }, async (ctx) => {
  const room = `e2e-thread-${runId}`;
  const page = await liveWidget(ctx, "thread.ipynb", room);
  await typeAndSend(page, "Say hello.");
  const first = await finishedAnswer(page);
  await typeAndSend(page, "/new");
  // The line is painted on the next animation frame, not at once.
  await waitFor(() => page.isVisible(".llmchat-thread-pending"), { timeout: 5_000, what: "the pending 'new thread' line" });
  await typeAndSend(page, "What is 2 + 3?");
  const second = await finishedAnswer(page, new Set([first]));
  assert.ok(!(await page.isVisible(".llmchat-thread-pending")));
  // The question is stored as a thread start, and a divider stands right before it.
  const messages = await stored(ctx.full, room);
  const questions = messages.filter((m) => m.author.kind === "user");
  assert.deepEqual(questions.map((q) => [q.content, q.thread_start === true]), [["Say hello.", false], ["What is 2 + 3?", true]]);
  const threadStart = questions[1].message_id;
  const previous = await page.$eval(`.llmchat-msg[data-key="${threadStart}"]`, (el) => el.previousElementSibling?.className ?? "");
  assert.match(previous, /llmchat-thread/);
  assert.equal(await page.locator(".llmchat-log .llmchat-thread:not(.llmchat-thread-pending)").count(), 1);
  assert.ok(second);
  // The answers are over: the stats line says so (it kept "generating 1" for up to 30 s before).
  await waitFor(async () => /generating 0/.test(await page.textContent(".llmchat-stats")), { timeout: 5_000, what: "generating 0" });

  // The header shows the room's system prompt; a change (REST PUT here) reaches it live.
  await waitFor(async () => /the server's default/.test(await page.textContent(".llmchat-sysprompt")), { what: "default prompt shown" });
  const res = await fetch(`${ctx.full.url}llmchat/api/rooms/${room}`, {
    method: "PUT",
    headers: { Authorization: `token ${ctx.full.token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ system_prompt: "Answer in one short sentence." }),
  });
  assert.ok(res.ok, `PUT settings: ${res.status}`);
  await waitFor(async () => (await page.textContent(".llmchat-sysprompt-text")) === "Answer in one short sentence.", { what: "new prompt in the header" });
  await screenshot(page, "thread-and-prompt");
});

test("Regenerate asks my last question again; the new answer replaces the old one", { server: true }, async (ctx) => {
  const room = `e2e-regen-${runId}`;
  const page = await liveWidget(ctx, "regen.ipynb", room);
  await typeAndSend(page, "Name a colour.");
  const first = await finishedAnswer(page);
  const button = page.locator(`.llmchat-msg[data-key="${first}"] .llmchat-regenerate`);
  await button.waitFor({ timeout: 10_000 });
  await button.click();
  const second = await finishedAnswer(page, new Set([first]));
  assert.notEqual(second, first);
  await waitFor(async () => (await page.locator(`.llmchat-msg[data-key="${second}"] .llmchat-regenerate`).count()) === 1, { what: "button moved" });
  assert.equal(await page.locator(".llmchat-regenerate").count(), 1);
  assert.ok(await page.$eval(`.llmchat-msg[data-key="${first}"]`, (el) => el.classList.contains("llmchat-replaced")));
  const messages = await stored(ctx.full, room);
  const questions = messages.filter((m) => m.author.kind === "user");
  assert.equal(questions.length, 1, "the question is not posted again");
  const again = messages.find((m) => m.message_id === second);
  assert.equal(again.regenerates, first);
  assert.equal(again.in_reply_to, questions[0].message_id);
  await screenshot(page, "regenerate");
});

test("the Private toggle asks without the room: answer shown here only, marked private, not stored", { server: true }, async (ctx) => {
  const room = `e2e-private-${runId}`;
  const page = await liveWidget(ctx, "private.ipynb", room);
  const other = await liveWidget(ctx, "private-other.ipynb", room);
  const head = async () => {
    const res = await fetch(`${ctx.full.url}llmchat/api/rooms/${room}`, { headers: { Authorization: `token ${ctx.full.token}` } });
    return (await res.json()).head_seq;
  };
  await waitFor(async () => /2 here/.test(await page.textContent(".llmchat-members")), { what: "both pages in the room" });
  // The second page's Presence is a room event: the page's resume point reaches the room's head
  // once it is in, and nothing else moves the head before the private ask.
  await waitFor(async () => Number(await py(page, "w.last_seq")) === (await head()), { what: "the second page's Presence in the first" });
  const headBefore = await head();
  await page.check(".llmchat-private-toggle input");
  await typeAndSend(page, "What is the capital of France?");
  const answer = page.locator('.llmchat-msg.llmchat-private[data-kind="assistant"]');
  await answer.waitFor({ timeout: 120_000 });
  await waitFor(async () => (await answer.getAttribute("data-finish")) !== "", { timeout: 120_000, what: "private answer finished" });
  assert.ok(["stop", "length"].includes(await answer.getAttribute("data-finish")));
  assert.ok((await answer.locator(".llmchat-body").textContent()).trim().length > 0);
  assert.equal(await page.locator(".llmchat-msg.llmchat-private .llmchat-private-tag").count(), 2); // question + answer
  // Not a room event: nobody else saw it, nothing was stored, the resume point did not move.
  await sleep(1_000);
  assert.ok(!(await other.textContent(".llmchat-log")).includes("capital of France"));
  assert.ok(!(await stored(ctx.full, room)).some((m) => m.content.includes("capital of France")));
  assert.equal(await head(), headBefore, "no room event for a private ask");
  await waitFor(async () => Number(await py(page, "w.last_seq")) === headBefore, { what: "resume point = the room's head" });
  // The room goes on as before, for both.
  await page.uncheck(".llmchat-private-toggle input");
  await typeAndSend(page, "/say back in the room");
  await waitFor(async () => (await other.textContent(".llmchat-log")).includes("back in the room"), { what: "room message" });
  await screenshot(page, "private");
});

test("\"Ask about the last error\" after a failing cell sends the error with a question", { server: true }, async (ctx) => {
  const room = `e2e-error-${runId}`;
  const page = await liveWidget(ctx, "error.ipynb", room, { run: "first", extraCells: ["values = [1, 2, 3]\nvalues[10]"] });
  // Nothing failed yet: the widget says so.
  await page.click(".llmchat-ask-error");
  await waitFor(async () => /No error to ask about/.test(await page.textContent(".llmchat-notice")), { what: "no-error notice" });
  // Run the failing cell, as a user would.
  await page.evaluate(async () => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    notebook.activeCellIndex = 1;
    await window.jupyterapp.commands.execute("notebook:run-cell");
  });
  await waitFor(
    async () =>
      page.evaluate(() =>
        window.jupyterapp.shell.currentWidget.content.widgets[1].model.outputs.toJSON().some((o) => o.output_type === "error" && o.ename === "IndexError"),
      ),
    { what: "the cell's IndexError" },
  );
  const before = new Set(await assistantKeys(page));
  await page.click(".llmchat-ask-error");
  const question = page.locator('.llmchat-msg[data-kind="bot"]', { hasText: "What does this error mean" }).last();
  await question.waitFor({ timeout: 30_000 });
  assert.match(await question.textContent(), /IndexError: list index out of range/);
  assert.equal(await question.locator(".llmchat-attachment").textContent(), "IndexError");
  assert.equal(await page.isVisible(".llmchat-notice"), false, "the earlier 'no error' notice is gone");
  await finishedAnswer(page, before);
  // Stored with what was attached (kind, label, size), not the traceback itself.
  const messages = await stored(ctx.full, room);
  const asked = messages.find((m) => m.content.startsWith("What does this error mean"));
  assert.equal(asked.attachments.length, 1);
  assert.equal(asked.attachments[0].kind, "error");
  assert.equal(asked.attachments[0].label, "IndexError");
  assert.ok(asked.attachments[0].chars > 0 && asked.attachments[0].text === undefined);
  await screenshot(page, "ask-about-error");
});

// ---------------------------------------------------------------------------------------
// The demo notebook, as the issue asks: JupyterLab (two pages, a restart mid-stream), Notebook 7.

const assistantKeys = (page) => page.$$eval('.llmchat-msg[data-kind="assistant"]', (els) => els.map((e) => e.dataset.key));
/** The rendered text of one message, without the "[error]"-style label after it. */
const bodyText = (page, key) =>
  page.$eval(`.llmchat-msg[data-key="${key}"] .llmchat-body`, (el) => {
    const copy = el.cloneNode(true);
    for (const f of copy.querySelectorAll(".llmchat-finish")) f.remove();
    return copy.textContent;
  });

async function assertInert(page, label) {
  assert.deepEqual(page.dialogs, [], `${label}: no alert() ran`);
  assert.equal(await page.locator(".llmchat-log img, .llmchat-log script, .llmchat-log iframe, .llmchat-log svg").count(), 0, `${label}: no live elements`);
  const hrefs = await page.$$eval(".llmchat-log a", (as) => as.map((a) => a.getAttribute("href")));
  assert.ok(hrefs.every((h) => /^https?:/.test(h)), `${label}: unsafe href in ${hrefs}`);
}

/** Close JupyterLab's own notices (e.g. "Server Connection Error" during a restart). */
async function dismissDialogs(page) {
  await page
    .evaluate(() => {
      for (const button of document.querySelectorAll(".jp-Dialog button")) {
        if (["Close", "Dismiss", "Ok", "OK"].includes(button.textContent.trim())) button.click();
      }
    })
    .catch(() => undefined);
}

/** The widget's own Markdown renderer, bundled for a blank page: what a stored text must look like. */
async function renderedText(browser, sources) {
  const built = await esbuild.build({
    entryPoints: [path.join(here, "..", "src", "render.ts")],
    bundle: true,
    format: "iife",
    globalName: "llmchatRender",
    write: false,
    logLevel: "silent",
  });
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.setContent("<!doctype html><html><body></body></html>");
    await page.addScriptTag({ content: built.outputFiles[0].text });
    return await page.evaluate((srcs) => srcs.map((src) => {
      const holder = document.createElement("div");
      holder.appendChild(window.llmchatRender.renderMarkdown(src));
      return holder.textContent;
    }), sources);
  } finally {
    await context.close();
  }
}

/**
 * Type prompts for a long answer (up to 1000 tokens) until one is seen streaming, on `page`
 * and on every page of `also`: growing text, not final yet (the small model sometimes
 * answers in a few words). Returns its key.
 */
async function askUntilStreaming(page, also = []) {
  // A base model primed for brief answers: the first prompt is one it answers at length
  // (at temperature 0 it writes number after number until the cap); if that is somehow
  // short, sample warmly and ask for a story or a long list by turns.
  const prompts = [
    "Write the numbers from 1 to 100 in a row.",
    "Tell me a long story about a dragon who learns to program in Python.",
    "List fifty animals, one per line.",
  ];
  for (let attempt = 1; attempt <= 8; attempt++) {
    const temperature = attempt === 1 ? 0 : 1.0;
    await kernelExec(page, `chat.config = {"max_tokens": 1000, "temperature": ${temperature}}`);
    const before = new Set(await assistantKeys(page));
    const prompt = `/new ${prompts[(attempt - 1) % prompts.length]}${attempt > 1 ? ` (take ${attempt})` : ""}`;
    await typeAndSend(page, prompt);
    const key = await waitFor(async () => (await assistantKeys(page)).find((k) => !before.has(k)), { timeout: 60_000, what: "answer starts" });
    const lengths = new Set();
    const state = await waitFor(async () => {
      const st = await page.$eval(`.llmchat-msg[data-key="${key}"]`, (el) => ({ streaming: el.classList.contains("llmchat-streaming"), n: el.textContent.length }));
      lengths.add(st.n);
      if (!st.streaming) return "finished";
      if (lengths.size < 3 || st.n < 120) return null;
      for (const other of also) {
        if ((await other.$(`.llmchat-msg.llmchat-streaming[data-key="${key}"] .llmchat-body p`)) === null) return null;
      }
      return "streaming";
    }, { interval: 50, timeout: 60_000, what: "tokens streaming" });
    if (state === "streaming") return key;
  }
  throw new Error("no answer long enough to watch it stream");
}

test("demo notebook in JupyterLab: two pages, streaming, inert XSS, a server restart mid-stream", { server: true, timeout: 240_000 }, async (ctx) => {
  const jupyter = ctx.full;
  copyNotebook(jupyter.root, "notebooks/demo.ipynb");
  const a = await ctx.open({ jupyter, name: "demo.ipynb", run: "first" });
  step("demo: page A open");
  await a.waitForSelector(".llmchat", { timeout: 60_000 });
  step("demo: A live");
  await waitStatus(a, "live", 60_000);
  assert.equal(await a.textContent(".llmchat-room"), "#demo");
  // A second page (another browser, another user) on the same notebook, in the same room.
  const b = await ctx.open({ jupyter, name: "demo.ipynb", run: "first" });
  await b.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(b, "live", 60_000);
  await waitFor(async () => /2 here/.test(await a.textContent(".llmchat-members")), { what: "both pages in #demo" });
  await waitFor(async () => (await a.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 120_000, what: "model loaded" });
  step("demo: model loaded");

  // Hostile text, typed in the widget and posted from the kernel (chat.send), stays inert.
  const typed = "<img src=x onerror=alert(1)> [x](javascript:alert(2)) <script>alert(3)</script>";
  const fromKernel = "<img src=y onerror=alert(4)> [y](javascript:alert(5)) <script>alert(6)</script>";
  await typeAndSend(a, `/say ${typed}`);
  const sent = await kernelExec(a, `print(chat.send(${JSON.stringify(fromKernel)}))`);
  assert.match(sent.trim(), /^m-/, `chat.send posted through the kernel client: ${sent}`);
  for (const page of [a, b]) {
    await waitFor(async () => {
      const log = await page.textContent(".llmchat-log");
      return log.includes("<img src=x onerror=alert(1)>") && log.includes("<script>alert(6)</script>");
    }, { what: "hostile messages shown as text" });
    await assertInert(page, "before the restart");
  }

  step("demo: xss checked");
  // A long answer (up to 1000 tokens), asked from page A; both pages stream it.
  const key = await askUntilStreaming(a, [b]);
  step("demo: streaming");

  // SIGTERM mid-stream (at once: the answer is still running): the widgets see the drop and
  // back off; then the server comes back on the same port with the same history file.
  const down = jupyter.terminate();
  await screenshot(a, "demo-lab-streaming");
  for (const page of [a, b]) {
    await waitFor(async () => (await statusOf(page)) === "reconnecting", { interval: 50, timeout: 30_000, what: "reconnecting" });
  }
  assert.match(await a.textContent(".llmchat-status-text"), /reconnecting/);
  await down;
  step("demo: server down");
  await screenshot(a, "demo-lab-reconnecting");
  await jupyter.restart();
  step("demo: server restarted");
  // "Retry now" instead of waiting out the backoff (a DOM click: JupyterLab's own "server
  // connection" dialog may cover the page).
  for (const page of [a, b]) await page.$eval(".llmchat-retry", (el) => el.click()).catch(() => undefined);
  for (const page of [a, b]) await waitStatus(page, "live", 60_000);
  step("demo: live again");

  // What the server stored: the answer so far, ended by the shutdown.
  const res = await fetch(`${jupyter.url}llmchat/api/rooms/demo/messages?limit=50&token=${jupyter.token}`);
  assert.ok(res.ok, `history: ${res.status}`);
  const stored = (await res.json()).messages;
  const answer = stored.find((m) => m.data.message_id === key);
  assert.ok(answer, `the interrupted answer ${key} is stored`);
  assert.equal(answer.data.finish_reason, "error");
  assert.equal(answer.data.error, "server shutting down");
  assert.ok(answer.data.content.length > 0);
  const [expected] = await renderedText(ctx.browser, [answer.data.content]);
  for (const page of [a, b]) {
    await waitFor(async () => (await page.$$(`.llmchat-msg[data-key="${key}"]`)).length === 1 && (await bodyText(page, key)) === expected, {
      timeout: 30_000,
      what: "the stored answer, once, exactly",
    }).catch(async (err) => {
      throw new Error(`${err.message}\nshown:    ${JSON.stringify(await bodyText(page, key).catch(() => null))}\nexpected: ${JSON.stringify(expected)}`);
    });
    assert.equal(await page.getAttribute(`.llmchat-msg[data-key="${key}"]`, "data-finish"), "error");
    assert.equal(await page.textContent(`.llmchat-msg[data-key="${key}"] .llmchat-finish`), " [error: server shutting down]");
    // The whole log is the server's history: nothing duplicated, nothing missing, in order.
    const keys = await page.$$eval(".llmchat-msg", (els) => els.map((e) => e.dataset.key));
    assert.deepEqual(keys, stored.map((m) => m.data.message_id));
    assert.equal(await page.locator(".llmchat-msg.llmchat-streaming").count(), 0);
    await assertInert(page, "after the restart");
  }
  await dismissDialogs(a);
  await sleep(300);
  await screenshot(a, "demo-lab-restored");
  step("demo: checked");
});

test("demo notebook in Notebook 7: the widget goes live, a prompt streams, Stop stops it", { server: true }, async (ctx) => {
  const jupyter = ctx.nb;
  copyNotebook(jupyter.root, "notebooks/demo.ipynb");
  const page = await ctx.open({ jupyter, name: "demo.ipynb", run: "first", ui: "notebook" });
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitStatus(page, "live", 60_000);
  assert.ok(page.url().includes("/notebooks/demo.ipynb"), page.url());
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 120_000, what: "model loaded" });
  // Its Stop button ends it (pressed while it still streams; else ask again).
  let key = null;
  for (let attempt = 0; attempt < 3 && !key; attempt++) {
    const k = await askUntilStreaming(page);
    const pressed = await page.evaluate((k) => {
      const msg = document.querySelector(`.llmchat-msg[data-key="${k}"]`);
      const stop = document.querySelector(".llmchat-stop");
      if (!msg?.classList.contains("llmchat-streaming") || !stop || stop.hidden) return false;
      stop.click();
      return true;
    }, k);
    if (pressed) key = k;
  }
  assert.ok(key, "Stop pressed on a streaming answer");
  await page.waitForSelector(`.llmchat-msg[data-key="${key}"][data-finish="cancelled"]`, { timeout: 30_000 });
  assert.equal(await py(page, "chat.status"), "live");
  await screenshot(page, "notebook7-demo");
});

// ---------------------------------------------------------------------------------------

moderationTests(test, { runId });

async function main() {
  const selected = tests.filter((t) => (t.server ? serverMode : true) && (!only || only.split("|").some((o) => t.name.includes(o))));
  const skipped = tests.length - selected.length;
  let passed = 0;
  let failed = 0;
  const ctx = { pages: [] };
  const browser = await launchBrowser();
  try {
    ctx.browser = browser;
    // Started together: each takes a few seconds (and its model a few more).
    [ctx.bare, ctx.full, ctx.nb] = await Promise.all([
      startJupyter({ extension: false }),
      serverMode ? startJupyter({ extension: true }) : null,
      serverMode && selected.some((t) => t.name.includes("Notebook 7")) ? startJupyter({ extension: true, app: "notebook", baseUrl: "/user/nb7/" }) : null,
    ]);
    if (serverMode) ctx.proxy = await startProxy(ctx.full.port);
    ctx.open = async ({ jupyter, name, viaProxy = false, run = "all", ui = "lab" }) => {
      const base = viaProxy ? jupyter.url.replace(`:${jupyter.port}/`, `:${ctx.proxy.port}/`) : jupyter.url;
      const page = await openNotebook(browser, { pageBase: base, token: jupyter.token, name, run, ui });
      ctx.pages.push(page);
      return page;
    };
    // A page on a server a test started itself, as a named user (moderation.mjs).
    ctx.openOn = async (jupyter, { name, user = null, downloads = false }) => {
      const page = await openNotebook(browser, { pageBase: jupyter.url, token: jupyter.token, name, user, downloads });
      ctx.pages.push(page);
      return page;
    };
    ctx.notebook = async (name, cells, { jupyter, viaProxy = false }) => {
      writeNotebook(jupyter.root, name, cells);
      return ctx.open({ jupyter, name, viaProxy });
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
    for (const j of [ctx.bare, ctx.full, ctx.nb, ...(ctx.stopAlso ?? [])]) {
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
