"""Lesson 5's experiments (notebooks/05_norm_family.ipynb, §5), each run a function of a seed.

- §5a: the digits CNN (bnlib.train.small_cnn) with BN, LN, IN and GN at batch 32;
- §5b: a CNN whose last normalization sees 1x1 maps (`pooled_cnn`), with BN and GN at batch 32
  and at batch 2: there BN computes each statistic from N values, two at batch 2, and fails;
  GN, which takes its statistics within one sample, does not.

The seed sets the model's initial weights and the order of the training batches, so
tests/test_claims_lesson05.py can rerun every configuration for seeds 0-4 and check each
conclusion the lesson draws from it for every seed.

Reference: Y. Wu, K. He, Group Normalization, ECCV 2018, arXiv 1803.08494 (Fig. 1 and Table 2:
BN and GN against the batch size; Table 1: the four norms at batch 32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bnlib.train import norm_layer, small_cnn, train

__all__ = [
    "KINDS",
    "CONFIGS",
    "POOLED_CONFIGS",
    "pooled_cnn",
    "cnn_run",
    "cnn_runs",
    "final_accuracies",
    "accuracy_table",
]

KINDS = {"bn": "BN", "ln": "LN", "in": "IN", "gn": "GN (4 groups)"}
# §5a (kind, batch size): the four norms in the digits CNN at batch 32
CONFIGS = tuple((kind, 32) for kind in KINDS)
# §5b: the pair of Wu & He's Fig. 1, BN and GN, at batch 32 and 2, in `pooled_cnn`
POOLED_CONFIGS = (("bn", 32), ("gn", 32), ("bn", 2), ("gn", 2))


def pooled_cnn(norm="none", channels=(16, 32), num_groups=4, num_classes=10):
    """A digits CNN whose last normalization sees 1x1 maps: per channel, one value per sample.

    conv 3x3 -> norm -> ReLU -> 2x2 max-pool, then conv 3x3 -> 4x4 max-pool (to 1x1) -> norm ->
    ReLU, then a linear classifier; for (N, 1, 8, 8) digits. The second norm's BN computes each
    channel's statistics over N x 1 x 1 values (two at batch 2), as a BN after global pooling or
    in a fully connected head does; GN's over C/G values of one sample. norm: "bn", "ln" or
    "gn" (instance norm needs more than one value per channel and sample: not on 1x1 maps).
    """
    if norm == "in":
        raise ValueError("pooled_cnn: instance norm has one value per statistic on 1x1 maps")
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        norm_layer(norm, c1, dims=2, num_groups=num_groups),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, c1, 4, 4)
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.MaxPool2d(4),  # (N, c2, 1, 1)
        norm_layer(norm, c2, dims=2, num_groups=num_groups),
        nn.ReLU(),
        nn.Flatten(),  # (N, c2)
        nn.Linear(c2, num_classes),
    )


NETS = {"cnn": small_cnn, "pooled": pooled_cnn}


def cnn_run(kind, batch_size, seed, data, *, net="cnn", epochs=2, base_lr=0.05, evals_per_epoch=5):
    """Train net(norm=kind) with SGD; return its History.

    net: "cnn" (bnlib.train.small_cnn, §5a) or "pooled" (`pooled_cnn`, §5b). kind: "bn", "ln"
    (GN with one group), "in" (small_cnn only) or "gn" (4 groups). The learning rate follows the
    linear scaling rule, lr = base_lr * batch_size / 32 (as in lesson 4), and every run lasts the
    same number of epochs. Test accuracy (eval mode) is recorded evals_per_epoch times per epoch.
    data: images, (N, 1, 8, 8) train and test tensors (bnlib.data.load_digits(images=True)).
    """
    if kind not in KINDS:
        raise ValueError(f"cnn_run: kind must be one of {tuple(KINDS)}, got {kind!r}")
    if net not in NETS:
        raise ValueError(f"cnn_run: net must be one of {tuple(NETS)}, got {net!r}")
    torch.manual_seed(seed)
    model = NETS[net](norm=kind)
    every = len(data[0]) // batch_size // evals_per_epoch
    return train(
        model,
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=base_lr * batch_size / 32,
        seed=seed,
        eval_every=every,
    )


def cnn_runs(data, seeds, configs=CONFIGS, *, progress=False, desc="runs", **kwargs):
    """cnn_run for every (kind, batch size) in configs and every seed; {(kind, N, seed): History}.

    kwargs go to cnn_run (net, epochs, base_lr, evals_per_epoch). progress: show a progress bar
    labelled desc.
    """
    jobs = [(kind, n, seed) for kind, n in configs for seed in seeds]
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=len(jobs), desc=desc)
    runs = {}
    for kind, n, seed in jobs:
        runs[kind, n, seed] = cnn_run(kind, n, seed, data, **kwargs)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return runs


def final_accuracies(runs):
    """{(kind, N): array of the final test accuracies, one per seed, in the seeds' order}."""
    acc = {}
    for (kind, n, _seed), history in runs.items():
        acc.setdefault((kind, n), []).append(history.final_test_acc)
    return {key: np.array(values) for key, values in acc.items()}


def accuracy_table(acc, batches=(32, 2)):
    """The final accuracies as text: one row per kind, one column per batch size, each cell
    "mean ± sd [lowest, highest]" over the seeds (blank where that configuration did not run; a
    kind that did not run at all has no row). sd is the sample standard deviation over the seeds
    (ddof=1)."""
    header = f"{'':15s}" + "".join(f"{f'batch {n}':^30s}" for n in batches)
    lines = [header.rstrip()]
    for kind, label in KINDS.items():
        cells = [acc.get((kind, n)) for n in batches]
        if all(a is None for a in cells):
            continue
        row = f"{label:15s}" + "".join(
            " " * 30
            if a is None
            else f"  {a.mean():.3f} ± {a.std(ddof=1):.3f} [{a.min():.3f}, {a.max():.3f}]"
            for a in cells
        )
        lines.append(row.rstrip())
    return "\n".join(lines)
