#!/usr/bin/env bash
# Install everything, then run every test:
#   1. the widget's unit tests (vitest),
#   2. the widget in a real browser (Debian's Chromium driven by playwright-core), `@name`
#      in JupyterLab and marimo, then a real JupyterHub of three users sharing one room
#      (Redis) and one model server, then the widget where no server has the extension
#      (marimo, JupyterLab with it disabled),
#   3. the Python suite: the fast tier (a stand-in model, no server process), then the
#      integration tier against real Jupyter servers and the real model.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"   # also builds the widget (npm ci + esbuild)

# Debian's Chromium (the browser tests) and redis-server (rooms shared by many servers).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null
  else
    echo "Missing:$missing: install (e.g. 'sudo apt-get install$missing') for the browser and scale-out tests." >&2
    exit 1
  fi
fi

(cd js && npm ci --no-audit --no-fund --silent && npm test && npm run e2e && npm run e2e:mentions && npm run e2e:hub && npm run e2e:anywhere)

.venv/bin/python -m pytest "$@"
