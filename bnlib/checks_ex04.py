"""Checks of exercise 4 (small batches): batch renormalization's forward pass, and the global
batch statistics that synchronized BN computes from each process's (count, sum, sum of squares).

Built on bnlib.checks' machinery: hidden cases, named likely mistakes, never raises.
Shape legend: N batch, D features, K processes.
References: Ioffe 2017, arXiv 1702.03275, Alg. 1; torch.nn.SyncBatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlib.checks import (
    Mistake,
    _array_problem,
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
    _summary,
    _unpack,
    matching_mistakes,
    outputs_match,
    task,
)

__all__ = [
    "BATCH_RENORM_MISTAKES",
    "GLOBAL_STATS_MISTAKES",
    "batch_renorm_reference",
    "check_batch_renorm_forward",
    "check_global_batch_stats",
]


# --- batch renormalization -----------------------------------------------------------------------


def batch_renorm_reference(
    x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5, *, variant=None
):
    """Ioffe 2017, Alg. 1 (training): out = gamma * ((x - mu) / sigma_B * r + d) + beta, (N, D).

    r = clip(sigma_B / sigma, 1/rmax, rmax), d = clip((mu - running_mean) / sigma, -dmax, dmax),
    sigma_B = sqrt(var_B + eps) (biased var_B), sigma = sqrt(running_var + eps).
    variant: None, or the name of a known mistake (for the diagnosis).
    """
    v = variant
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=1 if v == "unbiased" else 0)
    sigma_b = np.sqrt(var + eps)
    sigma = np.sqrt(running_var) if v == "no_eps_sigma" else np.sqrt(running_var + eps)
    r = sigma_b / sigma
    d = (mu - running_mean) / sigma
    if v == "r_inverted":
        r = sigma / sigma_b
    if v == "d_sign":
        d = -d
    if v == "d_not_scaled":
        d = mu - running_mean
    if v == "r_upper_only":
        r = np.minimum(r, rmax)
    elif v != "no_clip":
        r = np.clip(r, 1 / rmax, rmax)
    if v != "no_clip":
        d = np.clip(d, -dmax, dmax)
    xhat = (x - mu) / sigma_b * r + d
    if v == "plain_bn":
        xhat = (x - mu) / sigma_b
    if v == "d_before_r":
        xhat = ((x - mu) / sigma_b + d) * r
    if v == "no_affine":
        return xhat
    return gamma * xhat + beta


def _brn(variant):
    return lambda x, g, b, m, v, rmax, dmax, eps: batch_renorm_reference(
        x, g, b, m, v, rmax, dmax, eps, variant=variant
    )


BATCH_RENORM_MISTAKES = [
    Mistake(
        "r and d are not clipped (or x was normalized with the running statistics, which is the "
        "same thing): r = clip(sigma_B / sigma, 1/rmax, rmax), "
        "d = clip((mu_B - running_mean) / sigma, -dmax, dmax)",
        _brn("no_clip"),
    ),
    Mistake(
        "r only clipped from above: clip it to [1/rmax, rmax] (np.clip(r, 1 / rmax, rmax))",
        _brn("r_upper_only"),
    ),
    Mistake("r is upside down: r = sigma_B / sigma (batch over running)", _brn("r_inverted")),
    Mistake("d has the wrong sign: d = (mu_B - running_mean) / sigma", _brn("d_sign")),
    Mistake(
        "d is not divided by sigma: d = (mu_B - running_mean) / sigma, in units of the running "
        "standard deviation",
        _brn("d_not_scaled"),
    ),
    Mistake(
        "sigma = sqrt(running_var) without eps: use sqrt(running_var + eps), as batch norm does",
        _brn("no_eps_sigma"),
    ),
    Mistake(
        "this is plain batch norm (r = 1, d = 0): correct the batch statistics with r and d",
        _brn("plain_bn"),
    ),
    Mistake(
        "r and d in the wrong order: xhat = (x - mu_B) / sigma_B * r + d (scale by r, then add d)",
        _brn("d_before_r"),
    ),
    Mistake(
        "unbiased batch variance (N - 1): normalize with the biased one, as batch norm does",
        _brn("unbiased"),
    ),
    Mistake("the affine step is missing: out = gamma * xhat + beta", _brn("no_affine")),
]


@dataclass(frozen=True)
class _RenormCase(_EpsCase):
    name: str
    short: str
    x: np.ndarray  # (N, D)
    gamma: np.ndarray  # (D,)
    beta: np.ndarray  # (D,)
    running_mean: np.ndarray  # (D,)
    running_var: np.ndarray  # (D,)
    rmax: float
    dmax: float
    eps: float | None
    hint: str = ""

    def args(self):
        args = [
            self.x.copy(),
            self.gamma.copy(),
            self.beta.copy(),
            self.running_mean.copy(),
            self.running_var.copy(),
            self.rmax,
            self.dmax,
        ]
        if self.eps is not None:
            args.append(self.eps)
        return args

    def ref_args(self):
        return (
            self.x,
            self.gamma,
            self.beta,
            self.running_mean,
            self.running_var,
            self.rmax,
            self.dmax,
            self.eps_used,
        )


def _renorm_cases():
    rng = _case_rng(17020327)  # Batch Renormalization's arXiv number

    def case(name, short, x, mean, var, rmax, dmax, eps=None, hint=""):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        return _RenormCase(
            name, short, x, gamma, rng.standard_normal(D), mean, var, rmax, dmax, eps, hint
        )

    scales = np.array([0.05, 0.5, 1.0, 4.0, 20.0])
    x_wide = rng.standard_normal((8, 5)) * scales + np.array([-3.0, 0.0, 0.5, 2.0, 9.0])
    ones, zeros = np.ones(5), np.zeros(5)
    return [
        case(
            "rmax=1, dmax=0 (r = 1, d = 0: batch norm), N=8, D=5",
            "rmax=1, dmax=0",
            x_wide,
            zeros,
            ones,
            1.0,
            0.0,
            hint="with rmax=1 and dmax=0, batch renorm is batch norm exactly",
        ),
        case(
            "r and d clipped on both sides (rmax=2, dmax=1), N=8, D=5",
            "clipped",
            x_wide,
            zeros,
            ones,
            2.0,
            1.0,
        ),
        case(
            "no clipping needed (rmax=100, dmax=100), N=16, D=3",
            "unclipped",
            rng.standard_normal((16, 3)) * 2 + 1,
            np.array([0.5, 1.5, 0.0]),
            np.array([3.0, 5.0, 0.5]),
            100.0,
            100.0,
        ),
        case(
            "the smallest batch, N=2, running statistics far off",
            "N=2",
            rng.standard_normal((2, 4)) * 3,
            np.array([1.0, -2.0, 0.0, 4.0]),
            np.array([0.25, 4.0, 1.0, 9.0]),
            3.0,
            5.0,
        ),
        case(
            "a zero running variance (eps matters in sigma), N=6, D=3",
            "running_var = 0",
            rng.standard_normal((6, 3)) * 1e-3,
            np.zeros(3),
            np.zeros(3),
            1e6,
            1e6,
            hint="sigma = sqrt(running_var + eps): the eps keeps it away from zero",
        ),
        case(
            "eps=1e-2 passed explicitly, N=10, D=4",
            "eps passed",
            rng.standard_normal((10, 4)) * 0.1,
            np.zeros(4),
            np.full(4, 0.02),
            3.0,
            5.0,
            eps=1e-2,
            hint="use the eps argument, not a fixed 1e-5",
        ),
    ]


def _renorm_case(fn, case, budget, label):
    args = case.args()
    try:
        out, _ = _unpack(_call(fn, args, budget, label), ("out", "cache"), label)
    except _CallError as e:
        return _Outcome(case, str(e))
    names = ("x", "gamma", "beta", "running_mean", "running_var")
    originals = (case.x, case.gamma, case.beta, case.running_mean, case.running_var)
    modified = _modified(label, names, originals, args[:5])
    if modified:
        if "running" in modified:
            modified += " (return new values; this exercise does not update the running ones)"
        return _Outcome(case, modified)
    want = batch_renorm_reference(*case.ref_args())
    problem = _array_problem(out, "out", want.shape, want.dtype)
    if problem is None and outputs_match(out, want):
        return _Outcome(case)
    hints = []
    if isinstance(out, np.ndarray):
        hints = matching_mistakes(out, BATCH_RENORM_MISTAKES, *case.ref_args(), reference=want)
    return _Outcome(case, problem or _mismatch("out", out, want), {"out": hints})


@_guarded
def check_batch_renorm_forward(batch_renorm_forward):
    """Check `batch_renorm_forward(x, gamma, beta, running_mean, running_var, rmax, dmax,
    eps=1e-5) -> (out, cache)`, training mode, x: (N, D) float64.

    Compared with Ioffe 2017's Alg. 1 on hidden cases (rmax=1/dmax=0, clipping on both sides,
    no clipping, N=2, a zero running variance, an explicit eps). Returns a CheckResult.
    """
    label = _label(batch_renorm_forward, "batch_renorm_forward")
    if not callable(batch_renorm_forward):
        return _not_callable("batch_renorm_forward", batch_renorm_forward)
    cases = _renorm_cases()
    outcomes = _run_cases(lambda c, b: _renorm_case(batch_renorm_forward, c, b, label), cases)
    return _summary(label, outcomes, len(cases), {"out": BATCH_RENORM_MISTAKES})


# --- global statistics from per-process sums -----------------------------------------------------


def global_stats_reference(batches, *, variant=None):
    """The mean and biased variance over the concatenation of the (N_k, D) batches: (D,), (D,)."""
    nonempty = [b for b in batches if len(b)]
    if variant == "mean_of_means":
        means = [b.mean(axis=0) for b in nonempty]
        allx = np.concatenate(batches)
        return np.mean(means, axis=0), allx.var(axis=0)
    if variant == "mean_of_vars":
        return np.concatenate(batches).mean(axis=0), np.mean([b.var(axis=0) for b in nonempty], 0)
    if variant == "both_averaged":
        return (
            np.mean([b.mean(axis=0) for b in nonempty], axis=0),
            np.mean([b.var(axis=0) for b in nonempty], axis=0),
        )
    allx = np.concatenate(batches)  # (sum N_k, D)
    if variant == "unbiased":
        return allx.mean(axis=0), allx.var(axis=0, ddof=1)
    if variant == "std":
        return allx.mean(axis=0), allx.std(axis=0)
    if variant == "first_only":
        return nonempty[0].mean(axis=0), nonempty[0].var(axis=0)
    return allx.mean(axis=0), allx.var(axis=0)


def _gs(variant):
    return lambda batches: global_stats_reference(batches, variant=variant)


GLOBAL_STATS_MISTAKES = [
    Mistake(
        "the plain average of the per-process means: with uneven batches, weight each process by "
        "its count (mean = total sum / total count)",
        _gs("mean_of_means"),
    ),
    Mistake(
        "the average of the per-process variances: it misses the spread between the processes' "
        "means; use var = total sum of squares / total count - mean**2",
        _gs("mean_of_vars"),
    ),
    Mistake(
        "unbiased variance (divided by n - 1): BN normalizes with the biased one (divide by n)",
        _gs("unbiased"),
    ),
    Mistake("returned the standard deviation: return the variance", _gs("std")),
    Mistake("only the first process's statistics: combine every process's sums", _gs("first_only")),
]


@dataclass(frozen=True)
class _StatsCase:
    name: str
    short: str
    batches: tuple  # K arrays (N_k, D)
    hint: str = ""

    def args(self):
        return [[b.copy() for b in self.batches]]


def _stats_cases():
    rng = _case_rng(18030849)  # GroupNorm's arXiv number, where the trouble is shown

    def batch(n, D, loc=0.0, scale=1.0):
        return rng.standard_normal((n, D)) * scale + loc

    return [
        _StatsCase(
            "two processes, equal batches of 4, D=3", "equal", (batch(4, 3), batch(4, 3, 1))
        ),
        _StatsCase(
            "uneven batches (1, 5, 2) with different means, D=4",
            "uneven",
            (batch(1, 4, 3.0), batch(5, 4, -1.0, 2.0), batch(2, 4, 0.5)),
            hint="weight each process by its number of samples",
        ),
        _StatsCase("one process, N=6, D=2", "one process", (batch(6, 2, 2.0, 0.5),)),
        _StatsCase(
            "four processes with a batch of 2 each, offsets up to 5, D=5",
            "4 x 2",
            tuple(batch(2, 5, 5.0 * k / 3, 0.3) for k in range(4)),
        ),
        _StatsCase(
            "a process with no samples (uneven data: (3, 0, 4)), D=3",
            "an empty process",
            (batch(3, 3), np.zeros((0, 3)), batch(4, 3, 1.0)),
            hint=(
                "a process with no samples contributes count 0 and sums 0; avoid per-process "
                "means (0/0)"
            ),
        ),
    ]


def _stats_case(fn, case, budget, label):
    args = case.args()
    try:
        mean, var = _unpack(_call(fn, args, budget, label), ("mean", "var"), label)
    except _CallError as e:
        return _Outcome(case, str(e))
    if not isinstance(args[0], list) or len(args[0]) != len(case.batches):
        return _Outcome(case, f"{label} modified its argument per_process_batches (the list)")
    modified = _modified(
        label,
        [f"per_process_batches[{k}]" for k in range(len(case.batches))],
        case.batches,
        args[0],
    )
    if modified:
        return _Outcome(case, modified)
    want = global_stats_reference(case.batches)
    reasons, hints = [], {}
    for i, (output, got, ref) in enumerate(zip(("mean", "var"), (mean, var), want, strict=True)):
        problem = _array_problem(got, output, ref.shape, ref.dtype)
        if problem is None and outputs_match(got, ref):
            continue
        if isinstance(got, np.ndarray):
            pairs = [
                Mistake(m.hint, lambda b, m=m, i=i: m.compute(b)[i]) for m in GLOBAL_STATS_MISTAKES
            ]
            hints[output] = matching_mistakes(got, pairs, case.batches, reference=ref)
        reasons.append(problem or _mismatch(output, got, ref))
    if not reasons:
        return _Outcome(case)
    return _Outcome(case, "; ".join(reasons), hints)


@_guarded
def check_global_batch_stats(global_batch_stats):
    """Check `global_batch_stats(per_process_batches) -> (mean, var)`.

    per_process_batches: a list of K float64 arrays (N_k, D), N_k may differ (even be 0); mean
    and var: (D,), the mean and biased variance of the concatenated batch, as synchronized BN
    gets them from each process's (count, sum, sum of squares). Returns a CheckResult.
    """
    label = _label(global_batch_stats, "global_batch_stats")
    if not callable(global_batch_stats):
        return _not_callable("global_batch_stats", global_batch_stats)
    cases = _stats_cases()
    outcomes = _run_cases(lambda c, b: _stats_case(global_batch_stats, c, b, label), cases)
    catalogue = {"mean": GLOBAL_STATS_MISTAKES, "var": GLOBAL_STATS_MISTAKES}
    return _summary(label, outcomes, len(cases), catalogue)


TASKS = {
    "ex04_small_batches": [
        task("batch_renorm_forward", check_batch_renorm_forward, ["batch_renorm_forward"]),
        task("global_batch_stats", check_global_batch_stats, ["global_batch_stats"]),
    ],
}
