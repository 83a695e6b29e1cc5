// Regenerates the screenshots in docs/img:   npm run screenshot   (or: npm run screenshot -- states)
//   widget-jupyterlab.png   the demo notebook's widget in JupyterLab's light theme (its code cell
//                           and output), with a post from the kernel and a streamed answer
//   widget-state-*.png      loading, queued, error, reconnecting, in the scripted room of
//                           fake_relay.py (e2e/states.mjs), relayed through the kernel
//   widget-code.png         a highlighted code block with its Copy / Insert as cell buttons
import fs from "node:fs";
import path from "node:path";
import { copyNotebook, kernelExec, launchBrowser, openNotebook, repo, sleep, startJupyter, waitFor, writeNotebook } from "./harness.mjs";
import { statesNotebook, walkStates } from "./states.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const img = path.join(repo, "docs", "img");
const only = process.argv[2] ?? "";
fs.mkdirSync(img, { recursive: true });

async function shootWidget(page, name) {
  await page.evaluate(() => document.activeElement?.blur());
  await sleep(300);
  const out = path.join(img, `${name}.png`);
  await page.locator(".llmchat").first().screenshot({ path: out });
  console.log(`wrote ${out} (${fs.statSync(out).size} bytes)`);
}

async function demo(browser) {
  const out = path.join(img, "widget-jupyterlab.png");
  const jupyter = await startJupyter({ extension: true });
  try {
    copyNotebook(jupyter.root, "notebooks/demo.ipynb");
    const page = await openNotebook(browser, { pageBase: jupyter.url, token: jupyter.token, name: "demo.ipynb", run: "first" });
    await page.setViewportSize({ width: 1100, height: 1000 });
    await page.waitForSelector('.llmchat[data-status="live"]', { timeout: 60_000 });
    await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 120_000, what: "model" });
    await kernelExec(page, 'chat.height = "360px"; chat.config = {"temperature": 0, "max_tokens": 80}');
    await kernelExec(page, 'chat.send("Hint: exercise 3 needs a dict, not a list.", author_name="Teacher")');
    const box = page.locator(".llmchat-input");
    await box.fill("What is a Python dictionary? Answer in one sentence.");
    await box.press("Enter");
    const answer = page.locator('.llmchat-msg[data-kind="assistant"]').last();
    await answer.waitFor({ timeout: 60_000 });
    await waitFor(async () => (await answer.getAttribute("data-finish")) !== "", { timeout: 60_000, what: "answer" });
    await page.evaluate(() => document.activeElement?.blur());
    await sleep(500);
    // The code cell and its output: the widget as it sits in the notebook.
    const cell = page.locator(".jp-CodeCell", { has: page.locator(".llmchat") }).first();
    await cell.scrollIntoViewIfNeeded();
    await cell.screenshot({ path: out });
    console.log(`wrote ${out} (${fs.statSync(out).size} bytes)`);
  } finally {
    await jupyter.stop();
  }
}

async function scripted(browser) {
  const fake = fs.readFileSync(path.join(here, "fake_relay.py"), "utf8");
  const jupyter = await startJupyter({ extension: false });
  try {
    writeNotebook(jupyter.root, "states.ipynb", statesNotebook(fake));
    const page = await openNotebook(browser, { pageBase: jupyter.url, token: jupyter.token, name: "states.ipynb" });
    await page.setViewportSize({ width: 1200, height: 900 });
    await walkStates(page, (name) => shootWidget(page, `widget-state-${name}`));
    // A code block, highlighted, with its buttons.
    const box = page.locator(".llmchat-input");
    await box.fill("code");
    await box.press("Enter");
    await page.locator(".llmchat-code .hljs-built_in").last().waitFor({ timeout: 30_000 });
    await shootWidget(page, "widget-code");
  } finally {
    await jupyter.stop();
  }
}

const browser = await launchBrowser();
try {
  if (!only || only === "states") await scripted(browser);
  if (!only || only === "demo") await demo(browser);
} finally {
  await browser.close().catch(() => undefined);
}
