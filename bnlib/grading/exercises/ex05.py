"""Exercise 5 (the normalization family): layer norm and RMSNorm forward and backward, group norm
and instance norm forward, in numpy, as tasks of the check engine (bnlib.grading.engine).

Each task: the names it needs, its cases (drawn with case_rng: `hidden_cases` hides them), its
float64 reference and its mistake catalogue.
Shape legend: N batch, D features, C channels, G groups, H, W spatial.
References: Ba et al. 2016 (arXiv 1607.06450); Zhang & Sennrich 2019 (arXiv 1910.07467);
Ulyanov et al. 2016 (arXiv 1607.08022); Wu & He 2018 (arXiv 1803.08494), Fig. 2 and §3.1.
"""

from __future__ import annotations

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
    "EXERCISE",
    "GROUPNORM_FORWARD",
    "GROUPNORM_MISTAKES",
    "INSTANCENORM_FORWARD",
    "INSTANCENORM_MISTAKES",
    "LAYERNORM_BACKWARD",
    "LAYERNORM_BACKWARD_MISTAKES",
    "LAYERNORM_FORWARD",
    "LAYERNORM_MISTAKES",
    "RMSNORM_BACKWARD",
    "RMSNORM_BACKWARD_MISTAKES",
    "RMSNORM_FORWARD",
    "RMSNORM_MISTAKES",
    "TASKS",
    "check_groupnorm_forward",
    "check_instancenorm_forward",
    "check_layernorm_backward",
    "check_layernorm_forward",
    "check_rmsnorm_backward",
    "check_rmsnorm_forward",
    "groupnorm_cases",
    "groupnorm_reference",
    "instancenorm_cases",
    "instancenorm_reference",
    "layernorm_backward_reference",
    "layernorm_cases",
    "layernorm_reference",
    "rmsnorm_backward_reference",
    "rmsnorm_cases",
    "rmsnorm_reference",
]

EXERCISE = "ex05_norm_family"


def _standardize(x, axes, eps, *, ddof=0, eps_inside=True):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    if eps_inside:
        return (x - mean) / np.sqrt(var + eps)
    return (x - mean) / (np.sqrt(var) + eps)


_EPS_OUTSIDE = N_("eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps")


# NB: an eps slip (eps outside the root, left out of a backward, divided by D) moves the output by
# a relative 1e-8 to 1e-5, float32's rounding level: the size of an error alone says nothing about
# float32 here, so only an output whose every entry is a float32 number is said to look computed
# in float32 (bnlib.grading.engine.mismatch), in every task of this exercise.
_FLOAT32_BY_SIZE = False


def _affine(xhat, gamma, beta, shape):
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


# --- the cases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case(EpsCase):
    """A case of layer, group or instance norm (and of layer norm's backward, with a dout)."""

    name: str
    short: str  # for the list of cases in a PASS
    x: np.ndarray  # (N, D) or (N, C, H, W)
    gamma: np.ndarray  # (D,) or (C,)
    beta: np.ndarray  # (D,) or (C,)
    eps: float | None  # None: call without eps, so the learner's default 1e-5 is used
    groups: int | None = None  # group norm's num_groups
    hint: str = ""  # said when this case alone fails and no known mistake explains it
    dout: np.ndarray | None = None  # the upstream gradient, for the backward task

    def args(self):
        """Fresh copies of the forward's arguments, so changes made in place can be detected."""
        args = [self.x.copy(), self.gamma.copy(), self.beta.copy()]
        if self.groups is not None:
            args.append(self.groups)
        return args + ([] if self.eps is None else [self.eps])

    def ref_args(self):
        head = (self.x, self.gamma, self.beta)
        return head + ((self.groups,) if self.groups is not None else ()) + (self.eps_used,)

    def grad_args(self):
        """What the backward reference and the backward mistakes take."""
        return (self.x, self.gamma, self.dout, self.eps_used)


@dataclass(frozen=True)
class RmsCase:
    name: str
    short: str
    x: np.ndarray  # (N, D)
    gamma: np.ndarray  # (D,)
    eps: float  # always passed: torch's default eps is not 1e-5, so no default is assumed
    hint: str = ""
    dout: np.ndarray | None = None  # the upstream gradient, for the backward task

    def args(self):
        return [self.x.copy(), self.gamma.copy(), self.eps]

    def ref_args(self):
        return (self.x, self.gamma, self.eps)

    def grad_args(self):
        return (self.x, self.gamma, self.dout, self.eps)


def _params(rng, n):
    gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    return gamma, rng.standard_normal(n)


def _with_douts(cases, seed):
    """The cases with a random upstream gradient each (NB: an all-ones dout hides bugs)."""
    rng = case_rng(seed)
    return [replace(c, dout=rng.standard_normal(c.x.shape)) for c in cases]


# --- layer norm ----------------------------------------------------------------------------------


def layernorm_reference(x, gamma, beta, eps=1e-5, *, variant=None):
    """Layer norm of x: (N, D), per sample over the D features; gamma, beta: (D,)."""
    v = variant
    axis = 0 if v == "batch_axis" else 1
    xhat = _standardize(
        x, axis, eps, ddof=1 if v == "unbiased" else 0, eps_inside=v != "eps_outside"
    )
    if v == "no_affine":
        return xhat
    if v == "swapped":
        return beta * xhat + gamma
    return gamma * xhat + beta


def _ln(variant):
    return lambda x, g, b, eps: layernorm_reference(x, g, b, eps, variant=variant)


LAYERNORM_MISTAKES = [
    Mistake(
        N_(
            "the statistics were taken over the batch (axis 0): that is batch norm. Layer norm "
            "normalizes each sample over its own features: mean and var over axis 1 "
            "(keepdims=True)"
        ),
        _ln("batch_axis"),
    ),
    Mistake(
        N_("unbiased variance (divided by D - 1): layer norm uses the biased one, x.var(axis=1)"),
        _ln("unbiased"),
    ),
    Mistake(_EPS_OUTSIDE, _ln("eps_outside")),
    Mistake(N_("the affine step is missing: out = gamma * xhat + beta"), _ln("no_affine")),
    Mistake(N_("gamma and beta swapped: out = gamma * xhat + beta"), _ln("swapped")),
]


def layernorm_cases():
    rng = case_rng(1607_06450)

    def case(name, short, x, eps=None, hint=""):
        return Case(name, short, x, *_params(rng, x.shape[1]), eps, hint=hint)

    features = np.array([-3.0, 0.0, 0.5, 2.0, 9.0])
    return [
        case(
            N_("N=4, D=5, features on different scales"),
            N_("N=4, D=5"),
            rng.standard_normal((4, 5)) * 3 + features,
        ),
        case(
            N_("a batch of ONE sample, N=1, D=6 (layer norm does not need a batch)"),
            N_("N=1"),
            rng.standard_normal((1, 6)) * 2 + 1,
            hint=N_("layer norm works on a single sample: nothing is computed across the batch"),
        ),
        case(N_("N > D: N=8, D=3"), N_("N=8, D=3"), rng.standard_normal((8, 3)) - 2),
        case(
            N_("eps=0.1 passed explicitly, tiny spread, N=3, D=4"),
            N_("eps passed"),
            rng.standard_normal((3, 4)) * 1e-2,
            eps=0.1,
            hint=N_("use the eps argument, inside the square root"),
        ),
    ]


LAYERNORM_FORWARD = Task(
    "layernorm_forward",
    needs=("layernorm_forward",),
    cases=layernorm_cases,
    reference=layernorm_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma", "beta"),
    mistakes={"out": LAYERNORM_MISTAKES},
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_layernorm_forward(layernorm_forward) -> CheckResult:
    """Check `layernorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, x: (N, D) float64,
    gamma, beta: (D,); compared with bnlib.functional.layer_norm on hidden cases."""
    return check(LAYERNORM_FORWARD, layernorm_forward)


# --- layer norm backward -------------------------------------------------------------------------


def layernorm_backward_reference(x, gamma, dout, eps=1e-5, *, variant=None):
    """(dx, dgamma, dbeta) of layer norm (bnlib.functional's), or of a known mistake."""
    v = variant
    if v == "bn_formula":  # batch norm's backward: statistics over the batch axis
        return F.batch_norm_backward(dout, x, gamma, eps)
    if v == "no_eps":  # eps left out everywhere: xhat and std recomputed as sqrt(var)
        return layernorm_backward_reference(x, gamma, dout, 0.0)
    xhat = _standardize(x, 1, eps)
    std = np.sqrt(x.var(axis=1, keepdims=True) + eps)
    dx, dgamma, dbeta = F.layer_norm_backward(dout, x, x.shape[1], gamma, eps)
    if v == "std_no_eps":  # xhat from the forward (with eps), but divided by sqrt(var)
        dx = dx * std / np.sqrt(x.var(axis=1, keepdims=True))
    if v == "constant_stats":  # the mean and variance treated as constants
        dx = dout * gamma / std
    if v == "var_path_no_eps":  # eps left out of the path through var only: var**-1.5 in dvar
        xc, dxhat = x - x.mean(axis=1, keepdims=True), dout * gamma
        var = x.var(axis=1, keepdims=True)
        direct = (dxhat - dxhat.mean(axis=1, keepdims=True)) / std
        dx = direct - xc * (dxhat * xc).mean(axis=1, keepdims=True) / var**1.5
    if v == "params_axis1":
        dgamma, dbeta = (dout * xhat).sum(axis=1), dout.sum(axis=1)
    if v == "params_mean":
        dgamma, dbeta = (dout * xhat).mean(axis=0), dout.mean(axis=0)
    if v == "no_gamma":
        dx = F.layer_norm_backward(dout, x, x.shape[1], None, eps)[0]
    return dx, dgamma, dbeta


def _lnb(variant, i):
    return lambda x, g, dout, eps: layernorm_backward_reference(x, g, dout, eps, variant=variant)[i]


_BN_FORMULA = N_(
    "this is batch norm's backward (sums over the batch, axis 0): in layer norm each sample has "
    "its own mean and variance, so the sums in dx run over the features, axis 1"
)
_CONSTANT = N_(
    "dx treats the mean and the variance as constants (dx = dout * gamma / std): they depend on "
    "x too, which adds the two mean terms of the closed form"
)
_NO_GAMMA = N_("dx misses gamma: backpropagate dxhat = dout * gamma")
_LN_NO_EPS = N_(
    "dx divides by sqrt(var) without eps: the forward divided by std = sqrt(var + eps), so the "
    "backward divides by the same std (keep it in the cache)"
)
_AXIS1 = N_(
    "dgamma and dbeta summed over the features (axis 1): gamma and beta are per feature, so sum "
    "over the batch, axis 0"
)
_MEAN = N_("dgamma and dbeta averaged over the batch: sum them, over axis 0")

LAYERNORM_BACKWARD_MISTAKES = {
    "dx": [
        Mistake(_BN_FORMULA, _lnb("bn_formula", 0)),
        Mistake(_CONSTANT, _lnb("constant_stats", 0)),
        Mistake(_NO_GAMMA, _lnb("no_gamma", 0)),
        Mistake(_LN_NO_EPS, _lnb("std_no_eps", 0)),
        Mistake(_LN_NO_EPS, _lnb("no_eps", 0)),
        Mistake(_LN_NO_EPS, _lnb("var_path_no_eps", 0)),
    ],
    "dgamma": [Mistake(_AXIS1, _lnb("params_axis1", 1)), Mistake(_MEAN, _lnb("params_mean", 1))],
    "dbeta": [Mistake(_AXIS1, _lnb("params_axis1", 2)), Mistake(_MEAN, _lnb("params_mean", 2))],
}


def layernorm_backward_cases():
    return _with_douts(layernorm_cases(), 5)


LAYERNORM_BACKWARD = Task(
    "layernorm_backward",
    needs=("layernorm_forward", "layernorm_backward"),
    cases=layernorm_backward_cases,
    reference=layernorm_backward_reference,
    outputs=("dx", "dgamma", "dbeta"),
    mistakes=LAYERNORM_BACKWARD_MISTAKES,
    run_case=run_backward_case,
    setup_reference=layernorm_reference,
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_layernorm_backward(layernorm_forward, layernorm_backward) -> CheckResult:
    """Check `layernorm_backward(dout, cache) -> (dx, dgamma, dbeta)`, the cache from
    layernorm_forward; compared with bnlib.functional.layer_norm_backward on hidden cases, with
    a random dout."""
    return check(LAYERNORM_BACKWARD, layernorm_forward, layernorm_backward)


# --- RMSNorm -------------------------------------------------------------------------------------


def _rms_denominator(x, eps, variant):
    """What x is divided by: sqrt(mean(x**2) + eps) per sample, or a known mistake's version."""
    v = variant
    axis = 0 if v == "batch_axis" else 1
    square = x**2
    ms = square.sum(axis=axis, keepdims=True) if v == "sum" else square.mean(axis, keepdims=True)
    if v == "eps_outside":
        return np.sqrt(ms) + eps
    if v == "no_sqrt":
        return ms + eps
    if v == "eps_over_d":  # sqrt(D) * x / sqrt(sum(x**2) + eps): eps divided by D
        return np.sqrt(ms + eps / x.shape[1])
    if v == "default_eps":  # the eps argument ignored, 1e-5 always
        return np.sqrt(ms + 1e-5)
    if v == "std":  # np.std / np.var subtract the mean inside
        return np.sqrt(x.var(axis=1, keepdims=True) + eps)
    if v in ("abs_mean", "abs_mean_inside"):
        m = np.abs(x).mean(axis=1, keepdims=True)
        return m + eps if v == "abs_mean" else np.sqrt(m**2 + eps)
    return np.sqrt(ms + eps)


def rmsnorm_reference(x, gamma, eps=1e-5, *, variant=None):
    """RMSNorm of x: out = x / sqrt(mean(x**2) + eps) * gamma, per sample over its D features.

    No mean is subtracted and there is no beta. x: (N, D); gamma: (D,); float64 in and out.
    torch.nn.functional.rms_norm(x, (D,), gamma, eps) computes the same (tests/test_checks_ex05.py).
    variant: the output of a known mistake instead. Zhang & Sennrich 2019, arXiv 1910.07467.
    """
    v = variant
    if v == "layer":  # layer norm without beta: the mean subtracted
        xhat = _standardize(x, 1, eps)
    else:
        xhat = x / _rms_denominator(x, eps, v)  # (N, D)
    return xhat if v == "no_gamma" else xhat * gamma


def _rms(variant):
    return lambda x, g, eps: rmsnorm_reference(x, g, eps, variant=variant)


_ABS_MEAN = N_(
    "the mean of |x| was used where the root mean square belongs: divide by "
    "sqrt(mean(x**2) + eps), the square root of the mean of the SQUARES"
)
RMSNORM_MISTAKES = [
    Mistake(
        N_(
            "the mean was subtracted: that is layer norm. RMSNorm only rescales each sample by "
            "its root mean square, x / sqrt(mean(x**2) + eps), and subtracts no mean"
        ),
        _rms("layer"),
    ),
    Mistake(
        N_(
            "divided by the standard deviation (np.std or np.var subtract the mean inside): "
            "RMSNorm divides by the root mean square of x itself, sqrt(mean(x**2) + eps)"
        ),
        _rms("std"),
    ),
    Mistake(
        N_(
            "eps outside the square root: divide by sqrt(mean(x**2) + eps), not "
            "sqrt(mean(x**2)) + eps"
        ),
        _rms("eps_outside"),
    ),
    Mistake(
        N_("no square root: divide by the ROOT mean square, sqrt(mean(x**2) + eps)"),
        _rms("no_sqrt"),
    ),
    Mistake(
        N_(
            "the eps argument is ignored (1e-5 used whatever eps is passed): use the eps the "
            "function receives"
        ),
        _rms("default_eps"),
    ),
    Mistake(
        N_(
            "eps divided by D: sqrt(D) * x / sqrt(sum(x**2) + eps) is x / sqrt(mean(x**2) + "
            "eps / D); add eps to the MEAN of the squares, sqrt(mean(x**2) + eps)"
        ),
        _rms("eps_over_d"),
    ),
    Mistake(_ABS_MEAN, _rms("abs_mean")),
    Mistake(_ABS_MEAN, _rms("abs_mean_inside")),
    Mistake(
        N_(
            "the squares were summed, not averaged (the L2 norm): RMS is the root of their MEAN "
            "over the D features"
        ),
        _rms("sum"),
    ),
    Mistake(
        N_(
            "the statistics were taken over the batch (axis 0): RMSNorm rescales each sample by "
            "its own root mean square, over its features (axis 1)"
        ),
        _rms("batch_axis"),
    ),
    Mistake(N_("gamma is missing: out = x / rms * gamma"), _rms("no_gamma")),
]


def rmsnorm_cases():
    rng = case_rng(1910_07467)

    def case(name, short, x, eps=1e-5, hint=""):
        return RmsCase(name, short, x, _params(rng, x.shape[1])[0], eps, hint)

    def noise(shape):
        return rng.standard_normal(shape)

    return [
        case(N_("N=4, D=6, features of both signs"), N_("N=4, D=6"), noise((4, 6)) * 2 + noise(6)),
        case(
            N_("large offset: every value near 1e3, spread 1, N=3, D=5"),
            N_("large offset"),
            noise((3, 5)) + 1e3,
            hint=N_(
                "RMSNorm keeps the offset: it divides x by its root mean square and nothing else"
            ),
        ),
        case(
            N_("small spread around an offset (2 +- 1e-3), N=4, D=4"),
            N_("small spread"),
            noise((4, 4)) * 1e-3 + 2.0,
        ),
        case(
            N_("small values (near 1e-3, so eps matters), N=3, D=6"),
            N_("small values"),
            noise((3, 6)) * 1e-3,
            hint=N_("eps goes inside the square root: sqrt(mean(x**2) + eps)"),
        ),
        case(
            N_("ONE feature per sample, D=1, N=5"),
            N_("D=1"),
            noise((5, 1)) * 2,
            hint=N_("with D=1, out = x / sqrt(x**2 + eps) * gamma: close to sign(x) * gamma"),
        ),
        case(
            N_("a batch of ONE sample, N=1, D=8, eps=1e-6"),
            N_("N=1"),
            noise((1, 8)) - 1.0,
            eps=1e-6,
        ),
        case(
            N_("eps=0.1, N=3, D=4"),
            N_("eps=0.1"),
            noise((3, 4)) * 0.3,
            eps=0.1,
            hint=N_("use the eps argument, inside the square root"),
        ),
    ]


RMSNORM_FORWARD = Task(
    "rmsnorm_forward",
    needs=("rmsnorm_forward",),
    cases=rmsnorm_cases,
    reference=rmsnorm_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma"),
    mistakes={"out": RMSNORM_MISTAKES},
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_rmsnorm_forward(rmsnorm_forward) -> CheckResult:
    """Check `rmsnorm_forward(x, gamma, eps) -> (out, cache)`, x: (N, D) float64, gamma: (D,),
    out = x / sqrt(mean(x**2, axis=1) + eps) * gamma (torch.nn.functional.rms_norm with
    normalized_shape=(D,)); compared with rmsnorm_reference on hidden cases, eps always passed."""
    return check(RMSNORM_FORWARD, rmsnorm_forward)


def rmsnorm_backward_reference(x, gamma, dout, eps=1e-5, *, variant=None):
    """(dx, dgamma) of out = xhat * gamma, xhat = x / r, r = sqrt(mean(x**2, axis=1) + eps):

        dxhat = dout * gamma,  dx = (dxhat - xhat * mean(dxhat * xhat, axis=1)) / r,
        dgamma = sum(dout * xhat, axis=0).

    x, dout: (N, D); gamma: (D,). Checked against torch's autograd in tests/test_checks_ex05.py.
    variant: the gradients of a known mistake instead.
    """
    v = variant
    if v == "no_eps":  # eps left out everywhere: xhat and r recomputed as sqrt(mean(x**2))
        return rmsnorm_backward_reference(x, gamma, dout, 0.0)
    r = np.sqrt((x**2).mean(axis=1, keepdims=True) + eps)  # (N, 1)
    xhat = x / r
    dxhat = dout if v == "no_gamma" else dout * gamma
    proj = dxhat * xhat
    proj = proj.sum(axis=1, keepdims=True) if v == "no_1_over_d" else proj.mean(1, keepdims=True)
    if v == "constant_rms":  # r treated as a constant
        dx = dxhat / r
    elif v == "mean_term":  # layer norm's extra term: -mean(dxhat)
        dx = (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * proj) / r
    else:
        dx = (dxhat - xhat * proj) / r
    if v == "r_no_eps":  # xhat from the forward (with eps), but divided by sqrt(mean(x**2))
        dx = dx * r / np.sqrt((x**2).mean(axis=1, keepdims=True))
    if v == "r_path_no_eps":  # eps left out of the path through r only: mean(x**2)**-1.5 there
        ms = (x**2).mean(axis=1, keepdims=True)
        dx = dxhat / r - x * (dxhat * x).mean(axis=1, keepdims=True) / ms**1.5
    if v == "dgamma_mean":
        dgamma = (dout * xhat).mean(axis=0)
    elif v == "dgamma_x":
        dgamma = (dout * x).sum(axis=0)
    elif v == "dgamma_dout":
        dgamma = dout.sum(axis=0)
    else:
        dgamma = (dout * xhat).sum(axis=0)
    return dx, dgamma


def _rmsb(variant, i):
    return lambda x, g, dout, eps: rmsnorm_backward_reference(x, g, dout, eps, variant=variant)[i]


_RMS_NO_EPS = N_(
    "dx divides by sqrt(mean(x**2)) without eps: the forward divided by r = sqrt(mean(x**2) + "
    "eps), so the backward divides by the same r (keep it in the cache)"
)
RMSNORM_BACKWARD_MISTAKES = {
    "dx": [
        Mistake(
            N_(
                "dx treats the root mean square r as a constant (dx = dout * gamma / r): r "
                "depends on every x of the sample, which adds a second term"
            ),
            _rmsb("constant_rms", 0),
        ),
        Mistake(
            N_("dx has layer norm's mean term: RMSNorm subtracts no mean, so no -mean(dxhat) term"),
            _rmsb("mean_term", 0),
        ),
        Mistake(
            N_(
                "dx: the term through r is D times too large (a sum over the features where their "
                "mean belongs, r**2 = MEAN(x**2) + eps)"
            ),
            _rmsb("no_1_over_d", 0),
        ),
        Mistake(N_("dx misses gamma: backpropagate dxhat = dout * gamma"), _rmsb("no_gamma", 0)),
        Mistake(_RMS_NO_EPS, _rmsb("r_no_eps", 0)),
        Mistake(_RMS_NO_EPS, _rmsb("no_eps", 0)),
        Mistake(_RMS_NO_EPS, _rmsb("r_path_no_eps", 0)),
    ],
    "dgamma": [
        Mistake(
            N_(
                "dgamma averaged over the batch: gamma is shared by all N samples, so SUM over "
                "axis 0"
            ),
            _rmsb("dgamma_mean", 1),
        ),
        Mistake(
            N_("dgamma = sum(dout * x): gamma multiplies the normalized xhat = x / r, not x"),
            _rmsb("dgamma_x", 1),
        ),
        Mistake(
            N_(
                "dgamma = sum(dout) is a beta's gradient: gamma multiplies xhat, so sum dout * xhat"
            ),
            _rmsb("dgamma_dout", 1),
        ),
    ],
}


def rmsnorm_backward_cases():
    return _with_douts(rmsnorm_cases(), 1910)


RMSNORM_BACKWARD = Task(
    "rmsnorm_backward",
    needs=("rmsnorm_forward", "rmsnorm_backward"),
    cases=rmsnorm_backward_cases,
    reference=rmsnorm_backward_reference,
    outputs=("dx", "dgamma"),
    mistakes=RMSNORM_BACKWARD_MISTAKES,
    run_case=run_backward_case,
    setup_reference=rmsnorm_reference,
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_rmsnorm_backward(rmsnorm_forward, rmsnorm_backward) -> CheckResult:
    """Check `rmsnorm_backward(dout, cache) -> (dx, dgamma)`, the cache from rmsnorm_forward;
    dx: (N, D), dgamma: (D,) (RMSNorm has no beta); compared with rmsnorm_backward_reference on
    the forward's hidden cases, with a random dout."""
    return check(RMSNORM_BACKWARD, rmsnorm_forward, rmsnorm_backward)


# --- group norm ----------------------------------------------------------------------------------


def groupnorm_reference(x, gamma, beta, num_groups, eps=1e-5, *, variant=None):
    """Group norm of x: (N, C, H, W): per sample and group of C/G consecutive channels."""
    v = variant
    N, C, H, W = x.shape
    G = C // num_groups if v == "per_group_size" else num_groups
    if v == "strided":  # channel c put into group c % G instead of c // (C/G)
        xg = x.reshape(N, C // G, G, H, W).transpose(0, 2, 1, 3, 4)  # (N, G, C/G, H, W)
        xhat = _standardize(xg, (2, 3, 4), eps).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    elif v == "with_batch":
        xhat = _standardize(x.reshape(N, G, -1), (0, 2), eps).reshape(x.shape)
    elif v == "layer":
        xhat = _standardize(x, (1, 2, 3), eps)
    elif v == "instance":
        xhat = _standardize(x, (2, 3), eps)
    else:
        xhat = _standardize(
            x.reshape(N, G, -1),
            2,
            eps,
            ddof=1 if v == "unbiased" else 0,
            eps_inside=v != "eps_outside",
        ).reshape(x.shape)
    if v == "per_group_affine":  # one gamma and beta per group: the first G entries
        xg = xhat.reshape(N, G, -1)
        return (xg * gamma[:G, None] + beta[:G, None]).reshape(x.shape)
    if v == "no_affine":
        return xhat
    return _affine(xhat, gamma, beta, (1, C, 1, 1))


def _gn(variant):
    return lambda x, g, b, G, eps: groupnorm_reference(x, g, b, G, eps, variant=variant)


GROUPNORM_MISTAKES = [
    Mistake(
        N_(
            "the channels were grouped in the wrong order (channel c in group c % G): a group is "
            "C/G CONSECUTIVE channels, channel c belongs to group c // (C/G)"
        ),
        _gn("strided"),
    ),
    Mistake(
        N_(
            "the statistics include the batch axis: group norm computes them per sample, over "
            "(C/G, H, W) only"
        ),
        _gn("with_batch"),
    ),
    Mistake(
        N_(
            "gamma and beta were applied per group: they are per CHANNEL (C,), one gamma_c and "
            "beta_c for every value of channel c, whatever its group"
        ),
        _gn("per_group_affine"),
    ),
    Mistake(
        N_(
            "num_groups used as the number of channels per group (C/G): it is the number of "
            "groups G, each of C/G consecutive channels, so x.reshape(N, G, -1)"
        ),
        _gn("per_group_size"),
    ),
    Mistake(N_("num_groups is ignored: this is layer norm (one group)"), _gn("layer")),
    Mistake(
        N_("num_groups is ignored: this is instance norm (one group per channel)"),
        _gn("instance"),
    ),
    Mistake(N_("unbiased variance: group norm uses the biased one"), _gn("unbiased")),
    Mistake(_EPS_OUTSIDE, _gn("eps_outside")),
    Mistake(
        N_("the affine step is missing: out = xhat * gamma + beta, per channel"), _gn("no_affine")
    ),
]


def _image_cases(rng, groups=True):
    def case(name, short, shape, G=None, eps=None, hint=""):
        C = shape[1]
        # channels on different scales and offsets, so every wrong grouping shows
        x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, (1, C, 1, 1))
        x = x + rng.uniform(-3, 3, (1, C, 1, 1))
        return Case(name, short, x, *_params(rng, C), eps, G, hint)

    if groups:
        return [
            case(N_("N=2, C=6, G=2, 3x3"), N_("G=2"), (2, 6, 3, 3), 2),
            case(N_("N=3, C=6, G=3, 2x2"), N_("G=3"), (3, 6, 2, 2), 3),
            case(N_("G=1 (layer norm over C, H, W), N=2, C=4"), N_("G=1"), (2, 4, 2, 3), 1),
            case(N_("G=C (instance norm), N=2, C=4"), N_("G=C"), (2, 4, 3, 2), 4),
            case(
                N_("a batch of ONE image, C=8, G=4, eps=1e-2 passed"),
                N_("N=1, eps passed"),
                (1, 8, 2, 2),
                4,
                eps=1e-2,
                hint=N_("use the eps argument; group norm needs no batch"),
            ),
        ]
    return [
        case(N_("N=2, C=3, 4x4"), N_("N=2"), (2, 3, 4, 4)),
        case(N_("a batch of ONE image, C=4, 3x3"), N_("N=1"), (1, 4, 3, 3)),
        case(N_("N=3, C=2, 2x5, eps=1e-2 passed"), N_("eps passed"), (3, 2, 2, 5), eps=1e-2),
    ]


def groupnorm_cases():
    return _image_cases(case_rng(1803_08494))


GROUPNORM_FORWARD = Task(
    "groupnorm_forward",
    needs=("groupnorm_forward",),
    cases=groupnorm_cases,
    reference=groupnorm_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma", "beta"),
    mistakes={"out": GROUPNORM_MISTAKES},
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_groupnorm_forward(groupnorm_forward) -> CheckResult:
    """Check `groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5) -> (out, cache)`,
    x: (N, C, H, W) float64, gamma, beta: (C,); compared with bnlib.functional.group_norm."""
    return check(GROUPNORM_FORWARD, groupnorm_forward)


# --- instance norm -------------------------------------------------------------------------------


def instancenorm_reference(x, gamma, beta, eps=1e-5, *, variant=None):
    """Instance norm of x: (N, C, H, W): per sample and channel, over (H, W)."""
    v = variant
    axes = {"with_batch": (0, 2, 3), "with_channels": (1, 2, 3)}.get(v, (2, 3))
    ddof = 1 if v == "unbiased" else 0
    xhat = _standardize(x, axes, eps, ddof=ddof, eps_inside=v != "eps_outside")
    if v == "no_affine":
        return xhat
    return _affine(xhat, gamma, beta, (1, x.shape[1], 1, 1))


def _in(variant):
    return lambda x, g, b, eps: instancenorm_reference(x, g, b, eps, variant=variant)


INSTANCENORM_MISTAKES = [
    Mistake(
        N_(
            "the statistics include the batch axis: that is batch norm. Instance norm takes them "
            "per sample and channel, over (H, W): axis=(2, 3)"
        ),
        _in("with_batch"),
    ),
    Mistake(
        N_(
            "the statistics include the channel axis: that is layer norm. Instance norm takes "
            "them per sample and channel, over (H, W) only"
        ),
        _in("with_channels"),
    ),
    Mistake(N_("unbiased variance: instance norm uses the biased one"), _in("unbiased")),
    Mistake(_EPS_OUTSIDE, _in("eps_outside")),
    Mistake(
        N_("the affine step is missing: out = xhat * gamma + beta, per channel"), _in("no_affine")
    ),
]


def instancenorm_cases():
    return _image_cases(case_rng(1607_08022), groups=False)


INSTANCENORM_FORWARD = Task(
    "instancenorm_forward",
    needs=("instancenorm_forward",),
    cases=instancenorm_cases,
    reference=instancenorm_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma", "beta"),
    mistakes={"out": INSTANCENORM_MISTAKES},
    float32_by_size=_FLOAT32_BY_SIZE,
)


def check_instancenorm_forward(instancenorm_forward) -> CheckResult:
    """Check `instancenorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, x: (N, C, H, W)
    float64, gamma, beta: (C,); compared with bnlib.functional.instance_norm + the affine."""
    return check(INSTANCENORM_FORWARD, instancenorm_forward)


TASKS = [
    LAYERNORM_FORWARD,
    LAYERNORM_BACKWARD,
    RMSNORM_FORWARD,
    RMSNORM_BACKWARD,
    GROUPNORM_FORWARD,
    INSTANCENORM_FORWARD,
]
