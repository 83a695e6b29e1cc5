// Regenerates docs/img/widget-jupyterlab.png: the demo notebook's widget in JupyterLab's light
// theme (its code cell and output), with a post from the kernel and a streamed answer.   npm run screenshot
import fs from "node:fs";
import path from "node:path";
import { copyNotebook, kernelExec, launchBrowser, openNotebook, repo, sleep, startJupyter, waitFor } from "./harness.mjs";

const out = path.join(repo, "docs", "img", "widget-jupyterlab.png");
const browser = await launchBrowser();
const jupyter = await startJupyter({ extension: true });
try {
  copyNotebook(jupyter.root, "notebooks/demo.ipynb");
  const page = await openNotebook(browser, { pageBase: jupyter.url, token: jupyter.token, name: "demo.ipynb", run: "first" });
  await page.setViewportSize({ width: 1100, height: 1000 });
  await page.waitForSelector('.llmchat[data-status="live"]', { timeout: 60_000 });
  await waitFor(async () => (await page.getAttribute(".llmchat-model", "data-loaded")) === "true", { timeout: 120_000, what: "model" });
  await kernelExec(page, 'chat.height = "360px"; chat.config = {"temperature": 0, "max_tokens": 80}');
  await kernelExec(page, 'chat.send("Hint: exercise 3 needs a dict, not a list.", author_name="Teacher")');
  const box = page.locator(".llmchat textarea");
  await box.fill("What is a Python dictionary? Answer in one sentence.");
  await box.press("Enter");
  const answer = page.locator('.llmchat-msg[data-kind="assistant"]').last();
  await answer.waitFor({ timeout: 60_000 });
  await waitFor(async () => (await answer.getAttribute("data-finish")) !== "", { timeout: 60_000, what: "answer" });
  await page.evaluate(() => document.activeElement?.blur());
  await sleep(500);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  // The code cell and its output: the widget as it sits in the notebook.
  const cell = page.locator(".jp-CodeCell", { has: page.locator(".llmchat") }).first();
  await cell.scrollIntoViewIfNeeded();
  await cell.screenshot({ path: out });
  console.log(`wrote ${out} (${fs.statSync(out).size} bytes)`);
} finally {
  await browser.close().catch(() => undefined);
  await jupyter.stop();
}
