"""Lesson 3's experiments (notebooks/03_why_bn_works.ipynb), each a function of a seed.

The seed sets the model's initial weights and the order of the training batches (and noisy BN's
noise), so tests/test_claims_lesson03.py can rerun every experiment for seeds 0-4 and check each
claim the lesson draws from it. The configurations are the lesson's; keyword overrides exist for
smaller runs.

Shape legend: T recorded training steps, Q percentiles, D units of a layer, L linear layers.
References: S. Ioffe, C. Szegedy, Batch Normalization, ICML 2015, arXiv 1502.03167 (§4.1, Fig. 1;
§3.3); S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, How Does Batch Normalization Help
Optimization?, NeurIPS 2018, arXiv 1805.11604 (§2.1, Fig. 2; Def. 2.1; §3.1, Fig. 4);
G. Yang et al., A Mean Field Theory of Batch Normalization, ICLR 2019, arXiv 1902.08129.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from bnlib.hooks import trace_training, weight_grad_norms
from bnlib.landscape import track_optimization
from bnlib.nn import NoisyBatchNorm1d
from bnlib.train import lr_sweep, mlp, replace_batchnorm, steps_to, train

__all__ = [
    "FIG1",
    "FIG1_KINDS",
    "sigmoid_net",
    "fig1_runs",
    "SMOOTH",
    "rolling_mean",
    "drift",
    "fig1_summary",
    "LRS",
    "SWEEP",
    "WORKS",
    "end_accuracy",
    "relu_net",
    "sweep_runs",
    "largest_working_lr",
    "steps_to_target",
    "deep_sigmoid",
    "sigmoid_gradient_norms",
    "sigmoid_slopes",
    "DEPTHS",
    "deep_relu",
    "relu_gradient_ratios",
    "TRACK",
    "track_runs",
    "ics_per_step",
    "ics_summary",
    "batch_mate_logits",
    "batch_mate_spread",
]

# --- §1, §2, §5: Ioffe & Szegedy's Fig. 1 on the digits, and a variant of noisy BN -------------

# Evaluated every 10 steps, so "steps to 90%" is resolved to 10 steps (not to the first evaluation).
FIG1 = dict(steps=2000, batch_size=60, lr=0.2, momentum=0.9, eval_every=10)
FIG1_KINDS = ("none", "bn", "noisy BN")
SMOOTH = 50  # steps: drift() averages the per-batch percentiles over this many before the range


def sigmoid_net(kind, seed=0):
    """Ioffe & Szegedy §4.1's network: 3 hidden layers of 100 sigmoids, for the 8x8 digits.

    kind: "none", "bn" (BN before each sigmoid) or "noisy BN" (bnlib.nn.NoisyBatchNorm1d, BN
    followed by a random scale and shift per unit, drawn anew every training step and shared by
    the batch: a variant of Santurkar et al.'s noisy BN, who draw i.i.d. noise per activation and
    per sample, §2.1). The initial weights depend only on the seed: "bn" and "noisy BN" start from
    the same weights, and "none" from the same first layer only (bnlib.train.mlp gives the layers
    followed by BN no bias, so the later layers' weights come from other draws of the seeded
    generator).
    """
    if kind not in FIG1_KINDS:
        raise ValueError(f"sigmoid_net: kind must be one of {FIG1_KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    model = mlp(
        (64, 100, 100, 100, 10), norm="none" if kind == "none" else "bn", activation="sigmoid"
    )
    if kind == "noisy BN":
        noise = torch.Generator().manual_seed(1000 + seed)
        replace_batchnorm(model, lambda c: NoisyBatchNorm1d(c, generator=noise))
    return model


def fig1_runs(data, seed=0, kinds=FIG1_KINDS, **overrides):
    """Train sigmoid_net(kind, seed) for each kind with hooks on every sigmoid's input.

    The batches come in the same seeded order for every kind. overrides replace entries of FIG1.
    Returns {kind: (History, Trace)} (bnlib.hooks.trace_training).
    """
    config = {**FIG1, **overrides}
    return {
        kind: trace_training(sigmoid_net(kind, seed), data, seed=seed, **config) for kind in kinds
    }


def rolling_mean(x, window=None):
    """Mean of `window` consecutive rows of x (T, ...): (T - window + 1, ...); row i averages
    x[i : i + window]. window: default SMOOTH."""
    window = SMOOTH if window is None else int(window)
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= window <= len(x):
        raise ValueError(f"rolling_mean: window must be in 1..{len(x)}, got {window}")
    c = np.cumsum(np.concatenate([np.zeros((1, *x.shape[1:])), x]), axis=0)
    return (c[window:] - c[:-window]) / window


def drift(trace, layer=None, window=None):
    """How much the input distribution of one layer's sigmoids moves, averaged over its units.

    Each per-batch percentile is over one batch of 60 samples, so it jitters from batch to batch
    even when nothing drifts. Over the training steps after the first 10%:
    "median drift" and "band drift": the range (max - min) of the `window`-step average (default
    SMOOTH) of the 50th percentile and of the band (85th minus 15th percentile), per unit: the
    slow movement, with most of the batch noise averaged away;
    "median jitter": the standard deviation of the per-batch median around its `window`-step
    average, per unit: how much the distribution changes from one batch to the next (BN's batch
    noise, or the noise noisy BN injects);
    "final band": the band averaged over the last 20 steps.
    layer: a name of trace.percentiles (default: the last hidden layer, the one Ioffe & Szegedy
    plot).
    """
    window = SMOOTH if window is None else int(window)
    layer = list(trace.percentiles)[-1] if layer is None else layer
    pct = trace.percentiles[layer]  # (T, Q, D)
    late = pct[len(pct) // 10 :]
    band = late[:, -1] - late[:, 0]  # (T', D)
    median = late[:, len(trace.q) // 2]  # (T', D)
    smooth_median, smooth_band = rolling_mean(median, window), rolling_mean(band, window)
    centred = median[(window - 1) // 2 :][: len(smooth_median)]  # the step each average centres on
    span = lambda a: float(np.mean(a.max(0) - a.min(0)))  # noqa: E731  mean over units
    return {
        "median drift": span(smooth_median),
        "band drift": span(smooth_band),
        "median jitter": float(np.mean((centred - smooth_median).std(0))),
        "final band": float(np.mean(band[-20:])),
    }


def fig1_summary(runs, targets=(0.2, 0.9), last=500):
    """{kind: drift(trace), plus "steps to 20%" and "steps to 90%" (one key per target: the first
    evaluated step with test accuracy at or above it, inf if never) and "end accuracy" (mean
    test accuracy over the last `last` steps, see end_accuracy)}."""
    out = {}
    for kind, (history, trace) in runs.items():
        out[kind] = {**drift(trace), "end accuracy": end_accuracy(history, last)}
        for target in targets:
            reached = steps_to(history, target)
            out[kind][f"steps to {target:.0%}"] = math.inf if reached is None else reached
    return out


# --- §3: learning rates ------------------------------------------------------------------------

LRS = (0.03, 0.1, 0.3, 1.0, 3.0)  # steps of about 3x
# Evaluated every 10 steps: "steps to 95%" is resolved to 10 steps, and a run's end is judged on
# its last 100 steps (10 evaluations), not on one evaluation.
SWEEP = dict(steps=300, batch_size=60, eval_every=10)
WORKS = 0.85  # a run "works" if its test accuracy over its last 100 steps averages above this


def relu_net(kind):
    """The ReLU network of §3 and §6-§8: 3 hidden layers of 100, norm "none" or "bn"."""
    return mlp((64, 100, 100, 100, 10), norm=kind, activation="relu")


def sweep_runs(data, seed=0, lrs=LRS, kinds=("none", "bn"), progress=False, **overrides):
    """bnlib.train.lr_sweep of relu_net with SWEEP (overridable): {(kind, lr): History}."""
    config = {**SWEEP, **overrides}
    return lr_sweep(relu_net, kinds, lrs, data, seed=seed, progress=progress, **config)


def end_accuracy(history, last=100):
    """Mean test accuracy over the evaluations of the last `last` steps of a run."""
    steps, acc = np.asarray(history.steps), np.asarray(history.test_acc)
    return float(acc[steps > steps[-1] - last].mean())


def largest_working_lr(runs, kind, threshold=WORKS):
    """The largest learning rate whose end_accuracy is above `threshold` (0 if none works)."""
    working = [lr for (k, lr), h in runs.items() if k == kind and end_accuracy(h) > threshold]
    return max(working, default=0.0)


def steps_to_target(runs, kind, target=0.95):
    """{lr: first evaluated step with test accuracy >= target (inf if never)} for one kind."""
    out = {}
    for (k, lr), history in runs.items():
        if k == kind:
            reached = steps_to(history, target)
            out[lr] = math.inf if reached is None else reached
    return out


# --- §4, §4b: gradient norms per layer -----------------------------------------------------------


def deep_sigmoid(kind, seed=0, depth=10, width=64):
    """§4's deep sigmoid MLP (`depth` hidden layers of `width`), norm "none" or "bn", with
    PyTorch's default initialization."""
    torch.manual_seed(seed)
    return mlp((64,) + (width,) * depth + (10,), norm=kind, activation="sigmoid")


def sigmoid_gradient_norms(data, seed=0, steps=300, depth=10, width=64, probe=128):
    """||dL/dW|| per linear layer of a deep sigmoid MLP, at initialization and after `steps`.

    Measured on the fixed batch of the first `probe` training digits, in train mode (batch
    statistics, as in training). Returns {(kind, step): (L,) array} for kind "none", "bn" and
    step 0, steps.
    """
    x, y = data[0][:probe], data[1][:probe]
    out = {}
    for kind in ("none", "bn"):
        model = deep_sigmoid(kind, seed, depth, width)
        out[kind, 0] = weight_grad_norms(model, x, y)
        train(model, data, steps=steps, batch_size=60, lr=0.2, seed=seed)
        model.train()  # batch statistics, as during training
        out[kind, steps] = weight_grad_norms(model, x, y)
    return out


def sigmoid_slopes(data, seed=0, depth=10, width=64, probe=128):
    """Why §4's gradients vanish without BN and not with it, at initialization.

    One forward pass in train mode on the first `probe` training digits. Returns
    {"slope": {kind: (depth,) array}, the mean slope sigmoid'(z) = s(1 - s) over the batch and
    the units of each hidden layer (at most 1/4, at z = 0), for kind "none" and "bn";
    "bn input std": (depth,) array, the batch standard deviation of each BN's input, averaged
    over its units (BN's backward pass divides the gradient by it)}.
    """
    x = data[0][:probe]
    slopes, stds = {}, []
    for kind in ("none", "bn"):
        model = deep_sigmoid(kind, seed, depth, width).train()
        layer_slopes = []
        hooks = [
            m.register_forward_hook(
                lambda m, i, o, out=layer_slopes: out.append(float((o * (1 - o)).mean()))
            )
            for m in model.modules()
            if isinstance(m, nn.Sigmoid)
        ]
        if kind == "bn":
            hooks += [
                m.register_forward_hook(lambda m, i, o: stds.append(float(i[0].std(0).mean())))
                for m in model.modules()
                if isinstance(m, nn.BatchNorm1d)
            ]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        slopes[kind] = np.array(layer_slopes)
    return {"slope": slopes, "bn input std": np.array(stds)}


DEPTHS = (5, 10, 20, 30, 50)


def deep_relu(kind, depth, seed=0, width=128):
    """A plain (no skip connections) ReLU MLP with He initialization and zero biases (the layers
    followed by BN have none: bnlib.train.mlp leaves them out)."""
    torch.manual_seed(seed)
    model = mlp((64,) + (width,) * depth + (10,), norm=kind, activation="relu")
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return model


def relu_gradient_ratios(data, seed=0, depths=DEPTHS, probe=128):
    """{(kind, depth): ||dL/dW_1|| / ||dL/dW_last hidden||} at initialization (Yang et al. 2019).

    One backward pass on the first `probe` training digits, train mode (batch statistics).
    """
    x, y = data[0][:probe], data[1][:probe]
    out = {}
    for kind in ("none", "bn"):
        for depth in depths:
            g = weight_grad_norms(deep_relu(kind, depth, seed), x, y)
            out[kind, depth] = float(g[0] / g[-2])  # the first hidden layer against the last
    return out


# --- §6, §7, §8: ICS, the landscape, and BN's batch noise ---------------------------------------

# Measured every 25 steps over the first 300, where the two networks differ (by step 300 both fit
# the measurement batch almost perfectly, and every measure is near zero).
TRACK = dict(lr=0.1, steps=300, batch_size=60, every=25)


def track_runs(data, seed=0, kinds=("none", "bn"), **overrides):
    """Train relu_net(kind) and measure ICS and the landscape every TRACK["every"] steps.

    The measurements use the fixed batch of the first 60 training digits
    (bnlib.landscape.track_optimization). Returns {kind: (model, History, measures)}; the
    trained models are returned for §8.
    """
    config = {**TRACK, **overrides}
    x, y = data[0][:60], data[1][:60]
    out = {}
    for kind in kinds:
        torch.manual_seed(seed)
        model = relu_net(kind)
        history, measures = track_optimization(model, data, (x, y), seed=seed, **config)
        out[kind] = (model, history, measures)
    return out


def ics_per_step(measures):
    """(ICS (M,), ICS / ||G|| (M,)): each measurement's mean over layers 2..L (layer 1 has no
    ICS: no layer before it takes a step)."""
    ics = measures["ics"][:, 1:]  # (M, L-1)
    return ics.mean(1), (ics / measures["grad_norm"][:, 1:]).mean(1)


def ics_summary(measures):
    """(ICS, ICS / ||G||) averaged over layers 2..L and all measurements (layer 1 has no ICS)."""
    absolute, relative = ics_per_step(measures)
    return float(absolute.mean()), float(relative.mean())


def batch_mate_logits(model, sample, pool, trials=50, batch_size=60, seed=0):
    """One sample's logits in `trials` different batches, in train mode: (trials, K).

    The sample (1, D) is put in `trials` batches with batch_size - 1 random rows of pool (N, D).
    NB: a forward pass in train mode updates BN's running statistics, even under no_grad; this
    runs on a copy, so `model` itself is left untouched.
    """
    scratch = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return torch.stack(
            [
                scratch(
                    torch.cat(
                        [sample, pool[torch.randperm(len(pool), generator=g)[: batch_size - 1]]]
                    )
                )[0]
                for _ in range(trials)
            ]
        )


def batch_mate_spread(model, sample, pool, trials=50, batch_size=60, seed=0):
    """How much one sample's logits change with its batch-mates, in train mode: the standard
    deviation of batch_mate_logits over the trials, averaged over the classes. `model` itself is
    left untouched."""
    logits = batch_mate_logits(model, sample, pool, trials, batch_size, seed)  # (trials, K)
    return float(logits.std(0).mean())
