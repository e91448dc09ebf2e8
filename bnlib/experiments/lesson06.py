"""Lesson 6's experiments (notebooks/06_exam_review.ipynb), each a function of a seed, and small
versions of the earlier lessons' experiments whose results the review restates in words.

The seed sets the model's initial weights and the order of the training batches, so
tests/test_claims_lesson06.py can rerun each experiment for seeds 0-4 and check every claim the
review draws from it (or restates from lessons 3 and 4) for every seed.

Shape legend: N batch, D features, M test images, R shufflings, L linear layers.
References: S. Ioffe, C. Szegedy, Batch Normalization, ICML 2015, arXiv 1502.03167 (§3.3: higher
learning rates); G. Yang et al., A Mean Field Theory of Batch Normalization, ICLR 2019, arXiv
1902.08129 (gradient explosion in deep plain networks with BN).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from bnlib.train import accuracy, mlp, train

__all__ = [
    "LR_KINDS",
    "LRS",
    "lr_runs",
    "train_mode_answers",
    "small_batch_accuracies",
    "gradient_ratio",
]

LR_KINDS = ("none", "bn")
LRS = (0.1, 1.0)


def lr_runs(data, seed=0, *, steps=300, batch_size=60):
    """Exam point 2: the digits MLP (64-100-100-10, ReLU) with and without BN at each of LRS.

    Every run starts from the seed's initial weights and sees the seed's batches. Returns
    {(kind, lr): (model, History)}, the models trained (in eval mode).
    """
    runs = {}
    for kind in LR_KINDS:
        for lr in LRS:
            torch.manual_seed(seed)
            model = mlp(norm=kind)
            history = train(model, data, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
            runs[kind, lr] = (model, history)
    return runs


@torch.no_grad()
def train_mode_answers(model, x, *, batch_size=4, shufflings=10, seed=0):
    """Exam point 3: the answers a BN model gives in train mode, the bug of a missing eval().

    x: (M, D) test inputs. A copy of the model is put in train mode (so BN normalizes with each
    batch's own statistics) and x is shuffled `shufflings` times into batches of batch_size.
    Returns (M, R) predicted classes: row i holds image i's answer in each shuffling. The model
    itself is not changed.
    """
    probe = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(seed)
    m = len(x)
    answers = torch.empty(m, shufflings, dtype=torch.long)
    for r in range(shufflings):
        order = torch.randperm(m, generator=g)
        for k in range(0, m, batch_size):
            idx = order[k : k + batch_size]
            answers[idx, r] = probe(x[idx]).argmax(1)
    return answers


def small_batch_accuracies(data, seed=0, kinds=("bn", "ln"), *, batch_size=2, epochs=2):
    """Exam point 4, a small version of lesson 4's experiment: the digits MLP at batch 2.

    mlp(norm=kind) trained for `epochs` at batch_size with lr = 0.05 * batch_size / 32 (the
    linear scaling rule, as in lesson 4). Returns {kind: test accuracy in eval mode}.
    """
    acc = {}
    for kind in kinds:
        torch.manual_seed(seed)
        model = mlp(norm=kind)
        train(
            model, data, epochs=epochs, batch_size=batch_size, lr=0.05 * batch_size / 32, seed=seed
        )
        acc[kind] = accuracy(model, data[2], data[3])
    return acc


def gradient_ratio(data, seed=0, *, depth, activation, norm, batch=128):
    """||dL/dW_first|| / ||dL/dW_last hidden|| at initialization, for questions 2 and 3.

    A plain MLP (no skip connections) with `depth` hidden layers: 64 sigmoids each (PyTorch's
    default init, lesson 3 §4) for activation="sigmoid", or 128 ReLUs each with He init
    (lesson 3 §4b, after Yang et al. 2019) for activation="relu". One backward pass of the
    cross-entropy on the first `batch` training digits, in train mode. Returns the ratio.
    """
    torch.manual_seed(seed)
    width = 64 if activation == "sigmoid" else 128
    model = mlp((64,) + (width,) * depth + (10,), norm=norm, activation=activation)
    linears = [layer for layer in model if isinstance(layer, nn.Linear)]  # L = depth + 1
    if activation == "relu":
        for layer in linears:  # He init: variance 2 / fan_in, zero bias
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:  # only the last layer has one with BN
                nn.init.zeros_(layer.bias)
    model.train()
    x, y = data[0][:batch], data[1][:batch]
    nn.functional.cross_entropy(model(x), y).backward()
    norms = np.array([layer.weight.grad.norm().item() for layer in linears])  # (L,)
    return float(norms[0] / norms[-2])  # the first hidden layer against the last hidden one
