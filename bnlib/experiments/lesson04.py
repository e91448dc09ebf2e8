"""Lesson 4's experiments (notebooks/04_small_batches.ipynb), as functions of the seeds.

The seed sets a model's initial weights and the order of its training batches, so
tests/test_claims_lesson04.py can rerun each experiment for seeds 0-4 and check every claim the
lesson draws from it. The configurations are the lesson's:

- §4, §5 `sweep`: the digits MLP with BN, LN or GN, trained for the same 2 epochs at batch
  sizes 32, 16, 8 and 2 (Wu & He's range, less 4) with the learning rate scaled linearly; test
  accuracy in eval mode and in train mode;
- §4 `longer_training`: one norm at one batch size, trained for more epochs than the sweep;
- §6 `batch_renorm`: Batch Renormalization at batch 2, same protocol;
- §6 `ghost_bn`: Ghost BN, batches of 32 normalized over virtual batches of 8 or 2;
- §6 `frozen_fine_tuning`: pretrain at batch 32, fine-tune at batch 2 with BN or frozen BN;
- §7 `sync_vs_local`: data-parallel training on 2 gloo processes with local BN or SyncBatchNorm,
  against one process with the whole batch (float64).

Shape legend: K kinds (norms), B batch sizes, S seeds.
References: Wu & He 2018, arXiv 1803.08494 (Fig. 1, §5.1: linear learning-rate scaling);
Ioffe 2017, arXiv 1702.03275; Hoffer, Hubara & Soudry 2017, arXiv 1705.08741.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.data import Digits
from bnlib.distributed import local_vs_sync, run_on_processes
from bnlib.nn import BatchRenorm1d, GhostBatchNorm, freeze_batchnorm
from bnlib.train import batch_size_sweep, mlp, replace_batchnorm, train

__all__ = [
    "NORMS",
    "BATCH_SIZES",
    "EPOCHS",
    "BASE_LR",
    "Sweep",
    "sweep",
    "LONGER_EPOCHS",
    "longer_training",
    "make_model",
    "batch_renorm",
    "ghost_bn",
    "FINE_TUNING",
    "frozen_fine_tuning",
    "SYNC",
    "FLOAT32_EPS",
    "SyncRun",
    "sync_vs_local",
]

# --- §4, §5: accuracy against batch size ---------------------------------------------------------

NORMS = ("bn", "ln", "gn")
# Wu & He's Fig. 1 goes from 32 down to 2 images per GPU; 4 is left out to save time (its runs
# would cost a quarter of the sweep: the steps of an epoch double each time the batch halves)
BATCH_SIZES = (2, 8, 16, 32)
EPOCHS = 2  # the same at every batch size: 1,346 steps at batch 2, 84 at batch 32
BASE_LR = 0.05  # at batch 32; lr = BASE_LR * N / 32 (linear scaling)


@dataclass
class Sweep:
    """Test accuracies of a batch-size sweep: eval_acc and train_acc are (K, B, S) arrays.

    eval_acc: eval mode (running statistics); train_acc: train mode on test batches of the
    training batch size (batch statistics; the same as eval_acc for LN and GN).
    """

    norms: tuple
    batch_sizes: tuple
    seeds: tuple
    eval_acc: np.ndarray
    train_acc: np.ndarray

    def acc(self, norm, batch_size, train_mode=False):
        """The accuracies of one norm at one batch size, one per seed: (S,)."""
        table = self.train_acc if train_mode else self.eval_acc
        return table[self.norms.index(norm), self.batch_sizes.index(batch_size)]


def make_model(kind):
    """The digits MLP (64 -> 100 -> 100 -> 10) for a kind: a norm of bnlib.train.mlp ("bn",
    "ln", "gn", "none"), "brn" (BN replaced by BatchRenorm1d with the paper's final limits
    rmax = 3, dmax = 5) or "ghost-V" (BN replaced by GhostBatchNorm with virtual batches of V).
    Build it after torch.manual_seed: the weights other than the norm layers' are the seed's."""
    if kind == "brn":
        return replace_batchnorm(mlp(norm="bn"), lambda c: BatchRenorm1d(c, rmax=3.0, dmax=5.0))
    if kind.startswith("ghost-"):
        size = int(kind.split("-")[1])
        return replace_batchnorm(mlp(norm="bn"), lambda c: GhostBatchNorm(c, size))
    return mlp(norm=kind)


def sweep(data, seeds, *, norms=NORMS, batch_sizes=BATCH_SIZES, epochs=EPOCHS, progress=False):
    """§4: train make_model(norm) for every (norm, batch size, seed), EPOCHS epochs each.

    The learning rate is BASE_LR * N / 32 (Wu & He's linear scaling rule), so every run sees the
    same number of samples; a batch of 32 gets 16 times fewer (and larger) steps than a batch
    of 2. Returns a Sweep.
    """
    eval_acc, train_acc = batch_size_sweep(
        list(norms),
        list(batch_sizes),
        list(seeds),
        data,
        make_model=make_model,
        epochs=epochs,
        base_lr=BASE_LR,
        progress=progress,
    )
    return Sweep(tuple(norms), tuple(batch_sizes), tuple(seeds), eval_acc, train_acc)


LONGER_EPOCHS = 8  # §4: 4x the sweep's epochs: 336 steps at batch 32 (batch 2 takes 1,346 in 2)


def longer_training(data, seeds, norm="ln", batch_size=32, epochs=LONGER_EPOCHS):
    """§4: make_model(norm) trained as in `sweep` at one batch size, but for `epochs` epochs.

    Shows whether the sweep's large-batch runs are under-trained in its EPOCHS epochs (16 times
    fewer steps at batch 32 than at batch 2). Returns the test accuracies (eval mode), (S,).
    """
    acc, _ = batch_size_sweep(
        [norm],
        [batch_size],
        list(seeds),
        data,
        make_model=make_model,
        epochs=epochs,
        base_lr=BASE_LR,
    )
    return acc[0, 0]


# --- §6: remedies that keep BN --------------------------------------------------------------------


def batch_renorm(data, seeds, batch_size=2, progress=False):
    """§6: Batch Renormalization (rmax = 3, dmax = 5) trained as in `sweep` at one batch size.

    Returns the test accuracies in eval mode, one per seed: (S,)."""
    acc, _ = batch_size_sweep(
        ["brn"],
        [batch_size],
        list(seeds),
        data,
        make_model=make_model,
        epochs=EPOCHS,
        base_lr=BASE_LR,
        progress=progress,
    )
    return acc[0, 0]


def ghost_bn(data, seeds, virtual_sizes=(8, 2), batch_size=32):
    """§6: Ghost BN, batches of batch_size (the gradient's) normalized over virtual batches.

    Trained as in `sweep` at batch_size. Returns {virtual size: test accuracies (S,)}.
    """
    kinds = [f"ghost-{v}" for v in virtual_sizes]
    acc, _ = batch_size_sweep(
        kinds,
        [batch_size],
        list(seeds),
        data,
        make_model=make_model,
        epochs=EPOCHS,
        base_lr=BASE_LR,
    )
    return {v: acc[i, 0] for i, v in enumerate(virtual_sizes)}


FINE_TUNING = dict(epochs=1, batch_size=2, lr=1e-3)


def frozen_fine_tuning(data, seed, **overrides):
    """§6: pretrain the BN MLP at batch 32 (as `sweep` does), then fine-tune a copy with BN as
    usual and a copy with frozen BN (bnlib.nn.freeze_batchnorm), FINE_TUNING's settings.

    The fine-tuning batches' order is seed + 10's (not the pretraining order). overrides change
    FINE_TUNING (epochs or steps, batch_size, lr). Returns the test accuracies (pretrained,
    fine-tuned with BN, fine-tuned with frozen BN).
    """
    config = {**FINE_TUNING, **overrides}
    torch.manual_seed(seed)
    pretrained = mlp(norm="bn")
    before = train(
        pretrained, data, epochs=EPOCHS, batch_size=32, lr=BASE_LR, seed=seed
    ).final_test_acc
    after = [
        train(model, data, seed=seed + 10, **config).final_test_acc
        for model in (copy.deepcopy(pretrained), freeze_batchnorm(copy.deepcopy(pretrained)))
    ]
    return (before, *after)


# --- §7: synchronized BN on two processes ---------------------------------------------------------

SYNC = dict(world_size=2, local_batch=2, steps=100, lr=BASE_LR * 4 / 32)
FLOAT32_EPS = 2.0**-23  # float32's resolution: 1 + 2**-23 is the next float32 after 1


@dataclass
class SyncRun:
    """One seed of §7: test accuracies of data-parallel training with local BN and with
    SyncBatchNorm, and of one process with the whole batch; rel_gap: the largest difference
    between a SyncBN weight or buffer and the one process's, relative to that tensor's largest
    value; same_stats: the SyncBN running statistics are bit-identical on every process."""

    seed: int
    local_acc: float
    sync_acc: float
    single_acc: float
    rel_gap: float
    same_stats: bool


def _sync_runs(rank, world_size, seeds, local_batch, steps, lr, data):
    """On each process: local_vs_sync in float64 for every seed (one launch for them all)."""
    return [
        local_vs_sync(rank, world_size, local_batch, 1, lr, seed, torch.float64, steps, data)
        for seed in seeds
    ]


def sync_vs_local(data, seeds, **overrides):
    """§7: for each seed, SYNC's data-parallel runs (local BN, SyncBatchNorm) and one process
    training on the whole batch, all in float64 so that rounding differences stay far below
    what any real difference would show. overrides change SYNC. Returns a list of SyncRun.
    """
    cfg = {**SYNC, **overrides}
    world, local, steps, lr = cfg["world_size"], cfg["local_batch"], cfg["steps"], cfg["lr"]
    data64 = Digits(data[0].double(), data[1], data[2].double(), data[3])
    ranks = run_on_processes(_sync_runs, world, list(seeds), local, steps, lr, data64)
    runs = []
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)
        single = mlp(norm="bn").double()
        single_acc = train(
            single, data64, steps=steps, batch_size=world * local, lr=lr, seed=seed
        ).final_test_acc
        sync = ranks[0][i]["sync"]
        gap = max(
            ((v - sync["state_dict"][k]).abs().max() / v.abs().max()).item()
            for k, v in single.state_dict().items()
            if v.is_floating_point()
        )
        same = all(torch.equal(r[i]["sync"]["running_mean"], sync["running_mean"]) for r in ranks)
        runs.append(
            SyncRun(seed, ranks[0][i]["local"]["test_acc"], sync["test_acc"], single_acc, gap, same)
        )
    return runs
