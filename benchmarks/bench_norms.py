"""bnlib's numpy batch norm against PyTorch's CPU kernel: training forward + backward, side by side.

Run: .venv/bin/python benchmarks/bench_norms.py [--rounds 5] [--block 5]
For each shape, in float32, times one training step of batch norm:
- bnlib:   functional.batch_norm(x, running_mean, running_var, w, b, training=True), then
           functional.batch_norm_backward(dy, x, w) (numpy: one thread, statistics in float64);
- PyTorch: torch.nn.functional.batch_norm(..., training=True), then y.backward(dy) (aten's CPU
           kernel), once with torch's default thread count and once with one thread, numpy's.
Each side runs `block` steps back to back (as in a training loop), the sides take turns for
`rounds` rounds, so a busy machine slows all of them alike. Prints the median step time in ms,
the interquartile range, and the ratios bnlib / PyTorch of the medians.
NB: numpy's speed depends on the SIMD and BLAS paths it picks (OPENBLAS_CORETYPE and friends);
the benchmark leaves the environment as it is. The machine's other load shows in the IQR.
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as TF

from bnlib import functional as F

SHAPES = [(256, 1024), (64, 64, 32, 32)]


def make_case(shape, seed=0):
    """x, dy (random, never all ones), w, b in float32 for an (N, C, *) shape."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, C).astype(np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    return x, dy, w, b


def bnlib_step(x, dy, w, b):
    """A closure running one bnlib training step: forward (running stats updated), backward."""
    C = x.shape[1]
    running_mean, running_var = np.zeros(C, np.float32), np.ones(C, np.float32)

    def step():
        F.batch_norm(x, running_mean, running_var, w, b, training=True)
        return F.batch_norm_backward(dy, x, w)

    return step


def torch_step(x, dy, w, b):
    """A closure running one PyTorch training step, forward then autograd backward."""
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    dyt = torch.from_numpy(dy)
    C = x.shape[1]
    running_mean, running_var = torch.zeros(C), torch.ones(C)

    def step():
        xt.grad = wt.grad = bt.grad = None
        y = TF.batch_norm(xt, running_mean, running_var, wt, bt, training=True)
        y.backward(dyt)
        return xt.grad, wt.grad, bt.grad

    return step


def time_sides(sides, rounds, block):
    """{name: [ms, ...]} for sides {name: (step, torch threads or None for the default)}.

    Each round, each side runs `block` timed steps back to back, after one untimed step that
    lets its threads and caches wake up after the other sides.
    """
    default_threads = torch.get_num_threads()
    times = {name: [] for name in sides}
    try:
        for _ in range(rounds):
            for name, (step, threads) in sides.items():
                torch.set_num_threads(threads or default_threads)
                step()
                for _ in range(block):
                    t0 = time.perf_counter()
                    step()
                    times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(default_threads)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="turns per side (default 5)")
    parser.add_argument("--block", type=int, default=5, help="timed steps per turn (default 5)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    print(
        f"numpy {np.__version__}, torch {torch.__version__}; float32, batch norm training "
        f"forward + backward; median of {args.rounds * args.block} steps [IQR], ms"
    )
    header = ["shape", "bnlib (numpy)", f"PyTorch {threads} thr", "PyTorch 1 thr", "ratios"]
    print(f"{header[0]:>17}  {header[1]:>15}  {header[2]:>15}  {header[3]:>15}  {header[4]}")
    for shape in SHAPES:
        case = make_case(shape)
        sides = {
            "bnlib": (bnlib_step(*case), None),
            "torch": (torch_step(*case), None),
            "torch1": (torch_step(*case), 1),
        }
        times = time_sides(sides, args.rounds, args.block)
        cells, medians = [], {}
        for name in sides:
            q1, median, q3 = statistics.quantiles(times[name], n=4)
            medians[name] = median
            cells.append(f"{median:7.2f} [{q3 - q1:5.2f}]")
        ratio = medians["bnlib"] / medians["torch"]
        ratio1 = medians["bnlib"] / medians["torch1"]
        print(f"{str(shape):>17}  {'  '.join(cells)}  {ratio:4.1f}x / {ratio1:4.1f}x")
    print(f"ratios: bnlib / PyTorch with {threads} threads, and bnlib / PyTorch with 1 thread")


if __name__ == "__main__":
    main()
