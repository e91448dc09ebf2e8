"""Exercise 1 (forward and backward): batch norm's forward and backward passes on (N, D), and the
spatial version on (N, C, H, W), as tasks of the check engine (bnlib.grading.engine).

Each task: the names it needs, its cases (drawn with case_rng: `hidden_cases` hides them), its
float64 reference (bnlib.functional) and its mistake catalogue.
Shape legend: N batch, D features, C channels, H, W height and width.
References: Ioffe & Szegedy 2015 (arXiv 1502.03167), Alg. 1 and §3; CS231n's assignment 2
(batchnorm_forward / batchnorm_backward / batchnorm_backward_alt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from bnlib import functional as F
from bnlib.grading.engine import (
    CheckResult,
    EpsCase,
    Mistake,
    Task,
    case_rng,
    check,
    run_backward_case,
)
from bnlib.i18n import N_

__all__ = [
    "BACKWARD",
    "BACKWARD_ALT",
    "BACKWARD_MISTAKES",
    "EXERCISE",
    "FORWARD",
    "FORWARD_MISTAKES",
    "SPATIAL_BACKWARD",
    "SPATIAL_BACKWARD_MISTAKES",
    "SPATIAL_FORWARD",
    "SPATIAL_FORWARD_MISTAKES",
    "TASKS",
    "check_batchnorm_backward",
    "check_batchnorm_forward",
    "check_spatial_batchnorm_backward",
    "check_spatial_batchnorm_forward",
    "backward_reference",
    "forward_cases",
    "forward_reference",
    "normalized",
    "spatial_cases",
]

EXERCISE = "ex01_forward_backward"


# --- the cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case(EpsCase):
    name: str
    short: str  # for the list of cases in a PASS
    x: np.ndarray  # (N, D) or (N, C, H, W)
    gamma: np.ndarray  # (D,) or (C,)
    beta: np.ndarray  # (D,) or (C,)
    eps: float | None  # None: call without eps, so the learner's default 1e-5 is used
    hint: str = ""  # said when this case alone fails and no known mistake explains it
    weight: float = 1.0  # 0: must pass, but earns nothing (a case wrong code may pass)
    dout: np.ndarray | None = None  # the upstream gradient, for the backward tasks

    def args(self):
        """Fresh copies of the forward's arguments, so changes made in place can be detected."""
        args = [self.x.copy(), self.gamma.copy(), self.beta.copy()]
        if self.eps is not None:
            args.append(self.eps)
        return args

    def ref_args(self):
        return (self.x, self.gamma, self.beta, self.eps_used)

    def grad_args(self):
        """What the backward reference and the backward mistakes take."""
        return (self.x, self.gamma, self.dout, self.eps_used)


def forward_cases():
    """The hidden cases: fixed, and drawn from a private generator (the learner's seed is kept)."""
    rng = case_rng(20150211)  # Ioffe & Szegedy's arXiv submission date

    def affine(D):
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        return gamma, rng.standard_normal(D)

    def case(name, short, x, eps=None, hint=""):
        return Case(name, short, x, *affine(x.shape[1]), eps, hint)

    std = np.array([1e-3, 3e-4, 0.0, 1.0])
    small = rng.standard_normal((16, 4)) * std + rng.standard_normal(4)
    offset = np.array([1e3, 5e3, 1e4])
    large = rng.standard_normal((32, 3)) * np.array([1.0, 0.1, 0.01]) + offset
    return [
        case(
            N_("basic, N=8, D=5"), N_("basic"), rng.standard_normal((8, 5)) + rng.uniform(-2, 2, 5)
        ),
        case(N_("the smallest batch, N=2"), N_("N=2"), rng.standard_normal((2, 6)) * 2 + 1),
        case(N_("more features than samples, N=3, D=7"), N_("N < D"), rng.standard_normal((3, 7))),
        case(
            N_("tiny variances (std 1e-3, 3e-4 and a constant feature), N=16, D=4"),
            N_("tiny variances"),
            small,
            hint=N_("a missing or misplaced eps shows here: divide by sqrt(var + eps)"),
        ),
        case(
            N_("large offsets (1e3 to 1e4) with small spreads, N=32, D=3"),
            N_("large offsets"),
            large,
            hint=(
                N_(
                    "E[x^2] - E[x]^2 loses all its digits at a large offset; compute "
                    "var = mean((x - mu)**2) after subtracting the mean"
                )
            ),
        ),
        case(
            N_("eps=1e-3 passed explicitly, N=10, D=4"),
            N_("eps passed"),
            rng.standard_normal((10, 4)) * 0.03,
            eps=1e-3,
            hint=N_("use the eps argument, not a fixed 1e-5"),
        ),
    ]


def spatial_cases():
    """Hidden (N, C, H, W) cases; none with H = W = 1 or N = 1, where wrong axes may agree."""
    rng = case_rng(2015_0302)

    def case(name, short, x, eps=None, hint=""):
        C = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, C) * rng.choice([-1.0, 1.0], C)
        return Case(name, short, x, gamma, rng.standard_normal(C), eps, hint)

    def x(shape, loc=0.0, scale=1.0):
        C = shape[1]
        means = rng.uniform(-2, 2, C) + loc
        spreads = rng.uniform(0.5, 2.0, C) * scale
        return (
            rng.standard_normal(shape) * spreads[None, :, None, None] + means[None, :, None, None]
        )

    return [
        case(N_("basic, N=4, C=3, H=5, W=6"), N_("basic"), x((4, 3, 5, 6))),
        case(N_("N=2, C=5, H=W=3"), N_("N=2"), x((2, 5, 3, 3))),
        case(N_("H != W, N=3, C=2, H=2, W=7"), N_("H != W"), x((3, 2, 2, 7))),
        case(
            N_("large offsets (near 1e3) with small spreads, N=5, C=4, H=W=4"),
            N_("large offsets"),
            x((5, 4, 4, 4), 1e3, 0.01),
            hint=N_("subtract the mean before squaring: var = mean((x - mu)**2)"),
        ),
        case(
            N_("eps=1e-2 passed explicitly, N=3, C=3, H=W=2"),
            N_("eps passed"),
            x((3, 3, 2, 2), 0.0, 0.05),
            eps=1e-2,
            hint=N_("use the eps argument"),
        ),
    ]


def _with_douts(cases, seed):
    """The cases with a random upstream gradient each (NB: an all-ones dout gives dx = 0 for any
    BN and hides bugs)."""
    rng = case_rng(seed)
    return [replace(c, dout=rng.standard_normal(c.x.shape)) for c in cases]


def backward_cases():
    # NB: at N=2, dx = 0 for BN with the biased or the unbiased variance: no weight there
    cases = [replace(c, weight=0.0) if c.x.shape[0] == 2 else c for c in forward_cases()]
    return _with_douts(cases, 19)


def spatial_backward_cases():
    return _with_douts(spatial_cases(), 23)


# --- the references ------------------------------------------------------------------------------


def forward_reference(x, gamma, beta, eps):
    """Training-mode batch norm, statistics over every axis but 1 (float64): bnlib.functional's."""
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def backward_reference(x, gamma, dout, eps):
    """(dx, dgamma, dbeta) of training-mode batch norm: bnlib.functional's."""
    return F.batch_norm_backward(dout, x, gamma, eps=eps)


# --- batch norm on (N, D): its known mistakes ----------------------------------------------------


def normalized(x, eps, *, axis=0, ddof=0, eps_inside=True, center=True, root=True):
    """(x - mean) / sqrt(var + eps) over `axis` (biased var), with switches for the usual
    mistakes (the other exercises' catalogues use it too)."""
    mu = x.mean(axis=axis, keepdims=True)
    count = x.size if axis is None else x.shape[axis]
    var = ((x - mu) ** 2).sum(axis=axis, keepdims=True) / (count - ddof)
    if root:
        denom = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    else:
        denom = var + eps
    return ((x - mu) if center else x) / denom


FORWARD_MISTAKES = [
    Mistake(
        N_("no eps: divide by sqrt(var + eps), not sqrt(var) (a constant feature gives 0/0 = NaN)"),
        lambda x, g, b, eps: g * normalized(x, 0.0) + b,
    ),
    Mistake(
        N_("eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps"),
        lambda x, g, b, eps: g * normalized(x, eps, eps_inside=False) + b,
    ),
    Mistake(
        N_(
            "unbiased variance (divided by N - 1): BN normalizes with the biased variance, "
            "mean((x - mu)**2), divided by N (np.var's default ddof=0)"
        ),
        lambda x, g, b, eps: g * normalized(x, eps, ddof=1) + b,
    ),
    Mistake(
        N_("no square root: divide by sqrt(var + eps), not var + eps"),
        lambda x, g, b, eps: g * normalized(x, eps, root=False) + b,
    ),
    Mistake(
        N_(
            "statistics over axis 1 (per sample, which is layer norm): BN takes the mean and "
            "variance of each feature over the batch, axis=0"
        ),
        lambda x, g, b, eps: g * normalized(x, eps, axis=1) + b,
    ),
    Mistake(
        N_("one mean and variance for the whole array: BN needs one per feature, over axis=0"),
        lambda x, g, b, eps: g * normalized(x, eps, axis=None) + b,
    ),
    Mistake(
        N_("the mean is not subtracted: xhat = (x - mu) / sqrt(var + eps)"),
        lambda x, g, b, eps: g * normalized(x, eps, center=False) + b,
    ),
    Mistake(
        N_("gamma and beta swapped: out = gamma * xhat + beta"),
        lambda x, g, b, eps: b * normalized(x, eps) + g,
    ),
    Mistake(
        N_("the affine step is missing: out = gamma * xhat + beta, not xhat"),
        lambda x, g, b, eps: normalized(x, eps),
    ),
    Mistake(
        N_("beta is missing: out = gamma * xhat + beta"),
        lambda x, g, b, eps: g * normalized(x, eps),
    ),
    Mistake(
        N_("gamma is missing: out = gamma * xhat + beta"),
        lambda x, g, b, eps: normalized(x, eps) + b,
    ),
    Mistake(
        N_("the eps argument is ignored (a fixed 1e-5 is used whatever eps is passed)"),
        lambda x, g, b, eps: g * normalized(x, 1e-5) + b,
    ),
]


def _backward_parts(x, gamma, dout, eps, *, ddof=0):
    """Pieces of the batch-norm gradient: xhat, dxhat, 1/sqrt(var + eps), with var's divisor."""
    N = x.shape[0]
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).sum(axis=0) / (N - ddof)
    istd = 1.0 / np.sqrt(var + eps)
    return (x - mu) * istd, dout * gamma, istd


def _dx(x, gamma, dout, eps, *, mean_term=True, var_term=True, use_gamma=True, ddof=0, n=None):
    """dx = istd * (dxhat - mean(dxhat) - xhat * sum(dxhat * xhat) / (N - ddof)), with switches.

    ddof=1 is the exact gradient of a forward pass that normalized with the unbiased variance;
    n replaces the 1/N of the closed form (n=1: the 1/N forgotten).
    """
    N = x.shape[0]
    xhat, dxhat, istd = _backward_parts(x, gamma if use_gamma else 1.0, dout, eps, ddof=ddof)
    scale = N if n is None else n
    out = N * dxhat
    if mean_term:
        out = out - dxhat.sum(axis=0)
    if var_term:
        out = out - xhat * (dxhat * xhat).sum(axis=0) * N / (N - ddof)
    return istd * out / scale


_VAR_AS_STD = N_(
    "dx: the variance was used where the standard deviation belongs (var cached and divided by "
    "as if it were std); divide by std = sqrt(var + eps)"
)


def _var_as_std(x, gamma, dout, eps, staged, with_eps):
    """dx when the backward pass divides by var (+ eps) where sqrt(var + eps) belongs: in the
    closed form, or in the staged chain (dxc = dxhat / std, dstd = -sum(dxhat * xc) / std**2,
    dvar = dstd / (2 * std)) with xc from the cache."""
    N = x.shape[0]
    xc = x - x.mean(axis=0)
    var = (xc**2).mean(axis=0)
    v = var + eps if with_eps else var
    xhat, dxhat, _ = _backward_parts(x, gamma, dout, eps)
    if not staged:
        return (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * v)
    dxc = dxhat / v - xc * (dxhat * xc).sum(axis=0) / (N * v**3)
    return dxc - dxc.mean(axis=0)


def _dx_var_path_no_eps(x, gamma, dout, eps):
    """dx when eps is left out of the path through var only, as in a staged backward with
    dvar = -0.5 * sum(dxhat * xc) * var**-1.5 (the direct path divides by sqrt(var + eps))."""
    xc = x - x.mean(axis=0)
    var = (xc**2).mean(axis=0)
    dxhat = dout * gamma
    direct = (dxhat - dxhat.mean(axis=0)) / np.sqrt(var + eps)
    return direct - xc * (dxhat * xc).mean(axis=0) / var**1.5


_DX_NO_EPS = N_(
    "dx: eps is missing in the backward pass; use 1 / sqrt(var + eps) as in the forward pass"
)
# NB: after the no-eps mistakes, so that a tie (the N=2 case, where a backward without eps gives
# dx = 0 too) goes to them; all-zero code matches this one on every case, and wins on the count
_DX_ZERO = N_(
    "dx is zero everywhere: only a constant dout gives that; carry the gradient back through the "
    "graph to x"
)

DX_MISTAKES = [
    Mistake(
        N_(
            "dx: the mean term is missing; mu depends on every x, so dx has a -mean(dxhat) term "
            "(in the staged version: the path through mu)"
        ),
        lambda x, g, d, eps: _dx(x, g, d, eps, mean_term=False),
    ),
    Mistake(
        N_(
            "dx: the variance term is missing; var depends on every x, so dx has a "
            "-xhat * mean(dxhat * xhat) term (in the staged version: the path through var)"
        ),
        lambda x, g, d, eps: _dx(x, g, d, eps, var_term=False),
    ),
    Mistake(
        N_(
            "dx: mu and var were treated as constants (dx = dout * gamma / sqrt(var + eps) is only "
            "the direct path); add the paths through mu and var"
        ),
        lambda x, g, d, eps: _dx(x, g, d, eps, mean_term=False, var_term=False),
    ),
    Mistake(
        N_(
            "dx is the gradient with respect to xhat (dout * gamma), not x; continue back through "
            "xhat = (x - mu) / sqrt(var + eps)"
        ),
        lambda x, g, d, eps: d * g,
    ),
    Mistake(
        N_("dx: gamma is missing; the gradient reaching xhat is dout * gamma"),
        lambda x, g, d, eps: _dx(x, g, d, eps, use_gamma=False),
    ),
    Mistake(
        N_(
            "dx is the gradient of a forward pass with the unbiased variance (N - 1); BN uses the "
            "biased one (divide by N), in the backward pass too"
        ),
        lambda x, g, d, eps: _dx(x, g, d, eps, ddof=1),
    ),
    Mistake(
        N_(
            "dx is N times too large: the closed form has a 1/N in front, "
            "dx = gamma * istd / N * (N * dout - sum(dout) - xhat * sum(dout * xhat))"
        ),
        lambda x, g, d, eps: _dx(x, g, d, eps, n=1),
    ),
    Mistake(_DX_NO_EPS, lambda x, g, d, eps: _dx(x, g, d, 0.0)),
    Mistake(_DX_NO_EPS, _dx_var_path_no_eps),
    Mistake(_DX_ZERO, lambda x, g, d, eps: np.zeros_like(x)),
    *(
        Mistake(
            _VAR_AS_STD, lambda x, g, d, eps, s=staged, e=with_eps: _var_as_std(x, g, d, eps, s, e)
        )
        for staged in (False, True)
        for with_eps in (True, False)
    ),
]

_SWAPPED = N_("dgamma and dbeta swapped: dgamma = sum(dout * xhat), dbeta = sum(dout), over axis 0")
_PER_SAMPLE = N_(
    "dgamma and dbeta were not summed over the batch: gamma and beta are shared by all N samples, "
    "so sum their gradients over axis 0"
)
_WRONG_AXIS = N_("dgamma and dbeta summed over axis 1: sum over the batch, axis 0, one per feature")
_AVERAGED = N_(
    "dgamma and dbeta averaged over the batch: sum them (a loss term per sample adds up)"
)


def _xh(x, eps):
    return _backward_parts(x, 1.0, 0.0, eps)[0]


DGAMMA_MISTAKES = [
    Mistake(_SWAPPED, lambda x, g, d, eps: d.sum(axis=0)),
    Mistake(_WRONG_AXIS, lambda x, g, d, eps: (d * _xh(x, eps)).sum(axis=1)),
    Mistake(_PER_SAMPLE, lambda x, g, d, eps: d * _xh(x, eps)),
    Mistake(_AVERAGED, lambda x, g, d, eps: (d * _xh(x, eps)).mean(axis=0)),
    Mistake(
        N_("dgamma = sum(dout * xhat), with the normalized xhat, not the input x"),
        lambda x, g, d, eps: (d * x).sum(axis=0),
    ),
]
DBETA_MISTAKES = [
    Mistake(_SWAPPED, lambda x, g, d, eps: (d * _xh(x, eps)).sum(axis=0)),
    Mistake(_WRONG_AXIS, lambda x, g, d, eps: d.sum(axis=1)),
    Mistake(_PER_SAMPLE, lambda x, g, d, eps: d),
    Mistake(_AVERAGED, lambda x, g, d, eps: d.mean(axis=0)),
]
BACKWARD_MISTAKES = {"dx": DX_MISTAKES, "dgamma": DGAMMA_MISTAKES, "dbeta": DBETA_MISTAKES}


# --- spatial batch norm: (N, C, H, W), statistics per channel over (N, H, W) --------------------

_NHW = (0, 2, 3)  # the axes BN shares statistics over for (N, C, H, W): all but the channel


def _per_channel(a):
    return a[None, :, None, None]  # (C,) -> (1, C, 1, 1)


def _norm_axes(x, eps, axes, *, ddof=0, eps_inside=True):
    """x normalized with statistics over `axes` (the usual mistakes as switches)."""
    mu = x.mean(axis=axes, keepdims=True)
    m = math.prod(x.shape[a] for a in axes)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (m - ddof)
    denom = np.sqrt(var + eps) if eps_inside else np.sqrt(var) + eps
    return (x - mu) / denom


def _flat_bn(x, g, b, eps, how, ddof=0):
    """BN of x viewed as (N*H*W, C) rows, and back: 'right' moves C last first and back after;
    'no_transpose' reshapes x straight to (-1, C); 'not_back' reshapes the result straight back
    to (N, C, H, W) without transposing it back."""
    N, C, H, W = x.shape
    rows = x.reshape(-1, C) if how == "no_transpose" else x.transpose(0, 2, 3, 1).reshape(-1, C)
    y = g * normalized(rows, eps, ddof=ddof) + b  # (N*H*W, C)
    if how == "right":
        return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return y.reshape(N, C, H, W)


_SP_N_ONLY = N_(
    "statistics over N only, one mean and variance per channel AND position (x.mean(axis=0)): "
    "BN for (N, C, H, W) shares them over N, H and W, one per channel, axis=(0, 2, 3)"
)
_SP_NC = N_(
    "statistics over (N, C), one per position: BN takes one mean and variance per channel, over "
    "(N, H, W)"
)
_SP_NO_TRANSPOSE = N_(
    "x.reshape(-1, C) straight from (N, C, H, W) mixes channels and positions in each column: "
    "move the channels last first, x.transpose(0, 2, 3, 1).reshape(-1, C)"
)
_SP_NOT_BACK = N_(
    "the (N*H*W, C) result was reshaped straight to (N, C, H, W): reshape it to (N, H, W, C) "
    "and transpose back, .transpose(0, 3, 1, 2)"
)
_SP_UNBIASED = N_(
    "unbiased variance (divided by N*H*W - 1): BN normalizes with the biased one, divided by the "
    "N*H*W values of each channel"
)
SPATIAL_FORWARD_MISTAKES = [
    Mistake(
        _SP_N_ONLY, lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (0,)) + _per_channel(b)
    ),
    Mistake(
        _SP_NC, lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (0, 1)) + _per_channel(b)
    ),
    Mistake(_SP_NO_TRANSPOSE, lambda x, g, b, e: _flat_bn(x, g, b, e, "no_transpose")),
    Mistake(_SP_NOT_BACK, lambda x, g, b, e: _flat_bn(x, g, b, e, "not_back")),
    Mistake(_SP_UNBIASED, lambda x, g, b, e: _flat_bn(x, g, b, e, "right", ddof=1)),
    Mistake(
        N_(
            "statistics per sample over (C, H, W) (layer norm): BN takes them per channel over the "
            "batch and the positions, (N, H, W)"
        ),
        lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (1, 2, 3)) + _per_channel(b),
    ),
    Mistake(
        N_(
            "statistics per sample and channel over (H, W) (instance norm): BN takes them over the "
            "batch too, (N, H, W)"
        ),
        lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (2, 3)) + _per_channel(b),
    ),
    Mistake(
        N_("eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps"),
        lambda x, g, b, e: (
            _per_channel(g) * _norm_axes(x, e, _NHW, eps_inside=False) + _per_channel(b)
        ),
    ),
    Mistake(
        N_("gamma and beta swapped: out = gamma * xhat + beta"),
        lambda x, g, b, e: _per_channel(b) * _norm_axes(x, e, _NHW) + _per_channel(g),
    ),
]


def _rows(a):
    """(N, C, H, W) -> (N*H*W, C), the channels last."""
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def _unrows(a, shape):
    N, C, H, W = shape
    return a.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def _dx_axes(x, g, d, eps, axes, ddof=0):
    """dx of BN with statistics over `axes` (per-channel gamma), divisor m - ddof."""
    m = math.prod(x.shape[a] for a in axes)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (m - ddof)
    istd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * istd
    dxhat = d * _per_channel(g)
    s1 = dxhat.sum(axis=axes, keepdims=True)
    s2 = (dxhat * xhat).sum(axis=axes, keepdims=True)
    return istd * (dxhat - s1 / m - xhat * s2 / (m - ddof))


def _sp_dx_no_transpose(x, g, d, eps):
    C = x.shape[1]
    return _dx(x.reshape(-1, C), g, d.reshape(-1, C), eps).reshape(x.shape)


def _sp_dx_not_back(x, g, d, eps):
    return _dx(_rows(x), g, _rows(d), eps).reshape(x.shape)


SPATIAL_DX_MISTAKES = [
    Mistake(_SP_N_ONLY, lambda x, g, d, e: _dx_axes(x, g, d, e, (0,))),
    Mistake(_SP_NC, lambda x, g, d, e: _dx_axes(x, g, d, e, (0, 1))),
    Mistake(_SP_NO_TRANSPOSE, _sp_dx_no_transpose),
    Mistake(_SP_NOT_BACK, _sp_dx_not_back),
    Mistake(
        N_(
            "dx is the gradient of a forward pass with the unbiased variance: BN uses the biased "
            "one, in the backward pass too"
        ),
        lambda x, g, d, e: _dx_axes(x, g, d, e, _NHW, ddof=1),
    ),
    Mistake(
        N_("dx: mu and var were treated as constants: add the paths through them"),
        lambda x, g, d, e: d * _per_channel(g) / np.sqrt(x.var(axis=_NHW, keepdims=True) + e),
    ),
    Mistake(_DX_ZERO, lambda x, g, d, e: np.zeros_like(x)),
]
_SP_PARAMS_N_ONLY = N_(
    "dgamma and dbeta summed over N only: gamma and beta are shared by every sample AND position "
    "of a channel, so sum over (N, H, W), axis=(0, 2, 3)"
)
_SP_PARAMS_SWAPPED = N_("dgamma and dbeta swapped: dgamma = sum(dout * xhat), dbeta = sum(dout)")


def _sp_xhat(x, eps):
    return _norm_axes(x, eps, _NHW)


SPATIAL_BACKWARD_MISTAKES = {
    "dx": SPATIAL_DX_MISTAKES,
    "dgamma": [
        Mistake(_SP_PARAMS_N_ONLY, lambda x, g, d, e: (d * _sp_xhat(x, e)).sum(axis=0)),
        Mistake(_SP_PARAMS_SWAPPED, lambda x, g, d, e: d.sum(axis=_NHW)),
    ],
    "dbeta": [
        Mistake(_SP_PARAMS_N_ONLY, lambda x, g, d, e: d.sum(axis=0)),
        Mistake(_SP_PARAMS_SWAPPED, lambda x, g, d, e: (d * _sp_xhat(x, e)).sum(axis=_NHW)),
    ],
}


# --- the tasks -----------------------------------------------------------------------------------


FORWARD = Task(
    "batchnorm_forward",
    needs=("batchnorm_forward",),
    cases=forward_cases,
    reference=forward_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma", "beta"),
    mistakes={"out": FORWARD_MISTAKES},
)
BACKWARD = Task(
    "batchnorm_backward",
    needs=("batchnorm_forward", "batchnorm_backward"),
    cases=backward_cases,
    reference=backward_reference,
    outputs=("dx", "dgamma", "dbeta"),
    mistakes=BACKWARD_MISTAKES,
    run_case=run_backward_case,
    setup_reference=forward_reference,
    named=True,
)
BACKWARD_ALT = replace(
    BACKWARD, name="batchnorm_backward_alt", needs=("batchnorm_forward", "batchnorm_backward_alt")
)
SPATIAL_FORWARD = replace(
    FORWARD,
    name="spatial_batchnorm_forward",
    needs=("spatial_batchnorm_forward",),
    cases=spatial_cases,
    mistakes={"out": SPATIAL_FORWARD_MISTAKES},
)
SPATIAL_BACKWARD = replace(
    BACKWARD,
    name="spatial_batchnorm_backward",
    needs=("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
    cases=spatial_backward_cases,
    mistakes=SPATIAL_BACKWARD_MISTAKES,
    named=False,
)
TASKS = [FORWARD, BACKWARD, BACKWARD_ALT, SPATIAL_FORWARD, SPATIAL_BACKWARD]


# --- the learner's checks ------------------------------------------------------------------------


def check_batchnorm_forward(batchnorm_forward) -> CheckResult:
    """Check `batchnorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, training mode.

    x: (N, D) float64; gamma, beta: (D,); out: (N, D), compared with bnlib.functional.batch_norm
    on hidden cases (N=2, N < D, tiny variances, large offsets, an explicit eps).
    Returns a CheckResult; the score is the fraction of cases passed.
    """
    return check(FORWARD, batchnorm_forward)


def check_batchnorm_backward(batchnorm_forward, backward_fn, *, name=None) -> CheckResult:
    """Check `backward_fn(dout, cache) -> (dx, dgamma, dbeta)` with cache from batchnorm_forward.

    Works for the staged `batchnorm_backward` and the closed-form `batchnorm_backward_alt`.
    dout: (N, D), random (NB: an all-ones dout gives dx = 0 for any BN and hides bugs); compared
    with bnlib.functional.batch_norm_backward on the forward check's hidden cases.
    name: what the feedback calls backward_fn (default: its __name__).
    Returns a CheckResult; the score is the fraction of cases passed.
    """
    return check(BACKWARD, batchnorm_forward, backward_fn, label=name)


def check_spatial_batchnorm_forward(spatial_batchnorm_forward) -> CheckResult:
    """Check `spatial_batchnorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, training mode.

    x: (N, C, H, W) float64; gamma, beta: (C,); statistics per channel over (N, H, W); out
    compared with bnlib.functional.batch_norm on hidden cases. Returns a CheckResult.
    """
    return check(SPATIAL_FORWARD, spatial_batchnorm_forward)


def check_spatial_batchnorm_backward(
    spatial_batchnorm_forward, spatial_batchnorm_backward
) -> CheckResult:
    """Check `spatial_batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)`, cache from
    spatial_batchnorm_forward; dout (N, C, H, W) random; dx (N, C, H, W), dgamma, dbeta (C,),
    compared with bnlib.functional.batch_norm_backward on hidden cases. Returns a CheckResult.
    """
    return check(SPATIAL_BACKWARD, spatial_batchnorm_forward, spatial_batchnorm_backward)
