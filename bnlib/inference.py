"""Batch norm after training: folding it into the layer before, recalibrating its running
statistics, and what it costs (step time, memory kept for backward).

In eval mode BN is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma + beta,
so after a Linear or Conv2d layer it can be merged into that layer's weight and bias:

    s = gamma / sqrt(running_var + eps)                 (C,)
    W' = W * s (row c of W, or filter c, times s_c)     b' = (b - running_mean) * s + beta

`fold_batchnorm` does it for one pair, `fold_model` for every pair of an nn.Sequential.
`recalibrate` recomputes the running statistics with one pass over data (momentum=None: the
cumulative average). `step_times`, `saved_bytes` and `saved_tensors` measure BN's cost.

Shape legend: N batch, C channels/features, K out, D in.
References: Ioffe & Szegedy 2015, arXiv 1502.03167, §3.1 and Alg. 2 (inference);
torch/nn/utils/fusion.py (fuse_conv_bn_weights, fuse_linear_bn_weights).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "fold_batchnorm",
    "fold_model",
    "recalibrate",
    "batchnorm_layers",
    "step_times",
    "forward_times",
    "saved_bytes",
    "saved_tensors",
    "Saved",
]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def batchnorm_layers(model):
    """The BatchNorm1d/2d modules of `model` (torch.nn's, or bnlib.nn's), in order."""
    from bnlib import nn as bnn

    kinds = _BN + (bnn.BatchNorm1d, bnn.BatchNorm2d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def _check_pair(layer, bn):
    from bnlib import nn as bnn

    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise TypeError(f"fold_batchnorm: layer must be nn.Linear or nn.Conv2d, got {type(layer)}")
    if not isinstance(bn, _BN + (bnn.BatchNorm1d, bnn.BatchNorm2d)):
        raise TypeError(f"fold_batchnorm: bn must be BatchNorm1d or BatchNorm2d, got {type(bn)}")
    if bn.running_mean is None:
        raise ValueError(
            "fold_batchnorm: bn has no running statistics (track_running_stats=False): it "
            "normalizes with batch statistics even in eval mode, so it cannot be folded"
        )
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if out != bn.num_features:
        raise ValueError(
            f"fold_batchnorm: layer has {out} outputs but bn normalizes {bn.num_features} "
            "features: they must be the same"
        )


@torch.no_grad()
def fold_batchnorm(layer, bn):
    """A new Linear/Conv2d computing bn(layer(x)) with bn in eval mode (running statistics).

    layer: nn.Linear (weight (K, D)) or nn.Conv2d (weight (K, D, kh, kw)), with or without bias;
    bn: BatchNorm1d/2d over K features, with running statistics. The arithmetic is done in
    float64 and stored in the layer's dtype. Neither argument is changed.
    """
    _check_pair(layer, bn)
    folded = copy.deepcopy(layer)
    K = bn.num_features
    w = layer.weight.double()
    b = layer.bias.double() if layer.bias is not None else torch.zeros(K, dtype=torch.float64)
    gamma = bn.weight.double() if bn.weight is not None else torch.ones(K, dtype=torch.float64)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros(K, dtype=torch.float64)
    s = gamma / torch.sqrt(bn.running_var.double() + bn.eps)  # (K,)
    shape = (K,) + (1,) * (w.dim() - 1)  # (K, 1) or (K, 1, 1, 1): scales row/filter k
    folded.weight.copy_((w * s.view(shape)).to(layer.weight.dtype))
    new_bias = (b - bn.running_mean.double()) * s + beta  # (K,)
    if folded.bias is None:
        folded.bias = nn.Parameter(torch.empty(K, dtype=layer.weight.dtype))
    folded.bias.copy_(new_bias.to(folded.bias.dtype))
    return folded


def fold_model(model):
    """A copy of the nn.Sequential `model` for inference, each Linear/Conv2d directly followed by
    a BatchNorm folded into it (and the BN removed). The copy is in eval mode; `model` is
    unchanged. Nested Sequentials are folded too."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"fold_model: expected an nn.Sequential, got {type(model).__name__}")
    bns = _BN + tuple(type(m) for m in batchnorm_layers(model))
    layers, children = [], list(model.children())
    i = 0
    while i < len(children):
        child = children[i]
        nxt = children[i + 1] if i + 1 < len(children) else None
        if isinstance(child, nn.Linear | nn.Conv2d) and isinstance(nxt, bns):
            layers.append(fold_batchnorm(child, nxt))
            i += 2
            continue
        layers.append(
            fold_model(child) if isinstance(child, nn.Sequential) else copy.deepcopy(child)
        )
        i += 1
    return nn.Sequential(*layers).eval()


@torch.no_grad()
def recalibrate(model, x, batch_size=64):
    """Recompute every BN layer's running statistics from x, then return the model in eval mode.

    The statistics are reset and recomputed in train mode with momentum=None (a cumulative
    average over the batches of batch_size; the last, smaller batch is dropped), the weights
    untouched; each layer's momentum is restored afterwards. Use after anything that changes the
    weights without updating the statistics (weight averaging, pruning, editing a trained model)
    or after the statistics were spoiled (a forward pass in train mode on unrepresentative data).
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("recalibrate: the model has no BatchNorm layer")
    if batch_size < 2 or batch_size > len(x):
        raise ValueError(f"recalibrate: batch_size must be in 2..{len(x)}, got {batch_size}")
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: every batch counts the same
    model.train()
    try:
        for i in range(0, len(x) - batch_size + 1, batch_size):
            model(x[i : i + batch_size])
    finally:
        for bn, m in zip(layers, momenta, strict=True):
            bn.momentum = m
        model.eval()
    return model


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_times(models, x, y, repeats=30, warmup=5):
    """Median seconds of one training step (forward, loss, backward; no optimizer) per model.

    models: {label: model}. The models are timed in turns, one step each, so that a change of
    machine load affects them all alike. Returns {label: seconds}.
    """
    runs = {label: [] for label in models}

    def step(model):
        model.train()
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    for model in models.values():
        for _ in range(warmup):
            step(model)
    for _ in range(repeats):
        for label, model in models.items():
            runs[label].append(_seconds(lambda m=model: step(m)))
    return {label: sorted(t)[len(t) // 2] for label, t in runs.items()}


@torch.no_grad()
def forward_times(models, x, repeats=30, warmup=5):
    """Median seconds of one eval-mode forward pass per model, timed in turns as step_times."""
    runs = {label: [] for label in models}
    for model in models.values():
        model.eval()
        for _ in range(warmup):
            model(x)
    for _ in range(repeats):
        for label, model in models.items():
            runs[label].append(_seconds(lambda m=model: m(x)))
    return {label: sorted(t)[len(t) // 2] for label, t in runs.items()}


@dataclass
class Saved:
    """One tensor autograd keeps for the backward: the layer whose forward saved it (its name in
    model.named_modules(), "" for the model itself), its shape and size in bytes, what it is
    ("input": the model's input x; "parameter"; "buffer": e.g. BN's running statistics;
    "computed": anything the forward computed), and new=False when the same storage was already
    saved by an earlier layer (it costs no extra memory)."""

    layer: str
    shape: tuple
    nbytes: int
    kind: str
    new: bool


def saved_tensors(model, x):
    """The tensors autograd keeps from a training-mode forward pass of model on x, in order.

    Recorded with torch.autograd.graph.saved_tensors_hooks, each attributed to the innermost
    module running when it was saved. Returns a list of Saved. E.g. a BatchNorm1d(C) on (N, C)
    keeps its input (N, C), its running mean and variance, its weight, and two computed vectors
    (C,): the batch mean and 1 / sqrt(var + eps) (PyTorch's save_mean and save_invstd).
    """
    names = {m: name for name, m in model.named_modules()}
    kinds = {p.untyped_storage().data_ptr(): "parameter" for p in model.parameters()}
    kinds.update({b.untyped_storage().data_ptr(): "buffer" for b in model.buffers()})
    kinds[x.untyped_storage().data_ptr()] = "input"
    running, saved, seen = [""], [], set()

    def pack(t):
        key = t.untyped_storage().data_ptr()
        kind = kinds.get(key, "computed")
        nbytes = t.numel() * t.element_size()  # NB: not the storage's: x[:64] shares x's
        saved.append(Saved(running[-1], tuple(t.shape), nbytes, kind, key not in seen))
        seen.add(key)
        return t

    def enter(module, args):
        running.append(names[module])

    def leave(module, args, out):  # NB: a forward hook that returns a value replaces the output
        running.pop()

    hooks = [
        h
        for m in names
        for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))
    ]
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
        del out
    finally:
        for hook in hooks:
            hook.remove()
    return saved


def saved_bytes(model, x):
    """Bytes of the tensors autograd keeps from a training-mode forward pass for the backward.

    Counted with torch.autograd.graph.saved_tensors_hooks (see saved_tensors); a tensor saved
    twice (the same storage) is counted once, with the size of the tensor saved (a slice of a
    data set counts as the slice). Parameters are not counted (they are kept anyway).
    """
    return sum(s.nbytes for s in saved_tensors(model, x) if s.new and s.kind != "parameter")
