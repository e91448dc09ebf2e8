"""Small models and a training loop for the course's experiments on the digits (CPU, seconds).

Shape legend: N batch, D features, C channels, H, W height and width (8x8 digits), K classes.
The models are tiny on purpose: every experiment in the lessons must rerun in seconds on a 2-core
laptop. Everything is seeded: the same call gives the same numbers on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["NORMS", "norm_layer", "mlp", "small_cnn", "accuracy", "History", "train"]

NORMS = ("none", "bn", "ln", "gn", "in")


def norm_layer(kind, num_features, *, dims=1, num_groups=4):
    """A normalization layer by name, for (N, D) inputs (dims=1) or (N, C, H, W) inputs (dims=2).

    kind: "none" (identity); "bn" (BatchNorm1d/2d); "ln" (LayerNorm over the features; for images
    GroupNorm with one group, i.e. LN over (C, H, W) with a per-channel affine); "gn" (GroupNorm
    with num_groups groups, which must divide num_features); "in" (InstanceNorm2d with an affine,
    dims=2 only).
    """
    if kind not in NORMS:
        raise ValueError(f"norm_layer: kind must be one of {NORMS}, got {kind!r}")
    if dims not in (1, 2):
        raise ValueError(f"norm_layer: dims must be 1 (N, D) or 2 (N, C, H, W), got {dims!r}")
    if kind == "none":
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm1d(num_features) if dims == 1 else nn.BatchNorm2d(num_features)
    if kind == "ln":
        return nn.LayerNorm(num_features) if dims == 1 else nn.GroupNorm(1, num_features)
    if kind == "gn":
        if num_features % num_groups:
            raise ValueError(
                f"norm_layer: num_groups={num_groups} must divide the {num_features} channels"
            )
        return nn.GroupNorm(num_groups, num_features)
    if dims != 2:
        raise ValueError("norm_layer: 'in' (instance norm) needs images, dims=2")
    return nn.InstanceNorm2d(num_features, affine=True)


def _cancels_bias(kind):
    """True for the norms that subtract a per-channel mean over the batch or the positions (BN,
    IN): a bias in the layer before them is removed exactly, so that layer should not have one."""
    return kind in ("bn", "in")


_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def mlp(widths=(64, 100, 100, 10), norm="none", activation="relu"):
    """Linear -> norm -> activation blocks, then a final Linear to the logits.

    widths: (D_in, hidden..., K). norm: a kind of `norm_layer` (dims=1), applied before each
    activation, as in Ioffe & Szegedy 2015 (§3.2: BN on Wu, before the nonlinearity). A layer
    followed by BN has no bias: BN subtracts the batch mean, which removes any per-feature bias,
    and its beta takes the bias's place (lesson 1, §5). LN and GN keep the bias: they subtract a
    mean over the features of one sample, which does not remove a per-feature bias.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        )
    if len(widths) < 2:
        raise ValueError(f"mlp: widths needs at least (D_in, K), got {widths!r}")
    layers = []
    for d_in, d_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [
            nn.Linear(d_in, d_out, bias=not _cancels_bias(norm)),
            norm_layer(norm, d_out),
            _ACTIVATIONS[activation](),
        ]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def small_cnn(norm="none", channels=(16, 32), num_groups=4, num_classes=10):
    """Two 3x3 conv blocks (conv -> norm -> ReLU, the second followed by 2x2 max-pool) and a
    linear classifier, for (N, 1, 8, 8) digits. About 10k parameters. Convolutions followed by BN
    or IN have no bias (both subtract a per-channel mean, which removes it; see `mlp`)."""
    c1, c2 = channels
    bias = not _cancels_bias(norm)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=bias),
        norm_layer(norm, c1, dims=2, num_groups=num_groups),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1, bias=bias),
        norm_layer(norm, c2, dims=2, num_groups=num_groups),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, c2, 4, 4)
        nn.Flatten(),  # (N, c2 * 16)
        nn.Linear(c2 * 16, num_classes),
    )


@torch.no_grad()
def accuracy(model, x, y, *, train_mode=False, batch_size=None):
    """Share of correct predictions, in eval mode (running statistics) unless train_mode=True.

    batch_size: None evaluates in one batch; a number splits x into batches of that size (which
    matters only in train mode, where BN uses each batch's own statistics). In train mode the
    running statistics would be updated; they are saved and restored, so calling this changes
    nothing in the model.
    """
    was_training = model.training
    saved = {k: v.clone() for k, v in model.state_dict().items()} if train_mode else None
    model.train(train_mode)
    try:
        step = len(x) if batch_size is None else batch_size
        correct = sum(
            (model(x[i : i + step]).argmax(1) == y[i : i + step]).sum().item()
            for i in range(0, len(x), step)
        )
    finally:
        if saved is not None:
            model.load_state_dict(saved)
        model.train(was_training)
    return correct / len(x)


@dataclass
class History:
    """What `train` recorded: one entry per evaluation (steps, test_acc) and per step (loss)."""

    steps: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    loss: list = field(default_factory=list)

    @property
    def final_test_acc(self):
        return self.test_acc[-1] if self.test_acc else math.nan


def train(
    model,
    data,
    *,
    epochs=None,
    steps=None,
    batch_size=32,
    lr=0.1,
    momentum=0.9,
    weight_decay=0.0,
    seed=0,
    eval_every=None,
    callback=None,
    progress=False,
    desc="training",
):
    """Train `model` with SGD on data = (x_train, y_train, x_test, y_test) tensors; return History.

    Give epochs or steps (one step = one mini-batch). Batches are drawn by a seeded shuffle each
    epoch; the last, smaller batch of an epoch is dropped (BN in training mode cannot take a batch
    of one, and equal batch sizes keep the comparison fair). eval_every: evaluate test accuracy
    (eval mode) every that many steps, and always at the end. callback(step, model): called after
    each step (for hooks and measurements); it must not change the model. progress: show a
    progress bar (bnlib.progress).
    """
    x, y, x_test, y_test = data[:4]
    n = len(x)
    if batch_size < 1 or batch_size > n:
        raise ValueError(f"train: batch_size must be in 1..{n}, got {batch_size}")
    per_epoch = n // batch_size
    if (epochs is None) == (steps is None):
        raise ValueError("train: give exactly one of epochs or steps")
    total = epochs * per_epoch if steps is None else steps
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = History()
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=total, desc=desc)
    step, order = 0, None
    while step < total:
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=generator)
        i = (step % per_epoch) * batch_size
        idx = order[i : i + batch_size]
        model.train()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        history.loss.append(loss.item())
        if callback is not None:
            callback(step, model)
        if (eval_every and step % eval_every == 0) or step == total:
            history.steps.append(step)
            history.test_acc.append(accuracy(model, x_test, y_test))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return history


# --- module 4: accuracy against batch size ------------------------------------------------------

__all__ += ["replace_batchnorm", "batch_size_sweep"]


def replace_batchnorm(model, make):
    """Replace every torch.nn.BatchNorm1d/2d in `model` by make(num_features); return the model.

    For remedies that are drop-ins for BN: e.g. replace_batchnorm(mlp(norm="bn"),
    lambda c: bnlib.nn.BatchRenorm1d(c)). BN layers have no random initialization, so the other
    weights stay those of the seeded model.
    """
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d):
            setattr(model, name, make(child.num_features))
        else:
            replace_batchnorm(child, make)
    return model


def batch_size_sweep(
    kinds,
    batch_sizes,
    seeds,
    data,
    *,
    make_model=None,
    epochs=2,
    base_lr=0.05,
    base_batch=32,
    progress=False,
):
    """Train one model per (kind, batch size, seed) for the same epochs; return test accuracies.

    The learning rate follows the linear scaling rule, lr = base_lr * N / base_batch, as in Wu &
    He 2018 (§5.1). make_model(kind) builds the model for a kind (default: mlp(norm=kind)); the
    torch seed is set before each build. Returns (eval_acc, train_acc), arrays of shape
    (len(kinds), len(batch_sizes), len(seeds)): test accuracy in eval mode (running statistics)
    and in train mode on test batches of the training batch size (batch statistics).
    """
    make_model = make_model or (lambda kind: mlp(norm=kind))
    shape = (len(kinds), len(batch_sizes), len(seeds))
    eval_acc, train_acc = np.zeros(shape), np.zeros(shape)
    x_test, y_test = data[2], data[3]
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=int(np.prod(shape)), desc="batch-size sweep")
    for i, kind in enumerate(kinds):
        for j, n in enumerate(batch_sizes):
            for k, seed in enumerate(seeds):
                torch.manual_seed(seed)
                model = make_model(kind)
                train(
                    model, data, epochs=epochs, batch_size=n, lr=base_lr * n / base_batch, seed=seed
                )
                eval_acc[i, j, k] = accuracy(model, x_test, y_test)
                train_acc[i, j, k] = accuracy(model, x_test, y_test, train_mode=True, batch_size=n)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return eval_acc, train_acc


# --- module 3: learning-rate sweeps and training speed -------------------------------------------

__all__ += ["lr_sweep", "steps_to"]


def steps_to(history, target):
    """The first evaluated step at which test accuracy reached `target`, or None if it never did."""
    for step, acc in zip(history.steps, history.test_acc, strict=True):
        if acc >= target:
            return step
    return None


def lr_sweep(make_model, kinds, lrs, data, *, seed=0, progress=False, **train_kwargs):
    """Train make_model(kind) once per (kind, learning rate); return {(kind, lr): History}.

    The torch seed is set before each build, so every kind starts from the same random weights
    for its architecture. train_kwargs go to `train` (steps, batch_size, eval_every, ...).
    """
    runs = {}
    bar = None
    if progress:
        from bnlib.progress import progress_bar

        bar = progress_bar(total=len(kinds) * len(lrs), desc="learning-rate sweep")
    for kind in kinds:
        for lr in lrs:
            torch.manual_seed(seed)
            runs[kind, lr] = train(make_model(kind), data, lr=lr, seed=seed, **train_kwargs)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return runs
