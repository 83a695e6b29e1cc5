// Bundle the widget into ONE ESM file + CSS inside the Python package:
//   jupyter_llmchat/static/widget.js, jupyter_llmchat/static/widget.css
// `node build.mjs --watch` rebuilds on change (anywidget hot-reloads with ANYWIDGET_HMR=1).
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: [path.join(here, "src", "widget.ts")],
  outfile: path.join(here, "..", "jupyter_llmchat", "static", "widget.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: !watch,
  sourcemap: false,
  legalComments: "eof", // keep DOMPurify / markdown-it licence notices in the bundle
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
