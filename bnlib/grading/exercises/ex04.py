"""Exercise 4 (small batches): batch renormalization's forward and backward passes, and the
statistics synchronized BN exchanges: each process's (count, sum, sum of squares), and the global
mean and variance combined from them, as tasks of the check engine (bnlib.grading.engine).

Each task: the names it needs, its cases (drawn with case_rng: `hidden_cases` hides them), its
float64 reference and its mistake catalogue.
Shape legend: N batch, D features, K processes.
References: Ioffe 2017, arXiv 1702.03275, Alg. 1 (r and d are constants in backprop: its
stop_gradient); CS231n's forward/backward convention; torch.nn.SyncBatchNorm.
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
    array_problem,
    call,
    case_rng,
    check,
    compare_outputs,
    join_list,
    matching_mistakes,
    mismatch,
    modified,
    outputs_match,
    run_backward_case,
    unpack,
)
from bnlib.i18n import N_, _

__all__ = [
    "BATCH_RENORM_BACKWARD",
    "BATCH_RENORM_BACKWARD_MISTAKES",
    "BATCH_RENORM_FORWARD",
    "BATCH_RENORM_MISTAKES",
    "EXERCISE",
    "GLOBAL_BATCH_STATS",
    "GLOBAL_STATS_MISTAKES",
    "LOCAL_STATS",
    "LOCAL_STATS_MISTAKES",
    "TASKS",
    "batch_renorm_backward_reference",
    "batch_renorm_reference",
    "check_batch_renorm_backward",
    "check_batch_renorm_forward",
    "check_global_batch_stats",
    "check_local_stats",
    "global_stats_cases",
    "global_stats_reference",
    "local_stats_cases",
    "local_stats_reference",
    "renorm_backward_cases",
    "renorm_cases",
]

EXERCISE = "ex04_small_batches"


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
    sigma_b = np.sqrt(var) if v == "no_eps_sigma_b" else np.sqrt(var + eps)
    sigma = np.sqrt(running_var + eps)
    if v == "no_eps_sigma":
        sigma = np.sqrt(running_var)
    elif v == "eps_outside_sigma":
        sigma = np.sqrt(running_var) + eps
    r = (np.sqrt(var) if v == "no_eps_r" else sigma_b) / sigma
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
        N_(
            "r and d are not clipped (or x was normalized with the running statistics, which is "
            "the same thing): r = clip(sigma_B / sigma, 1/rmax, rmax), "
            "d = clip((mu_B - running_mean) / sigma, -dmax, dmax)"
        ),
        _brn("no_clip"),
    ),
    Mistake(
        N_("r only clipped from above: clip it to [1/rmax, rmax] (np.clip(r, 1 / rmax, rmax))"),
        _brn("r_upper_only"),
    ),
    Mistake(N_("r is upside down: r = sigma_B / sigma (batch over running)"), _brn("r_inverted")),
    Mistake(N_("d has the wrong sign: d = (mu_B - running_mean) / sigma"), _brn("d_sign")),
    Mistake(
        N_(
            "d is not divided by sigma: d = (mu_B - running_mean) / sigma, in units of the "
            "running standard deviation"
        ),
        _brn("d_not_scaled"),
    ),
    Mistake(
        N_(
            "sigma = sqrt(running_var) without eps: use sqrt(running_var + eps), as batch norm does"
        ),
        _brn("no_eps_sigma"),
    ),
    Mistake(
        N_(
            "sigma = sqrt(running_var) + eps: eps goes inside the root, "
            "sigma = sqrt(running_var + eps)"
        ),
        _brn("eps_outside_sigma"),
    ),
    Mistake(
        N_(
            "r = sqrt(v_B) / sigma, without eps (x.std(axis=0) has none): r = sigma_B / sigma "
            "with sigma_B = sqrt(v_B + eps), the sigma_B that normalizes x"
        ),
        _brn("no_eps_r"),
    ),
    Mistake(
        N_(
            "sigma_B = sqrt(v_B) without eps (x.std(axis=0) has none): use "
            "sigma_B = sqrt(v_B + eps), in the normalization and in r"
        ),
        _brn("no_eps_sigma_b"),
    ),
    Mistake(
        N_("this is plain batch norm (r = 1, d = 0): correct the batch statistics with r and d"),
        _brn("plain_bn"),
    ),
    Mistake(
        N_(
            "r and d in the wrong order: xhat = (x - mu_B) / sigma_B * r + d (scale by r, then "
            "add d)"
        ),
        _brn("d_before_r"),
    ),
    Mistake(
        N_("unbiased batch variance (N - 1): normalize with the biased one, as batch norm does"),
        _brn("unbiased"),
    ),
    Mistake(N_("the affine step is missing: out = gamma * xhat + beta"), _brn("no_affine")),
]


@dataclass(frozen=True)
class RenormCase(EpsCase):
    name: str
    short: str
    x: np.ndarray  # (N, D)
    gamma: np.ndarray  # (D,)
    beta: np.ndarray  # (D,)
    running_mean: np.ndarray  # (D,)
    running_var: np.ndarray  # (D,)
    rmax: float
    dmax: float
    eps: float | None  # None: call without eps, so the learner's default 1e-5 is used
    hint: str = ""
    dout: np.ndarray | None = None  # the upstream gradient, for the backward task

    def args(self):
        """Fresh copies of the forward's arguments, so changes made in place can be detected."""
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

    def grad_args(self):
        """What the backward reference and the backward mistakes take."""
        return (
            self.dout,
            self.x,
            self.gamma,
            self.running_mean,
            self.running_var,
            self.rmax,
            self.dmax,
            self.eps_used,
        )


def renorm_cases():
    rng = case_rng(17020327)  # Batch Renormalization's arXiv number

    def case(name, short, x, mean, var, rmax, dmax, eps=None, hint=""):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        return RenormCase(
            name, short, x, gamma, rng.standard_normal(D), mean, var, rmax, dmax, eps, hint
        )

    scales = np.array([0.05, 0.5, 1.0, 4.0, 20.0])
    x_wide = rng.standard_normal((8, 5)) * scales + np.array([-3.0, 0.0, 0.5, 2.0, 9.0])
    ones, zeros = np.ones(5), np.zeros(5)
    return [
        case(
            N_("rmax=1, dmax=0 (r = 1, d = 0: batch norm), N=8, D=5"),
            N_("rmax=1, dmax=0"),
            x_wide,
            zeros,
            ones,
            1.0,
            0.0,
            hint=N_("with rmax=1 and dmax=0, batch renorm is batch norm exactly"),
        ),
        case(
            N_("r and d clipped on both sides (rmax=2, dmax=1), N=8, D=5"),
            N_("clipped"),
            x_wide,
            zeros,
            ones,
            2.0,
            1.0,
        ),
        case(
            N_("no clipping needed (rmax=100, dmax=100), N=16, D=3"),
            N_("unclipped"),
            rng.standard_normal((16, 3)) * 2 + 1,
            np.array([0.5, 1.5, 0.0]),
            np.array([3.0, 5.0, 0.5]),
            100.0,
            100.0,
        ),
        case(
            N_("the smallest batch, N=2, D=4, running statistics far off"),
            N_("N=2"),
            rng.standard_normal((2, 4)) * 3,
            np.array([1.0, -2.0, 0.0, 4.0]),
            np.array([0.25, 4.0, 1.0, 9.0]),
            3.0,
            5.0,
        ),
        case(
            N_("a zero running variance (eps matters in sigma), N=6, D=3"),
            N_("running_var = 0"),
            rng.standard_normal((6, 3)) * 1e-3,
            np.zeros(3),
            np.zeros(3),
            1e6,
            1e6,
            hint=N_("sigma = sqrt(running_var + eps): the eps keeps it away from zero"),
        ),
        case(
            N_("eps=1e-2 passed explicitly, N=10, D=4"),
            N_("eps passed"),
            rng.standard_normal((10, 4)) * 0.1,
            np.zeros(4),
            np.full(4, 0.02),
            3.0,
            5.0,
            eps=1e-2,
            hint=N_("use the eps argument, not a fixed 1e-5"),
        ),
    ]


_RETURN_NEW = N_("return new values; this exercise does not update the running ones")

# NB: a named mistake may differ from the reference by as little as float32's rounding (eps
# outside the root or missing from r: a relative 1e-5 where the variances are near 1), and a
# float64 formula that loses digits to cancellation is no float32 either: the size of an error
# alone says nothing about float32 here (float32_by_size=False in every task of this exercise).
BATCH_RENORM_FORWARD = Task(
    "batch_renorm_forward",
    needs=("batch_renorm_forward",),
    cases=renorm_cases,
    reference=batch_renorm_reference,
    outputs=("out",),
    extra=("cache",),
    inputs=("x", "gamma", "beta", "running_mean", "running_var"),
    in_place_advice={"running_mean": _RETURN_NEW, "running_var": _RETURN_NEW},
    mistakes={"out": BATCH_RENORM_MISTAKES},
    float32_by_size=False,
)


def check_batch_renorm_forward(batch_renorm_forward) -> CheckResult:
    """Check `batch_renorm_forward(x, gamma, beta, running_mean, running_var, rmax, dmax,
    eps=1e-5) -> (out, cache)`, training mode, x: (N, D) float64.

    Compared with Ioffe 2017's Alg. 1 on hidden cases (rmax=1/dmax=0, clipping on both sides,
    no clipping, N=2, a zero running variance, an explicit eps). Returns a CheckResult.
    """
    return check(BATCH_RENORM_FORWARD, batch_renorm_forward)


# --- batch renormalization, backward: r and d are constants -------------------------------------


def _renorm_parts(x, running_mean, running_var, rmax, dmax, eps):
    """z = (x - mu_B) / sigma_B (N, D); sigma_B, sigma, r, d (D,); where r and d are not clipped."""
    mu = x.mean(axis=0)  # (D,)
    sigma_b = np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)  # (D,), from the biased variance
    sigma = np.sqrt(running_var + eps)  # (D,)
    r_raw, d_raw = sigma_b / sigma, (mu - running_mean) / sigma
    r, d = np.clip(r_raw, 1 / rmax, rmax), np.clip(d_raw, -dmax, dmax)
    r_free = (r_raw > 1 / rmax) & (r_raw < rmax)  # where clip passes a gradient on (autograd)
    d_free = (d_raw > -dmax) & (d_raw < dmax)
    return (x - mu) / sigma_b, sigma_b, sigma, r, d, r_free, d_free


def _bn_dx(dz, z, sigma_b):
    """The gradient through z = (x - mu_B) / sigma_B given dL/dz: batch norm's closed form."""
    return (dz - dz.mean(axis=0) - z * (dz * z).mean(axis=0)) / sigma_b


def batch_renorm_backward_reference(
    dout, x, gamma, running_mean, running_var, rmax, dmax, eps=1e-5, *, variant=None
):
    """Gradients of Batch Renorm's training forward, r and d held constant: (dx, dgamma, dbeta).

    xhat = z * r + d with z = (x - mu_B) / sigma_B, out = gamma * xhat + beta; r and d are
    constants for backprop (Ioffe 2017, Alg. 1: stop_gradient), so dx is batch norm's backward
    applied to dL/dz = dout * gamma * r: dx = (dz - mean(dz) - z * mean(dz * z)) / sigma_B,
    means over the batch; dgamma = sum(dout * xhat), dbeta = sum(dout), over axis 0.
    dout, x: (N, D); gamma, running_mean, running_var: (D,).
    variant: None, or the name of a known mistake (for the diagnosis).
    """
    v = variant
    z, sigma_b, sigma, r, d, r_free, d_free = _renorm_parts(
        x, running_mean, running_var, rmax, dmax, eps
    )
    xhat = z * r + d  # (N, D)
    g = dout * gamma  # dL/dxhat, (N, D)
    dx = _bn_dx(g * r, z, sigma_b)
    if v == "through_rd":  # autograd through clip: r and d pass a gradient where not clipped
        dx = dx + r_free * (g * z).mean(axis=0) * z / sigma + d_free * g.mean(axis=0) / sigma
    elif v == "running_stats":  # xhat = (x - running_mean) / sigma differentiated: no clip
        dx = g / sigma
    elif v == "no_r":
        dx = _bn_dx(g, z, sigma_b)
    elif v == "no_gamma":
        dx = _bn_dx(dout * r, z, sigma_b)
    elif v == "constants":  # mu_B and sigma_B held constant too
        dx = g * r / sigma_b
    elif v == "xhat_in_closed_form":  # BN's closed form with the renormalized xhat
        dz = g * r
        dx = (dz - dz.mean(axis=0) - xhat * (dz * xhat).mean(axis=0)) / sigma_b
    dgamma, dbeta = (dout * xhat).sum(axis=0), dout.sum(axis=0)
    if v == "swapped":
        dgamma, dbeta = dbeta, dgamma
    elif v == "dgamma_z":
        dgamma = (dout * z).sum(axis=0)
    elif v == "axis1":
        dgamma, dbeta = (dout * xhat).sum(axis=1), dout.sum(axis=1)
    return dx, dgamma, dbeta


def _brb(variant, output):
    index = ("dx", "dgamma", "dbeta").index(output)
    return lambda dout, *args: batch_renorm_backward_reference(dout, *args, variant=variant)[index]


_THROUGH_RD = N_(
    "dx: the gradient flowed through r and d (autograd through clip, or the unclipped "
    "xhat = (x - running_mean) / sigma differentiated); Batch Renorm treats r and d as constants "
    "(the paper's stop_gradient), so x reaches the output only through mu_B, sigma_B and "
    "(x - mu_B) / sigma_B, as in batch norm"
)
_SWAPPED_RENORM = N_("dgamma and dbeta swapped: dgamma = sum(dout * xhat), dbeta = sum(dout)")
_AXIS1_RENORM = N_(
    "dgamma and dbeta summed over axis 1: sum over the batch, axis 0, one per feature"
)

BATCH_RENORM_BACKWARD_MISTAKES = {
    "dx": [
        Mistake(_THROUGH_RD, _brb("through_rd", "dx")),
        Mistake(_THROUGH_RD, _brb("running_stats", "dx")),
        Mistake(
            N_(
                "dx: the factor r is missing (this is plain batch norm's dx): xhat = z * r + d "
                "with z = (x - mu_B) / sigma_B, so the gradient reaching z is dout * gamma * r"
            ),
            _brb("no_r", "dx"),
        ),
        Mistake(
            N_("dx: gamma is missing; the gradient reaching xhat is dout * gamma"),
            _brb("no_gamma", "dx"),
        ),
        Mistake(
            N_(
                "dx: mu_B and sigma_B were treated as constants along with r and d; only r and d "
                "are constants, the paths through mu_B and sigma_B stay, as in batch norm's "
                "backward"
            ),
            _brb("constants", "dx"),
        ),
        Mistake(
            N_(
                "dx: batch norm's closed form was used with the renormalized xhat; it needs "
                "z = (x - mu_B) / sigma_B, before r and d"
            ),
            _brb("xhat_in_closed_form", "dx"),
        ),
    ],
    "dgamma": [
        Mistake(_SWAPPED_RENORM, _brb("swapped", "dgamma")),
        Mistake(
            N_(
                "dgamma = sum(dout * (x - mu_B) / sigma_B): gamma multiplies xhat, after r and d, "
                "so dgamma = sum(dout * xhat)"
            ),
            _brb("dgamma_z", "dgamma"),
        ),
        Mistake(_AXIS1_RENORM, _brb("axis1", "dgamma")),
    ],
    "dbeta": [
        Mistake(_SWAPPED_RENORM, _brb("swapped", "dbeta")),
        Mistake(_AXIS1_RENORM, _brb("axis1", "dbeta")),
    ],
}


def renorm_backward_cases():
    """The cases, each with its random dout (NB: all ones hides bugs). Each x is built with exact
    batch means and spreads, so whether r and d are clipped does not depend on the draw (nor on
    the grading secret)."""
    rng = case_rng(1702032717)

    def x_with(N, stds, means):
        z = rng.standard_normal((N, len(stds)))
        z = (z - z.mean(axis=0)) / z.std(axis=0)  # (N, D): mean 0, biased std 1, exactly enough
        return z * np.asarray(stds) + np.asarray(means)

    def case(name, short, x, mean, var, rmax, dmax, eps=None):
        D = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        beta = rng.standard_normal(D)
        dout = rng.standard_normal(x.shape)
        return RenormCase(name, short, x, gamma, beta, mean, var, rmax, dmax, eps, dout=dout)

    zeros, ones = np.zeros(4), np.ones(4)
    # stds vs sqrt(running_var) = 1 set r, means vs running_mean = 0 set d, feature by feature
    return [
        case(
            N_("rmax=1, dmax=0 (r = 1, d = 0: batch norm's gradient), N=8, D=4"),
            N_("rmax=1, dmax=0"),
            x_with(8, [0.5, 1.4, 2.0, 3.0], [1.0, -2.0, 0.5, 3.0]),  # NB: not on a bound
            zeros,
            ones,
            1.0,
            0.0,
        ),
        case(
            N_("no clipping (rmax=dmax=100), r far from 1 and d far from 0, N=10, D=4"),
            N_("unclipped"),
            x_with(10, [0.4, 1.7, 3.0, 0.8], [1.5, -2.0, 0.7, -0.3]),
            zeros,
            ones,
            100.0,
            100.0,
        ),
        case(
            N_("r and d clipped on every feature (rmax=1.5, dmax=0.5), N=12, D=4"),
            N_("all clipped"),
            x_with(12, [0.2, 3.0, 0.3, 5.0], [2.0, -3.0, 1.0, -4.0]),
            zeros,
            ones,
            1.5,
            0.5,
        ),
        case(
            N_("some features clipped, some not (rmax=2, dmax=1), N=9, D=4"),
            N_("mixed"),
            x_with(9, [0.3, 1.3, 4.0, 0.8], [0.4, -2.5, 3.0, -0.2]),
            zeros,
            ones,
            2.0,
            1.0,
        ),
        case(
            N_("eps=1e-2 passed explicitly, small spreads, no clipping, N=6, D=3"),
            N_("eps passed"),
            x_with(6, [0.05, 0.1, 0.2], [0.02, -0.05, 0.1]),
            np.array([0.0, 0.05, -0.1]),
            np.array([0.01, 0.02, 0.05]),
            100.0,
            100.0,
            eps=1e-2,
        ),
    ]


BATCH_RENORM_BACKWARD = Task(
    "batch_renorm_backward",
    needs=("batch_renorm_forward", "batch_renorm_backward"),
    cases=renorm_backward_cases,
    reference=batch_renorm_backward_reference,
    outputs=("dx", "dgamma", "dbeta"),
    mistakes=BATCH_RENORM_BACKWARD_MISTAKES,
    run_case=run_backward_case,
    setup_reference=batch_renorm_reference,
    float32_by_size=False,
)


def check_batch_renorm_backward(batch_renorm_forward, batch_renorm_backward) -> CheckResult:
    """Check `batch_renorm_backward(dout, cache) -> (dx, dgamma, dbeta)`, with cache from
    `batch_renorm_forward`, r and d treated as constants (Ioffe 2017's stop_gradient).

    dout: (N, D), random; compared with batch_renorm_backward_reference on hidden cases where
    r and d are clipped everywhere, nowhere, on some features, and rmax=1/dmax=0 (plain BN).
    Returns a CheckResult; the score is the fraction of cases passed.
    """
    return check(BATCH_RENORM_BACKWARD, batch_renorm_forward, batch_renorm_backward)


# --- what each process sends: its count, sum and sum of squares ----------------------------------


def local_stats_reference(x, *, variant=None):
    """(count, sum, sum of squares) of one process's batch x (N, D): N, (D,), (D,)."""
    v = variant
    count = {"size": x.size, "features": x.shape[1]}.get(v, x.shape[0])
    total, squares = x.sum(axis=0), (x**2).sum(axis=0)
    with np.errstate(all="ignore"):  # NB: not x.mean(), which warns (visibly) when N = 0
        mean = total / len(x)  # (D,), NaN when N = 0
    if v == "mean":
        with np.errstate(all="ignore"):
            total, squares = mean, squares / len(x)
    elif v == "deviations":
        squares = ((x - mean) ** 2).sum(axis=0)
    elif v == "square_of_sum":
        squares = x.sum(axis=0) ** 2
    elif v == "axis1":
        total, squares = x.sum(axis=1), (x**2).sum(axis=1)
    return count, total, squares


def _ls(variant, output):
    index = ("count", "sum", "sumsq").index(output)

    def compute(x):
        value = local_stats_reference(x, variant=variant)[index]
        if not np.isfinite(value).all():  # NB: a mean of no samples (0/0) explains no NaN
            raise FloatingPointError(f"{variant} gives NaN here")
        return value

    return compute


_LS_MEAN = N_(
    "means instead of sums: send sums, which add up across processes (the counts then give the "
    "global mean)"
)
_LS_AXIS1 = N_("summed over axis 1 (the features): sum over the batch, axis 0, one per feature")

LOCAL_STATS_MISTAKES = {
    "count": [
        Mistake(
            N_("count is x.size (N * D): count the samples, N = x.shape[0]"), _ls("size", "count")
        ),
        Mistake(
            N_("count is the number of features: count the samples, N = x.shape[0]"),
            _ls("features", "count"),
        ),
    ],
    "sum": [Mistake(_LS_MEAN, _ls("mean", "sum")), Mistake(_LS_AXIS1, _ls("axis1", "sum"))],
    "sumsq": [
        Mistake(_LS_MEAN, _ls("mean", "sumsq")),
        Mistake(
            N_(
                "sumsq is the sum of squared deviations from the local mean: send the sum of the "
                "squares themselves, sum(x**2); the global mean is not known yet"
            ),
            _ls("deviations", "sumsq"),
        ),
        Mistake(
            N_("sumsq is the square of the sum: square first, then sum, sum(x**2)"),
            _ls("square_of_sum", "sumsq"),
        ),
        Mistake(_LS_AXIS1, _ls("axis1", "sumsq")),
    ],
}


@dataclass(frozen=True)
class LocalCase:
    name: str
    short: str
    x: np.ndarray  # (N, D)
    hint: str = ""

    def args(self):
        return [self.x.copy()]


def local_stats_cases():
    rng = case_rng(8)
    return [
        LocalCase(
            N_("N=5, D=3"), N_("N=5"), rng.standard_normal((5, 3)) * 2 + np.array([1.0, -3, 0.5])
        ),
        LocalCase(N_("a batch of one, N=1, D=4"), N_("N=1"), rng.standard_normal((1, 4)) + 2.0),
        LocalCase(
            N_("a process with no samples, N=0, D=3"),
            N_("N=0"),
            np.zeros((0, 3)),
            hint=N_("an empty batch sends count 0 and sums of zeros (its mean would be 0/0)"),
        ),
        LocalCase(N_("N=7, D=2"), N_("N=7"), rng.standard_normal((7, 2)) * 0.5 - 1.0),
    ]


def _count_problem(count, N):
    """Why `count` is not the number N, or None (any integer-valued number passes)."""
    if isinstance(count, bool) or np.ndim(count) != 0 or np.asarray(count).dtype.kind not in "iuf":
        return _("count is a {type}, expected a number (N = {N})").format(
            type=type(count).__name__, N=N
        )
    if count != N:
        return _("count is {count}, expected {N} (the number of samples in x)").format(
            count=count, N=N
        )
    return None


def _local_case(task, functions, case, budget, labels):
    """count is a number (any integer-valued one), sum and sumsq arrays: compared one by one, the
    mistakes matched on numbers too."""
    fn, label = functions[-1], labels[-1]
    args = case.args()
    try:
        got = unpack(call(fn, args, budget, label), task.outputs, label)
    except CallError as e:
        return Outcome(case, str(e))
    changed = modified(label, task.inputs, (case.x,), args)
    if changed:
        return Outcome(case, changed)
    want = task.reference(case.x)
    reasons, hints = [], {}
    for output, value, ref in zip(task.outputs, got, want, strict=True):
        if output == "count":
            problem = _count_problem(value, ref)
            if problem is None:
                continue
        else:
            problem = array_problem(value, output, ref.shape, ref.dtype)
            if problem is None and outputs_match(value, ref):
                continue
        if isinstance(value, np.ndarray | int | float | np.number) and not isinstance(value, bool):
            hints[output] = matching_mistakes(value, task.mistakes[output], case.x, reference=ref)
        named = bool(hints.get(output))
        reasons.append(
            problem or mismatch(output, value, ref, float32_note=not named, float32_by_size=False)
        )
    if not reasons:
        return Outcome(case)
    return Outcome(case, join_list(reasons), hints)


LOCAL_STATS = Task(
    "local_stats",
    needs=("local_stats",),
    cases=local_stats_cases,
    reference=local_stats_reference,
    outputs=("count", "sum", "sumsq"),
    inputs=("x",),
    mistakes=LOCAL_STATS_MISTAKES,
    run_case=_local_case,
    float32_by_size=False,
)


def check_local_stats(local_stats) -> CheckResult:
    """Check `local_stats(x) -> (count, sum, sumsq)`: what one process sends to the all-reduce.

    x: (N, D) float64, N may be 0; count: N (a number); sum, sumsq: (D,), the sums of x and of
    x**2 over the batch. Returns a CheckResult.
    """
    return check(LOCAL_STATS, local_stats)


# --- global statistics from per-process sums -----------------------------------------------------


def _per_process(counts, sums, sumsqs):
    """The nonempty processes' means and biased variances: (K', D), (K', D)."""
    keep = counts > 0
    n = counts[keep][:, None]  # (K', 1)
    means = sums[keep] / n
    return means, sumsqs[keep] / n - means**2


def global_stats_reference(counts, sums, sumsqs, *, variant=None):
    """The global mean and biased variance from per-process sums: (D,), (D,).

    n = sum_k counts[k], mean = sum_k sums[k] / n, var = sum_k sumsqs[k] / n - mean**2.
    counts: (K,); sums, sumsqs: (K, D). variant: None, or the name of a known mistake.
    NB: the checks compare with the statistics of the data itself (`StatsCase.want`): this
    formula is that exact only where the values' offset is moderate (see the case list).
    """
    v = variant
    n = counts.sum()
    if v == "by_processes":
        n = len(counts)
    elif v == "first_only":
        first = slice(k := int(np.argmax(counts > 0)), k + 1)  # the first nonempty process
        counts, sums, sumsqs = counts[first], sums[first], sumsqs[first]
        n = counts.sum()
    mean = sums.sum(axis=0) / n
    if v == "mean_of_means":
        mean = _per_process(counts, sums, sumsqs)[0].mean(axis=0)
    var = sumsqs.sum(axis=0) / n - mean**2
    if v == "mean_of_vars":
        var = _per_process(counts, sums, sumsqs)[1].mean(axis=0)
    elif v == "weighted_vars":
        keep = counts > 0
        var = (counts[keep][:, None] * _per_process(counts, sums, sumsqs)[1]).sum(axis=0) / n
    elif v == "no_mean_squared":
        var = sumsqs.sum(axis=0) / n
    elif v == "unbiased":
        var = var * n / (n - 1)
    elif v == "std":
        var = np.sqrt(var)
    return mean, var


def _gs(variant, output):
    index = ("mean", "var").index(output)
    return lambda *args: global_stats_reference(*args, variant=variant)[index]


_MEAN_OF_MEANS = N_(
    "the plain average of the per-process means: with uneven batches, weight each process by its "
    "count (the global mean is the total sum over the total count)"
)
_WITHIN_ONLY = N_(
    "an average of the per-process variances (weighted or not): it misses the spread between the "
    "processes' means; take the global mean of x**2 and subtract the global mean squared"
)
_BY_K = N_("divided by the number of processes K: divide by the total count n = sum of the counts")
_FIRST = N_("only the first process's statistics: combine every process's sums")

GLOBAL_STATS_MISTAKES = {
    "mean": [
        Mistake(_MEAN_OF_MEANS, _gs("mean_of_means", "mean")),
        Mistake(_BY_K, _gs("by_processes", "mean")),
        Mistake(_FIRST, _gs("first_only", "mean")),
    ],
    "var": [
        Mistake(_MEAN_OF_MEANS, _gs("mean_of_means", "var")),
        Mistake(_WITHIN_ONLY, _gs("mean_of_vars", "var")),
        Mistake(_WITHIN_ONLY, _gs("weighted_vars", "var")),
        Mistake(
            N_(
                "var is the mean of x**2: subtract the mean squared (the variance is "
                "E[x^2] - E[x]^2)"
            ),
            _gs("no_mean_squared", "var"),
        ),
        Mistake(
            N_(
                "unbiased variance (divided by n - 1): BN normalizes with the biased one (divide "
                "by n)"
            ),
            _gs("unbiased", "var"),
        ),
        Mistake(N_("returned the standard deviation: return the variance"), _gs("std", "var")),
        Mistake(_BY_K, _gs("by_processes", "var")),
        Mistake(_FIRST, _gs("first_only", "var")),
    ],
}


@dataclass(frozen=True)
class StatsCase:
    name: str
    short: str
    batches: tuple  # K arrays (N_k, D): the data the processes' sums come from
    hint: str = ""

    @property
    def sent(self):
        """What the K processes send: counts (K,) int64, sums (K, D), sumsqs (K, D)."""
        counts = np.array([len(b) for b in self.batches], dtype=np.int64)
        sums = np.stack([b.sum(axis=0) for b in self.batches])
        sumsqs = np.stack([(b**2).sum(axis=0) for b in self.batches])
        return counts, sums, sumsqs

    def args(self):
        return [a.copy() for a in self.sent]

    def want(self):
        """The truth: the mean and biased variance of the data itself, two-pass, in float64."""
        allx = np.concatenate(self.batches)  # (sum N_k, D)
        mean = allx.mean(axis=0)
        return mean, ((allx - mean) ** 2).mean(axis=0)


# NB: from sums of squares no formula is exact when |offset| / spread is huge (x**2 has rounded
# the spread away before anyone combines anything): the error grows like (offset / spread)**2
# times float64's 1e-16. At offset / spread ~ 1e3 the direct formula's relative error stays below
# ~1e-8 (measured over 2,000 secrets: 2.8e-9 for the direct formula, 2.4e-9 centered, 1.4e-9 for
# Chan's combine), so this task's tolerance is _STATS_RTOL, 7 times that, not the engine's RTOL
# (1e-9); at 1e4 it reached 3e-7. So the check asks for the maths, not for a numerically stable
# combine, and the exercise says so. A result rounded to float32 is still off by up to 6e-8 (half
# a float32 step, 2**-24) per entry, so it fails (tests/test_checks_precision.py).
_LARGE_OFFSET = 1e3
_STATS_RTOL = 2e-8


def global_stats_cases():
    rng = case_rng(18030849)  # GroupNorm's arXiv number, where the trouble is shown

    def batch(n, D, loc=0.0, scale=1.0):
        return rng.standard_normal((n, D)) * scale + loc

    return [
        StatsCase(
            N_("two processes, equal batches of 4, D=3"),
            N_("equal"),
            (batch(4, 3), batch(4, 3, 1.5)),
        ),
        StatsCase(
            N_("uneven batches (1, 5, 2) with different means, D=4"),
            N_("uneven"),
            (batch(1, 4, 3.0), batch(5, 4, -1.0, 2.0), batch(2, 4, 0.5)),
            hint=N_("weight each process by its number of samples"),
        ),
        StatsCase(N_("one process, N=6, D=2"), N_("one process"), (batch(6, 2, 2.0, 0.5),)),
        StatsCase(
            N_("four processes with a batch of 2 each, offsets up to 5, D=5"),
            N_("4 x 2"),
            tuple(batch(2, 5, 5.0 * k / 3, 0.3) for k in range(4)),
        ),
        StatsCase(
            N_("a process with no samples (uneven data: (3, 0, 4)), D=3"),
            N_("an empty process"),
            (batch(3, 3), np.zeros((0, 3)), batch(4, 3, 1.0)),
            hint=N_(
                "a process with no samples sends count 0 and sums 0; avoid per-process means (0/0)"
            ),
        ),
        StatsCase(
            N_("values near 1e3 with spreads near 1, batches (2, 5, 3), D=3"),
            N_("large offsets"),
            (
                batch(2, 3, _LARGE_OFFSET),
                batch(5, 3, _LARGE_OFFSET + 1),
                batch(3, 3, _LARGE_OFFSET),
            ),
        ),
    ]


def _stats_case(task, functions, case, budget, labels):
    """The outputs compared with the statistics of the data itself (case.want()), the mistakes
    computed on what the processes sent."""
    fn, label = functions[-1], labels[-1]
    args = case.args()
    try:
        got = unpack(call(fn, args, budget, label), task.outputs, label)
    except CallError as e:
        return Outcome(case, str(e))
    sent = case.sent
    changed = modified(label, task.inputs, sent, args)
    if changed:
        return Outcome(case, changed)
    outputs = dict(zip(task.outputs, got, strict=True))
    return compare_outputs(
        outputs,
        case.want(),
        task.mistakes,
        sent,
        case,
        float32_by_size=False,
        rtol=task.rtol,
        atol=task.atol,
    )


GLOBAL_BATCH_STATS = Task(
    "global_batch_stats",
    needs=("global_batch_stats",),
    cases=global_stats_cases,
    reference=None,  # NB: the truth is the data's own statistics (StatsCase.want), not a formula
    outputs=("mean", "var"),
    inputs=("counts", "sums", "sumsqs"),
    mistakes=GLOBAL_STATS_MISTAKES,
    run_case=_stats_case,
    float32_by_size=False,
    rtol=_STATS_RTOL,  # the float64 truth itself loses digits at large offsets: see _LARGE_OFFSET
)


def check_global_batch_stats(global_batch_stats) -> CheckResult:
    """Check `global_batch_stats(counts, sums, sumsqs) -> (mean, var)`.

    counts: (K,) int64, each process's number of samples (possibly 0); sums, sumsqs: (K, D)
    float64, each process's sum of x and of x**2 over its batch. mean and var: (D,), the mean
    and biased variance of the union of the batches, compared with those of the data itself
    (offsets up to 1e3 times the spread, where the direct formula is accurate).
    Returns a CheckResult.
    """
    return check(GLOBAL_BATCH_STATS, global_batch_stats)


TASKS = [BATCH_RENORM_FORWARD, BATCH_RENORM_BACKWARD, LOCAL_STATS, GLOBAL_BATCH_STATS]
