// Bundle the widget into the Python package:
//   jupyter_llmchat/static/widget.js, widget.css  the anywidget ESM (loaded on display)
//   jupyter_llmchat/static/highlight.js           the syntax highlighter, a separate ESM that
//                                                 the widget imports only once a code block shows
// `node build.mjs --watch` rebuilds on change (anywidget hot-reloads with ANYWIDGET_HMR=1).
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const staticDir = path.join(here, "..", "jupyter_llmchat", "static");
const watch = process.argv.includes("--watch");

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: !watch,
  sourcemap: false,
  legalComments: "eof", // keep DOMPurify / markdown-it / highlight.js licence notices in the bundles
  logLevel: "info",
};

const builds = [
  { ...common, entryPoints: [path.join(here, "src", "widget.ts")], outfile: path.join(staticDir, "widget.js") },
  { ...common, entryPoints: [path.join(here, "src", "highlight-bundle.ts")], outfile: path.join(staticDir, "highlight.js") },
];

if (watch) {
  for (const options of builds) await (await esbuild.context(options)).watch();
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
}
