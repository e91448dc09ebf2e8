"""Checks of exercise 3 (inside training): per-layer percentiles recorded with forward hooks, and
the noisy batch norm of Santurkar et al.

Built on bnlib.checks' machinery: hidden cases, named likely mistakes, never raises.
Shape legend: N batch, D features (units), Q percentiles.
References: torch.nn.Module.register_forward_hook; Ioffe & Szegedy 2015, Fig. 1 (b, c);
Santurkar et al. 2018, arXiv 1805.11604, §2.1 ("noisy" BN).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from bnlib.checks import (
    CheckResult,
    Mistake,
    _array_problem,
    _Budget,
    _call,
    _CallError,
    _case_rng,
    _case_seed,
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
    _type_name,
    _xhat,
    matching_mistakes,
    outputs_match,
    task,
)

# NB: torch is imported inside the functions: `import bnlib.checks` (module 1, numpy only) must
# stay fast.

__all__ = [
    "NOISY_BN_MISTAKES",
    "PERCENTILE_MISTAKES",
    "check_layer_percentiles",
    "check_noisy_bn",
    "noisy_bn_reference",
]

PCT_RTOL = 1e-4  # the model runs in float32; a float64 percentile of it agrees to ~1e-6


# --- task 1: percentiles of every nonlinearity's input, with forward hooks -----------------------


@dataclass(frozen=True)
class _ModelCase:
    name: str
    short: str
    build: object  # () -> (model, x, q or None)
    hint: str = ""


def _mlp(widths, act, norm=False, nested=False):
    from torch import nn

    act = getattr(nn, act)
    layers = []
    for d_in, d_out in zip(widths[:-2], widths[1:-1], strict=True):
        block = [nn.Linear(d_in, d_out)] + ([nn.BatchNorm1d(d_out)] if norm else []) + [act()]
        layers += [nn.Sequential(*block)] if nested else block
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def _model_cases():
    import torch

    def sigmoid_eval():
        torch.manual_seed(_case_seed(3))
        model = _mlp((12, 16, 8, 4), "Sigmoid").eval()
        return model, torch.randn(40, 12) * 2 + 1, None

    def bn_tanh_eval():
        torch.manual_seed(_case_seed(4))
        model = _mlp((10, 12, 12, 3), "Tanh", norm=True)
        with torch.no_grad():
            for _ in range(5):  # running statistics that differ from the defaults
                model(torch.randn(16, 10) * 3 + 2)
        return model.eval(), torch.randn(25, 10) * 3 + 2, None

    def relu_nested_q():
        torch.manual_seed(_case_seed(5))
        model = _mlp((8, 20, 6, 2), "ReLU", nested=True).eval()
        return model, torch.randn(33, 8), (5, 25, 50, 75, 95)

    def bn_train_mode():
        torch.manual_seed(_case_seed(6))
        return _mlp((6, 9, 5), "ReLU", norm=True).train(), torch.randn(7, 6) - 3, (10, 90)

    return [
        _ModelCase("a sigmoid MLP in eval mode, default q", "sigmoid", sigmoid_eval),
        _ModelCase("a tanh MLP with BN, eval mode", "BN + tanh", bn_tanh_eval),
        _ModelCase(
            "a ReLU MLP with nested blocks, q=(5, 25, 50, 75, 95)",
            "nested, 5 percentiles",
            relu_nested_q,
            hint="use the q argument, and the names model.named_modules() gives (e.g. '0.1')",
        ),
        _ModelCase(
            "a ReLU MLP with BN left in train mode, q=(10, 90)",
            "train mode",
            bn_train_mode,
            hint="leave the model's mode as it is (BN then uses the batch statistics)",
        ),
    ]


def _raw(model, x, what):
    """{name: (N, D) float64} the inputs (or outputs) of every nonlinearity, one forward pass."""
    import torch

    from bnlib.hooks import ActivationRecorder, activation_inputs

    with torch.no_grad(), ActivationRecorder(activation_inputs(model), what=what) as rec:
        model(x)
    return {n: v[-1] for n, v in rec.records.items()}


_OUTPUT = (
    "the hooks recorded the nonlinearity's output: a forward hook gets (module, inputs, output); "
    "the input is inputs[0]"
)
_PER_SAMPLE = "percentiles per sample (axis 1): take them over the batch, axis 0, one per unit"
_WHOLE = "one set of percentiles for the whole layer: take them per unit, over the batch (axis 0)"
_FRACTIONS = (
    "q was used as fractions: np.percentile takes 0..100 (torch.quantile takes 0..1, so divide "
    "by 100 there)"
)
_TRANSPOSED = "the result is transposed: return shape (len(q), D), percentiles first"
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_BUFFERS = (
    "the probe changed BN's running statistics: a forward pass in train mode updates "
    "running_mean, running_var and num_batches_tracked, even under torch.no_grad(); save the "
    "buffers before the forward pass and copy them back after it (a probe must not change the "
    "model it measures)"
)
PERCENTILE_MISTAKES = [
    Mistake(h, None) for h in (_OUTPUT, _PER_SAMPLE, _WHOLE, _FRACTIONS, _TRANSPOSED, _BUFFERS)
]


def _pct_mistakes(model, x, q):
    """{hint: {name: what that mistake returns}} on this case."""
    inputs, outputs = _raw(model, x, "input"), _raw(model, x, "output")
    q = np.asarray(q, dtype=np.float64)

    def each(raw, fn):
        return {n: fn(v) for n, v in raw.items()}

    return {
        _OUTPUT: each(outputs, lambda v: np.percentile(v, q, axis=0)),
        _PER_SAMPLE: each(inputs, lambda v: np.percentile(v, q, axis=1)),
        _WHOLE: each(inputs, lambda v: np.percentile(v, q)),
        _FRACTIONS: each(inputs, lambda v: np.percentile(v, q / 100, axis=0)),
        _TRANSPOSED: each(inputs, lambda v: np.percentile(v, q, axis=0).T),
    }


def _hooks_left(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _as_array(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return value


def _percentile_case(fn, case, budget, label):
    import torch

    from bnlib.hooks import layer_percentiles

    model, x, q = case.build()
    reference = layer_percentiles(copy.deepcopy(model), x, q=q or (15, 50, 85))
    args = (model, x) if q is None else (model, x, q)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    x_before = x.clone()
    try:
        got = _call(fn, args, budget, label)
    except _CallError as e:
        return _Outcome(case, str(e))
    if _hooks_left(model):
        return _Outcome(
            case,
            f"{label} left {_hooks_left(model)} hook(s) on the model: keep the handles that "
            "register_forward_hook returns and call handle.remove() (in a finally: or a with "
            "block), or every later forward pass keeps recording",
        )
    if model.training != was_training:
        return _Outcome(case, f"{label} changed the model's mode; leave train()/eval() as it was")
    if not torch.equal(x, x_before):
        return _Outcome(case, f"{label} modified its argument x in place")
    for k, v in model.state_dict().items():
        if not torch.equal(v, state[k]):
            if k.rsplit(".", 1)[-1] in _BN_BUFFERS:
                return _Outcome(
                    case, f"{label} changed the model's {k}", {"percentiles": [_BUFFERS]}
                )
            return _Outcome(case, f"{label} changed the model's {k}")
    if got is None:
        return _Outcome(case, f"{label} returned None: expected a dict; is a `return` missing?")
    if not isinstance(got, dict):
        return _Outcome(
            case, f"{label} returned {_type_name(got)}: expected a dict {{name: array}}"
        )
    missing = [n for n in reference if n not in got]
    extra = [n for n in got if n not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        return _Outcome(
            case,
            f"the keys should be the names of the nonlinearities (Sigmoid, Tanh, ReLU) from "
            f"model.named_modules(), {list(reference)}: {'; '.join(parts)}",
        )
    mistakes = _pct_mistakes(model.eval() if not was_training else model, x, q or (15, 50, 85))
    model.train(was_training)
    for name, want in reference.items():
        value = _as_array(got[name])
        problem = None
        if not isinstance(value, np.ndarray):
            problem = f"[{name!r}] is a {_type_name(value)}, expected a numpy array"
        if problem is None and outputs_match(value, want, rtol=PCT_RTOL, atol=1e-6):
            continue
        hints = [
            hint
            for hint, wrong in mistakes.items()
            if isinstance(value, np.ndarray) and outputs_match(value, wrong[name], rtol=PCT_RTOL)
        ]
        if problem is None and value.shape != want.shape:
            problem = f"[{name!r}] has shape {value.shape}, expected {want.shape} (len(q), D)"
        return _Outcome(
            case,
            problem or _mismatch(f"[{name!r}]", value, want, float32_note=False),
            {"percentiles": hints},
        )
    return _Outcome(case)


@_guarded
def check_layer_percentiles(layer_percentiles) -> CheckResult:
    """Check `layer_percentiles(model, x, q=(15, 50, 85)) -> {name: (Q, D) array}`.

    For every nonlinearity (nn.Sigmoid, "Tanh", "ReLU") of the model, keyed by its name in
    model.named_modules(): the q-th percentiles over the batch of its input, per unit, recorded
    with forward hooks that are removed afterwards; the model's mode, weights and buffers (BN's
    running statistics, even in train mode) untouched.
    Compared with bnlib.hooks.layer_percentiles on hidden models.
    """
    label = _label(layer_percentiles, "layer_percentiles")
    if not callable(layer_percentiles):
        return _not_callable("layer_percentiles", layer_percentiles)
    cases = _model_cases()
    outcomes = _run_cases(lambda c, b: _percentile_case(layer_percentiles, c, b, label), cases)
    return _summary(label, outcomes, len(cases), {"percentiles": PERCENTILE_MISTAKES})


# --- task 2: noisy batch norm --------------------------------------------------------------------


def noisy_bn_reference(x, gamma, beta, scale, shift, eps=1e-5):
    """out = (gamma * xhat + beta) * scale + shift, xhat batch-normalized (biased variance).

    The arguments in the formula's order. x: (N, D); gamma, beta, scale, shift: (D,).
    Santurkar et al. 2018, §2.1 (a variant: one scale and shift per unit, shared by the batch).
    """
    return (gamma * _xhat(x, eps) + beta) * scale + shift


NOISY_BN_MISTAKES = [
    Mistake(
        "this is plain BN: the noise is missing, or it was added before normalizing (BN then "
        "removes it again); apply it to BN's output: (gamma * xhat + beta) * scale + shift",
        lambda x, g, b, s, m, eps: g * _xhat(x, eps) + b,
    ),
    Mistake(
        "scale and shift swapped (the arguments are x, gamma, beta, scale, shift, in the "
        "formula's order): multiply by scale, then add shift",
        lambda x, g, b, s, m, eps: (g * _xhat(x, eps) + b) * m + s,
    ),
    Mistake(
        "shifted before scaling: (y + shift) * scale; scale BN's output first, then add shift",
        lambda x, g, b, s, m, eps: (g * _xhat(x, eps) + b + m) * s,
    ),
    Mistake(
        "the noise went on xhat, before gamma and beta: apply it to BN's output "
        "y = gamma * xhat + beta",
        lambda x, g, b, s, m, eps: g * (_xhat(x, eps) * s + m) + b,
    ),
    Mistake(
        "unbiased variance (N - 1): BN normalizes with the biased one, mean((x - mu)**2)",
        lambda x, g, b, s, m, eps: (g * _xhat(x, eps, ddof=1) + b) * s + m,
    ),
    Mistake(
        "eps outside the square root: divide by sqrt(var + eps)",
        lambda x, g, b, s, m, eps: (g * _xhat(x, eps, eps_inside=False) + b) * s + m,
    ),
    Mistake(
        "the eps argument is ignored (a fixed 1e-5 is used whatever eps is passed)",
        lambda x, g, b, s, m, eps: (g * _xhat(x, 1e-5) + b) * s + m,
    ),
]


@dataclass(frozen=True)
class _NoisyCase(_EpsCase):
    name: str
    short: str
    arrays: tuple  # x, gamma, beta, scale, shift
    eps: float | None
    hint: str = ""

    def args(self):
        args = [a.copy() for a in self.arrays]
        return args if self.eps is None else [*args, self.eps]


def _noisy_cases():
    rng = _case_rng(18051160)  # Santurkar et al.'s arXiv number

    def case(name, short, x, eps=None, hint=""):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D)
        beta, shift = rng.standard_normal(D), rng.normal(0.5, 1.0, D)
        scale = np.exp(0.5 * rng.standard_normal(D))
        return _NoisyCase(name, short, (x, gamma, beta, scale, shift), eps, hint)

    tiny = rng.standard_normal((12, 3)) * np.array([1e-3, 1.0, 0.0]) + 2.0
    return [
        case("basic, N=8, D=5", "basic", rng.standard_normal((8, 5)) * 2 + 1),
        case("the smallest batch, N=2", "N=2", rng.standard_normal((2, 4))),
        case(
            "tiny variances and a constant feature, N=12, D=3",
            "tiny variances",
            tiny,
            hint="eps goes inside the square root",
        ),
        case(
            "eps=1e-2 passed explicitly, N=10, D=3",
            "eps passed",
            rng.standard_normal((10, 3)) * 0.1,
            eps=1e-2,
            hint="use the eps argument",
        ),
    ]


@_guarded
def check_noisy_bn(noisy_bn) -> CheckResult:
    """Check `noisy_bn(x, gamma, beta, scale, shift, eps=1e-5) -> out`, training mode.

    out = (gamma * xhat + beta) * scale + shift: x (N, D); gamma, beta, scale, shift (D,); out
    (N, D), compared with noisy_bn_reference on hidden cases.
    """
    label = _label(noisy_bn, "noisy_bn")
    if not callable(noisy_bn):
        return _not_callable("noisy_bn", noisy_bn)
    budget, cases, outcomes = _Budget(), _noisy_cases(), []
    names = ("x", "gamma", "beta", "scale", "shift")
    for case in cases:
        args = case.args()
        try:
            out = _call(noisy_bn, args, budget, label)
        except _Stop as stop:
            outcomes.append(_Outcome(case, str(stop)))
            break
        except _CallError as e:
            outcomes.append(_Outcome(case, str(e)))
            continue
        modified = _modified(label, names, case.arrays, args[:5])
        if modified:
            outcomes.append(_Outcome(case, modified))
            continue
        want = noisy_bn_reference(*case.arrays, eps=case.eps_used)
        if out is None:
            why = f"{label} returned None: expected out, an (N, D) array; is a `return` missing?"
            outcomes.append(_Outcome(case, why))
            continue
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], np.ndarray):
            outcomes.append(_Outcome(case, f"{label} returned a tuple: return only out"))
            continue
        problem = _array_problem(out, "out", want.shape, want.dtype)
        if problem is None and outputs_match(out, want):
            outcomes.append(_Outcome(case))
            continue
        hints = []
        if isinstance(out, np.ndarray):
            hints = matching_mistakes(
                out, NOISY_BN_MISTAKES, *case.arrays, case.eps_used, reference=want
            )
        outcomes.append(_Outcome(case, problem or _mismatch("out", out, want), {"out": hints}))
    return _summary(label, outcomes, len(cases), {"out": NOISY_BN_MISTAKES})


TASKS = {
    "ex03_inside_training": [
        task("layer_percentiles", check_layer_percentiles, ["layer_percentiles"]),
        task("noisy_bn", check_noisy_bn, ["noisy_bn"]),
    ],
}
