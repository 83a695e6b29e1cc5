"""When is a second thread worth it beside another process? The figure behind threads.HEADROOM.

Raw batched decoding (bench/engine_batch.py, the low-level API, no server) with 1 and with
2 threads while another process keeps one core busy for a share `duty` of every `period`
seconds (0 = quiet, 1 = a spinning kernel). Where 2 threads stop beating 1 is how much of
a core the others may use before the engine should leave it to them. Also times one look
at the machine (threads.py), against the step it precedes.

    .venv/bin/python bench/threads_crossover.py                       # N = 8, 10 ms periods
    .venv/bin/python bench/threads_crossover.py --n 1 --period 0.1 --duty 0 0.6 0.8

Prints tok/s (medians of --repeat) and the 2-thread / 1-thread ratio per duty.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from engine_batch import raw_batched_tokens_per_second  # noqa: E402

from jupyter_llmchat.engine.threads import HEADROOM, machine_busy_seconds, own_busy_seconds  # noqa: E402

SPINNER = """
import sys, time
duty, period = float(sys.argv[1]), float(sys.argv[2])
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * period:
        pass
    time.sleep((1 - duty) * period)
"""


@contextlib.contextmanager
def partly_busy(duty: float, period: float):
    """Another process busy `duty` of every `period` seconds while the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", SPINNER, str(duty), str(period)]) if duty > 0 else None
    time.sleep(0.3)
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="sequences decoded together")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--context", type=int, default=167, help="tokens of context per sequence")
    parser.add_argument("--period", type=float, default=0.01, help="seconds of one busy + idle cycle")
    parser.add_argument("--duty", type=float, nargs="+", default=[0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    look = min(timeit.repeat(lambda: (machine_busy_seconds(), own_busy_seconds()), number=1000, repeat=5)) / 1000
    print(f"one look at the machine: {look * 1e6:.1f} us (threads.py looks every 0.25 s)")
    print(f"N={args.n}, {args.tokens} tokens, {args.context} tokens of context, spinner period {args.period * 1000:.0f} ms; "
          f"HEADROOM now {HEADROOM}")
    for duty in args.duty:
        rates = []
        for threads in (1, 2):
            with partly_busy(duty, args.period):
                runs = [raw_batched_tokens_per_second(args.n, args.tokens, threads, context_tokens=args.context)
                        for _ in range(args.repeat)]
            rates.append(statistics.median(runs))
        step_ms = 1000 * args.n / max(rates)
        print(f"others busy {duty:4.0%} of a core: 1 thread {rates[0]:6.1f} tok/s, 2 threads {rates[1]:6.1f} tok/s, "
              f"2/1 = {rates[1] / rates[0]:.2f}; a look = {look * 1000 / step_ms:.4%} of a step", flush=True)


if __name__ == "__main__":
    main()
