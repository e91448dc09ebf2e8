"""Look inside a network while it trains: forward and backward hooks that record per-layer
statistics, percentiles and gradient norms, and remove themselves when done.

A hook is a function PyTorch calls during every forward (or backward) pass of a module:
`module.register_forward_hook(fn)` calls fn(module, inputs, output) and returns a handle whose
`.remove()` takes the hook off again. NB: a hook that is never removed keeps recording (and
keeps its tensors alive) for the life of the model; the recorders here are context managers, so
leaving the `with` block removes every hook they added.

Shape legend: N batch, D features (units of a layer), T recorded calls, Q percentiles.
Reference: torch.nn.Module.register_forward_hook / register_full_backward_hook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnlib.train import train

__all__ = [
    "ACTIVATIONS",
    "ActivationRecorder",
    "GradNormRecorder",
    "activation_inputs",
    "layer_percentiles",
    "percentiles",
    "weight_grad_norms",
    "linear_layers",
    "Trace",
    "trace_training",
]

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU)


def activation_inputs(model):
    """{name: module} of the nonlinearities of `model`, in order: their inputs are what BN (or
    nothing) feeds them, the quantity Ioffe & Szegedy 2015, Fig. 1 (b, c) plots."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)}


def linear_layers(model):
    """{name: module} of the nn.Linear layers of `model`, in order (input side first)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


class ActivationRecorder:
    """Record what flows into (or out of) chosen modules, one entry per forward call.

    modules: {name: module}; what: "input" (the first positional input) or "output";
    summary: a function of the (N, D) tensor giving what to keep (default: a float64 numpy copy
    of the whole tensor). train_only: skip calls made in eval mode (e.g. the test-accuracy
    evaluations inside a training loop). every: keep one call in `every` (of those not skipped).
    `records[name]` is a list with one summary per kept call while the recorder is active. Use
    as a context manager; the hooks are removed on exit (and by `remove()`).
    """

    def __init__(self, modules, what="input", summary=None, *, train_only=False, every=1):
        if what not in ("input", "output"):
            raise ValueError(f"ActivationRecorder: what must be 'input' or 'output', got {what!r}")
        if every < 1:
            raise ValueError(f"ActivationRecorder: every must be >= 1, got {every!r}")
        self.modules = dict(modules)
        self.what = what
        self.summary = summary or (lambda t: t.detach().double().cpu().numpy())
        self.train_only, self.every = train_only, int(every)
        self.records = {name: [] for name in self.modules}
        self._calls = {name: 0 for name in self.modules}
        self._handles = []

    def __enter__(self):
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def hook(module, inputs, output):
            if self.train_only and not module.training:
                return
            self._calls[name] += 1
            if (self._calls[name] - 1) % self.every:
                return
            value = inputs[0] if self.what == "input" else output
            self.records[name].append(self.summary(value))

        return hook

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __exit__(self, *exc):
        self.remove()
        return False


def percentiles(t, q=(15, 50, 85)):
    """np.percentile(t, q, axis=0), numpy's linear rule, of a tensor (N, D): a (Q, D) float64 array.

    Sorts once and interpolates between neighbours, numpy's default rule (and its rounding):
    about 3x faster than np.percentile, which matters when a hook calls it at every step.
    """
    s = np.sort(t.detach().double().cpu().numpy(), axis=0)  # (N, D)
    pos = np.asarray(q, dtype=float) / 100 * (len(s) - 1)  # (Q,) fractional ranks
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(s) - 1)
    frac = (pos - lo)[:, None]  # (Q, 1)
    a, b = s[lo], s[hi]  # (Q, D)
    return np.where(frac >= 0.5, b - (b - a) * (1 - frac), a + (b - a) * frac)


def layer_percentiles(model, x, q=(15, 50, 85)):
    """Percentiles over the batch of the input of every nonlinearity of `model`, per unit.

    q: percentiles in 0..100 (NB: numpy's convention; torch.quantile wants fractions 0..1).
    Runs one forward pass under torch.no_grad() in the model's current mode and removes its
    hooks afterwards. Returns {name: (Q, D) float64 array}.
    """
    summary = lambda t: percentiles(t, q)  # noqa: E731
    with torch.no_grad(), ActivationRecorder(activation_inputs(model), summary=summary) as rec:
        model(x)
    return {name: values[-1] for name, values in rec.records.items()}


class GradNormRecorder:
    """Record the l2 norm of the gradient arriving at each module's output during backward.

    modules: {name: module}. `records[name]` gets one float per backward pass. A context manager,
    like ActivationRecorder; uses register_full_backward_hook.
    """

    def __init__(self, modules):
        self.modules = dict(modules)
        self.records = {name: [] for name in self.modules}
        self._handles = []

    def __enter__(self):
        for name, module in self.modules.items():
            self._handles.append(module.register_full_backward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def hook(module, grad_inputs, grad_outputs):
            self.records[name].append(float(grad_outputs[0].detach().norm()))

        return hook

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __exit__(self, *exc):
        self.remove()
        return False


def weight_grad_norms(model, x, y, loss_fn=None):
    """||dL/dW|| of every nn.Linear weight for one batch, input side first: a (L,) numpy array.

    The model's mode is kept (BN in train mode uses the batch statistics); its gradients are
    cleared afterwards, so calling this changes nothing in the model but BN's running statistics
    when it is in train mode.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    layers = list(linear_layers(model).values())
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = np.array([float(layer.weight.grad.norm()) for layer in layers])
    model.zero_grad(set_to_none=True)
    return norms


@dataclass
class Trace:
    """What `trace_training` saw at the nonlinearities' inputs, on the training batches.

    steps: (T,) the step of each entry of `percentiles`; percentiles: {name: (T, Q, D)} per-unit
    percentiles over each training batch; snapshot_steps: (S,); snapshots: {name: (S, N, D)} the
    whole batch of inputs at every `keep_every`-th step (float32, to keep memory small).
    """

    q: tuple
    steps: np.ndarray
    percentiles: dict
    snapshot_steps: np.ndarray
    snapshots: dict


def trace_training(model, data, *, q=(15, 50, 85), keep_every=50, modules=None, **train_kwargs):
    """Train with `bnlib.train.train(model, data, **train_kwargs)` while forward hooks record the
    input of every nonlinearity (or of `modules`, {name: module}) at every training step.

    Percentiles are over the training batch of each step (what the layer actually sees while it
    learns; eval-mode calls such as test-accuracy evaluations are skipped). The hooks are removed
    when training ends. Returns (History, Trace). As Ioffe & Szegedy 2015, Fig. 1 (b, c).
    """
    modules = activation_inputs(model) if modules is None else dict(modules)
    pct = lambda t: percentiles(t, q)  # noqa: E731
    keep = lambda t: t.detach().float().numpy().copy()  # noqa: E731
    with (
        ActivationRecorder(modules, summary=pct, train_only=True) as every_step,
        ActivationRecorder(modules, summary=keep, train_only=True, every=keep_every) as some,
    ):
        history = train(model, data, **train_kwargs)
    first = next(iter(modules))
    steps = np.arange(1, len(every_step.records[first]) + 1)
    return history, Trace(
        tuple(q),
        steps,
        {n: np.stack(v) for n, v in every_step.records.items()},
        steps[::keep_every],
        {n: np.stack(v) for n, v in some.records.items()},
    )
