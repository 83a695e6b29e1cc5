// Plumbing for the end-to-end tests: a JupyterLab on loopback, a cuttable TCP proxy in front
// of it, Debian's headless Chromium through playwright-core (which never downloads a browser),
// and helpers to run a notebook and talk to its kernel.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "..", "..");
export const artifacts = process.env.LLMCHAT_E2E_ARTIFACTS || path.join(repo, "test-artifacts", "e2e");

export function pythonPath() {
  if (process.env.LLMCHAT_PYTHON) return process.env.LLMCHAT_PYTHON;
  const venv = path.join(repo, ".venv", "bin", "python");
  return fs.existsSync(venv) ? venv : "python3";
}

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor(fn, { timeout = 30_000, interval = 200, what = "condition" } = {}) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(interval);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/**
 * Start `jupyter lab` (or, with `app: "notebook"`, Notebook 7's `jupyter notebook`) on
 * 127.0.0.1 under a non-root base_url, in a throw-away root and config dir. `extension`: true
 * loads jupyter_llmchat's server extension, false disables it. `restart()` stops the server
 * with SIGTERM (Jupyter's graceful shutdown) and starts it again on the same port, token,
 * runtime dir and history file.
 */
export async function startJupyter({ extension, app = "lab", baseUrl = "/user/e2e/", extraArgs = [], importPaths = [], env: extraEnv = {} } = {}) {
  const port = await freePort();
  const token = crypto.randomBytes(16).toString("hex");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-e2e-"));
  const root = path.join(tmp, "root");
  fs.mkdirSync(root);
  const python = pythonPath();
  const binDir = path.dirname(python);
  const appArgs =
    app === "notebook"
      ? ["-m", "notebook", "--JupyterNotebookApp.expose_app_in_browser=True"]
      : [
          "-m", "jupyterlab",
          "--LabApp.expose_app_in_browser=True",
          "--LabApp.news_url=",
          "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ];
  const args = [
    ...appArgs,
    "--no-browser",
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port-retries=0",
    `--IdentityProvider.token=${token}`,
    `--ServerApp.base_url=${baseUrl}`,
    `--ServerApp.root_dir=${root}`,
    `--ServerApp.jpserver_extensions={"jupyter_llmchat": ${extension ? "True" : "False"}}`,
    ...(process.getuid?.() === 0 ? ["--allow-root"] : []),
    // Keep the history of test rooms out of the user's real history file.
    ...(extension ? [`--LLMChat.history_path=${path.join(tmp, "history.sqlite")}`] : []),
    ...extraArgs,
  ];
  // No "get notified about Jupyter news?" toast over the widget in the screenshots.
  const notifications = path.join(tmp, "lab-settings", "@jupyterlab", "apputils-extension");
  fs.mkdirSync(notifications, { recursive: true });
  fs.writeFileSync(path.join(notifications, "notification.jupyterlab-settings"), JSON.stringify({ fetchNews: "false", checkForUpdates: false }));
  const logPath = path.join(tmp, "jupyter.log");
  fs.writeFileSync(logPath, "");
  const env = {
    ...process.env,
    PATH: `${binDir}:${process.env.PATH}`,
    PYTHONPATH: [repo, ...importPaths, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    JUPYTER_CONFIG_DIR: path.join(tmp, "config"),
    JUPYTER_RUNTIME_DIR: path.join(tmp, "runtime"),
    IPYTHONDIR: path.join(tmp, "ipython"),
    JUPYTERLAB_SETTINGS_DIR: path.join(tmp, "lab-settings"),
    JUPYTERLAB_WORKSPACES_DIR: path.join(tmp, "lab-workspaces"),
    // No `jupyter llmchat serve` started by a kernel unless a test asks for it (serviceEnv).
    LLMCHAT_AUTOSTART: "0",
    ...extraEnv,
  };
  const launch = () => {
    const log = fs.openSync(logPath, "a");
    const proc = spawn(python, args, { env, stdio: ["ignore", log, log], detached: true });
    fs.closeSync(log);
    stopWithUs(proc);
    return proc;
  };
  const exited = (proc) => proc.exitCode !== null || proc.signalCode !== null;
  const url = `http://127.0.0.1:${port}${baseUrl}`;
  const server = {
    app,
    port,
    token,
    url,
    root,
    tmp,
    logPath,
    proc: launch(),
    log: () => fs.readFileSync(logPath, "utf8"),
    async ready() {
      const proc = this.proc;
      await waitFor(
        async () => {
          if (exited(proc)) throw new Error(`jupyter exited (${proc.exitCode}):\n${server.log().slice(-3000)}`);
          const res = await fetch(`${url}api/status?token=${token}`);
          return res.ok;
        },
        { timeout: 60_000, what: `jupyter ${app} to start` },
      );
    },
    /** SIGTERM to the server process only, as `kill <pid>` would: it shuts its kernels down. */
    async terminate() {
      const proc = this.proc;
      if (exited(proc)) return;
      proc.kill("SIGTERM");
      await waitFor(() => exited(proc), { timeout: 30_000, what: "jupyter to exit after SIGTERM" });
    },
    async restart() {
      await this.terminate();
      this.proc = launch();
      await this.ready();
    },
    async stop() {
      const proc = this.proc;
      if (exited(proc)) return;
      try {
        process.kill(-proc.pid, "SIGTERM");
      } catch {
        // already gone
      }
      await waitFor(() => exited(proc), { timeout: 10_000, what: "jupyter to exit" }).catch(() => {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          // gone
        }
      });
    },
  };
  await server.ready().catch(async (err) => {
    await server.stop();
    throw err;
  });
  return server;
}

/**
 * Servers run in process groups of their own (so that `stop` reaches their kernels too):
 * if this process ends in any other way than through `stop` (a crash, Ctrl+C, SIGTERM from
 * CI, a closed pipe), they are sent SIGTERM as it exits instead of living on.
 */
const running = new Set();
function stopWithUs(proc) {
  if (running.size === 0 && !stopWithUs.hooked) {
    stopWithUs.hooked = true;
    const killAll = () => {
      for (const pid of running) {
        try {
          process.kill(-pid, "SIGTERM");
        } catch {
          // already gone
        }
      }
    };
    process.on("exit", killAll);
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
      process.on(signal, () => {
        killAll();
        process.exit(code);
      });
    }
  }
  running.add(proc.pid);
  proc.on("exit", () => running.delete(proc.pid));
}

/** A TCP proxy on loopback whose live connections can be cut, to drop WebSockets for real. */
export async function startProxy(targetPort) {
  const conns = new Set();
  let paused = false;
  const srv = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    conns.add(client);
    conns.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on("error", done).on("close", done);
    upstream.on("error", done).on("close", done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const port = await new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv.address().port)));
  return {
    port,
    /** Drop every open connection (and, with `refuse`, refuse new ones until resume()). */
    cut({ refuse = false } = {}) {
      paused = refuse;
      for (const c of conns) c.destroy();
      conns.clear();
    },
    resume() {
      paused = false;
    },
    close() {
      this.cut();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--headless"],
  });
}

/** Copy a notebook of the repository (e.g. notebooks/demo.ipynb) into a server's root. */
export function copyNotebook(root, repoPath, name = path.basename(repoPath)) {
  fs.copyFileSync(path.join(repo, repoPath), path.join(root, name));
  return name;
}

export function writeNotebook(root, name, cells) {
  const nb = {
    cells: cells.map((src) => ({ cell_type: "code", execution_count: null, metadata: {}, outputs: [], source: src })),
    metadata: { kernelspec: { display_name: "Python 3", language: "python", name: "python3" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  fs.writeFileSync(path.join(root, name), JSON.stringify(nb));
}

/**
 * Open `name` in JupyterLab (served at `pageBase`, e.g. through the proxy) or, with
 * `ui: "notebook"`, in Notebook 7; wait for its kernel; run all cells (`run: "all"`) or only
 * the first code cell (`run: "first"`). Returns the page; dialogs (alert() from an XSS) are
 * recorded.
 */
export async function openNotebook(browser, { pageBase, token, name, run = "all", ui = "lab", user = null, downloads = false }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: downloads });
  // Who this page is, for a server started with e2e_users.CookieUsers (js/e2e/moderation.mjs).
  if (user) await context.addCookies([{ name: "e2e-user", value: user, url: pageBase }]);
  const page = await context.newPage();
  page.dialogs = [];
  page.consoleErrors = [];
  page.on("dialog", (d) => {
    page.dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("console", (m) => {
    if (m.type() === "error") page.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => page.consoleErrors.push(String(e)));
  if (ui === "notebook") {
    await page.goto(`${pageBase}notebooks/${name}?token=${token}`);
  } else {
    // A workspace of its own (and reset): Lab would otherwise restore the tabs other tests opened.
    const workspace = `e2e-${name.replace(/\W+/g, "-")}-${Date.now()}`;
    await page.goto(`${pageBase}lab/workspaces/${workspace}/tree/${name}?reset&token=${token}`);
  }
  await page.waitForFunction(
    () => {
      const app = window.jupyterapp;
      const w = app?.shell?.currentWidget;
      const kernel = w?.sessionContext?.session?.kernel;
      return !!kernel && kernel.status === "idle" && w.content?.widgets?.length > 0;
    },
    null,
    { timeout: 90_000 },
  );
  if (run === "all") await page.evaluate(() => window.jupyterapp.commands.execute("notebook:run-all-cells"));
  else if (run === "first") await runFirstCodeCell(page);
  return page;
}

/** Select the notebook's first code cell and run it (JupyterLab and Notebook 7 alike). */
export async function runFirstCodeCell(page) {
  await page.evaluate(async () => {
    const notebook = window.jupyterapp.shell.currentWidget.content;
    const index = notebook.widgets.findIndex((cell) => cell.model.type === "code");
    if (index < 0) throw new Error("no code cell");
    notebook.activeCellIndex = index;
    await window.jupyterapp.commands.execute("notebook:run-cell");
  });
}

/** Run code in the notebook's kernel (not as a cell) and return what it printed. */
export async function kernelExec(page, code) {
  return page.evaluate(async (src) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    const future = kernel.requestExecute({ code: src, store_history: false });
    let out = "";
    future.onIOPub = (msg) => {
      const t = msg.header.msg_type;
      if (t === "stream") out += msg.content.text;
      else if (t === "execute_result") out += msg.content.data["text/plain"];
      else if (t === "error") out += `ERROR ${msg.content.ename}: ${msg.content.evalue}`;
    };
    await future.done;
    return out;
  }, code);
}

export async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, `${name}.png`);
  const el = await page.$(".llmchat");
  if (el) await el.screenshot({ path: file });
  else await page.screenshot({ path: file });
  return file;
}

/**
 * An environment in which a kernel may start `jupyter llmchat serve` (autostart on): its own
 * runtime, data and config dirs under `tmp`, small model settings in the config dir's
 * jupyter_server_config.json (the service reads the same files as the extension).
 * `stopServices(env)` ends what was started there.
 */
export function serviceEnv(tmp, llmchat = {}) {
  const config = path.join(tmp, "service-config");
  fs.mkdirSync(config, { recursive: true });
  const settings = { n_ctx: 2048, parallel: 2, n_threads: 1, default_max_tokens: 24, max_tokens: 48, ...llmchat };
  fs.writeFileSync(path.join(config, "jupyter_server_config.json"), JSON.stringify({ LLMChat: settings }));
  return {
    LLMCHAT_AUTOSTART: "1",
    JUPYTER_CONFIG_DIR: config,
    JUPYTER_DATA_DIR: path.join(tmp, "service-data"),
    JUPYTER_RUNTIME_DIR: path.join(tmp, "service-runtime"),
  };
}

/** The services running in that environment's runtime dir: [{pid, url, ...}] from their discovery files. */
export function servicesOf(env) {
  const dir = env.JUPYTER_RUNTIME_DIR;
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => /^llmchat-service-\d+\.json$/.test(name))
    .map((name) => JSON.parse(fs.readFileSync(path.join(dir, name), "utf8")));
}

export async function stopServices(env) {
  for (const { pid } of servicesOf(env)) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  await waitFor(() => servicesOf(env).length === 0, { timeout: 30_000, what: "the llmchat service to stop" }).catch(() => undefined);
}

/**
 * Start marimo on a notebook file (`marimo run`, or `marimo edit` headless without a token) on
 * 127.0.0.1, in a throw-away dir; `env` is added to the process's environment.
 */
export async function startMarimo({ source, mode = "run", env: extraEnv = {} }) {
  const port = await freePort();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llmchat-marimo-"));
  const file = path.join(tmp, "notebook.py");
  fs.writeFileSync(file, source);
  // An edit session runs nothing on open by default; this one runs the cells, as `marimo run` does.
  fs.writeFileSync(path.join(tmp, ".marimo.toml"), "[runtime]\nauto_instantiate = true\n");
  const python = pythonPath();
  const args = ["-m", "marimo", mode, file, "--headless", "--host", "127.0.0.1", "--port", String(port), "--no-token"];
  if (mode === "edit") args.push("--skip-update-check");
  const logPath = path.join(tmp, "marimo.log");
  const log = fs.openSync(logPath, "a");
  const env = {
    ...process.env,
    PATH: `${path.dirname(python)}:${process.env.PATH}`,
    PYTHONPATH: [repo, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    MARIMO_SKIP_UPDATE_CHECK: "1",
    HOME: tmp, // marimo's own config and caches, not the user's
    ...extraEnv,
  };
  const proc = spawn(python, args, { env, cwd: tmp, stdio: ["ignore", log, log], detached: true });
  fs.closeSync(log);
  stopWithUs(proc);
  const url = `http://127.0.0.1:${port}/`;
  const server = {
    url,
    tmp,
    log: () => fs.readFileSync(logPath, "utf8"),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      try {
        process.kill(-proc.pid, "SIGTERM");
      } catch {
        // gone
      }
      await waitFor(() => proc.exitCode !== null || proc.signalCode !== null, { timeout: 15_000, what: "marimo to exit" }).catch(() => {
        try {
          process.kill(-proc.pid, "SIGKILL");
        } catch {
          // gone
        }
      });
    },
  };
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`marimo exited (${proc.exitCode}):\n${server.log().slice(-3000)}`);
      return (await fetch(url)).ok;
    },
    { timeout: 90_000, what: "marimo to start" },
  ).catch(async (err) => {
    await server.stop();
    throw err;
  });
  return server;
}
