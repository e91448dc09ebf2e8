"""How fast the lesson widgets redraw: the budget is 100 ms per slider move (STYLE.md).

Run: .venv/bin/python benchmarks/bench_widgets.py [--repeats 40] [--max-ms 100]
Times the whole kernel-side path of one slider move of `bnlib.widgets.bn_explorer`: the value
changes, the observer recomputes x, xhat, y, updates the artists, draws with Agg and encodes the
PNG into the Image widget (the browser's share, sending and showing ~25 kB, is not included).
Prints the median and the 90th percentile per slider; exits with 1 if a median exceeds --max-ms.
"""

import argparse
import statistics
import sys
import time

import numpy as np


def _time_moves(explorer, name, values):
    widget = getattr(explorer, name)
    times = []
    for v in values:
        t0 = time.perf_counter()
        widget.value = v  # the observer redraws synchronously
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="slider moves per slider")
    parser.add_argument("--max-ms", type=float, default=100.0, help="budget for the median")
    args = parser.parse_args(argv)

    from bnlib.widgets import BATCH_SIZES, bn_explorer

    t0 = time.perf_counter()
    explorer = bn_explorer(seed=0)
    build_ms = (time.perf_counter() - t0) * 1e3
    n = args.repeats
    # Alternate between distinct values so that every move really changes the slider.
    moves = {
        "gamma": [0.5 + 0.1 * (k % 20) for k in range(n)],
        "beta": [-2.0 + 0.1 * (k % 40) for k in range(n)],
        "eps": [10.0 ** (-8 + 0.5 * (k % 16)) for k in range(n)],
        "batch_size": [BATCH_SIZES[k % len(BATCH_SIZES)] for k in range(n)],
    }
    print(f"bn_explorer: built in {build_ms:.0f} ms; PNG {len(explorer.image.value) / 1e3:.0f} kB")
    worst = 0.0
    for name, values in moves.items():
        ms = _time_moves(explorer, name, values)
        median = statistics.median(ms)
        worst = max(worst, median)
        print(
            f"  {name:<10} redraw: median {median:5.1f} ms, "
            f"p90 {np.percentile(ms, 90):5.1f} ms over {len(ms)} moves"
        )
    ok = worst <= args.max_ms
    print(
        f"slowest median {worst:.1f} ms: {'within' if ok else 'OVER'} the {args.max_ms:g} ms budget"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
