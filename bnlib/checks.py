"""Checks for the exercises: run the learner's code on hidden cases, compare it with bnlib's
reference, and name the likely mistake.

A check takes the learner's functions and returns a `CheckResult` (passed, score, feedback) that
shows itself as a PASS/FAIL box in Jupyter and as one line of text elsewhere. A check never
raises, prints or plots, whatever the learner's code does: returns None, the wrong type, shape or
dtype, NaN, raises, modifies its inputs in place, or never returns (each call of learner code runs
in a daemon thread and is abandoned after CALL_TIMEOUT seconds; a whole check after
CHECK_TIMEOUT).

Diagnosis: a failing output is compared with the outputs of known wrong implementations
(`Mistake`s: unbiased variance, eps outside the square root, statistics over the wrong axis, ...);
the hint of the one that matches goes into the feedback. `matching_mistakes` is generic, so later
exercises' checks reuse it with their own catalogues.

Scoring: the score is the fraction of hidden cases passed; a check passes only when all pass.

`TASKS` maps an exercise id to its graded tasks; `bnlib grade` runs them against the namespace
of a learner's executed notebook.

Shape legend: N batch, D features, C channels, H, W height and width.
References: Ioffe & Szegedy 2015 (arXiv 1502.03167), Alg. 1 and §3; CS231n's assignment 2
(batchnorm_forward / batchnorm_backward / batchnorm_backward_alt).
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bnlib import functional as F

__all__ = [
    "BACKWARD_MISTAKES",
    "CALL_TIMEOUT",
    "CHECK_TIMEOUT",
    "FORWARD_MISTAKES",
    "SPATIAL_BACKWARD_MISTAKES",
    "SPATIAL_FORWARD_MISTAKES",
    "CheckResult",
    "Mistake",
    "Task",
    "TASKS",
    "check_batchnorm_backward",
    "check_batchnorm_forward",
    "check_spatial_batchnorm_backward",
    "check_spatial_batchnorm_forward",
    "hidden_cases",
    "matching_mistakes",
    "outputs_match",
    "run_tasks",
    "task",
]

CALL_TIMEOUT = 10.0  # seconds one call of learner code may take before the check gives up
CHECK_TIMEOUT = 20.0  # seconds all the calls of one check may take together
RTOL = 1e-6  # float64 implementations of the same formula agree to ~1e-12; mistakes differ by more
ATOL = 1e-9  # times the largest |reference| entry, so the tolerance follows the output's scale

_NOT_IMPLEMENTED_HINT = "replace `raise NotImplementedError` with your code"


# --- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, score (out of max_score) and one line of feedback."""

    passed: bool
    score: float
    feedback: str
    max_score: float = 1.0

    def _verdict(self):
        return "PASS" if self.passed else "FAIL"

    def __str__(self):
        return f"{self._verdict()} ({self.score:.2f}/{self.max_score:g}) {self.feedback}"

    def _repr_html_(self):
        # The emoji and the word carry the verdict where a code host strips the inline styles.
        if self.passed:
            mark, border, background, color = "✅", "#2e7d32", "#e8f5e9", "#1b5e20"
        else:
            mark, border, background, color = "❌", "#c62828", "#ffebee", "#b71c1c"
        style = (
            f"border: 1px solid {border}; border-left: 6px solid {border}; "
            f"background: {background}; color: {color}; padding: 6px 10px; margin: 4px 0; "
            "border-radius: 4px; font-family: sans-serif; line-height: 1.4"
        )
        return (
            f'<div class="bnlib-check" style="{style}">'
            f"<strong>{mark} {self._verdict()}</strong> "
            f"&middot; score {self.score:.2f}/{self.max_score:g}<br>{self._feedback_html()}</div>"
        )

    def _feedback_html(self):
        """The feedback with a line break before each of its parts, the diagnosis in bold."""
        text = html.escape(self.feedback)
        for part in ("First failing case", "Hint:", "Note:"):
            text = text.replace(f". {part}", f".<br>{part}")
        for part in ("Likely mistakes:", "Likely mistake:"):
            text = text.replace(f". {part}", f".<br><strong>{part}</strong>")
        return text


def _fail(feedback, score=0.0):
    return CheckResult(False, float(score), feedback)


# --- comparing outputs and diagnosing mistakes ---------------------------------------------------


def outputs_match(got, want, rtol=RTOL, atol=ATOL):
    """Whether `got` has `want`'s shape and is close to it, NaN where `want` is NaN.

    The absolute tolerance is atol times the largest finite |want| (at least 1), so one tolerance
    serves outputs of every scale (a normalized output ~1, a gradient through a tiny variance ~1e3).
    """
    try:
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if got.shape != want.shape:
        return False
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return bool(np.allclose(got, want, rtol=rtol, atol=atol * scale, equal_nan=True))


@dataclass(frozen=True)
class Mistake:
    """A known wrong implementation: `compute(*args)` is what it outputs on a case's arguments."""

    hint: str
    compute: Callable[..., Any]


def matching_mistakes(got, mistakes: Sequence[Mistake], *args, reference=None) -> list[str]:
    """The hints of the mistakes whose output on `args` matches `got`, in catalogue order.

    With `reference` (the right output), a mistake that gives the right output on these arguments
    says nothing and is skipped. So is a mistake whose `compute` raises on them.
    """
    hints = []
    for mistake in mistakes:
        try:
            with np.errstate(all="ignore"):  # a mistaken formula may well divide by zero
                expected = mistake.compute(*args)
        except Exception:  # noqa: BLE001 - a mistake that cannot run here simply does not match
            continue
        if reference is not None and outputs_match(expected, reference):
            continue
        if outputs_match(got, expected):
            hints.append(mistake.hint)
    return hints


def _best_hint(hint_lists, catalogue):
    """The hint explaining the most failing cases; ties go to the earlier one in the catalogue."""
    order = {m.hint: i for i, m in enumerate(catalogue)}
    counts = {}
    for hints in hint_lists:
        for h in hints:
            counts[h] = counts.get(h, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda h: (-counts[h], order.get(h, len(order))))


# --- running learner code safely -----------------------------------------------------------------


class _Budget:
    """The time one check may still spend in learner code."""

    def __init__(self):
        self.deadline = time.monotonic() + CHECK_TIMEOUT

    def next_timeout(self):
        return min(CALL_TIMEOUT, max(0.0, self.deadline - time.monotonic()))


class _Stop(Exception):
    """Learner code did not return in time: the check stops calling it (it may still be running)."""


class _CallError(Exception):
    """The learner's call raised, or returned something unusable: the message says which."""


def _one_line(text, limit=200):
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_BNLIB_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")


def _in_bnlib(filename):
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_BNLIB_DIR)


def _describe_exception(e):
    """'ValueError: message (line 7 of batchnorm_forward)', one line, naming the learner's frame."""
    text = f"{type(e).__name__}: {_one_line(e)}" if str(e) else type(e).__name__
    frames = [  # NB: the learner's frames, not bnlib's (a check's helper calling their code)
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not _in_bnlib(f.filename) and "site-packages" not in f.filename
    ]
    where = getattr(e, "__bnlib_where__", None)  # `bnlib grade`: raised in the learner's kernel
    if where is None and frames:
        where = f"line {frames[-1].lineno} of {frames[-1].name}"
    if where:
        text += f" ({where})"
    if isinstance(e, NotImplementedError):
        text += f": {_NOT_IMPLEMENTED_HINT}"
    return text


def _call(fn, args, budget, label):
    """fn(*args) in a daemon thread: returns its value, raises _CallError or _Stop."""
    timeout = budget.next_timeout()
    if timeout <= 0:
        raise _Stop(
            f"the check ran out of time ({CHECK_TIMEOUT:g} s in all) before it could call {label} "
            "again: is it very slow?"
        )
    remote = next((r for r in map(_remote_of, args) if r is not None), None)
    if remote is not None and _remote_of(fn) is None:
        fn = remote.runner(fn)  # `bnlib grade`: a bnlib helper driving learner objects runs there
    box = {}

    def target():
        try:
            with np.errstate(all="ignore"):  # NaN is reported in the feedback, not as warnings
                box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - SystemExit from learner code is a failure too
            box["error"] = e

    thread = threading.Thread(target=target, name=f"bnlib-check-{label}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if timeout < CALL_TIMEOUT:
            why = f"the check's {CHECK_TIMEOUT:g} s (in all) ran out while {label} was running"
        else:
            why = f"{label} did not return within {timeout:g} s (an infinite loop?)"
        raise _Stop(f"{why}. It may still be running in the background: restart the kernel")
    if "error" in box:
        raise _CallError(f"{label} raised {_describe_exception(box['error'])}")
    return box.get("value")


def _remote_of(value):
    """The grader's handle on the learner's process when `value` lives there (`bnlib grade`)."""
    try:
        return getattr(value, "__bnlib_remote__", None)
    except Exception:  # noqa: BLE001 - an object with a broken __getattr__ is not a handle
        return None


def _type_name(value):
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _unpack(value, names, label):
    """Check that `value` is a tuple of len(names); return it as a tuple."""
    want = f"a tuple ({', '.join(names)})"
    if value is None:
        raise _CallError(f"{label} returned None: expected {want}; is a `return` missing?")
    if not isinstance(value, tuple | list):
        what = _type_name(value)
        if isinstance(value, np.ndarray):
            what += f" of shape {value.shape}"
        raise _CallError(f"{label} returned {what}: expected {want}")
    if len(value) != len(names):
        raise _CallError(
            f"{label} returned a {_type_name(value)} of length {len(value)}: expected {want}"
        )
    return tuple(value)


def _array_problem(value, name, shape, dtype):
    """Why `value` cannot be compared with a reference of `shape` and `dtype`, or None."""
    if value is None:
        return f"{name} is None"
    if not isinstance(value, np.ndarray):
        return f"{name} is a {_type_name(value)}, expected a numpy array"
    if value.dtype != dtype:
        return f"{name} has dtype {value.dtype}, expected {np.dtype(dtype)} (the input's)"
    if value.shape != shape:
        return f"{name} has shape {value.shape}, expected {shape}"
    return None


_FLOAT32_LEVEL = 1e-4  # float32 keeps ~7 digits; float64 mistakes are far larger than this


def _float32_rounded(got, want):
    """Whether `got` looks computed in float32 and cast back: every entry a float32 number, close
    to `want` at float32's precision, while `want`'s entries are not all float32 numbers."""
    got, want = np.asarray(got), np.asarray(want, dtype=np.float64)
    if got.dtype != np.float64 or got.size < 4 or not np.isfinite(got).all():
        return False
    with np.errstate(all="ignore"):  # a huge float64 overflows float32: not float32 then
        as32 = got.astype(np.float32).astype(np.float64)
    if not np.array_equal(as32, got):
        return False
    if np.array_equal(want.astype(np.float32).astype(np.float64), want):
        return False
    scale = max(1.0, float(np.abs(want).max()))
    return float(np.abs(got - want).max()) <= 1e-3 * scale


def _mismatch(name, got, want, *, float32_note=True):
    """One line on how `got` differs from `want` (same shape assumed).

    float32_note: say so when `got` looks computed in float32 and cast back (off where float32
    is the expected precision, e.g. a torch module's output).
    """
    advice = (
        "computed in float32? compute in float64, the input's dtype (no np.float32, "
        ".astype(np.float32) or torch float32 tensors on the way)"
    )
    if float32_note and _float32_rounded(got, want):
        return f"{name} differs from the reference: every entry is a float32 number: {advice}"
    got = np.asarray(got, dtype=np.float64)
    bad = ~np.isfinite(got)
    if bad.any():
        kind = "NaN" if np.isnan(got).any() else "inf"
        return f"{name} contains {kind} ({int(bad.sum())} of {got.size} entries)"
    err = np.abs(got - want)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    index = ", ".join(str(int(i)) for i in where)
    # enough digits that got and expected print differently
    rel = err[where] / max(abs(float(want[where])), 1e-300)
    digits = min(17, max(4, 2 - math.floor(math.log10(rel)) if rel > 0 else 4))
    text = (
        f"{name} differs from the reference (largest error {err[where]:.2g} at [{index}]: "
        f"got {got[where]:.{digits}g}, expected {want[where]:.{digits}g})"
    )
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    if float32_note and err[where] <= _FLOAT32_LEVEL * scale:
        text += f", an error at float32's rounding level: {advice}"
    return text


def _modified(label, names, originals, passed):
    for name, original, value in zip(names, originals, passed, strict=True):
        if not np.array_equal(original, value, equal_nan=True):
            return (
                f"{label} modified its argument {name} in place; compute new arrays instead "
                "(e.g. xc = x - mu, not x -= mu)"
            )
    return None


# --- hidden cases --------------------------------------------------------------------------------

_HIDDEN = threading.local()  # per thread: `bnlib grade` grades several notebooks at once


@contextmanager
def hidden_cases(secret):
    """While active (in this thread), every check draws its cases from generators seeded with
    `secret` as well as the check's fixed seed: the cases `bnlib grade` uses are then ones the
    learner has never seen. Outside, the checks' cases are the fixed, reproducible ones."""
    before = getattr(_HIDDEN, "secret", None)
    _HIDDEN.secret = int(secret)
    try:
        yield
    finally:
        _HIDDEN.secret = before


def _case_rng(seed):
    """The generator a check draws its cases from: `seed`'s, mixed with the grading secret."""
    secret = getattr(_HIDDEN, "secret", None)
    return np.random.default_rng(seed if secret is None else [secret, seed])


def _case_seed(seed):
    """An integer seed (for torch) for a check's cases: `seed`, mixed with the grading secret."""
    if getattr(_HIDDEN, "secret", None) is None:
        return seed
    return int(_case_rng(seed).integers(2**31))


class _EpsCase:
    """For the case dataclasses with an `eps` field: None calls the learner's function without
    eps, so its default (1e-5, as PyTorch's) is what the reference must use."""

    @property
    def eps_used(self):
        return 1e-5 if self.eps is None else self.eps


@dataclass(frozen=True)
class _Case(_EpsCase):
    name: str
    short: str  # for the list of cases in a PASS
    x: np.ndarray  # (N, D)
    gamma: np.ndarray  # (D,)
    beta: np.ndarray  # (D,)
    eps: float | None  # None: call without eps, so the learner's default 1e-5 is used
    hint: str = ""  # said when this case alone fails and no known mistake explains it
    weight: float = 1.0  # 0: must pass, but earns nothing (a case wrong code may pass)

    def args(self):
        """Fresh copies of the arguments, so changes made in place can be detected."""
        args = [self.x.copy(), self.gamma.copy(), self.beta.copy()]
        if self.eps is not None:
            args.append(self.eps)
        return args


def _forward_cases():
    """The hidden cases: fixed, and drawn from a private generator (the learner's seed is kept)."""
    rng = _case_rng(20150211)  # Ioffe & Szegedy's arXiv submission date

    def affine(D):
        gamma = rng.uniform(0.5, 2.0, D) * rng.choice([-1.0, 1.0], D)
        return gamma, rng.standard_normal(D)

    def case(name, short, x, eps=None, hint=""):
        return _Case(name, short, x, *affine(x.shape[1]), eps, hint)

    std = np.array([1e-3, 3e-4, 0.0, 1.0])
    small = rng.standard_normal((16, 4)) * std + rng.standard_normal(4)
    offset = np.array([1e3, 5e3, 1e4])
    large = rng.standard_normal((32, 3)) * np.array([1.0, 0.1, 0.01]) + offset
    return [
        case("basic, N=8, D=5", "basic", rng.standard_normal((8, 5)) + rng.uniform(-2, 2, 5)),
        case("the smallest batch, N=2", "N=2", rng.standard_normal((2, 6)) * 2 + 1),
        case("more features than samples, N=3, D=7", "N < D", rng.standard_normal((3, 7))),
        case(
            "tiny variances (std 1e-3, 3e-4 and a constant feature), N=16, D=4",
            "tiny variances",
            small,
            hint="a missing or misplaced eps shows here: divide by sqrt(var + eps)",
        ),
        case(
            "large offsets (1e3 to 1e4) with small spreads, N=32, D=3",
            "large offsets",
            large,
            hint=(
                "E[x^2] - E[x]^2 loses all its digits at a large offset; compute "
                "var = mean((x - mu)**2) after subtracting the mean"
            ),
        ),
        case(
            "eps=1e-3 passed explicitly, N=10, D=4",
            "eps passed",
            rng.standard_normal((10, 4)) * 0.03,
            eps=1e-3,
            hint="use the eps argument, not a fixed 1e-5",
        ),
    ]


# --- batch norm: the reference and its known mistakes --------------------------------------------


def _xhat(x, eps, *, axis=0, ddof=0, eps_inside=True, center=True, root=True):
    """The normalization step, with switches for the usual mistakes."""
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
        "no eps: divide by sqrt(var + eps), not sqrt(var) (a constant feature gives 0/0 = NaN)",
        lambda x, g, b, eps: g * _xhat(x, 0.0) + b,
    ),
    Mistake(
        "eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps",
        lambda x, g, b, eps: g * _xhat(x, eps, eps_inside=False) + b,
    ),
    Mistake(
        "unbiased variance (divided by N - 1): BN normalizes with the biased variance, "
        "mean((x - mu)**2), divided by N (np.var's default ddof=0)",
        lambda x, g, b, eps: g * _xhat(x, eps, ddof=1) + b,
    ),
    Mistake(
        "no square root: divide by sqrt(var + eps), not var + eps",
        lambda x, g, b, eps: g * _xhat(x, eps, root=False) + b,
    ),
    Mistake(
        "statistics over axis 1 (per sample, which is layer norm): BN takes the mean and variance "
        "of each feature over the batch, axis=0",
        lambda x, g, b, eps: g * _xhat(x, eps, axis=1) + b,
    ),
    Mistake(
        "one mean and variance for the whole array: BN needs one per feature, over axis=0",
        lambda x, g, b, eps: g * _xhat(x, eps, axis=None) + b,
    ),
    Mistake(
        "the mean is not subtracted: xhat = (x - mu) / sqrt(var + eps)",
        lambda x, g, b, eps: g * _xhat(x, eps, center=False) + b,
    ),
    Mistake(
        "gamma and beta swapped: out = gamma * xhat + beta",
        lambda x, g, b, eps: b * _xhat(x, eps) + g,
    ),
    Mistake(
        "the affine step is missing: out = gamma * xhat + beta, not xhat",
        lambda x, g, b, eps: _xhat(x, eps),
    ),
    Mistake(
        "beta is missing: out = gamma * xhat + beta",
        lambda x, g, b, eps: g * _xhat(x, eps),
    ),
    Mistake(
        "gamma is missing: out = gamma * xhat + beta",
        lambda x, g, b, eps: _xhat(x, eps) + b,
    ),
    Mistake(
        "the eps argument is ignored (a fixed 1e-5 is used whatever eps is passed)",
        lambda x, g, b, eps: g * _xhat(x, 1e-5) + b,
    ),
]


def _reference_forward(case):
    return F.batch_norm(case.x, None, None, case.gamma, case.beta, training=True, eps=case.eps_used)


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


_VAR_AS_STD = (
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


DX_MISTAKES = [
    Mistake(
        "dx: the mean term is missing; mu depends on every x, so dx has a -mean(dxhat) term "
        "(in the staged version: the path through mu)",
        lambda x, g, d, eps: _dx(x, g, d, eps, mean_term=False),
    ),
    Mistake(
        "dx: the variance term is missing; var depends on every x, so dx has a "
        "-xhat * mean(dxhat * xhat) term (in the staged version: the path through var)",
        lambda x, g, d, eps: _dx(x, g, d, eps, var_term=False),
    ),
    Mistake(
        "dx: mu and var were treated as constants (dx = dout * gamma / sqrt(var + eps) is only the "
        "direct path); add the paths through mu and var",
        lambda x, g, d, eps: _dx(x, g, d, eps, mean_term=False, var_term=False),
    ),
    Mistake(
        "dx is the gradient with respect to xhat (dout * gamma), not x; continue back through "
        "xhat = (x - mu) / sqrt(var + eps)",
        lambda x, g, d, eps: d * g,
    ),
    Mistake(
        "dx: gamma is missing; the gradient reaching xhat is dout * gamma",
        lambda x, g, d, eps: _dx(x, g, d, eps, use_gamma=False),
    ),
    Mistake(
        "dx is the gradient of a forward pass with the unbiased variance (N - 1); BN uses the "
        "biased one (divide by N), in the backward pass too",
        lambda x, g, d, eps: _dx(x, g, d, eps, ddof=1),
    ),
    Mistake(
        "dx is N times too large: the closed form has a 1/N in front, "
        "dx = gamma * istd / N * (N * dout - sum(dout) - xhat * sum(dout * xhat))",
        lambda x, g, d, eps: _dx(x, g, d, eps, n=1),
    ),
    Mistake(
        "dx: eps is missing in the backward pass; use 1 / sqrt(var + eps) as in the forward pass",
        lambda x, g, d, eps: _dx(x, g, d, 0.0),
    ),
    *(
        Mistake(
            _VAR_AS_STD, lambda x, g, d, eps, s=staged, e=with_eps: _var_as_std(x, g, d, eps, s, e)
        )
        for staged in (False, True)
        for with_eps in (True, False)
    ),
]

_SWAPPED = "dgamma and dbeta swapped: dgamma = sum(dout * xhat), dbeta = sum(dout), over axis 0"
_PER_SAMPLE = (
    "dgamma and dbeta were not summed over the batch: gamma and beta are shared by all N samples, "
    "so sum their gradients over axis 0"
)
_WRONG_AXIS = "dgamma and dbeta summed over axis 1: sum over the batch, axis 0, one per feature"
_AVERAGED = "dgamma and dbeta averaged over the batch: sum them (a loss term per sample adds up)"


def _xh(x, eps):
    return _backward_parts(x, 1.0, 0.0, eps)[0]


DGAMMA_MISTAKES = [
    Mistake(_SWAPPED, lambda x, g, d, eps: d.sum(axis=0)),
    Mistake(_WRONG_AXIS, lambda x, g, d, eps: (d * _xh(x, eps)).sum(axis=1)),
    Mistake(_PER_SAMPLE, lambda x, g, d, eps: d * _xh(x, eps)),
    Mistake(_AVERAGED, lambda x, g, d, eps: (d * _xh(x, eps)).mean(axis=0)),
    Mistake(
        "dgamma = sum(dout * xhat), with the normalized xhat, not the input x",
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


# --- the checks ----------------------------------------------------------------------------------


def _label(fn, default):
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else default


def _not_callable(label, fn):
    return _fail(f"{label} must be a function, got {_type_name(fn)} {_one_line(repr(fn), 60)}")


def _guarded(check):
    """Turn an unexpected error inside a check into a failing result: a check never raises."""

    def run(*args, **kwargs):
        try:
            return check(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a bug of the check must not break the notebook
            return _fail(
                f"the check itself failed ({_describe_exception(e)}); "
                "please report this to the course maintainers"
            )

    run.__name__, run.__qualname__, run.__doc__ = check.__name__, check.__qualname__, check.__doc__
    run.__wrapped__ = check
    return run


@dataclass
class _Outcome:
    case: _Case
    reason: str | None = None  # None: the case passed
    hints: dict[str, list[str]] | None = None  # per output: the matching mistakes


def _summary(label, outcomes, total, catalogues, notes=()):
    """The CheckResult for the case outcomes (fewer than `total` when the check had to stop).

    `catalogues` maps each output's name to its mistakes, for the "likely mistake" part.
    """
    passed = sum(o.reason is None for o in outcomes)
    weights = [_weight(o.case) for o in outcomes]
    # NB: a degenerate case (weight 0) must pass, but wrong code passing it earns nothing
    skipped = total - len(outcomes)
    earned = sum(w for o, w in zip(outcomes, weights, strict=True) if o.reason is None)
    whole = sum(weights) + skipped
    if passed == total:
        cases = ", ".join(o.case.short for o in outcomes)
        return CheckResult(True, 1.0, f"{label}: all {total} hidden cases match ({cases}).")
    failing = [o for o in outcomes if o.reason is not None]
    if len(outcomes) < total:
        parts = [f"{label}: stopped at hidden case {len(outcomes)} of {total}"]
    elif len(failing) == total:
        parts = [f"{label}: all {total} hidden cases failed"]
    else:
        parts = [f"{label}: {len(failing)} of {total} hidden cases failed"]
    hints = []
    for output, catalogue in catalogues.items():
        best = _best_hint([(o.hints or {}).get(output, []) for o in failing], catalogue)
        if best is not None and best not in hints:
            hints.append(best)
    if hints:
        parts.append(
            ("Likely mistake: " if len(hints) == 1 else "Likely mistakes: ") + "; ".join(hints)
        )
    first = failing[0]
    if len(failing) == total and len({o.reason for o in failing}) == 1:
        parts.append(first.reason)  # the same reason every time: say it once
    else:
        parts.append(f"First failing case ({first.case.name}): {first.reason}")
    if len(outcomes) < total and first is not outcomes[-1]:
        parts.append(outcomes[-1].reason)
    if len(failing) == 1 and not hints and first.case.hint:
        parts.append(f"Hint: {first.case.hint}")
    parts.extend(notes)
    return _fail(_sentences(parts), earned / whole if whole else 0.0)


def _weight(case):
    """A case's weight in the score: 0 for a degenerate case wrong code may pass by chance."""
    return float(getattr(case, "weight", 1.0))


def _run_cases(run_case, cases):
    """run_case(case, budget) for each case in order, all sharing one time budget; stops at the
    first case whose learner code does not finish in time (its outcome says so). Returns the
    outcomes: fewer than the cases when it stopped."""
    budget, outcomes = _Budget(), []
    for case in cases:
        try:
            outcomes.append(run_case(case, budget))
        except _Stop as stop:
            outcomes.append(_Outcome(case, str(stop)))
            break
    return outcomes


def _sentences(parts):
    """Join phrases into sentences, each ending in one full stop (or its own '?')."""
    return " ".join(p.rstrip(". ") + ("" if p.endswith("?") else ".") for p in parts)


@_guarded
def check_batchnorm_forward(batchnorm_forward) -> CheckResult:
    """Check `batchnorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, training mode.

    x: (N, D) float64; gamma, beta: (D,); out: (N, D), compared with bnlib.functional.batch_norm
    on hidden cases (N=2, N < D, tiny variances, large offsets, an explicit eps).
    Returns a CheckResult; the score is the fraction of cases passed.
    """
    label = _label(batchnorm_forward, "batchnorm_forward")
    if not callable(batchnorm_forward):
        return _not_callable("batchnorm_forward", batchnorm_forward)
    cases = _forward_cases()
    outcomes = _run_cases(lambda c, b: _forward_case(batchnorm_forward, c, b, label), cases)
    return _summary(label, outcomes, len(cases), {"out": FORWARD_MISTAKES})


def _forward_case(fn, case, budget, label, reference=None, mistakes=None):
    """Run one case; _Stop propagates, every other problem becomes the outcome's reason.

    reference(case) and mistakes: the (N, D) forward's by default; the spatial task passes its own.
    """
    reference = reference or _reference_forward
    mistakes = FORWARD_MISTAKES if mistakes is None else mistakes
    args = case.args()
    try:
        result = _call(fn, args, budget, label)
        out, _ = _unpack(result, ("out", "cache"), label)
    except _CallError as e:
        return _Outcome(case, str(e))
    originals = (case.x, case.gamma, case.beta)
    modified = _modified(label, ("x", "gamma", "beta"), originals, args[:3])
    if modified:
        return _Outcome(case, modified)
    want = reference(case)
    problem = _array_problem(out, "out", want.shape, want.dtype)
    if problem is None and outputs_match(out, want):
        return _Outcome(case)
    hints = []
    if isinstance(out, np.ndarray):
        args = (case.x, case.gamma, case.beta, case.eps_used)
        hints = matching_mistakes(out, mistakes, *args, reference=want)
    return _Outcome(case, problem or _mismatch("out", out, want), {"out": hints})


@_guarded
def check_batchnorm_backward(batchnorm_forward, backward_fn, *, name=None) -> CheckResult:
    """Check `backward_fn(dout, cache) -> (dx, dgamma, dbeta)` with cache from batchnorm_forward.

    Works for the staged `batchnorm_backward` and the closed-form `batchnorm_backward_alt`.
    dout: (N, D), random (NB: an all-ones dout gives dx = 0 for any BN and hides bugs); compared
    with bnlib.functional.batch_norm_backward on the forward check's hidden cases.
    name: what the feedback calls backward_fn (default: its __name__).
    Returns a CheckResult; the score is the fraction of cases passed.
    """
    label = name or _label(backward_fn, "backward_fn")
    fwd_label = _label(batchnorm_forward, "batchnorm_forward")
    for what, fn in (("batchnorm_forward", batchnorm_forward), (label, backward_fn)):
        if not callable(fn):
            return _not_callable(what, fn)
    budget = _Budget()
    # NB: at N=2, dx = 0 for BN with the biased or the unbiased variance: no weight there
    cases = [replace(c, weight=0.0) if c.x.shape[0] == 2 else c for c in _forward_cases()]
    rng = _case_rng(19)
    douts = [rng.standard_normal(case.x.shape) for case in cases]
    outcomes, forward_wrong = [], False
    for case, dout in zip(cases, douts, strict=True):
        try:
            outcome, fwd_ok = _backward_case(
                batchnorm_forward, backward_fn, case, dout, budget, label, fwd_label
            )
        except _Stop as stop:
            outcomes.append(_Outcome(case, str(stop)))
            break
        outcomes.append(outcome)
        forward_wrong |= fwd_ok is False  # None: the forward raised, the reason says so
    notes = []
    if forward_wrong and any(o.reason for o in outcomes):
        notes.append(f"Note: {fwd_label} fails its own check too; fix it first")
    return _summary(label, outcomes, len(cases), BACKWARD_MISTAKES, notes=notes)


def _backward_case(forward, backward, case, dout, budget, label, fwd_label):
    """Run one case: (outcome, whether the forward matched the reference, None if it raised)."""
    args = case.args()
    try:
        fwd_label = f"{fwd_label} (called first, to make the cache)"
        out, cache = _unpack(_call(forward, args, budget, fwd_label), ("out", "cache"), fwd_label)
    except _CallError as e:
        return _Outcome(case, str(e)), None
    fwd_ok = isinstance(out, np.ndarray) and outputs_match(out, _reference_forward(case))
    dout_arg = dout.copy()
    try:
        grads = _unpack(
            _call(backward, (dout_arg, cache), budget, label), ("dx", "dgamma", "dbeta"), label
        )
    except _CallError as e:
        return _Outcome(case, str(e)), fwd_ok
    modified = _modified(label, ("dout",), (dout,), (dout_arg,))
    if modified:
        return _Outcome(case, modified), fwd_ok
    want = F.batch_norm_backward(dout, case.x, case.gamma, eps=case.eps_used)
    reasons, hints = [], {}
    for (output, catalogue), got, ref in zip(BACKWARD_MISTAKES.items(), grads, want, strict=True):
        problem = _array_problem(got, output, ref.shape, ref.dtype)
        if problem is None and outputs_match(got, ref):
            continue
        if isinstance(got, np.ndarray):
            args = (case.x, case.gamma, dout, case.eps_used)
            hints[output] = matching_mistakes(got, catalogue, *args, reference=ref)
        reasons.append(problem or _mismatch(output, got, ref))
    if not reasons:
        return _Outcome(case), fwd_ok
    return _Outcome(case, "; ".join(reasons), hints), fwd_ok


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
    y = g * _xhat(rows, eps, ddof=ddof) + b  # (N*H*W, C)
    if how == "right":
        return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return y.reshape(N, C, H, W)


_SP_N_ONLY = (
    "statistics over N only, one mean and variance per channel AND position (x.mean(axis=0)): "
    "BN for (N, C, H, W) shares them over N, H and W, one per channel, axis=(0, 2, 3)"
)
_SP_NC = (
    "statistics over (N, C), one per position: BN takes one mean and variance per channel, over "
    "(N, H, W)"
)
_SP_NO_TRANSPOSE = (
    "x.reshape(-1, C) straight from (N, C, H, W) mixes channels and positions in each column: "
    "move the channels last first, x.transpose(0, 2, 3, 1).reshape(-1, C)"
)
_SP_NOT_BACK = (
    "the (N*H*W, C) result was reshaped straight to (N, C, H, W): reshape it to (N, H, W, C) "
    "and transpose back, .transpose(0, 3, 1, 2)"
)
_SP_UNBIASED = (
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
        "statistics per sample over (C, H, W) (layer norm): BN takes them per channel over the "
        "batch and the positions, (N, H, W)",
        lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (1, 2, 3)) + _per_channel(b),
    ),
    Mistake(
        "statistics per sample and channel over (H, W) (instance norm): BN takes them over the "
        "batch too, (N, H, W)",
        lambda x, g, b, e: _per_channel(g) * _norm_axes(x, e, (2, 3)) + _per_channel(b),
    ),
    Mistake(
        "eps outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps",
        lambda x, g, b, e: (
            _per_channel(g) * _norm_axes(x, e, _NHW, eps_inside=False) + _per_channel(b)
        ),
    ),
    Mistake(
        "gamma and beta swapped: out = gamma * xhat + beta",
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
        "dx is the gradient of a forward pass with the unbiased variance: BN uses the biased one, "
        "in the backward pass too",
        lambda x, g, d, e: _dx_axes(x, g, d, e, _NHW, ddof=1),
    ),
    Mistake(
        "dx: mu and var were treated as constants: add the paths through them",
        lambda x, g, d, e: d * _per_channel(g) / np.sqrt(x.var(axis=_NHW, keepdims=True) + e),
    ),
]
_SP_PARAMS_N_ONLY = (
    "dgamma and dbeta summed over N only: gamma and beta are shared by every sample AND position "
    "of a channel, so sum over (N, H, W), axis=(0, 2, 3)"
)
_SP_PARAMS_SWAPPED = "dgamma and dbeta swapped: dgamma = sum(dout * xhat), dbeta = sum(dout)"


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


def _spatial_cases():
    """Hidden (N, C, H, W) cases; none with H = W = 1 or N = 1, where wrong axes may agree."""
    rng = _case_rng(2015_0302)

    def case(name, short, x, eps=None, hint=""):
        C = x.shape[1]
        gamma = rng.uniform(0.5, 2.0, C) * rng.choice([-1.0, 1.0], C)
        return _Case(name, short, x, gamma, rng.standard_normal(C), eps, hint)

    def x(shape, loc=0.0, scale=1.0):
        C = shape[1]
        means = rng.uniform(-2, 2, C) + loc
        spreads = rng.uniform(0.5, 2.0, C) * scale
        return (
            rng.standard_normal(shape) * spreads[None, :, None, None] + means[None, :, None, None]
        )

    return [
        case("basic, N=4, C=3, H=5, W=6", "basic", x((4, 3, 5, 6))),
        case("N=2, C=5, H=W=3", "N=2", x((2, 5, 3, 3))),
        case("H != W, N=3, C=2, H=2, W=7", "H != W", x((3, 2, 2, 7))),
        case(
            "large offsets (near 1e3) with small spreads, N=5, C=4, H=W=4",
            "large offsets",
            x((5, 4, 4, 4), 1e3, 0.01),
            hint="subtract the mean before squaring: var = mean((x - mu)**2)",
        ),
        case(
            "eps=1e-2 passed explicitly, N=3, C=3, H=W=2",
            "eps passed",
            x((3, 3, 2, 2), 0.0, 0.05),
            eps=1e-2,
            hint="use the eps argument",
        ),
    ]


def _reference_spatial(case):
    return F.batch_norm(case.x, None, None, case.gamma, case.beta, training=True, eps=case.eps_used)


@_guarded
def check_spatial_batchnorm_forward(spatial_batchnorm_forward) -> CheckResult:
    """Check `spatial_batchnorm_forward(x, gamma, beta, eps=1e-5) -> (out, cache)`, training mode.

    x: (N, C, H, W) float64; gamma, beta: (C,); statistics per channel over (N, H, W); out
    compared with bnlib.functional.batch_norm on hidden cases. Returns a CheckResult.
    """
    label = _label(spatial_batchnorm_forward, "spatial_batchnorm_forward")
    if not callable(spatial_batchnorm_forward):
        return _not_callable("spatial_batchnorm_forward", spatial_batchnorm_forward)
    cases = _spatial_cases()

    def run(case, budget):
        return _forward_case(
            spatial_batchnorm_forward,
            case,
            budget,
            label,
            _reference_spatial,
            SPATIAL_FORWARD_MISTAKES,
        )

    outcomes = _run_cases(run, cases)
    return _summary(label, outcomes, len(cases), {"out": SPATIAL_FORWARD_MISTAKES})


@_guarded
def check_spatial_batchnorm_backward(
    spatial_batchnorm_forward, spatial_batchnorm_backward
) -> CheckResult:
    """Check `spatial_batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)`, cache from
    spatial_batchnorm_forward; dout (N, C, H, W) random; dx (N, C, H, W), dgamma, dbeta (C,),
    compared with bnlib.functional.batch_norm_backward on hidden cases. Returns a CheckResult.
    """
    label = _label(spatial_batchnorm_backward, "spatial_batchnorm_backward")
    fwd_label = _label(spatial_batchnorm_forward, "spatial_batchnorm_forward")
    for what, fn in ((fwd_label, spatial_batchnorm_forward), (label, spatial_batchnorm_backward)):
        if not callable(fn):
            return _not_callable(what, fn)
    cases = _spatial_cases()
    rng = _case_rng(23)
    douts = {c.name: rng.standard_normal(c.x.shape) for c in cases}
    forward_wrong = []

    def run(case, budget):
        args, dout = case.args(), douts[case.name]
        called = f"{fwd_label} (called first, to make the cache)"
        try:
            out, cache = _unpack(
                _call(spatial_batchnorm_forward, args, budget, called), ("out", "cache"), called
            )
        except _CallError as e:
            return _Outcome(case, str(e))
        if not (isinstance(out, np.ndarray) and outputs_match(out, _reference_spatial(case))):
            forward_wrong.append(case)
        dout_arg = dout.copy()
        try:
            grads = _unpack(
                _call(spatial_batchnorm_backward, (dout_arg, cache), budget, label),
                ("dx", "dgamma", "dbeta"),
                label,
            )
        except _CallError as e:
            return _Outcome(case, str(e))
        modified = _modified(label, ("dout",), (dout,), (dout_arg,))
        if modified:
            return _Outcome(case, modified)
        want = F.batch_norm_backward(dout, case.x, case.gamma, eps=case.eps_used)
        reasons, hints = [], {}
        for (output, catalogue), got, ref in zip(
            SPATIAL_BACKWARD_MISTAKES.items(), grads, want, strict=True
        ):
            problem = _array_problem(got, output, ref.shape, ref.dtype)
            if problem is None and outputs_match(got, ref):
                continue
            if isinstance(got, np.ndarray):
                ref_args = (case.x, case.gamma, dout, case.eps_used)
                hints[output] = matching_mistakes(got, catalogue, *ref_args, reference=ref)
            reasons.append(problem or _mismatch(output, got, ref))
        if not reasons:
            return _Outcome(case)
        return _Outcome(case, "; ".join(reasons), hints)

    outcomes = _run_cases(run, cases)
    notes = []
    if forward_wrong and any(o.reason for o in outcomes):
        notes.append(f"Note: {fwd_label} fails its own check too; fix it first")
    return _summary(label, outcomes, len(cases), SPATIAL_BACKWARD_MISTAKES, notes=notes)


# --- the registry the grader uses ----------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One graded task: `run(namespace)` finds the names in `needs` and runs the official check."""

    name: str
    needs: tuple[str, ...]
    run: Callable[[dict], CheckResult]


def task(name, check, needs, /, **kwargs) -> Task:
    """A Task whose run calls check(*[namespace[n] for n in needs], **kwargs).

    A name missing from the namespace gives a failing result, not a KeyError.
    """
    needs = tuple(needs)

    def run(namespace):
        for n in needs:
            if n not in namespace:
                return _fail(f"{n} is not defined: run the cell that defines it (or restore it)")
        return check(*(namespace[n] for n in needs), **kwargs)

    return Task(name, needs, run)


TASKS: dict[str, list[Task]] = {
    "ex01_forward_backward": [
        task("batchnorm_forward", check_batchnorm_forward, ["batchnorm_forward"]),
        task(
            "batchnorm_backward",
            check_batchnorm_backward,
            ["batchnorm_forward", "batchnorm_backward"],
            name="batchnorm_backward",
        ),
        task(
            "batchnorm_backward_alt",
            check_batchnorm_backward,
            ["batchnorm_forward", "batchnorm_backward_alt"],
            name="batchnorm_backward_alt",
        ),
        task(
            "spatial_batchnorm_forward",
            check_spatial_batchnorm_forward,
            ["spatial_batchnorm_forward"],
        ),
        task(
            "spatial_batchnorm_backward",
            check_spatial_batchnorm_backward,
            ["spatial_batchnorm_forward", "spatial_batchnorm_backward"],
        ),
    ],
}


def run_tasks(exercise, namespace) -> list[tuple[str, CheckResult]]:
    """Run every task of `exercise` against `namespace`: [(task name, CheckResult)], in order.

    Raises KeyError for an unknown exercise id (the grader reports it before running anything).
    """
    results = []
    for t in TASKS[exercise]:
        try:
            result = t.run(namespace)
        except Exception as e:  # noqa: BLE001 - one broken task must not hide the others
            result = _fail(f"{t.name}: the check itself failed ({_describe_exception(e)})")
        if not isinstance(result, CheckResult) or not math.isfinite(result.score):
            result = _fail(f"{t.name}: the check returned {_type_name(result)}")
        results.append((t.name, result))
    return results


# --- later exercises -----------------------------------------------------------------------------
# Each later exercise keeps its checks in its own module, bnlib/checks_exNN.py, built on the
# machinery above (so these imports come last). Importing them here re-exports their check_*
# functions, so a notebook writes `from bnlib.checks import check_x`, and registers their tasks
# for `bnlib grade`.
from bnlib import checks_ex02, checks_ex03, checks_ex04, checks_ex05  # noqa: E402

for _module in (checks_ex02, checks_ex03, checks_ex04, checks_ex05):
    TASKS.update(_module.TASKS)
    __all__ += _module.__all__
    globals().update({name: getattr(_module, name) for name in _module.__all__})
