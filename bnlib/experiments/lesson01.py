"""Lesson 1's experiments (notebooks/01_bn_formulas.ipynb), each a function of a seed.

The seed sets the model's initial weights and the order of its training batches, so
tests/test_claims_lesson01.py can rerun every experiment for seeds 0-4 and check each claim the
lesson draws from it. The configurations are the lesson's, chosen tiny (well under a second per
training run on one core).

- §0 `deep_sigmoid`: a six-hidden-layer sigmoid MLP on the digits, with and without BN: the spread
  over the batch of each layer's pre-activations (the sigmoid's inputs), at initialization and
  after training, the gradient that reaches each layer's weights at initialization, and the test
  accuracy;
- §5c `init_scale_sweep`: final test accuracy against the standard deviation of the initial
  weights, with and without BN (after CS231n's assignment 2, "batch normalization and
  initialization");
- §5d `placement_runs`: BN before the ReLU (Ioffe & Szegedy 2015, §3.2: BN on Wu + b) or after it.

Shape legend: N samples, D features, L layers, S weight scales, R seeds.
References: Ioffe & Szegedy 2015, arXiv 1502.03167, §3.2, §4.2.2 (BN-x5-Sigmoid: Inception with
sigmoids trains with BN, "never achieves better than 1/1000 accuracy" without); CS231n assignment
2, BatchNormalization.ipynb.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlib.train import train

__all__ = [
    "deep_net",
    "preactivation_spread",
    "weight_grad_norms",
    "SIGMOID",
    "DeepRun",
    "deep_sigmoid",
    "INIT_SCALE",
    "init_scale_net",
    "init_scale_sweep",
    "PLACEMENT",
    "placement_net",
    "placement_runs",
]

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def deep_net(bn, depth, width, activation="sigmoid", d_in=64, classes=10, bn_after=False):
    """depth blocks Linear -> [BN] -> activation (or Linear -> activation -> BN if bn_after),
    then a Linear to the logits. PyTorch's default initialization."""
    layers = []
    for _ in range(depth):
        block = [nn.Linear(d_in, width), _ACTIVATIONS[activation]()]
        if bn:
            block.insert(2 if bn_after else 1, nn.BatchNorm1d(width))
        layers += block
        d_in = width
    layers.append(nn.Linear(d_in, classes))
    return nn.Sequential(*layers)


@torch.no_grad()
def preactivation_spread(model, x):
    """(L,) each layer's pre-activation spread: the standard deviation over the batch x of every
    unit's input to the nonlinearity, averaged over the units. BN uses x's own statistics (train
    mode, on a copy: the model's running statistics are not touched)."""
    probe = copy.deepcopy(model).train()
    spreads, h = [], x
    for layer in probe:
        if isinstance(layer, tuple(_ACTIVATIONS.values())):
            spreads.append(h.std(dim=0).mean().item())  # h: (N, D)
        h = layer(h)
    return np.array(spreads)


def weight_grad_norms(model, x, y):
    """(L,) the norm of the cross-entropy loss's gradient on (x, y) with respect to each hidden
    Linear layer's weights (the last Linear, to the logits, left out); on a copy in train mode."""
    probe = copy.deepcopy(model).train()
    loss = nn.functional.cross_entropy(probe(x), y)
    linears = [layer for layer in probe if isinstance(layer, nn.Linear)][:-1]
    grads = torch.autograd.grad(loss, [layer.weight for layer in linears])
    return np.array([g.norm().item() for g in grads])


# --- §0: why normalize? A deep sigmoid MLP ------------------------------------------------------

SIGMOID = dict(depth=6, width=64, steps=300, batch_size=32, lr=0.1, eval_every=25)


@dataclass
class DeepRun:
    """One §0 run: spreads (L,) at init and after training; weight-gradient norms (L,) at init;
    test accuracy along training."""

    bn: bool
    spread_init: np.ndarray
    spread_trained: np.ndarray
    grad_init: np.ndarray
    steps: list
    test_acc: list

    @property
    def final_acc(self):
        return self.test_acc[-1]


def deep_sigmoid(data, bn, seed=0, **overrides):
    """§0: train the deep sigmoid MLP (SIGMOID, with overrides) with or without BN; a DeepRun.

    data: load_digits(tensors=True). The spreads and the gradients are measured on the 450 test
    digits.
    """
    cfg = {**SIGMOID, **overrides}
    torch.manual_seed(seed)
    model = deep_net(bn, cfg["depth"], cfg["width"], "sigmoid")
    probe = data.x_test  # (450, 64)
    before = preactivation_spread(model, probe)
    grads = weight_grad_norms(model, probe, data.y_test)
    history = train(
        model,
        data,
        steps=cfg["steps"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        seed=seed,
        eval_every=cfg["eval_every"],
    )
    after = preactivation_spread(model, probe)
    return DeepRun(bn, before, after, grads, history.steps, history.test_acc)


# --- §5c: robustness to the scale of the initial weights -----------------------------------------

INIT_SCALE = dict(
    stds=tuple(np.logspace(-3, 0, 7)), depth=4, width=50, steps=150, batch_size=32, lr=0.05
)


def init_scale_net(bn, std, depth, width):
    """A ReLU MLP whose Linear weights are drawn from N(0, std^2), biases 0 (as in CS231n)."""
    model = deep_net(bn, depth, width, "relu")
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, std)
                layer.bias.zero_()
    return model


def init_scale_sweep(data, seed=0, bns=(False, True), **overrides):
    """§5c: final test accuracy for every weight std in INIT_SCALE["stds"].

    Returns {bn: (S,) array of accuracies} for one seed.
    """
    cfg = {**INIT_SCALE, **overrides}
    out = {}
    for bn in bns:
        accs = []
        for std in cfg["stds"]:
            torch.manual_seed(seed)
            model = init_scale_net(bn, std, cfg["depth"], cfg["width"])
            history = train(
                model,
                data,
                steps=cfg["steps"],
                batch_size=cfg["batch_size"],
                lr=cfg["lr"],
                seed=seed,
            )
            accs.append(history.final_test_acc)
        out[bn] = np.array(accs)
    return out


# --- §5d: BN before or after the nonlinearity ----------------------------------------------------

PLACEMENT = dict(depth=2, width=100, epochs=2, batch_size=32, lr=0.1)


def placement_net(where, depth, width):
    """A ReLU MLP with BN "before" the ReLU (Linear -> BN -> ReLU) or "after" it."""
    if where not in ("before", "after"):
        raise ValueError(f"placement_net: where must be 'before' or 'after', got {where!r}")
    return deep_net(True, depth, width, "relu", bn_after=where == "after")


def placement_runs(data, seed=0, **overrides):
    """§5d: final test accuracy of BN before and after the ReLU: {"before": acc, "after": acc}."""
    cfg = {**PLACEMENT, **overrides}
    out = {}
    for where in ("before", "after"):
        torch.manual_seed(seed)
        model = placement_net(where, cfg["depth"], cfg["width"])
        history = train(
            model, data, epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed
        )
        out[where] = history.final_test_acc
    return out
