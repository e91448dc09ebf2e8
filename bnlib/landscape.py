"""Santurkar et al. 2018's measurements: internal covariate shift (ICS) as a change of gradient,
and how smooth the loss landscape is along the gradient.

Every function works on a copy of the model (in train mode, so BN uses the batch statistics, the
loss SGD actually follows) and leaves the model itself untouched, running statistics included.

Shape legend: N batch, L linear layers, K step sizes.
Reference: S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, How Does Batch Normalization Help
Optimization?, NeurIPS 2018, arXiv 1805.11604 (Def. 2.1; §3.1 and Fig. 4).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from bnlib.hooks import linear_layers

__all__ = [
    "STEP_SIZES",
    "gradient_at",
    "internal_covariate_shift",
    "landscape_along_gradient",
    "track_optimization",
]

STEP_SIZES = tuple(np.linspace(0.05, 0.4, 8))  # Santurkar et al.'s range of steps, §3.1


def _scratch(model):
    scratch = copy.deepcopy(model)
    for module in scratch.modules():  # NB: deepcopy copies hooks too; the copy must not record
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
        module._backward_hooks.clear()
        module._backward_pre_hooks.clear()
    scratch.train()
    return scratch


def gradient_at(model, x, y, loss_fn=None):
    """(loss, [grad of every parameter]) for one batch; model's grads are cleared afterwards."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    grads = [
        p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        for p in model.parameters()
    ]
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def internal_covariate_shift(model, x, y, lr, loss_fn=None):
    """Santurkar et al. Def. 2.1 for every nn.Linear layer i of `model` on the batch (x, y).

    G_i = dL/dW_i at the current weights; G'_i = the same gradient after every parameter before
    W_i (earlier layers, their biases and BN's weight and bias) took its SGD step -lr * grad,
    the later ones kept. ICS_i = ||G_i - G'_i||. Returns (ics, cosine, grad_norm): (L,) arrays
    of ||G - G'||, cos(G, G') and ||G||, input side first.
    """
    scratch = _scratch(model)
    params = list(scratch.parameters())
    start = [p.detach().clone() for p in params]
    _, grads = gradient_at(scratch, x, y, loss_fn)
    index = {id(p): k for k, p in enumerate(params)}
    ics, cosine, norm = [], [], []
    for layer in linear_layers(scratch).values():
        k = index[id(layer.weight)]
        with torch.no_grad():
            for j, p in enumerate(params):
                p.copy_(start[j] - lr * grads[j] if j < k else start[j])
        _, moved = gradient_at(scratch, x, y, loss_fn)
        g, g2 = grads[k].flatten().double(), moved[k].flatten().double()
        ics.append(float((g - g2).norm()))
        cosine.append(float(g @ g2 / (g.norm() * g2.norm() + 1e-30)))
        norm.append(float(g.norm()))
    return np.array(ics), np.array(cosine), np.array(norm)


def landscape_along_gradient(model, x, y, step_sizes=STEP_SIZES, loss_fn=None):
    """The loss and the gradient at w - eta * g for each step size eta (g: the gradient at w).

    Santurkar et al. §3.1 / Fig. 4: the spread of these losses ("variation of the loss") and the
    largest gradient change ("gradient predictiveness": small means the gradient at w still
    predicts the gradient where the step lands) measure how smooth the landscape is.
    Returns (losses (K,), grad_change (K,) = ||grad(w - eta g) - g||, beta (K,) =
    grad_change / ||eta g||, an effective beta-smoothness).
    """
    scratch = _scratch(model)
    params = list(scratch.parameters())
    start = [p.detach().clone() for p in params]
    _, grads = gradient_at(scratch, x, y, loss_fn)
    g = torch.cat([t.flatten() for t in grads]).double()
    losses, change, beta = [], [], []
    for eta in step_sizes:
        with torch.no_grad():
            for p, p0, gp in zip(params, start, grads, strict=True):
                p.copy_(p0 - eta * gp)
        loss, moved = gradient_at(scratch, x, y, loss_fn)
        diff = float((torch.cat([t.flatten() for t in moved]).double() - g).norm())
        losses.append(loss)
        change.append(diff)
        beta.append(diff / (eta * float(g.norm()) + 1e-30))
    return np.array(losses), np.array(change), np.array(beta)


def track_optimization(model, data, probe, *, every=50, lr=0.1, **train_kwargs):
    """Train with bnlib.train.train and, every `every` steps, measure on the fixed batch
    probe = (x, y): the ICS of every linear layer and the landscape along the gradient.

    lr is the training learning rate and the step of the ICS update. Returns (History, dict of
    arrays): "step" (M,), "ics", "cosine", "grad_norm" (M, L), "loss_range", "grad_change",
    "beta" (M,) (the largest over the step sizes, as Santurkar et al. Fig. 4 plot the range).
    """
    from bnlib.train import train

    x, y = probe
    rows = []

    def measure(step, m):
        if step % every == 0:
            ics, cosine, norm = internal_covariate_shift(m, x, y, lr)
            losses, change, beta = landscape_along_gradient(m, x, y)
            rows.append((step, ics, cosine, norm, np.ptp(losses), change.max(), beta.max()))

    history = train(model, data, lr=lr, callback=measure, **train_kwargs)
    keys = ("step", "ics", "cosine", "grad_norm", "loss_range", "grad_change", "beta")
    return history, {k: np.array([r[i] for r in rows]) for i, k in enumerate(keys)}
