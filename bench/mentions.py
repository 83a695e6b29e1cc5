"""What `@` costs the kernel: listing a namespace and describing mentioned variables.

Typing `@` in the widget lists the kernel's variables (`namespace.list_variables`, kind and
size from type, shape and length only) and sending a question describes the ones it
mentions (`namespace.describe_mentions`). Both run on the kernel's main thread, so they
must stay quick whatever the namespace holds. Prints the median time of each over rounds:

- 1,000 and 10,000 small variables (ints, short lists, strings);
- a namespace holding big objects: a 10M-row pandas DataFrame (~160 MB), a 4000×4000
  float64 array (128 MB) and a list of 5M items, listed and then each described;
- the same big objects listed by a naive `repr` (what listing must not do), for scale.

    .venv/bin/python bench/mentions.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

from jupyter_llmchat.kernel.namespace import describe_mentions, list_variables


def timed(fn: Callable[[], Any], rounds: int) -> float:
    """Median milliseconds of `fn` over `rounds` runs."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds

    import numpy as np
    import pandas as pd

    for count in (1_000, 10_000):
        small = {f"v{i}": (i, [i] * 3, f"s{i}")[i % 3] for i in range(count)}
        ms = timed(lambda: list_variables(small), rounds)
        print(f"list {count:>6,} small variables (at most 200 returned): {ms:8.2f} ms")

    big = {
        "frame": pd.DataFrame({"a": np.arange(10_000_000), "b": 0.5}),
        "matrix": np.random.default_rng(0).random((4000, 4000)),
        "items": list(range(5_000_000)),
    }
    print(f"list 3 big objects (10M-row frame, 4000x4000 array, 5M-item list): {timed(lambda: list_variables(big), rounds):8.2f} ms")
    for name in big:
        ms = timed(lambda name=name: describe_mentions(big, {}, [name]), rounds)
        print(f"describe @{name:<6}: {ms:8.2f} ms")
    ms = timed(lambda: describe_mentions(big, {}, list(big)), rounds)
    print(f"describe all three in one question: {ms:8.2f} ms")
    print(f"for scale, repr() of the three: {timed(lambda: [repr(v) for v in big.values()], 1):8.2f} ms (once)")


if __name__ == "__main__":
    main()
