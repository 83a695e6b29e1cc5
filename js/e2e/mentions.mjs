// `@name` in the widget's box, in headless Chromium, as a user types it: JupyterLab with the
// server extension and the real model. Typing `@` lists the kernel's variables (over the
// widget's comm, from the kernel the widget lives in), the list narrows as you type, the keys
// and the mouse choose; the question goes out with the variables mentioned as attachments,
// `@error` carries the last exception, other names stay text; the room stores kinds and
// sizes, never the data.
//
//   npm run e2e:mentions             # from js/, after `npm run build`
//
// Then the same in marimo (`marimo run`, and `marimo edit` whose kernel is a process of its
// own; the notebook's kernel relays the widget to that Jupyter server): the list comes from
// the notebook's globals. Skipped, saying so, where
// marimo is not installed.
//
// Prints "N passed, N failed" and exits non-zero on any failure; screenshots go to
// test-artifacts/e2e/.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { freePort, launchBrowser, openNotebook, pythonPath, repo, screenshot, startJupyter, waitFor, writeNotebook } from "./harness.mjs";

const runId = Math.random().toString(36).slice(2, 8);

const CELLS = (room) => [
  `from jupyter_llmchat import ChatWidget\nw = ChatWidget(room="${room}", config={"max_tokens": 16, "temperature": 0})\nw`,
  "import pandas as pd\ndf = pd.DataFrame({'a': range(200), 'b': 1.5})\nnames = ['ada', 'bob']\n_secret = 'never listed'",
  "values = [1, 2, 3]\nvalues[10]",
];

const options = (page) => page.$$eval(".llmchat-mentions [role=option]", (els) => els.map((e) => e.dataset.name));
const popupOpen = (page) => page.$eval(".llmchat-mentions", (el) => !el.hidden);

/**
 * The user's steps on a page showing a live widget whose kernel has `df` (200×2), `names`,
 * `_secret`, a module and a cell that failed with an IndexError. Returns the text asked.
 */
async function mentionSteps(page) {
  const box = page.locator(".llmchat-input");
  await box.click();
  await page.keyboard.type("Describe @");
  await waitFor(async () => (await options(page)).length > 0, { what: "the @ popup's options" });
  const listed = await options(page);
  for (const name of ["df", "names"]) assert.ok(listed.includes(name), `${name} listed: ${listed}`);
  for (const name of ["pd", "_secret", "ChatWidget", "In", "exit"]) assert.ok(!listed.includes(name), `${name} not listed: ${listed}`);
  assert.equal(listed[0], "error", "the last exception first");
  // The box points at the list and its active option (keyboard users and screen readers).
  const listId = await page.getAttribute(".llmchat-mentions [role=listbox]", "id");
  assert.equal(await box.getAttribute("aria-controls"), listId);
  assert.equal(await box.getAttribute("aria-expanded"), "true");
  const firstId = await page.getAttribute(".llmchat-mentions [role=option] >> nth=0", "id");
  assert.equal(await box.getAttribute("aria-activedescendant"), firstId);
  const dfLabel = await page.textContent('.llmchat-mentions [data-name="df"] .llmchat-mention-label');
  assert.equal(dfLabel, "DataFrame 200×2");

  // Narrowed as you type; Enter completes (it does not send).
  await screenshot(page, "mentions-popup");
  await page.keyboard.type("d");
  await waitFor(async () => JSON.stringify(await options(page)) === '["df"]', { what: "the list narrowed to df" });
  await page.keyboard.press("Enter");
  assert.equal(await box.inputValue(), "Describe @df ");
  assert.equal(await popupOpen(page), false);
  await waitFor(async () => (await page.textContent(".llmchat-chips"))?.includes("DataFrame 200×2"), { what: "the df chip" });

  // A name that is no variable: the popup says it stays text; Escape closes it.
  await page.keyboard.type("with @nobody");
  await waitFor(async () => /No variable named like "nobody"/.test(await page.textContent(".llmchat-mentions")), { what: "no match" });
  await page.keyboard.press("Escape");
  assert.equal(await popupOpen(page), false);

  // ArrowDown and a click: `@na` lists `names`; the mouse picks it.
  await page.keyboard.type(" and @na");
  await waitFor(async () => (await options(page)).includes("names"), { what: "names listed" });
  await page.click('.llmchat-mentions [data-name="names"]');
  assert.equal(await box.inputValue(), "Describe @df with @nobody and @names ");
  // Tab completes `@err` to the last exception.
  await page.keyboard.type("and @err");
  await waitFor(async () => (await options(page))[0] === "error", { what: "error listed" });
  await page.keyboard.press("Tab");
  assert.equal((await box.inputValue()).trim(), "Describe @df with @nobody and @names and @error");
  const chips = await page.$$eval(".llmchat-chip", (els) => els.map((e) => e.dataset.name));
  assert.deepEqual(chips, ["df", "names", "error"]);
  await screenshot(page, "mentions-chips");
  // The × on a chip turns a mention back into text.
  await page.click('.llmchat-chip[data-name="names"] .llmchat-chip-remove');
  const asked = "Describe @df with @nobody and names and @error";
  assert.equal((await box.inputValue()).trim(), asked);
  await page.keyboard.press("Enter");
  await waitFor(async () => (await box.inputValue()) === "", { what: "the box cleared once sent" });
  return asked;
}

async function stored(jupyter, room) {
  const res = await fetch(`${jupyter.url}llmchat/api/rooms/${room}/messages?limit=100`, { headers: { Authorization: `token ${jupyter.token}` } });
  assert.ok(res.ok, `history of ${room}: ${res.status}`);
  return (await res.json()).messages.map((m) => m.data);
}

const MARIMO_NOTEBOOK = (room) => `import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    from jupyter_llmchat import ChatWidget
    chat = mo.ui.anywidget(ChatWidget(room="${room}", config={"max_tokens": 16, "temperature": 0}))
    chat
    return


@app.cell
def _():
    import pandas as pd
    df = pd.DataFrame({"a": range(200), "b": 1.5})
    names = ["ada", "bob"]
    _secret = "never listed"
    return df, names


@app.cell
def _():
    _values = [1, 2, 3]
    _values[10]
    return
`;

/**
 * `marimo run` (or `marimo edit`, whose kernel is a process of its own) of `source` on
 * loopback, its kernel pointed at `jupyter`; null without marimo.
 */
async function startMarimo(jupyter, source, mode) {
  const python = pythonPath();
  if (spawnSync(python, ["-c", "import marimo"]).status !== 0) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-marimo-"));
  fs.writeFileSync(path.join(dir, "notebook.py"), source);
  const port = await freePort();
  const logPath = path.join(dir, "marimo.log");
  const log = fs.openSync(logPath, "w");
  const env = {
    ...process.env,
    PYTHONPATH: [repo, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    LLMCHAT_URL: jupyter.url,
    LLMCHAT_TOKEN: jupyter.token,
    MARIMO_SKIP_UPDATE_CHECK: "1",
  };
  const edit = mode === "edit" ? ["--no-token", "--skip-update-check"] : [];
  const args = ["-m", "marimo", mode, "--headless", ...edit, "--host", "127.0.0.1", "--port", String(port), "notebook.py"];
  const proc = spawn(python, args, { cwd: dir, env, stdio: ["ignore", log, log], detached: true });
  fs.closeSync(log);
  const stop = () => {
    try {
      process.kill(-proc.pid, "SIGTERM");
    } catch {
      // gone already
    }
  };
  process.on("exit", stop);
  const url = `http://127.0.0.1:${port}/`;
  await waitFor(async () => (await fetch(url)).ok, { timeout: 60_000, what: "marimo to start" }).catch((err) => {
    stop();
    throw new Error(`${err.message}\n${fs.readFileSync(logPath, "utf8").slice(-2000)}`);
  });
  return { url, stop, log: () => fs.readFileSync(logPath, "utf8") };
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test("JupyterLab: @ lists the kernel's variables; the question carries df and the last error, stored as kinds and sizes", async (ctx) => {
  const room = `e2e-mentions-${runId}`;
  writeNotebook(ctx.jupyter.root, "mentions.ipynb", CELLS(room));
  const page = await openNotebook(ctx.browser, { pageBase: ctx.jupyter.url, token: ctx.jupyter.token, name: "mentions.ipynb" });
  ctx.pages.push(page);
  await page.waitForSelector(".llmchat", { timeout: 60_000 });
  await waitFor(async () => (await page.getAttribute(".llmchat", "data-status")) === "live", { timeout: 60_000, what: "live" });
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 180_000, what: "model loaded" });
  await waitFor(
    async () =>
      page.evaluate(() =>
        window.jupyterapp.shell.currentWidget.content.widgets[2].model.outputs.toJSON().some((o) => o.output_type === "error"),
      ),
    { timeout: 60_000, what: "the failing cell ran" },
  );
  const asked = await mentionSteps(page);

  // The question in the log: the user's own, with one chip per attachment (kind and size).
  const question = page.locator('.llmchat-msg[data-kind="user"]', { hasText: "Describe" }).last();
  await question.waitFor({ timeout: 30_000 });
  assert.equal((await question.locator(".llmchat-body").textContent()).trim(), asked);
  const attached = await question.locator(".llmchat-attachment").allTextContents();
  assert.deepEqual(attached, ["df (DataFrame 200×2)", "IndexError"]);
  await page.locator('.llmchat-msg[data-kind="assistant"]').last().waitFor({ timeout: 120_000 });
  await screenshot(page, "mentions-asked");

  // Stored with kinds, labels and sizes; the descriptions themselves are not kept.
  const messages = await stored(ctx.jupyter, room);
  const q = messages.find((m) => m.content === asked);
  assert.ok(q, "the question is stored as typed (plain @nobody and names included)");
  assert.deepEqual(q.attachments.map((a) => [a.kind, a.label]), [["dataframe", "df (DataFrame 200×2)"], ["error", "IndexError"]]);
  assert.ok(q.attachments.every((a) => a.chars > 0 && a.text === undefined));
  assert.ok(!JSON.stringify(messages).includes("list index out of range"), "the traceback is not stored");
});

for (const mode of ["run", "edit"]) {
  test(`marimo ${mode}: @ lists the notebook's globals; the question carries df and the failed cell's error, stored as kinds and sizes`, async (ctx) => {
    const room = `e2e-mentions-marimo-${mode}-${runId}`;
    const marimo = await startMarimo(ctx.jupyter, MARIMO_NOTEBOOK(room), mode);
    if (!marimo) return "skipped: marimo is not installed";
    ctx.stops.push(marimo.stop);
    const page = await (await ctx.browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    ctx.pages.push(page);
    await page.goto(marimo.url);
    if (mode === "edit") {
      // An edited notebook opens with its cells not run: "Run all" (the bottom-right button),
      // again until it takes (a click before the kernel is up does nothing).
      await waitFor(
        async () => {
          if (await page.$(".llmchat")) return true;
          await page.locator("[data-testid=run-button]").last().click({ timeout: 10_000 });
          return false;
        },
        { timeout: 90_000, interval: 3_000, what: "marimo edit to run the cells" },
      );
    }
    await page.waitForSelector(".llmchat", { timeout: 90_000 });
    // No Jupyter page here: the widget relays through its kernel to the Jupyter server.
    await waitFor(async () => (await page.getAttribute(".llmchat", "data-status")) === "via_kernel", { timeout: 60_000, what: "via_kernel" });
    await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 180_000, what: "model loaded" });
    const asked = await mentionSteps(page);
    const question = page.locator('.llmchat-msg[data-kind="user"]', { hasText: "Describe" }).last();
    await question.waitFor({ timeout: 30_000 });
    assert.deepEqual(await question.locator(".llmchat-attachment").allTextContents(), ["df (DataFrame 200×2)", "IndexError"]);
    await screenshot(page, `mentions-marimo-${mode}`);
    // "Ask about the last error" finds the same exception in marimo.
    await page.click(".llmchat-ask-error");
    const asking = page.locator('.llmchat-msg[data-kind="bot"]', { hasText: "What does this error mean" }).last();
    await asking.waitFor({ timeout: 30_000 });
    assert.equal(await asking.locator(".llmchat-attachment").textContent(), "IndexError");
    const q = (await stored(ctx.jupyter, room)).find((m) => m.content === asked);
    assert.ok(q, "the question is stored as typed");
    assert.deepEqual(q.attachments.map((a) => [a.kind, a.label]), [["dataframe", "df (DataFrame 200×2)"], ["error", "IndexError"]]);
    assert.ok(q.attachments.every((a) => a.chars > 0 && a.text === undefined));
  });
}

async function main() {
  const ctx = { pages: [], stops: [] };
  let passed = 0;
  let failed = 0;
  ctx.browser = await launchBrowser();
  try {
    ctx.jupyter = await startJupyter({ extension: true });
    for (const t of tests) {
      const started = Date.now();
      try {
        const skipped = await t.fn(ctx);
        if (skipped) {
          console.log(`skip ${t.name}: ${skipped}`);
          continue;
        }
        passed += 1;
        console.log(`ok   ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (err) {
        failed += 1;
        console.log(`FAIL ${t.name}\n     ${String(err?.stack ?? err).split("\n").slice(0, 6).join("\n     ")}`);
        const last = ctx.pages.at(-1);
        if (last) await screenshot(last, `FAILED-mentions-${t.name.replace(/\W+/g, "-").slice(0, 40)}`).catch(() => undefined);
      }
    }
  } finally {
    for (const p of ctx.pages) await p.context().close().catch(() => undefined);
    await ctx.browser.close().catch(() => undefined);
    for (const stop of ctx.stops) stop();
    if (ctx.jupyter) {
      if (failed) console.log(`--- ${ctx.jupyter.logPath} (tail) ---\n${ctx.jupyter.log().slice(-2000)}`);
      await ctx.jupyter.stop();
    }
  }
  console.log(`e2e mentions: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
