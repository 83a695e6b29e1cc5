// Used as the `npm` command of hatch-jupyter-builder's npm_builder, which runs
// `<npm> install` then `<npm> run build`: turns the install step into `npm ci`, so a
// pip install builds from exactly the committed package-lock.json and never rewrites it.
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const npmArgs = args[0] === "install" ? ["ci", "--no-audit", "--no-fund", ...args.slice(1)] : args;
const windows = process.platform === "win32";
const result = spawnSync(windows ? "npm.cmd" : "npm", npmArgs, { stdio: "inherit", shell: windows });
process.exit(result.status ?? 1);
