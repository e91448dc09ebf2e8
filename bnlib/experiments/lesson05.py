"""Lesson 5's experiment (notebooks/05_norm_family.ipynb, §5): the digits CNN with BN, LN, IN and
GN at batch 32, and BN and GN at batch 2, each a function of a seed.

The seed sets the model's initial weights and the order of the training batches, so
tests/test_claims_lesson05.py can rerun every configuration for seeds 0-4 and check each
conclusion the lesson draws from it for every seed.

Reference: Y. Wu, K. He, Group Normalization, ECCV 2018, arXiv 1803.08494 (Fig. 1: BN and GN
against the batch size; Table 1).
"""

from __future__ import annotations

import numpy as np
import torch

from bnlib.train import small_cnn, train

__all__ = ["KINDS", "CONFIGS", "cnn_run", "cnn_runs", "final_accuracies", "accuracy_table"]

KINDS = {"bn": "BN", "ln": "LN", "in": "IN", "gn": "GN (4 groups)"}
# (kind, batch size): all four at batch 32; at batch 2 the pair of Wu & He's Fig. 1 (LN and IN
# do not use the batch either, like GN)
CONFIGS = tuple((kind, 32) for kind in KINDS) + (("bn", 2), ("gn", 2))


def cnn_run(kind, batch_size, seed, data, *, epochs=2, base_lr=0.05, evals_per_epoch=5):
    """Train bnlib.train.small_cnn(norm=kind) with SGD; return its History.

    kind: "bn", "ln" (GN with one group), "in" or "gn" (4 groups). The learning rate follows the
    linear scaling rule, lr = base_lr * batch_size / 32 (as in lesson 4), and every run lasts the
    same number of epochs. Test accuracy (eval mode) is recorded evals_per_epoch times per epoch.
    data: images, (N, 1, 8, 8) train and test tensors (bnlib.data.load_digits(images=True)).
    """
    if kind not in KINDS:
        raise ValueError(f"cnn_run: kind must be one of {tuple(KINDS)}, got {kind!r}")
    torch.manual_seed(seed)
    model = small_cnn(norm=kind)
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


def cnn_runs(data, seeds, configs=CONFIGS, *, progress=False, **kwargs):
    """cnn_run for every (kind, batch size) in configs and every seed; {(kind, N, seed): History}.

    kwargs go to cnn_run (epochs, base_lr, evals_per_epoch). progress: show a progress bar.
    """
    jobs = [(kind, n, seed) for kind, n in configs for seed in seeds]
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=len(jobs), desc="four norms")
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
    "mean ± sd [lowest, highest]" over the seeds (blank where that configuration did not run).
    sd is the sample standard deviation over the seeds (ddof=1)."""
    header = f"{'':15s}" + "".join(f"{f'batch {n}':^30s}" for n in batches)
    lines = [header.rstrip()]
    for kind, label in KINDS.items():
        cells = [acc.get((kind, n)) for n in batches]
        row = f"{label:15s}" + "".join(
            " " * 30
            if a is None
            else f"  {a.mean():.3f} ± {a.std(ddof=1):.3f} [{a.min():.3f}, {a.max():.3f}]"
            for a in cells
        )
        lines.append(row.rstrip())
    return "\n".join(lines)
