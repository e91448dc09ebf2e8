"""Lesson 2's experiments (notebooks/02_train_vs_eval.ipynb), each a function of a seed.

The seed sets the model's initial weights and the order of its training batches, so
tests/test_claims_lesson02.py can rerun every experiment for seeds 0-4 and check each claim the
lesson draws from it. The configurations are the lesson's.

- §2 `running_var_errors`: how far PyTorch's running variance is from the population's, per
  momentum and batch size (float64 numpy, exact on every machine);
- §3 `pretrained_mlp`: the digits MLP every other experiment starts from;
- §3a `forgot_eval`: predictions in train mode depend on the other digits in the batch;
- §3c, §3d `spoil_and_recalibrate`: a forward pass in train mode moves the statistics;
  recalibration recomputes them;
- §3e `fine_tune`, `fine_tuning_runs`, `fine_tuning_rows`: three ways of "freezing" BN for
  fine-tuning with batches of 2, what each keeps, and the test accuracy after each.

Shape legend: N test digits, R shufflings.
References: Ioffe & Szegedy 2015, arXiv 1502.03167, §3.1 and Alg. 2; torchvision's
FrozenBatchNorm2d; torch.optim.swa_utils.update_bn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from bnlib.inference import batchnorm_layers, recalibrate
from bnlib.nn import FrozenBatchNorm, freeze_batchnorm
from bnlib.train import accuracy, mlp, train
from bnlib.widgets import POPULATION, running_stats_traces

__all__ = [
    "MOMENTA",
    "BATCH_SIZES",
    "running_var_errors",
    "PRETRAIN",
    "pretrained_mlp",
    "ForgotEval",
    "forgot_eval",
    "spoil_and_recalibrate",
    "FINE_TUNING",
    "requires_grad_off",
    "eval_once",
    "WAYS",
    "FineTuned",
    "fine_tune",
    "fine_tuning_runs",
    "fine_tuning_rows",
]

# --- §2: the running variance against the population's -------------------------------------------

MOMENTA = (1.0, 0.1, 0.01, None)
BATCH_SIZES = (2, 8, 64)


def running_var_errors(seed=0, momenta=MOMENTA, batch_sizes=BATCH_SIZES, last=100):
    """The running variance's error over the last `last` of running_stats_traces' 300 steps.

    Returns {(momentum, N): (rms, bias, wiggle)}: the rms error against the population variance
    (4), its mean (bias: negative while the average is still climbing from its initial 1) and the
    standard deviation of the trace over those steps (how much it wiggles). float64 numpy from a
    seeded generator: the same numbers on every machine.
    """
    true_var = POPULATION[1]
    out = {}
    for m in momenta:
        for n in batch_sizes:
            _, rv = running_stats_traces(m, n, seed=seed)
            err = rv[-last:] - true_var  # (last,)
            out[m, n] = (np.sqrt(np.mean(err**2)), err.mean(), rv[-last:].std())
    return out


# --- §3: the pretrained digits MLP ----------------------------------------------------------------

PRETRAIN = dict(epochs=3, batch_size=32, lr=0.05)


def pretrained_mlp(data, seed=0):
    """The lesson's MLP (64 -> 100 -> 100 -> 10, BN before each ReLU) trained on the digits with
    PRETRAIN; the seed sets the initial weights and the batch order. Returned in eval mode."""
    torch.manual_seed(seed)
    model = mlp(norm="bn")
    train(model, data, seed=seed, **PRETRAIN)
    return model


# --- §3a: forgetting eval() ----------------------------------------------------------------------


@dataclass
class ForgotEval:
    """What forgot_eval measured. answers: (N, R) class predicted in train mode per shuffling;
    eval_answers: (N,) in eval mode; distinct: (N,) number of different train-mode answers."""

    answers: torch.Tensor
    eval_answers: torch.Tensor
    distinct: np.ndarray
    train_mode_acc: float
    eval_acc: float

    @property
    def share_ambiguous(self):
        """Share of the digits that get more than one answer in train mode."""
        return float((self.distinct > 1).mean())


@torch.no_grad()
def forgot_eval(model, x, y, shufflings=20, batch_size=8, seed=1):
    """Predict every digit of x in train mode (the bug), in `shufflings` random batchings.

    x: (N, 64) digits, y: (N,) labels. A copy of the model is put in train mode, so the running
    statistics of `model` are not touched (it is evaluated, and left, in eval mode); x is
    shuffled into batches of batch_size (the last one smaller) R times, the shufflings drawn
    from a generator seeded with `seed`. Returns a ForgotEval.
    """
    forgot = copy.deepcopy(model).train()  # the bug: predicting in train mode
    g = torch.Generator().manual_seed(seed)
    answers = torch.empty(len(x), shufflings, dtype=torch.long)  # (N, R)
    for r in range(shufflings):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            answers[idx, r] = forgot(x[idx]).argmax(1)
    model.eval()
    eval_answers = model(x).argmax(1)  # (N,)
    distinct = np.array([len(set(a.tolist())) for a in answers])
    return ForgotEval(
        answers=answers,
        eval_answers=eval_answers,
        distinct=distinct,
        train_mode_acc=(answers == y[:, None]).float().mean().item(),
        eval_acc=(eval_answers == y).float().mean().item(),
    )


# --- §3c, §3d: "just evaluating" in train mode, and recalibration --------------------------------


def spoil_and_recalibrate(model, data, digit=0, repeats=10, batch_size=64):
    """§3c: forward the test set's `digit`s `repeats` times in train mode under no_grad (on a
    copy); §3d: recalibrate that spoiled copy, and a healthy copy, on the training digits.

    Returns a dict: moved (largest change of the first BN's running_mean), eval_acc (the model
    as trained), spoiled_acc, repaired_acc (spoiled, then recalibrated), healthy_acc (healthy,
    recalibrated), same_statistics (True if both recalibrated copies have bit-identical running
    statistics: recalibration forgets where the statistics came from).
    """
    x_train, _, x_test, y_test = data[:4]
    spoiled = copy.deepcopy(model).train()
    first = batchnorm_layers(spoiled)[0]
    before = first.running_mean.clone()
    with torch.no_grad():  # no gradients, no optimizer step ...
        for _ in range(repeats):
            spoiled(x_test[y_test == digit])  # ... but train mode: the statistics move
    moved = (first.running_mean - before).abs().max().item()
    spoiled_acc = accuracy(spoiled, x_test, y_test)
    recalibrate(spoiled, x_train, batch_size=batch_size)
    healthy = recalibrate(copy.deepcopy(model), x_train, batch_size=batch_size)
    same = all(
        torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
        for a, b in zip(batchnorm_layers(spoiled), batchnorm_layers(healthy), strict=True)
    )
    return dict(
        moved=moved,
        eval_acc=accuracy(model, x_test, y_test),
        spoiled_acc=spoiled_acc,
        repaired_acc=accuracy(spoiled, x_test, y_test),
        healthy_acc=accuracy(healthy, x_test, y_test),
        same_statistics=same,
    )


# --- §3e: fine-tuning with BN "frozen" -----------------------------------------------------------

# Fine-tuning: a small learning rate (SGD with train's momentum 0.9) and batches of 2. NB: frozen BN
# leaves no batch normalization in the gradient path, so the same learning rate moves the weights
# further than with BN: at lr 0.01, 20 steps with frozen BN lose more than 10 points of accuracy
# in most seeds (training losses jump above 10 in some), and which way wins then depends on the
# seed and on the machine.
FINE_TUNING = dict(steps=300, batch_size=2, lr=0.001)


def requires_grad_off(model):
    """requires_grad_(False) on every BN layer: freezes gamma and beta, not the statistics."""
    for bn in batchnorm_layers(model):
        bn.requires_grad_(False)
    return model


def eval_once(model):
    """bn.eval() on every BN layer, once: undone by the training loop's model.train()."""
    for bn in batchnorm_layers(model):
        bn.eval()
    return model


WAYS = {
    "nothing (plain fine-tuning)": lambda model: model,
    "requires_grad_(False) on BN": requires_grad_off,
    "bn.eval() before the loop": eval_once,
    "freeze_batchnorm(model)": freeze_batchnorm,
}


@dataclass
class FineTuned:
    """One fine-tuning run: did the running statistics move, did gamma move, the test accuracy
    after fine-tuning, and after recalibrating the statistics on the training digits."""

    stats_moved: bool
    gamma_moved: bool
    acc: float
    recalibrated_acc: float


def _bn_state(model):
    """(running_mean, weight) of every batch-norm layer, frozen ones included."""
    layers = batchnorm_layers(model) + [
        m for m in model.modules() if isinstance(m, FrozenBatchNorm)
    ]
    return [(b.running_mean.clone(), b.weight.detach().clone()) for b in layers]


def fine_tune(model, prepare, data, seed=0, **overrides):
    """Fine-tune prepare(copy of model) with FINE_TUNING (overrides replace entries); the seed
    sets the order of the fine-tuning batches. `model` is not changed. Returns a FineTuned."""
    tuned = prepare(copy.deepcopy(model))
    start = _bn_state(tuned)
    train(tuned, data, seed=seed, **{**FINE_TUNING, **overrides})
    end = _bn_state(tuned)
    stats_moved = any(not torch.equal(a[0], b[0]) for a, b in zip(start, end, strict=True))
    gamma_moved = any(not torch.equal(a[1], b[1]) for a, b in zip(start, end, strict=True))
    x_train, _, x_test, y_test = data[:4]
    acc = accuracy(tuned, x_test, y_test)
    if batchnorm_layers(tuned):
        recalibrated = accuracy(recalibrate(tuned, x_train), x_test, y_test)
    else:  # frozen layers never use batch statistics: there is nothing to recompute
        recalibrated = acc
    return FineTuned(stats_moved, gamma_moved, acc, recalibrated)


def fine_tuning_runs(data, seeds, ways=WAYS, models=None, progress=False, **overrides):
    """For each seed: pretrained_mlp(data, seed) (or models[seed] if given), then fine_tune it
    every way, with the same seed for the fine-tuning batches.

    Returns (pretrained_acc, runs): pretrained_acc {seed: test accuracy before fine-tuning};
    runs {way: [FineTuned, one per seed]}.
    """
    models = dict(models or {})
    x_test, y_test = data[2], data[3]
    pretrained_acc, runs = {}, {way: [] for way in ways}
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=len(seeds), desc="fine-tuning, seed by seed")
    for seed in seeds:
        model = models[seed] if seed in models else pretrained_mlp(data, seed)
        pretrained_acc[seed] = accuracy(model, x_test, y_test)
        for way, prepare in ways.items():
            runs[way].append(fine_tune(model, prepare, data, seed=seed, **overrides))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return pretrained_acc, runs


def fine_tuning_rows(pretrained_acc, runs):
    """§3e's table from fine_tuning_runs' result: {row label: [test accuracy, one per seed]}.

    Rows: the pretrained models, each way of WAYS, and plain fine-tuning followed by
    recalibration of the statistics on the training digits.
    """
    rows = {"pretrained (before fine-tuning)": list(pretrained_acc.values())}
    rows.update({way: [r.acc for r in tuned] for way, tuned in runs.items()})
    plain = runs[next(iter(WAYS))]
    rows["plain, then recalibrated (3d)"] = [r.recalibrated_acc for r in plain]
    return rows
