"""How long a plain `python` waits for its first answer when no Jupyter server runs.

Each round, in a fresh temporary runtime/data/config dir (tests/support/services.py; never
the user's own), times the one-liner a user types:

    python -c "import jupyter_llmchat as l; print(''.join(l.ask(None, 'Say hello.', max_tokens=8)))"

- **cold**: no service runs, so the first call starts `jupyter llmchat serve` (process
  start, imports, model load) and waits for it;
- **warm**: the same one-liner again, with that service up (process start, import,
  discovery, one short answer).

Prints the median and the spread of each. About 10 s a round on a quiet laptop.

    .venv/bin/python bench/autostart.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.services import service_env, stop_services  # noqa: E402

ONE_LINER = "import jupyter_llmchat as l; print(''.join(l.ask(None, 'Say hello.', max_tokens=8)))"


def timed(env: dict[str, str], cwd: str) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", ONE_LINER], env=env, cwd=cwd, capture_output=True, timeout=300)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"the one-liner failed: {done.stderr.decode()[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="llmchat-autostart-") as tmp:
            env = service_env(Path(tmp))
            try:
                cold.append(timed(env, tmp))
                warm.append(timed(env, tmp))
            finally:
                stop_services(env)
    for name, values in (("cold (starts the service)", cold), ("warm (service running)", warm)):
        print(f"{name:28s} median {statistics.median(values):6.2f} s   min {min(values):6.2f}   max {max(values):6.2f}   n={len(values)}")


if __name__ == "__main__":
    main()
