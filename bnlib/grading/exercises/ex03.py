"""Checks of exercise 3 (inside training): per-layer percentiles recorded with forward hooks, and
the noisy batch norm of Santurkar et al.

Tasks of the check engine (bnlib.grading.engine): cases, float64 references, mistake catalogues.
Shape legend: N batch, D features (units), Q percentiles.
References: torch.nn.Module.register_forward_hook; Ioffe & Szegedy 2015, Fig. 1 (b, c);
Santurkar et al. 2018, arXiv 1805.11604, §2.1 ("noisy" BN).
"""

from __future__ import annotations

import copy
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
    join_list,
    mismatch,
    outputs_match,
    type_name,
)
from bnlib.grading.exercises.ex01 import normalized
from bnlib.i18n import N_, _

# NB: torch is imported inside the functions: `import bnlib.checks` (module 1, numpy only)
# must stay fast.

__all__ = [
    "EXERCISE",
    "LAYER_PERCENTILES",
    "NOISY_BN",
    "TASKS",
    "NOISY_BN_MISTAKES",
    "PERCENTILE_MISTAKES",
    "check_layer_percentiles",
    "check_noisy_bn",
    "noisy_bn_reference",
]

EXERCISE = "ex03_inside_training"
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
        torch.manual_seed(case_seed(3))
        model = _mlp((12, 16, 8, 4), "Sigmoid").eval()
        return model, torch.randn(40, 12) * 2 + 1, None

    def bn_tanh_eval():
        torch.manual_seed(case_seed(4))
        model = _mlp((10, 12, 12, 3), "Tanh", norm=True)
        with torch.no_grad():
            for _ in range(5):  # running statistics that differ from the defaults
                model(torch.randn(16, 10) * 3 + 2)
        return model.eval(), torch.randn(25, 10) * 3 + 2, None

    def relu_nested_q():
        torch.manual_seed(case_seed(5))
        model = _mlp((8, 20, 6, 2), "ReLU", nested=True).eval()
        return model, torch.randn(33, 8), (5, 25, 50, 75, 95)

    def bn_train_mode():
        torch.manual_seed(case_seed(6))
        return _mlp((6, 9, 5), "ReLU", norm=True).train(), torch.randn(7, 6) - 3, (10, 90)

    return [
        _ModelCase(N_("a sigmoid MLP in eval mode, default q"), N_("sigmoid"), sigmoid_eval),
        _ModelCase(N_("a tanh MLP with BN, eval mode"), N_("BN + tanh"), bn_tanh_eval),
        _ModelCase(
            N_("a ReLU MLP with nested blocks, q=(5, 25, 50, 75, 95)"),
            N_("nested, 5 percentiles"),
            relu_nested_q,
            hint=N_("use the q argument, and the names model.named_modules() gives (e.g. '0.1')"),
        ),
        _ModelCase(
            N_("a ReLU MLP with BN left in train mode, q=(10, 90)"),
            N_("train mode"),
            bn_train_mode,
            hint=N_("leave the model's mode as it is (BN then uses the batch statistics)"),
        ),
    ]


def _raw(model, x, what):
    """{name: (N, D) float64} the inputs (or outputs) of every nonlinearity, one forward pass."""
    import torch

    from bnlib.hooks import ActivationRecorder, activation_inputs

    with torch.no_grad(), ActivationRecorder(activation_inputs(model), what=what) as rec:
        model(x)
    return {n: v[-1] for n, v in rec.records.items()}


_OUTPUT = N_(
    "the hooks recorded the nonlinearity's output: a forward hook gets (module, inputs, output); "
    "the input is inputs[0]"
)
_PER_SAMPLE = N_("percentiles per sample (axis 1): take them over the batch, axis 0, one per unit")
_WHOLE = N_(
    "one set of percentiles for the whole layer: take them per unit, over the batch (axis 0)"
)
_FRACTIONS = N_(
    "q was used as fractions: np.percentile takes 0..100 (torch.quantile takes 0..1, so divide "
    "by 100 there)"
)
_TRANSPOSED = N_("the result is transposed: return shape (len(q), D), percentiles first")
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_BUFFERS = N_(
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


def _percentile_case(task, functions, case, budget, labels):
    import torch

    from bnlib.hooks import layer_percentiles

    fn, label = functions[-1], labels[-1]
    model, x, q = case.build()
    reference = layer_percentiles(copy.deepcopy(model), x, q=q or (15, 50, 85))
    args = (model, x) if q is None else (model, x, q)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    x_before = x.clone()
    try:
        got = call(fn, args, budget, label)
    except CallError as e:
        return Outcome(case, str(e))
    if _hooks_left(model):
        return Outcome(
            case,
            _(
                "{label} left {n} hook(s) on the model: keep the handles that "
                "register_forward_hook returns and call handle.remove() (in a finally: or a with "
                "block), or every later forward pass keeps recording"
            ).format(label=label, n=_hooks_left(model)),
        )
    if model.training != was_training:
        return Outcome(
            case,
            _("{label} changed the model's mode; leave train()/eval() as it was").format(
                label=label
            ),
        )
    if not torch.equal(x, x_before):
        return Outcome(case, _("{label} modified its argument x in place").format(label=label))
    for k, v in model.state_dict().items():
        if not torch.equal(v, state[k]):
            reason = _("{label} changed the model's {name}").format(label=label, name=k)
            if k.rsplit(".", 1)[-1] in _BN_BUFFERS:
                return Outcome(case, reason, {"percentiles": [_BUFFERS]})
            return Outcome(case, reason)
    if got is None:
        return Outcome(
            case,
            _("{label} returned None: expected a dict; is a `return` missing?").format(label=label),
        )
    if not isinstance(got, dict):
        return Outcome(
            case,
            _("{label} returned {type}: expected a dict {{name: array}}").format(
                label=label, type=type_name(got)
            ),
        )
    missing = [n for n in reference if n not in got]
    extra = [n for n in got if n not in reference]
    if missing or extra:
        parts = []
        if missing:
            parts.append(_("missing {names}").format(names=missing))
        if extra:
            parts.append(_("unexpected {names}").format(names=extra))
        return Outcome(
            case,
            _(
                "the keys should be the names of the nonlinearities (Sigmoid, Tanh, ReLU) from "
                "model.named_modules(), {names}: {problems}"
            ).format(names=list(reference), problems=join_list(parts)),
        )
    mistakes = _pct_mistakes(model.eval() if not was_training else model, x, q or (15, 50, 85))
    model.train(was_training)
    for name, want in reference.items():
        value = _as_array(got[name])
        problem = None
        if not isinstance(value, np.ndarray):
            problem = _("{name} is a {type}, expected a numpy array").format(
                name=f"[{name!r}]", type=type_name(value)
            )
        if problem is None and outputs_match(value, want, rtol=PCT_RTOL, atol=1e-6):
            continue
        hints = [
            hint
            for hint, wrong in mistakes.items()
            if isinstance(value, np.ndarray) and outputs_match(value, wrong[name], rtol=PCT_RTOL)
        ]
        if problem is None and value.shape != want.shape:
            problem = _("{name} has shape {shape}, expected {expected} (len(q), D)").format(
                name=f"[{name!r}]", shape=value.shape, expected=want.shape
            )
        return Outcome(
            case,
            problem or mismatch(f"[{name!r}]", value, want, float32_note=False),
            {"percentiles": hints},
        )
    return Outcome(case)


LAYER_PERCENTILES = Task(
    "layer_percentiles",
    needs=("layer_percentiles",),
    cases=_model_cases,
    run_case=_percentile_case,
    mistakes={"percentiles": PERCENTILE_MISTAKES},
)


def check_layer_percentiles(layer_percentiles) -> CheckResult:
    """Check `layer_percentiles(model, x, q=(15, 50, 85)) -> {name: (Q, D) array}`.

    For every nonlinearity (nn.Sigmoid, "Tanh", "ReLU") of the model, keyed by its name in
    model.named_modules(): the q-th percentiles over the batch of its input, per unit, recorded
    with forward hooks that are removed afterwards; the model's mode, weights and buffers (BN's
    running statistics, even in train mode) untouched.
    Compared with bnlib.hooks.layer_percentiles on hidden models.
    """
    return check(LAYER_PERCENTILES, layer_percentiles)


# --- task 2: noisy batch norm --------------------------------------------------------------------


def noisy_bn_reference(x, gamma, beta, scale, shift, eps=1e-5):
    """out = (gamma * xhat + beta) * scale + shift, xhat batch-normalized (biased variance).

    The arguments in the formula's order. x: (N, D); gamma, beta, scale, shift: (D,).
    Santurkar et al. 2018, §2.1 (a variant: one scale and shift per unit, shared by the batch).
    """
    return (gamma * normalized(x, eps) + beta) * scale + shift


NOISY_BN_MISTAKES = [
    Mistake(
        N_(
            "this is plain BN: the noise is missing, or it was added before normalizing (BN then "
            "removes it again); apply it to BN's output: (gamma * xhat + beta) * scale + shift"
        ),
        lambda x, g, b, s, m, eps: g * normalized(x, eps) + b,
    ),
    Mistake(
        N_(
            "scale and shift swapped (the arguments are x, gamma, beta, scale, shift, in the "
            "formula's order): multiply by scale, then add shift"
        ),
        lambda x, g, b, s, m, eps: (g * normalized(x, eps) + b) * m + s,
    ),
    Mistake(
        N_("shifted before scaling: (y + shift) * scale; scale BN's output first, then add shift"),
        lambda x, g, b, s, m, eps: (g * normalized(x, eps) + b + m) * s,
    ),
    Mistake(
        N_(
            "the noise went on xhat, before gamma and beta: apply it to BN's output "
            "y = gamma * xhat + beta"
        ),
        lambda x, g, b, s, m, eps: g * (normalized(x, eps) * s + m) + b,
    ),
    Mistake(
        N_("unbiased variance (N - 1): BN normalizes with the biased one, mean((x - mu)**2)"),
        lambda x, g, b, s, m, eps: (g * normalized(x, eps, ddof=1) + b) * s + m,
    ),
    Mistake(
        N_("eps outside the square root: divide by sqrt(var + eps)"),
        lambda x, g, b, s, m, eps: (g * normalized(x, eps, eps_inside=False) + b) * s + m,
    ),
    Mistake(
        N_("the eps argument is ignored (a fixed 1e-5 is used whatever eps is passed)"),
        lambda x, g, b, s, m, eps: (g * normalized(x, 1e-5) + b) * s + m,
    ),
]


@dataclass(frozen=True)
class _NoisyCase(EpsCase):
    name: str
    short: str
    arrays: tuple  # x, gamma, beta, scale, shift
    eps: float | None
    hint: str = ""

    def args(self):
        args = [a.copy() for a in self.arrays]
        return args if self.eps is None else [*args, self.eps]

    def ref_args(self):
        return (*self.arrays, self.eps_used)


def _noisy_cases():
    rng = case_rng(18051160)  # Santurkar et al.'s arXiv number

    def case(name, short, x, eps=None, hint=""):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D)
        beta, shift = rng.standard_normal(D), rng.normal(0.5, 1.0, D)
        scale = np.exp(0.5 * rng.standard_normal(D))
        return _NoisyCase(name, short, (x, gamma, beta, scale, shift), eps, hint)

    tiny = rng.standard_normal((12, 3)) * np.array([1e-3, 1.0, 0.0]) + 2.0
    return [
        case(N_("basic, N=8, D=5"), N_("basic"), rng.standard_normal((8, 5)) * 2 + 1),
        case(N_("the smallest batch, N=2"), N_("N=2"), rng.standard_normal((2, 4))),
        case(
            N_("tiny variances and a constant feature, N=12, D=3"),
            N_("tiny variances"),
            tiny,
            hint=N_("eps goes inside the square root"),
        ),
        case(
            N_("eps=1e-2 passed explicitly, N=10, D=3"),
            N_("eps passed"),
            rng.standard_normal((10, 3)) * 0.1,
            eps=1e-2,
            hint=N_("use the eps argument"),
        ),
    ]


NOISY_BN = Task(
    "noisy_bn",
    needs=("noisy_bn",),
    cases=_noisy_cases,
    reference=noisy_bn_reference,
    inputs=("x", "gamma", "beta", "scale", "shift"),
    mistakes={"out": NOISY_BN_MISTAKES},
)


def check_noisy_bn(noisy_bn) -> CheckResult:
    """Check `noisy_bn(x, gamma, beta, scale, shift, eps=1e-5) -> out`, training mode.

    out = (gamma * xhat + beta) * scale + shift: x (N, D); gamma, beta, scale, shift (D,); out
    (N, D), compared with noisy_bn_reference on hidden cases.
    """
    return check(NOISY_BN, noisy_bn)


TASKS = [LAYER_PERCENTILES, NOISY_BN]
