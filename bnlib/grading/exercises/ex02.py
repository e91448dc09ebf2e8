"""Checks of exercise 2 (train vs eval): the running-statistics update, batch norm in eval mode,
folding BN into a Linear layer, and a BatchNorm1d module from scratch.

Tasks of the check engine (bnlib.grading.engine): cases, float64 references, mistake catalogues.
Shape legend: N batch, D features (= C channels), K outputs of the Linear layer.
References: Ioffe & Szegedy 2015, arXiv 1502.03167, Alg. 2; torch.nn.BatchNorm1d (momentum
weights the new batch; running_var stores the unbiased variance);
torch/nn/utils/fusion.py (fuse_linear_bn_weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlib.grading.engine import (
    CallError,
    CheckResult,
    EpsCase,
    Mistake,
    Outcome,
    Task,
    call,
    case_rng,
    case_seed,
    check,
    describe_exception,
    join_list,
    mismatch,
    outputs_match,
    pick,
    sentences,
    type_name,
)
from bnlib.i18n import N_, _

__all__ = [
    "BATCHNORM_EVAL",
    "BATCHNORM_MODULE",
    "EXERCISE",
    "FOLD_BN",
    "RUNNING_STATS",
    "TASKS",
    "RUNNING_MISTAKES",
    "EVAL_MISTAKES",
    "FOLD_MISTAKES",
    "running_stats_reference",
    "batchnorm_eval_reference",
    "fold_bn_reference",
    "check_running_stats",
    "check_batchnorm_eval",
    "check_fold_bn",
    "check_batchnorm_module",
]

EXERCISE = "ex02_running_stats"


# --- task 1: the running statistics --------------------------------------------------------------


def running_stats_reference(running_mean, running_var, x, momentum, *, variant=None):
    """PyTorch's update: new = (1 - momentum) * old + momentum * batch statistic; the variance
    stored is the unbiased one (divided by N - 1). x: (N, D). Returns (new_mean, new_var)."""
    v, m = variant, momentum
    mean = x.mean(axis=0)
    var = x.var(axis=0, ddof=0 if v == "biased" else 1)
    if v == "std":
        var = x.std(axis=0, ddof=1)
    if v == "about_running":  # deviations from the old running mean, not the batch mean
        var = ((x - running_mean) ** 2).sum(axis=0) / (len(x) - 1)
    if v == "inverted":
        return m * running_mean + (1 - m) * mean, m * running_var + (1 - m) * var
    if v == "batch_only":
        return mean, var
    new_mean = (1 - m) * running_mean + m * mean
    new_var = (1 - m) * running_var + m * var
    if v == "mean_only":
        return new_mean, running_var
    return new_mean, new_var


def _rs(variant):
    return lambda rm, rv, x, m: running_stats_reference(rm, rv, x, m, variant=variant)


RUNNING_MISTAKES = [
    Mistake(
        N_(
            "running_var got the biased batch variance (divided by N): PyTorch stores the unbiased "
            "one, x.var(axis=0, ddof=1), as Alg. 2 of the paper does (m / (m - 1))"
        ),
        _rs("biased"),
    ),
    Mistake(
        N_(
            "momentum inverted: in PyTorch momentum weights the NEW batch, new = (1 - momentum) * "
            "old + momentum * batch (Keras's momentum=0.99 is PyTorch's 0.01)"
        ),
        _rs("inverted"),
    ),
    Mistake(
        N_(
            "the batch's statistics returned without the moving average: mix them with the old "
            "running values, weighted by momentum"
        ),
        _rs("batch_only"),
    ),
    Mistake(N_("running_var got the batch standard deviation: use the variance"), _rs("std")),
    Mistake(
        N_("the batch variance was taken around the old running mean: use the batch's own mean"),
        _rs("about_running"),
    ),
    Mistake(N_("running_var is not updated (only running_mean is)"), _rs("mean_only")),
]


@dataclass(frozen=True)
class _RunningCase:
    name: str
    short: str
    running_mean: np.ndarray  # (D,)
    running_var: np.ndarray  # (D,)
    x: np.ndarray  # (N, D)
    momentum: float
    hint: str = ""
    weight: float = 1.0  # 0: must pass, but earns nothing (a case wrong code may pass)

    def args(self):
        return [self.running_mean.copy(), self.running_var.copy(), self.x.copy(), self.momentum]

    def ref_args(self):
        return (self.running_mean, self.running_var, self.x, self.momentum)


def _running_cases():
    rng = case_rng(1502)

    def x(n, d, loc=0.0, scale=1.0):
        return rng.standard_normal((n, d)) * scale + loc

    return [
        _RunningCase(
            N_("the initial statistics (0, 1), N=8, D=3, momentum=0.1"),
            N_("first step"),
            np.zeros(3),
            np.ones(3),
            x(8, 3, 2.0, 3.0),
            0.1,
        ),
        _RunningCase(
            N_("N=2 (the unbiased variance is twice the biased one), D=4, momentum=0.5"),
            N_("N=2"),
            rng.standard_normal(4),
            rng.uniform(0.5, 2.0, 4),
            x(2, 4),
            0.5,
            hint=N_("with N=2 the unbiased variance is (a - b)**2 / 2"),
        ),
        _RunningCase(
            N_("momentum=1.0 (only the new batch counts), N=5, D=2"),
            N_("momentum=1"),
            np.array([5.0, -5.0]),
            np.array([9.0, 0.1]),
            x(5, 2, 1.0),
            1.0,
            weight=0.0,  # NB: returning the batch's statistics, no average, is right here
        ),
        _RunningCase(
            N_("momentum=0.01 (Keras's 0.99), running values far from the batch's, N=64, D=5"),
            N_("momentum=0.01"),
            np.full(5, 10.0),
            np.full(5, 0.01),
            x(64, 5, -3.0, 2.0),
            0.01,
        ),
        _RunningCase(
            N_("a large offset (values near 1000), N=16, D=3, momentum=0.3"),
            N_("large offset"),
            np.full(3, 1000.0),
            np.ones(3),
            x(16, 3, 1000.0, 0.5),
            0.3,
        ),
    ]


RUNNING_STATS = Task(
    "update_running_stats",
    needs=("update_running_stats",),
    cases=_running_cases,
    reference=running_stats_reference,
    outputs=("new_mean", "new_var"),
    inputs=(None, None, "x"),  # NB: updating the running values in place and returning them is fine
    mistakes={"new_mean": pick(RUNNING_MISTAKES, 0), "new_var": pick(RUNNING_MISTAKES, 1)},
)


def check_running_stats(update_running_stats) -> CheckResult:
    """Check `update_running_stats(running_mean, running_var, x, momentum) -> (new_mean,
    new_var)`, PyTorch's semantics, x: (N, D) float64, the running values (D,).

    The arguments are copies: updating them in place and returning them is fine, as is returning
    new arrays. Returns a CheckResult; the score is the fraction of hidden cases passed.
    """
    return check(RUNNING_STATS, update_running_stats)


# --- task 2: batch norm in eval mode -------------------------------------------------------------


def batchnorm_eval_reference(x, gamma, beta, running_mean, running_var, eps=1e-5, *, variant=None):
    """Eval mode (Alg. 2): out = (x - running_mean) / sqrt(running_var + eps) * gamma + beta."""
    v = variant
    mean, var = running_mean, running_var
    if v == "batch_stats":
        mean, var = x.mean(axis=0), x.var(axis=0)
    if v == "no_eps":
        xhat = (x - mean) / np.sqrt(var)
    elif v == "eps_outside":
        xhat = (x - mean) / (np.sqrt(var) + eps)
    elif v == "no_sqrt":
        xhat = (x - mean) / (var + eps)
    else:
        xhat = (x - mean) / np.sqrt(var + eps)
    if v == "no_affine":
        return xhat
    if v == "swapped":
        return beta * xhat + gamma
    return gamma * xhat + beta


def _ev(variant):
    return lambda x, g, b, m, v, eps: batchnorm_eval_reference(x, g, b, m, v, eps, variant=variant)


EVAL_MISTAKES = [
    Mistake(
        N_(
            "the batch's own mean and variance were used: in eval mode normalize with the running "
            "statistics (that is the point of eval mode: one sample's output must not depend on "
            "its batch)"
        ),
        _ev("batch_stats"),
    ),
    Mistake(N_("eps is missing: divide by sqrt(running_var + eps)"), _ev("no_eps")),
    Mistake(
        N_("eps outside the square root: sqrt(running_var + eps), not sqrt(running_var) + eps"),
        _ev("eps_outside"),
    ),
    Mistake(
        N_("divided by the variance: divide by the standard deviation, sqrt(running_var + eps)"),
        _ev("no_sqrt"),
    ),
    Mistake(N_("gamma and beta swapped: out = gamma * xhat + beta"), _ev("swapped")),
    Mistake(N_("the affine step is missing: out = gamma * xhat + beta"), _ev("no_affine")),
]


@dataclass(frozen=True)
class _EvalCase(EpsCase):
    name: str
    short: str
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float | None
    hint: str = ""

    def args(self):
        args = [
            self.x.copy(),
            self.gamma.copy(),
            self.beta.copy(),
            self.running_mean.copy(),
            self.running_var.copy(),
        ]
        return args + ([] if self.eps is None else [self.eps])

    def ref_args(self):
        return (
            self.x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.eps_used,
        )


def _eval_cases():
    rng = case_rng(2015)

    def case(name, short, x, mean, var, eps=None, hint=""):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        return _EvalCase(name, short, x, gamma, rng.standard_normal(D), mean, var, eps, hint)

    return [
        case(
            N_("N=6, D=4, running statistics unlike the batch's"),
            N_("N=6"),
            rng.standard_normal((6, 4)) * 2 + 1,
            np.array([0.5, -1.0, 2.0, 0.0]),
            np.array([4.0, 0.25, 1.0, 9.0]),
        ),
        case(
            N_("a batch of ONE sample, D=3 (eval mode must work for it)"),
            N_("N=1"),
            rng.standard_normal((1, 3)),
            np.array([0.1, 0.2, 0.3]),
            np.array([1.0, 2.0, 0.5]),
            hint=N_("eval mode uses no batch statistics, so a single sample works"),
        ),
        case(
            N_("a tiny running variance (1e-6), eps=1e-3 passed explicitly, N=5, D=2"),
            N_("tiny variance, eps passed"),
            rng.standard_normal((5, 2)) * 1e-3,
            np.zeros(2),
            np.full(2, 1e-6),
            eps=1e-3,
            hint=N_("use the eps argument, inside the square root"),
        ),
        case(
            N_("large values (near 500), N=10, D=3"),
            N_("large offset"),
            rng.standard_normal((10, 3)) + 500.0,
            np.full(3, 499.0),
            np.array([1.0, 4.0, 0.5]),
        ),
    ]


BATCHNORM_EVAL = Task(
    "batchnorm_eval",
    needs=("batchnorm_eval",),
    cases=_eval_cases,
    reference=batchnorm_eval_reference,
    inputs=("x", "gamma", "beta", "running_mean", "running_var"),
    mistakes={"out": EVAL_MISTAKES},
)


def check_batchnorm_eval(batchnorm_eval) -> CheckResult:
    """Check `batchnorm_eval(x, gamma, beta, running_mean, running_var, eps=1e-5) -> out`,
    x: (N, D) float64 (N may be 1), the others (D,). Returns a CheckResult."""
    return check(BATCHNORM_EVAL, batchnorm_eval)


# --- task 3: folding BN into the Linear layer before it ------------------------------------------


def fold_bn_reference(W, b, gamma, beta, running_mean, running_var, eps=1e-5, *, variant=None):
    """BN(W x + b) in eval mode as one Linear layer: s = gamma / sqrt(running_var + eps),
    W_folded = s[:, None] * W (row k times s_k), b_folded = (b - running_mean) * s + beta.
    W: (K, D); b, gamma, beta, running_mean, running_var: (K,)."""
    v = variant
    if v == "no_eps":
        s = gamma / np.sqrt(running_var)
    elif v == "no_sqrt":
        s = gamma / (running_var + eps)
    else:
        s = gamma / np.sqrt(running_var + eps)
    W_f = W * s[None, :] if v == "columns" else W * s[:, None]
    if v == "W_not_scaled":
        W_f = W
    b_f = (b - running_mean) * s + beta
    if v == "bias_unchanged":
        b_f = b
    if v == "old_bias_dropped":
        b_f = beta - running_mean * s
    if v == "bias_not_scaled":
        b_f = b - running_mean * s + beta
    if v == "no_mean":
        b_f = b * s + beta
    if v == "no_beta":
        b_f = (b - running_mean) * s
    return W_f, b_f


def _fb(variant):
    return lambda W, b, g, be, m, v, eps: fold_bn_reference(W, b, g, be, m, v, eps, variant=variant)


FOLD_MISTAKES = [
    Mistake(
        N_(
            "the bias is not folded: the new bias is (b - running_mean) * s + beta, with "
            "s = gamma / sqrt(running_var + eps)"
        ),
        _fb("bias_unchanged"),
    ),
    Mistake(
        N_("the Linear layer's own bias b was dropped: b_folded = (b - running_mean) * s + beta"),
        _fb("old_bias_dropped"),
    ),
    Mistake(
        N_(
            "b was not scaled: BN scales everything the layer outputs, W x + b, so "
            "b_folded = (b - running_mean) * s + beta"
        ),
        _fb("bias_not_scaled"),
    ),
    Mistake(
        N_(
            "the weights were scaled by column: output k is scaled by s_k, so scale ROW k of W "
            "(W * s[:, None])"
        ),
        _fb("columns"),
    ),
    Mistake(N_("W is not scaled: W_folded = W * s[:, None]"), _fb("W_not_scaled")),
    Mistake(N_("eps is missing: s = gamma / sqrt(running_var + eps)"), _fb("no_eps")),
    Mistake(N_("divided by the variance: s = gamma / sqrt(running_var + eps)"), _fb("no_sqrt")),
    Mistake(
        N_("running_mean is not subtracted: b_folded = (b - running_mean) * s + beta"),
        _fb("no_mean"),
    ),
    Mistake(N_("beta is not added: b_folded = (b - running_mean) * s + beta"), _fb("no_beta")),
]


@dataclass(frozen=True)
class _FoldCase(EpsCase):
    name: str
    short: str
    W: np.ndarray  # (K, D)
    b: np.ndarray  # (K,)
    gamma: np.ndarray
    beta: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    eps: float | None
    hint: str = ""

    def arrays(self):
        return (self.W, self.b, self.gamma, self.beta, self.running_mean, self.running_var)

    def args(self):
        args = [a.copy() for a in self.arrays()]
        return args + ([] if self.eps is None else [self.eps])

    def ref_args(self):
        return (*self.arrays(), self.eps_used)


def _fold_cases():
    rng = case_rng(1503)

    def case(name, short, K, D, eps=None, var_scale=1.0, hint=""):
        return _FoldCase(
            name,
            short,
            rng.standard_normal((K, D)),
            rng.standard_normal(K),
            rng.uniform(0.5, 2.0, K) * rng.choice([-1.0, 1.0], K),
            rng.standard_normal(K),
            rng.standard_normal(K) * 2,
            rng.uniform(0.1, 4.0, K) * var_scale,
            eps,
            hint,
        )

    return [
        case(N_("Linear(5 -> 3) then BatchNorm1d(3)"), N_("5 -> 3"), 3, 5),
        case(N_("a square layer, Linear(4 -> 4)"), N_("4 -> 4"), 4, 4),
        case(
            N_("Linear(2 -> 6), tiny running variances (1e-5), eps=1e-3 passed"),
            N_("eps passed"),
            6,
            2,
            eps=1e-3,
            var_scale=1e-5,
            hint=N_("use the eps argument"),
        ),
        # NB: no single output (K=1): scaling W by column instead of row gives the same there
        case(N_("more inputs than outputs, Linear(7 -> 2)"), N_("7 -> 2"), 2, 7),
    ]


FOLD_BN = Task(
    "fold_bn",
    needs=("fold_bn",),
    cases=_fold_cases,
    reference=fold_bn_reference,
    outputs=("W_folded", "b_folded"),
    inputs=("W", "b", "gamma", "beta", "running_mean", "running_var"),
    mistakes={"W_folded": pick(FOLD_MISTAKES, 0), "b_folded": pick(FOLD_MISTAKES, 1)},
)


def check_fold_bn(fold_bn) -> CheckResult:
    """Check `fold_bn(W, b, gamma, beta, running_mean, running_var, eps=1e-5) -> (W_folded,
    b_folded)` for Linear (W: (K, D), b: (K,)) followed by BatchNorm1d(K) in eval mode."""
    return check(FOLD_BN, fold_bn)


# --- task 4: a BatchNorm1d module ----------------------------------------------------------------

# (mode, batch size) of the steps each case runs, in order: training updates the running
# statistics, eval must use them (and work on one sample), a second training step follows eval.
_STEPS = (("train", 4), ("train", 6), ("eval", 5), ("train", 2), ("eval", 1))
_KEYS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
_MODULE_RTOL, _MODULE_ATOL = 1e-4, 1e-5  # float32, as torch.nn.BatchNorm1d by default


@dataclass(frozen=True)
class _ModuleCase:
    name: str
    short: str
    num_features: int
    kwargs: dict
    seed: int
    hint: str = ""


def _module_cases():
    # NB: no BatchNorm1d(1): with one feature, statistics over the wrong axis agree with BN's
    return [
        _ModuleCase(N_("BatchNorm1d(3), the defaults"), N_("defaults"), 3, {}, case_seed(0)),
        _ModuleCase(
            N_("BatchNorm1d(5, eps=1e-3, momentum=0.3)"),
            N_("eps, momentum passed"),
            5,
            {"eps": 1e-3, "momentum": 0.3},
            case_seed(1),
            hint=N_("use the eps and momentum arguments of __init__"),
        ),
        _ModuleCase(
            N_("BatchNorm1d(2, momentum=None), the cumulative average"),
            N_("momentum=None"),
            2,
            {"momentum": None},
            case_seed(2),
            hint=_MOMENTUM_NONE,
        ),
    ]


_MOMENTUM_NONE = N_(
    "momentum=None: the running statistics are the cumulative (plain) average of all the batch "
    "statistics so far: the update uses the factor 1 / num_batches_tracked (counted after adding "
    "this batch) in place of momentum"
)
_ONE_VALUE = N_(
    "training with one value per channel (a batch of one sample) must raise ValueError, as "
    "torch.nn.BatchNorm1d does ('Expected more than 1 value per channel when training, got input "
    "size ...'): its variance is 0 and its unbiased variance 0/0"
)


def _inputs(case):
    import torch

    g = torch.Generator().manual_seed(case.seed)
    C = case.num_features
    xs = [torch.randn(n, C, generator=g) * 2 + 1 for _mode, n in _STEPS]
    douts = [torch.randn(n, C, generator=g) for _mode, n in _STEPS]
    weight = torch.rand(C, generator=g) + 0.5
    bias = torch.randn(C, generator=g)
    return xs, douts, weight, bias


def _run_module(cls, case):
    """Build cls(C, **kwargs), give it known weight and bias, run the steps; return a record per
    step (out, grads, buffers) and the final state_dict, or {"failed": reason} naming the step
    that raised, or {"keys": (missing, unexpected)} when the state_dict's keys are not torch's."""
    import torch

    xs, douts, weight, bias = _inputs(case)
    where = f"{getattr(cls, '__name__', None) or _('the class')}({case.num_features}"
    where += "".join(f", {k}={v}" for k, v in case.kwargs.items()) + ")"
    try:
        module = cls(case.num_features, **case.kwargs)
    except Exception as e:  # noqa: BLE001 - reported with the step
        return _failed(where, e)
    if not isinstance(module, torch.nn.Module):
        return {
            "failed": _("{where} is a {type}, not a torch.nn.Module").format(
                where=where, type=type_name(module)
            )
        }
    keys = set(module.state_dict())
    if keys != _KEYS:
        missing, extra = sorted(_KEYS - keys), sorted(keys - _KEYS)
        return {"keys": (missing, extra)}
    state = module.state_dict()
    state = {
        **state,
        "weight": weight.to(state["weight"].dtype),
        "bias": bias.to(state["bias"].dtype),
    }
    try:
        module.load_state_dict(state)
    except Exception as e:  # noqa: BLE001
        return _failed(f"{where}.load_state_dict", e)
    records = []
    for i, ((mode, n), x, dout) in enumerate(zip(_STEPS, xs, douts, strict=True)):
        step = _("step {i} ({mode} mode, a batch of {n})").format(i=i + 1, mode=mode, n=n)
        try:
            module.train(mode == "train")
            x = x.clone().requires_grad_()
            params = dict(module.named_parameters())
            for p in params.values():
                p.grad = None
            out = module(x)
            (out * dout).sum().backward()
            buffers = dict(module.named_buffers())
            records.append(
                {
                    "step": step,
                    "out": out.detach().clone(),
                    "dx": None if x.grad is None else x.grad.clone(),
                    "dweight": _grad(params.get("weight")),
                    "dbias": _grad(params.get("bias")),
                    **{k: buffers[k].detach().clone() for k in _KEYS - {"weight", "bias"}},
                }
            )
        except Exception as e:  # noqa: BLE001
            return _failed(step, e)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.train()
    try:  # NB: last, as torch counts the batch in num_batches_tracked before it raises
        with torch.no_grad():
            module(xs[0][:1].clone())
        one = _("returned an output")
    except ValueError:
        one = None
    except Exception as e:  # noqa: BLE001
        one = _("raised {error}").format(error=describe_exception(e))
    return {"records": records, "state": state, "one_value": one}


def _failed(where, e):
    reason = _("{where}: raised {error}").format(where=where, error=describe_exception(e))
    if "backward through the graph" in str(e) or "modified by an inplace operation" in str(e):
        advice = _(
            "Update the running statistics without building a graph: under torch.no_grad(), "
            "or from .detach()ed batch statistics"
        )
        reason = sentences([reason, advice])
    return {"failed": reason}


def _grad(p):
    return None if p is None or p.grad is None else p.grad.clone()


def _tensor_problem(name, got, want):
    import torch

    if got is None:
        return _("{name} is None").format(name=name)
    if not isinstance(got, torch.Tensor):
        return _("{name} is a {type}, expected a tensor").format(name=name, type=type_name(got))
    if tuple(got.shape) != tuple(want.shape):
        return _("{name} has shape {shape}, expected {expected}").format(
            name=name, shape=tuple(got.shape), expected=tuple(want.shape)
        )
    g, w = got.detach().double().numpy(), want.detach().double().numpy()
    if outputs_match(g, w, rtol=_MODULE_RTOL, atol=_MODULE_ATOL):
        return None
    return mismatch(name, g, w, float32_note=False)  # float32, as torch


def _module_hint(name, i, got, want, case):
    """A named likely mistake for output `name` at step i, from what the module did."""
    import torch

    mode = _STEPS[i][0]
    xs = _inputs(case)[0]
    x = xs[i].double()
    momentum = case.kwargs.get("momentum", 0.1) or 0.0
    eps = case.kwargs.get("eps", 1e-5)
    prev = want.get("prev")

    def close(a, b):
        return a is not None and b is not None and _tensor_problem("", a, b) is None

    if name == "num_batches_tracked":
        return N_("num_batches_tracked: add 1 at each training step (a buffer of dtype torch.long)")
    if mode == "train" and name in ("running_mean", "running_var") and "momentum" in case.kwargs:
        if case.kwargs["momentum"] is None:
            return _MOMENTUM_NONE
    if mode == "eval" and name in ("out", "running_mean", "running_var") and prev is not None:
        if not all(close(got[k], prev[k]) for k in ("running_mean", "running_var")):
            return N_("the running statistics changed in eval mode: update them only when training")
    if mode == "train" and name in ("running_mean", "running_var") and prev is not None:
        mean, var_b = x.mean(0), x.var(0, unbiased=False)
        var_u = x.var(0, unbiased=True)
        old = prev[name].double()
        if name == "running_var" and close(got[name], (1 - momentum) * old + momentum * var_b):
            return RUNNING_MISTAKES[0].hint
        batch = mean if name == "running_mean" else var_u
        if close(got[name], momentum * old + (1 - momentum) * batch):
            return RUNNING_MISTAKES[1].hint
        if close(got[name], old):
            return N_("the running statistics are not updated in training mode")
    if mode == "eval" and name == "out":
        w, b = want["weight"].double(), want["bias"].double()
        batch_out = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps) * w + b
        if x.shape[0] > 1 and close(got[name], batch_out):
            return EVAL_MISTAKES[0].hint
    if name in ("dweight", "dbias") and got[name] is None:
        return N_(
            "weight and bias must be torch.nn.Parameter (so they get gradients and appear in "
            "the state_dict)"
        )
    return None


def _module_case(task, functions, case, budget, labels):
    import torch

    cls, label = functions[-1], labels[-1]

    try:
        got = call(_run_module, (cls, case), budget, label)
    except CallError as e:  # _run_module catches the learner's errors; this is a safety net
        return Outcome(case, str(e))
    if "failed" in got:
        hints = []
        if case.kwargs.get("momentum", 0.1) is None and "NoneType" in got["failed"]:
            hints = [_MOMENTUM_NONE]
        return Outcome(case, got["failed"], {"module": hints})
    if "keys" in got:
        missing, extra = got["keys"]
        parts = []
        if missing:
            parts.append(_("missing {names}").format(names=missing))
        if extra:
            parts.append(_("unexpected {names}").format(names=extra))
        return Outcome(
            case,
            _(
                "its state_dict has not torch.nn.BatchNorm1d's keys: {problems} (weight and bias "
                "are nn.Parameter; running_mean, running_var and num_batches_tracked are buffers: "
                "self.register_buffer(name, tensor))"
            ).format(problems=join_list(parts, commas=True)),
        )
    want = _run_module(torch.nn.BatchNorm1d, case)
    for i, (mine, ref) in enumerate(zip(got["records"], want["records"], strict=True)):
        for name in ("out", "dx", "dweight", "dbias", "running_mean", "running_var"):
            problem = _tensor_problem(name, mine[name], ref[name])
            if problem:
                context = {
                    "prev": want["records"][i - 1] if i else _initial(case),
                    "weight": _inputs(case)[2],
                    "bias": _inputs(case)[3],
                }
                hint = _module_hint(name, i, mine, context, case)
                reason = _("{where}: {problem}").format(where=mine["step"], problem=problem)
                return Outcome(case, reason, {"module": [hint] if hint else []})
        if int(mine["num_batches_tracked"]) != int(ref["num_batches_tracked"]):
            hint = _module_hint("num_batches_tracked", i, mine, {}, case)
            reason = _("{step}: num_batches_tracked is {got}, expected {expected}").format(
                step=mine["step"],
                got=int(mine["num_batches_tracked"]),
                expected=int(ref["num_batches_tracked"]),
            )
            return Outcome(case, reason, {"module": [hint]})
    if got.get("one_value") is not None:
        reason = _(
            "a training step on a batch of ONE sample, shape (1, {C}): expected a ValueError, "
            "but the module {what}"
        ).format(C=case.num_features, what=got["one_value"])
        return Outcome(case, reason, {"module": [_ONE_VALUE]})
    return Outcome(case)


def _initial(case):
    import torch

    C = case.num_features
    return {"running_mean": torch.zeros(C), "running_var": torch.ones(C)}


BATCHNORM_MODULE = Task(
    "MyBatchNorm1d",
    needs=("MyBatchNorm1d",),
    cases=_module_cases,
    run_case=_module_case,
    kind="class",
    # the hints come from _module_hint, which reads what the module did; ties: the first seen
    mistakes={"module": ()},
)


def check_batchnorm_module(MyBatchNorm1d) -> CheckResult:
    """Check a class `MyBatchNorm1d(num_features, eps=1e-5, momentum=0.1)`, a torch.nn.Module for
    (N, C) inputs, against torch.nn.BatchNorm1d over a sequence of train and eval steps.

    The behaviours that count, each named when it fails: the state_dict's keys (weight, bias as
    parameters; running_mean, running_var, num_batches_tracked as buffers); in training, outputs
    and gradients (x, weight, bias) with the batch statistics, the running statistics updated with
    momentum (momentum=None: the cumulative average) and num_batches_tracked counted; in eval, the
    running statistics used and left unchanged (a batch of one included); a ValueError for a
    training batch of one sample. Returns a CheckResult."""
    return check(BATCHNORM_MODULE, MyBatchNorm1d)


TASKS = [RUNNING_STATS, BATCHNORM_EVAL, FOLD_BN, BATCHNORM_MODULE]
