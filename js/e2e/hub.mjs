// End-to-end: a real JupyterHub (examples/jupyterhub/jupyterhub_config.py) with its proxy,
// Redis and the model server as the Hub's managed services, three users' servers, and
// their widgets in headless Chromium. One class room across all of them:
//   - alice's widget sees bob's message (bob typed it in his own widget, on his own server);
//   - alice's widget sees the teacher's broadcast from a cell of the teacher's notebook;
//   - a question alice asks is answered by the shared model and streams to bob too;
//   - the teacher, a Hub admin (`admin_users` in the example), is told they moderate (the
//     Hub's own identity says so) and alice is not; the teacher deletes bob's message from
//     the widget on the teacher's server and it leaves alice's and bob's widgets live.
//
//   npm run e2e:hub       # from js/, after `npm run build`
//
// Needs Debian's redis-server, the `configurable-http-proxy` dev dependency, and
// jupyterhub + llama-cpp-python[server] in the Python environment (the test extra).
// Prints "N passed, N failed" and exits non-zero on any failure.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, kernelExec, launchBrowser, pythonPath, repo, screenshot, waitFor, writeNotebook } from "./harness.mjs";

const here = path.dirname(new URL(import.meta.url).pathname);
const chp = path.join(here, "..", "node_modules", ".bin", "configurable-http-proxy");

function missing() {
  if (spawnSync("redis-server", ["--version"]).status !== 0) return "redis-server (apt-get install -y redis-server)";
  if (!fs.existsSync(chp)) return "configurable-http-proxy (npm ci in js/)";
  const probe = spawnSync(pythonPath(), ["-c", "import jupyterhub, llama_cpp.server"]);
  if (probe.status !== 0) return "jupyterhub / llama-cpp-python[server] in the Python environment (pip install -e '.[test]')";
  return null;
}

async function startHub() {
  const [hubPort, redisPort, modelPort] = [await freePort(), await freePort(), await freePort()];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-hub-"));
  const config = path.join(tmp, "jupyterhub_config.py");
  // The example as an admin would copy it, plus what a test needs: temporary dirs, one thread,
  // the page's app exposed (the test runs cells through it), this checkout on the path.
  fs.writeFileSync(
    config,
    [
      `exec(open(${JSON.stringify(path.join(repo, "examples", "jupyterhub", "jupyterhub_config.py"))}).read())`,
      `c.Spawner.args += ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",`,
      `    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LLMChat.n_threads=1"]`,
      `c.Spawner.environment = {"PYTHONPATH": ${JSON.stringify(repo)}}`,
      "",
    ].join("\n"),
  );
  const python = pythonPath();
  const env = {
    ...process.env,
    PATH: `${path.dirname(python)}:${process.env.PATH}`,
    PYTHONPATH: [repo, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    LLMCHAT_HUB_PORT: String(hubPort),
    LLMCHAT_REDIS_PORT: String(redisPort),
    LLMCHAT_MODEL_PORT: String(modelPort),
    LLMCHAT_MODEL_THREADS: "1",
    LLMCHAT_HUB_DIR: path.join(tmp, "hub"),
    LLMCHAT_CHP: chp,
  };
  const logPath = path.join(tmp, "hub.log");
  const log = fs.openSync(logPath, "a");
  const proc = spawn(path.join(path.dirname(python), "jupyterhub"), ["-f", config], { cwd: tmp, env, stdio: ["ignore", log, log], detached: true });
  fs.closeSync(log);
  const hub = {
    url: `http://127.0.0.1:${hubPort}/`,
    tmp,
    home: (user) => path.join(tmp, "hub", "home", user),
    log: () => fs.readFileSync(logPath, "utf8"),
    async stop() {
      // The Hub stops the users' servers and its services on SIGTERM; then make sure.
      try {
        process.kill(-proc.pid, "SIGTERM");
      } catch {
        // gone
      }
      await waitFor(() => proc.exitCode !== null || proc.signalCode !== null, { timeout: 30_000, what: "hub to exit" }).catch(() => undefined);
      for (const pattern of [tmp, `--port ${modelPort}`]) spawnSync("pkill", ["-9", "-f", pattern]);
    },
  };
  process.on("exit", () => {
    for (const pattern of [tmp, `--port ${modelPort}`]) spawnSync("pkill", ["-9", "-f", pattern]);
  });
  try {
    await waitFor(async () => (await fetch(`${hub.url}hub/login`).catch(() => null))?.ok, { timeout: 60_000, what: "the Hub to answer" });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${modelPort}/v1/models`).catch(() => null))?.ok, { timeout: 120_000, what: "the model server" });
  } catch (err) {
    console.log(`--- hub log (tail) ---\n${hub.log().slice(-3000)}`);
    await hub.stop();
    throw err;
  }
  return hub;
}

/** Log `user` in through the Hub's form and open `name` in their JupyterLab, cells run. */
async function openAs(browser, hub, user, name, cells) {
  fs.mkdirSync(hub.home(user), { recursive: true });
  writeNotebook(hub.home(user), name, cells);
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.consoleErrors = [];
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  await page.goto(`${hub.url}hub/login`);
  await page.fill("#username_input", user);
  await page.fill("#password_input", "any");
  await page.click("#login_submit");
  // The Hub spawns the server; its lab opens the notebook in a fresh workspace.
  await page.waitForURL(new RegExp(`/user/${user}/`), { timeout: 120_000 });
  await page.goto(`${hub.url}user/${user}/lab/workspaces/e2e-${Date.now()}/tree/${name}?reset`);
  await page.waitForFunction(
    () => {
      const w = window.jupyterapp?.shell?.currentWidget;
      const kernel = w?.sessionContext?.session?.kernel;
      return !!kernel && kernel.status === "idle" && w.content?.widgets?.length > 0;
    },
    null,
    { timeout: 120_000 },
  );
  await page.evaluate(() => window.jupyterapp.commands.execute("notebook:run-all-cells"));
  return page;
}

const logText = (page) => page.textContent(".llmchat-log").catch(() => "");
const live = (page) => waitFor(async () => (await page.$eval(".llmchat", (el) => el.getAttribute("data-status")).catch(() => null)) === "live", { timeout: 90_000, what: "widget live" });

async function main() {
  const why = missing();
  if (why) {
    console.log(`e2e:hub skipped: missing ${why}`);
    return 0;
  }
  const room = `class-${Math.random().toString(36).slice(2, 7)}`;
  const widget = [`from jupyter_llmchat import ChatWidget\nw = ChatWidget(room=${JSON.stringify(room)})\nw`];
  const hub = await startHub();
  const browser = await launchBrowser();
  let failed = 0;
  let page;
  try {
    const started = Date.now();
    const [alice, bob, teacher] = await Promise.all([
      openAs(browser, hub, "alice", "chat.ipynb", widget),
      openAs(browser, hub, "bob", "chat.ipynb", widget),
      openAs(browser, hub, "teacher", "lesson.ipynb", ["import jupyter_llmchat", ...widget]),
    ]);
    page = alice;
    await Promise.all([live(alice), live(bob)]);

    // bob, on his own server, writes in his widget; alice, on hers, sees it.
    await bob.uncheck(".llmchat-ask input");
    await bob.fill(".llmchat-input", "hello from bob");
    await bob.press(".llmchat-input", "Enter");
    await waitFor(async () => (await logText(alice)).includes("hello from bob"), { timeout: 30_000, what: "bob's message in alice's widget" });

    // The teacher broadcasts from a cell: no widget on the teacher's screen.
    const out = await kernelExec(teacher, `print(jupyter_llmchat.broadcast(${JSON.stringify(room)}, "Quiz at ten", author_name="Teacher"))`);
    assert.doesNotMatch(out, /ERROR/, out);
    for (const p of [alice, bob]) {
      await waitFor(async () => (await logText(p)).includes("Quiz at ten"), { timeout: 30_000, what: "the teacher's broadcast" });
    }

    // alice asks; the shared model server answers; bob's widget streams the same answer.
    await alice.fill(".llmchat-input", "Say hello to the class.");
    await alice.press(".llmchat-input", "Enter");
    const answered = (p) => p.$$eval(".llmchat-msg[data-kind='assistant']", (els) => els.map((e) => e.textContent ?? "").filter((t) => t.trim().length > 0).length).catch(() => 0);
    await waitFor(async () => (await answered(alice)) > 0 && (await answered(bob)) > 0, { timeout: 90_000, what: "the answer in both widgets" });
    await screenshot(alice, "hub-alice");

    // Moderation through the Hub's identity: the teacher is a Hub admin, alice is not.
    await live(teacher);
    const moderator = (p) => p.getAttribute(".llmchat", "data-moderator");
    await waitFor(async () => (await moderator(teacher)) === "true", { timeout: 30_000, what: "the Hub admin told they moderate" });
    assert.equal(await moderator(alice), "false");
    const bobs = teacher.locator(".llmchat-msg", { hasText: "hello from bob" });
    await bobs.locator(".llmchat-menu-button").click();
    await bobs.locator(".llmchat-menu-item", { hasText: "Delete" }).click();
    for (const p of [alice, bob]) {
      await waitFor(async () => !(await logText(p)).includes("hello from bob"), { timeout: 30_000, what: "bob's message removed across servers" });
    }
    await waitFor(async () => (await logText(alice)).includes("removed a message by"), { timeout: 30_000, what: "the system line" });
    assert.deepEqual(alice.consoleErrors, []);
    console.log(`ok   three users on a JupyterHub share one room and one model; the Hub admin moderates it (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed = 1;
    console.log(`FAIL three users on a JupyterHub share one room and one model\n     ${String(err?.stack ?? err).split("\n").slice(0, 6).join("\n     ")}`);
    if (page) await screenshot(page, "FAILED-hub").catch(() => undefined);
    const lines = hub.log().split("\n").filter((l) => !/^(llama_|print_info|load_tensors|sched_|graph_|\s)/.test(l));
    console.log(`--- hub log (tail) ---\n${lines.slice(-60).join("\n")}`);
  } finally {
    await browser.close().catch(() => undefined);
    await hub.stop();
  }
  console.log(`e2e:hub: ${1 - failed} passed, ${failed} failed`);
  return failed;
}

main()
  .then((code) => process.exit(code))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
