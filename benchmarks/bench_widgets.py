"""How fast the lesson widgets redraw: the budget is 100 ms per slider move (STYLE.md).

Run: .venv/bin/python benchmarks/bench_widgets.py [--repeats 40] [--max-ms 100]
Times the whole kernel-side path of one control move of every lesson's widget: the value
changes, the observer recomputes what it needs, updates the artists, draws with Agg, encodes
the PNG into the Image widget and, for the widgets with one, rewrites the caption line under the
figure (the browser's share, sending and showing ~25 kB, is not included). Each PNG is rendered
at the width it is shown at (bnlib.widgets), so its pixel count is the one the browser shows.
Wall-clock times: on a machine busy with other work they grow with the load (see `uptime`).
Lesson 1's `bn_explorer` and lesson 2's `RunningStatsExplorer` redraw live; lessons 3-5's
widgets swap precomputed data or frames. The traces and runs lessons 3 feeds its widgets are
small stand-ins here (a short training run), since their size does not change the redraw.
Prints the median and the 90th percentile per control; exits with 1 if a median exceeds --max-ms.
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


def _cycle(options, n):
    """n values cycling through options, each different from the one before."""
    return [options[k % len(options)] for k in range(1, n + 1)]


def _lesson3_inputs():
    """A short traced run and a tiny learning-rate sweep: what lesson 3's widgets display."""
    import torch

    from bnlib.data import load_digits
    from bnlib.hooks import trace_training
    from bnlib.train import lr_sweep, mlp

    torch.set_num_threads(1)
    data = load_digits(tensors=True)
    traces = {}
    for kind in ("none", "bn"):
        torch.manual_seed(0)
        model = mlp((64, 100, 100, 100, 10), norm=kind, activation="sigmoid")
        traces[kind] = trace_training(model, data, steps=200, batch_size=60, keep_every=20)[1]
    runs = lr_sweep(lambda k: mlp(norm=k), ("none", "bn"), (0.01, 0.1, 1.0), data, steps=50)
    return traces, runs


def _widgets(n, batch_sizes, bn_explorer):
    """(label, build, {control: values}) for every lesson's widget."""
    from bnlib.widgets import (
        NOISE_BATCH_SIZES,
        RUNNING_BATCHES,
        RUNNING_MOMENTA,
        BatchNoiseExplorer,
        LayerDistributionViewer,
        LearningRateSelector,
        NormGroupExplorer,
        RunningStatsExplorer,
    )

    traces, runs = _lesson3_inputs()
    momenta = ["None" if m is None else m for m in RUNNING_MOMENTA]
    viewer = LayerDistributionViewer(traces)
    return [
        (
            "lesson 1, bn_explorer",
            lambda: bn_explorer(seed=0),
            {
                "gamma": [0.5 + 0.1 * (k % 20) for k in range(n)],
                "beta": [-2.0 + 0.1 * (k % 40) for k in range(n)],
                "eps": [10.0 ** (-8 + 0.5 * (k % 16)) for k in range(n)],
                "batch_size": _cycle(batch_sizes, n),
            },
        ),
        (
            "lesson 2, RunningStatsExplorer",
            lambda: RunningStatsExplorer(seed=0),
            {"momentum": _cycle(momenta, n), "batch_size": _cycle(RUNNING_BATCHES, n)},
        ),
        (
            "lesson 3, LayerDistributionViewer",
            lambda: LayerDistributionViewer(traces),
            {
                "layer": _cycle(list(viewer.layer._options_values), n),
                "step": _cycle(list(viewer.step._options_values), n),
            },
        ),
        (
            "lesson 3, LearningRateSelector",
            lambda: LearningRateSelector(runs),
            {"lr": _cycle([0.01, 0.1, 1.0], n)},
        ),
        (
            "lesson 4, BatchNoiseExplorer",
            lambda: BatchNoiseExplorer(seed=0),
            {"batch_size": _cycle(NOISE_BATCH_SIZES, n)},
        ),
        (
            "lesson 5, NormGroupExplorer",
            lambda: NormGroupExplorer(seed=0),
            {"method": _cycle(["BN", "LN", "IN", "GN"], n), "groups": _cycle([1, 2, 3, 6], n)},
        ),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="slider moves per slider")
    parser.add_argument("--max-ms", type=float, default=100.0, help="budget for the median")
    args = parser.parse_args(argv)

    from bnlib.widgets import BATCH_SIZES, bn_explorer

    n = args.repeats
    worst = 0.0
    for label, build, moves in _widgets(n, BATCH_SIZES, bn_explorer):
        t0 = time.perf_counter()
        explorer = build()
        build_ms = (time.perf_counter() - t0) * 1e3
        print(f"{label}: built in {build_ms:.0f} ms; PNG {len(explorer.image.value) / 1e3:.0f} kB")
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
