#!/usr/bin/env bash
# Install everything, then run every test:
#   1. the widget's unit tests (vitest),
#   2. the widget in a real browser (Debian's Chromium driven by playwright-core),
#   3. the Python suite: the fast tier (a stand-in model, no server process), then the
#      integration tier against real Jupyter servers and the real model.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"   # also builds the widget (npm ci + esbuild)

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    echo "Chromium is missing: install it (e.g. 'sudo apt-get install chromium') for the browser tests." >&2
    exit 1
  fi
fi

# Debian's redis-server: the tests of rooms shared through Redis start their own on 127.0.0.1.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
  else
    echo "redis-server is missing: install it (e.g. 'sudo apt-get install redis-server') for the Redis room bus tests." >&2
    exit 1
  fi
fi

(cd js && npm ci --no-audit --no-fund --silent && npm test && npm run e2e)

.venv/bin/python -m pytest "$@"
