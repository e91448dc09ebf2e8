"""Checks of exercise 5 (the normalization family): layer norm forward and backward, group norm
and instance norm forward, in numpy.

Built on bnlib.checks' machinery: hidden cases, named likely mistakes, never raises.
Shape legend: N batch, D features, C channels, G groups, H, W spatial.
References: Ba et al. 2016 (arXiv 1607.06450); Ulyanov et al. 2016 (arXiv 1607.08022);
Wu & He 2018 (arXiv 1803.08494), Fig. 2 and the code of §3.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlib import functional as F
from bnlib.checks import (
    CheckResult,
    Mistake,
    _array_problem,
    _Budget,
    _call,
    _CallError,
    _case_rng,
    _EpsCase,
    _guarded,
    _label,
    _mismatch,
    _modified,
    _not_callable,
    _Outcome,
    _run_cases,
    _Stop,
    _summary,
    _unpack,
    matching_mistakes,
    outputs_match,
    task,
)

__all__ = [
    "LAYERNORM_MISTAKES",
    "LAYERNORM_BACKWARD_MISTAKES",
    "GROUPNORM_MISTAKES",
    "INSTANCENORM_MISTAKES",
    "layernorm_reference",
    "groupnorm_reference",
    "instancenorm_reference",
    "check_layernorm_forward",
    "check_layernorm_backward",
    "check_groupnorm_forward",
    "check_instancenorm_forward",
]


def _standardize(x, axes, eps, *, ddof=0, eps_inside=True):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    if eps_inside:
        return (x - mean) / np.sqrt(var + eps)
    return (x - mean) / (np.sqrt(var) + eps)


def _affine(xhat, gamma, beta, shape):
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


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
        "the statistics were taken over the batch (axis 0): that is batch norm. Layer norm "
        "normalizes each sample over its own features: mean and var over axis 1 (keepdims=True)",
        _ln("batch_axis"),
    ),
    Mistake(
        "unbiased variance (divided by D - 1): layer norm uses the biased one, x.var(axis=1)",
        _ln("unbiased"),
    ),
    Mistake(
        "eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps",
        _ln("eps_outside"),
    ),
    Mistake("the affine step is missing: out = gamma * xhat + beta", _ln("no_affine")),
    Mistake("gamma and beta swapped: out = gamma * xhat + beta", _ln("swapped")),
]


@dataclass(frozen=True)
class _Case(_EpsCase):
    name: str
    short: str
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float | None
    groups: int | None = None
    hint: str = ""

    def args(self):
        args = [self.x.copy(), self.gamma.copy(), self.beta.copy()]
        if self.groups is not None:
            args.append(self.groups)
        return args + ([] if self.eps is None else [self.eps])

    def ref_args(self):
        head = (self.x, self.gamma, self.beta)
        return head + ((self.groups,) if self.groups is not None else ()) + (self.eps_used,)


def _params(rng, n):
    gamma = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    return gamma, rng.standard_normal(n)


def _ln_cases():
    rng = _case_rng(1607_06450)

    def case(name, short, x, eps=None, hint=""):
        return _Case(name, short, x, *_params(rng, x.shape[1]), eps, hint=hint)

    features = np.array([-3.0, 0.0, 0.5, 2.0, 9.0])
    return [
        case(
            "N=4, D=5, features on different scales",
            "N=4, D=5",
            rng.standard_normal((4, 5)) * 3 + features,
        ),
        case(
            "a batch of ONE sample, N=1, D=6 (layer norm does not need a batch)",
            "N=1",
            rng.standard_normal((1, 6)) * 2 + 1,
            hint="layer norm works on a single sample: nothing is computed across the batch",
        ),
        case("N > D: N=8, D=3", "N=8, D=3", rng.standard_normal((8, 3)) - 2),
        case(
            "eps=0.1 passed explicitly, tiny spread, N=3, D=4",
            "eps passed",
            rng.standard_normal((3, 4)) * 1e-2,
            eps=0.1,
            hint="use the eps argument, inside the square root",
        ),
    ]


def _forward_outcome(fn, case, budget, label, reference, catalogue):
    args = case.args()
    try:
        out, _ = _unpack(_call(fn, args, budget, label), ("out", "cache"), label)
    except _CallError as e:
        return _Outcome(case, str(e))
    modified = _modified(label, ("x", "gamma", "beta"), (case.x, case.gamma, case.beta), args[:3])
    if modified:
        return _Outcome(case, modified)
    want = reference(*case.ref_args())
    problem = _array_problem(out, "out", want.shape, want.dtype)
    if problem is None and outputs_match(out, want):
        return _Outcome(case)
    hints = []
    if isinstance(out, np.ndarray):
        hints = matching_mistakes(out, catalogue, *case.ref_args(), reference=want)
    return _Outcome(case, problem or _mismatch("out", out, want), {"out": hints})


def _run(fn, label, cases, reference, catalogue):
    outcomes = _run_cases(
        lambda c, b: _forward_outcome(fn, c, b, label, reference, catalogue), cases
    )
    return _summary(label, outcomes, len(cases), {"out": catalogue})


@_guarded
def check_layernorm_forward(layernorm_forward) -> CheckResult:
    """Check `layernorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, x: (N, D) float64,
    gamma, beta: (D,); compared with bnlib.functional.layer_norm on hidden cases."""
    label = _label(layernorm_forward, "layernorm_forward")
    if not callable(layernorm_forward):
        return _not_callable("layernorm_forward", layernorm_forward)
    return _run(layernorm_forward, label, _ln_cases(), layernorm_reference, LAYERNORM_MISTAKES)


# --- layer norm backward -------------------------------------------------------------------------


def _ln_backward(x, gamma, dout, eps, *, variant=None):
    """(dx, dgamma, dbeta) of layer norm, or of a known mistake."""
    v = variant
    if v == "bn_formula":  # batch norm's backward: statistics over the batch axis
        return F.batch_norm_backward(dout, x, gamma, eps)
    xhat = _standardize(x, 1, eps)
    std = np.sqrt(x.var(axis=1, keepdims=True) + eps)
    dx, dgamma, dbeta = F.layer_norm_backward(dout, x, x.shape[1], gamma, eps)
    if v == "constant_stats":  # the mean and variance treated as constants
        dx = dout * gamma / std
    if v == "params_axis1":
        dgamma, dbeta = (dout * xhat).sum(axis=1), dout.sum(axis=1)
    if v == "params_mean":
        dgamma, dbeta = (dout * xhat).mean(axis=0), dout.mean(axis=0)
    if v == "no_gamma":
        dx = F.layer_norm_backward(dout, x, x.shape[1], None, eps)[0]
    return dx, dgamma, dbeta


def _lnb(variant, i):
    return lambda x, g, dout, eps: _ln_backward(x, g, dout, eps, variant=variant)[i]


_BN_FORMULA = (
    "this is batch norm's backward (sums over the batch, axis 0): in layer norm each sample has "
    "its own mean and variance, so the sums in dx run over the features, axis 1"
)
_CONSTANT = (
    "dx treats the mean and the variance as constants (dx = dout * gamma / std): they depend on "
    "x too, which adds the two mean terms of the closed form"
)
_NO_GAMMA = "dx misses gamma: backpropagate dxhat = dout * gamma"
_AXIS1 = (
    "dgamma and dbeta summed over the features (axis 1): gamma and beta are per feature, so sum "
    "over the batch, axis 0"
)
_MEAN = "dgamma and dbeta averaged over the batch: sum them, over axis 0"

LAYERNORM_BACKWARD_MISTAKES = {
    "dx": [
        Mistake(_BN_FORMULA, _lnb("bn_formula", 0)),
        Mistake(_CONSTANT, _lnb("constant_stats", 0)),
        Mistake(_NO_GAMMA, _lnb("no_gamma", 0)),
    ],
    "dgamma": [Mistake(_AXIS1, _lnb("params_axis1", 1)), Mistake(_MEAN, _lnb("params_mean", 1))],
    "dbeta": [Mistake(_AXIS1, _lnb("params_axis1", 2)), Mistake(_MEAN, _lnb("params_mean", 2))],
}


def _backward_outcome(forward, backward, case, dout, budget, label, fwd_label):
    args = case.args()
    try:
        call_label = f"{fwd_label} (called first, to make the cache)"
        _, cache = _unpack(_call(forward, args, budget, call_label), ("out", "cache"), call_label)
        dout_arg = dout.copy()
        grads = _unpack(
            _call(backward, (dout_arg, cache), budget, label), ("dx", "dgamma", "dbeta"), label
        )
    except _CallError as e:
        return _Outcome(case, str(e))
    modified = _modified(label, ("dout",), (dout,), (dout_arg,))
    if modified:
        return _Outcome(case, modified)
    want = F.layer_norm_backward(dout, case.x, case.x.shape[1], case.gamma, case.eps_used)
    reasons, hints = [], {}
    for (name, catalogue), got, ref in zip(
        LAYERNORM_BACKWARD_MISTAKES.items(), grads, want, strict=True
    ):
        problem = _array_problem(got, name, ref.shape, ref.dtype)
        if problem is None and outputs_match(got, ref):
            continue
        if isinstance(got, np.ndarray):
            margs = (case.x, case.gamma, dout, case.eps_used)
            hints[name] = matching_mistakes(got, catalogue, *margs, reference=ref)
        reasons.append(problem or _mismatch(name, got, ref))
    if not reasons:
        return _Outcome(case)
    return _Outcome(case, "; ".join(reasons), hints)


@_guarded
def check_layernorm_backward(layernorm_forward, layernorm_backward) -> CheckResult:
    """Check `layernorm_backward(dout, cache) -> (dx, dgamma, dbeta)`, the cache from
    layernorm_forward; compared with bnlib.functional.layer_norm_backward on hidden cases, with
    a random dout."""
    label = _label(layernorm_backward, "layernorm_backward")
    fwd_label = _label(layernorm_forward, "layernorm_forward")
    for what, fn in (("layernorm_forward", layernorm_forward), (label, layernorm_backward)):
        if not callable(fn):
            return _not_callable(what, fn)
    budget, outcomes, cases = _Budget(), [], _ln_cases()
    rng = _case_rng(5)
    for case in cases:
        dout = rng.standard_normal(case.x.shape)
        try:
            outcomes.append(
                _backward_outcome(
                    layernorm_forward, layernorm_backward, case, dout, budget, label, fwd_label
                )
            )
        except _Stop as stop:
            outcomes.append(_Outcome(case, str(stop)))
            break
    notes = []
    forward = check_layernorm_forward.__wrapped__(layernorm_forward)
    if not forward.passed and any(o.reason for o in outcomes):
        notes.append(f"Note: {fwd_label} fails its own check too; fix it first")
    return _summary(label, outcomes, len(cases), LAYERNORM_BACKWARD_MISTAKES, notes=notes)


# --- group norm ----------------------------------------------------------------------------------


def groupnorm_reference(x, gamma, beta, num_groups, eps=1e-5, *, variant=None):
    """Group norm of x: (N, C, H, W): per sample and group of C/G consecutive channels."""
    v = variant
    N, C, H, W = x.shape
    G = num_groups
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
        xhat = _standardize(x.reshape(N, G, -1), 2, eps, ddof=1 if v == "unbiased" else 0).reshape(
            x.shape
        )
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
        "the channels were grouped in the wrong order (channel c in group c % G): a group is C/G "
        "CONSECUTIVE channels, x.reshape(N, G, C // G, H, W)",
        _gn("strided"),
    ),
    Mistake(
        "the statistics include the batch axis: group norm computes them per sample, over "
        "(C/G, H, W) only",
        _gn("with_batch"),
    ),
    Mistake(
        "gamma and beta were applied per group: they are per CHANNEL (C,); reshape back to "
        "(N, C, H, W) first, then out = xhat * gamma[None, :, None, None] + beta[...]",
        _gn("per_group_affine"),
    ),
    Mistake("num_groups is ignored: this is layer norm (one group)", _gn("layer")),
    Mistake(
        "num_groups is ignored: this is instance norm (one group per channel)", _gn("instance")
    ),
    Mistake("unbiased variance: group norm uses the biased one", _gn("unbiased")),
    Mistake("the affine step is missing: out = xhat * gamma + beta, per channel", _gn("no_affine")),
]


def _image_cases(rng, groups=True):
    def case(name, short, shape, G=None, eps=None, hint=""):
        C = shape[1]
        # channels on different scales and offsets, so every wrong grouping shows
        x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, (1, C, 1, 1))
        x = x + rng.uniform(-3, 3, (1, C, 1, 1))
        return _Case(name, short, x, *_params(rng, C), eps, G, hint)

    if groups:
        return [
            case("N=2, C=6, G=2, 3x3", "G=2", (2, 6, 3, 3), 2),
            case("N=3, C=6, G=3, 2x2", "G=3", (3, 6, 2, 2), 3),
            case("G=1 (layer norm over C, H, W), N=2, C=4", "G=1", (2, 4, 2, 3), 1),
            case("G=C (instance norm), N=2, C=4", "G=C", (2, 4, 3, 2), 4),
            case(
                "a batch of ONE image, C=8, G=4, eps=1e-2 passed",
                "N=1, eps passed",
                (1, 8, 2, 2),
                4,
                eps=1e-2,
                hint="use the eps argument; group norm needs no batch",
            ),
        ]
    return [
        case("N=2, C=3, 4x4", "N=2", (2, 3, 4, 4)),
        case("a batch of ONE image, C=4, 3x3", "N=1", (1, 4, 3, 3)),
        case("N=3, C=2, 2x5, eps=1e-2 passed", "eps passed", (3, 2, 2, 5), eps=1e-2),
    ]


@_guarded
def check_groupnorm_forward(groupnorm_forward) -> CheckResult:
    """Check `groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5) -> (out, cache)`,
    x: (N, C, H, W) float64, gamma, beta: (C,); compared with bnlib.functional.group_norm."""
    label = _label(groupnorm_forward, "groupnorm_forward")
    if not callable(groupnorm_forward):
        return _not_callable("groupnorm_forward", groupnorm_forward)
    cases = _image_cases(_case_rng(1803_08494))
    return _run(groupnorm_forward, label, cases, groupnorm_reference, GROUPNORM_MISTAKES)


# --- instance norm -------------------------------------------------------------------------------


def instancenorm_reference(x, gamma, beta, eps=1e-5, *, variant=None):
    """Instance norm of x: (N, C, H, W): per sample and channel, over (H, W)."""
    v = variant
    axes = {"with_batch": (0, 2, 3), "with_channels": (1, 2, 3)}.get(v, (2, 3))
    xhat = _standardize(x, axes, eps, ddof=1 if v == "unbiased" else 0)
    if v == "no_affine":
        return xhat
    return _affine(xhat, gamma, beta, (1, x.shape[1], 1, 1))


def _in(variant):
    return lambda x, g, b, eps: instancenorm_reference(x, g, b, eps, variant=variant)


INSTANCENORM_MISTAKES = [
    Mistake(
        "the statistics include the batch axis: that is batch norm. Instance norm takes them per "
        "sample and channel, over (H, W): axis=(2, 3)",
        _in("with_batch"),
    ),
    Mistake(
        "the statistics include the channel axis: that is layer norm. Instance norm takes them "
        "per channel, over (H, W) only",
        _in("with_channels"),
    ),
    Mistake("unbiased variance: instance norm uses the biased one", _in("unbiased")),
    Mistake("the affine step is missing: out = xhat * gamma + beta, per channel", _in("no_affine")),
]


@_guarded
def check_instancenorm_forward(instancenorm_forward) -> CheckResult:
    """Check `instancenorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, x: (N, C, H, W)
    float64, gamma, beta: (C,); compared with bnlib.functional.instance_norm + the affine."""
    label = _label(instancenorm_forward, "instancenorm_forward")
    if not callable(instancenorm_forward):
        return _not_callable("instancenorm_forward", instancenorm_forward)
    cases = _image_cases(_case_rng(1607_08022), groups=False)
    return _run(instancenorm_forward, label, cases, instancenorm_reference, INSTANCENORM_MISTAKES)


TASKS = {
    "ex05_norm_family": [
        task("layernorm_forward", check_layernorm_forward, ["layernorm_forward"]),
        task(
            "layernorm_backward",
            check_layernorm_backward,
            ["layernorm_forward", "layernorm_backward"],
        ),
        task("groupnorm_forward", check_groupnorm_forward, ["groupnorm_forward"]),
        task("instancenorm_forward", check_instancenorm_forward, ["instancenorm_forward"]),
    ],
}
