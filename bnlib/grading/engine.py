"""The check engine: run a learner's code on an exercise task's cases, compare it with the task's
float64 reference, name the likely mistake, and score it.

An exercise is data (bnlib/grading/exercises/exNN.py): each `Task` declares the names it needs
from the learner's namespace, its cases (drawn from `case_rng`, so `hidden_cases(secret)` makes
them ones the learner has never seen), its reference, its mistake catalogue and its points. The
engine runs a task the same way in the learner's notebook (`check(task, *functions)`, behind the
check_* functions of bnlib.checks) and in `bnlib grade` (`Task.run(namespace)`, the namespace's
functions being stand-ins that call into the learner's kernel, bnlib.grading.remote).

A check never raises, prints or plots, whatever the learner's code does: returns None, the wrong
type, shape or dtype, NaN, raises (reported at the learner's line), modifies its inputs in place,
or never returns (each call runs in a daemon thread, abandoned after CALL_TIMEOUT seconds; a whole
check after CHECK_TIMEOUT). A result computed in float32 and cast back is named as a precision
problem.

Diagnosis: a failing output is compared with the outputs of known wrong implementations
(`Mistake`s); the hint of the one that explains the most failing cases goes into the feedback.
Scoring: the weighted fraction of cases passed, times the task's points, clamped to [0, points];
a check passes only when every case passes.

Every text a learner reads goes through bnlib.i18n: `_()` where it is shown, `N_()` on the
module-level hints of the catalogues (translated when the feedback is built).
"""

from __future__ import annotations

import html
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnlib.i18n import N_, _

__all__ = [
    "ATOL",
    "CALL_TIMEOUT",
    "CHECK_TIMEOUT",
    "RTOL",
    "Budget",
    "CallError",
    "CheckResult",
    "EpsCase",
    "Mistake",
    "Outcome",
    "Stop",
    "Task",
    "array_problem",
    "best_hint",
    "call",
    "case_list",
    "case_rng",
    "case_seed",
    "check",
    "compare_outputs",
    "describe_exception",
    "fail",
    "guarded",
    "hidden_cases",
    "join_list",
    "label_of",
    "matching_mistakes",
    "mismatch",
    "modified",
    "not_callable",
    "one_line",
    "outputs_match",
    "pick",
    "run_backward_case",
    "run_cases",
    "run_function_case",
    "run_task",
    "run_tasks",
    "sentence_break",
    "sentences",
    "summary",
    "type_name",
    "unpack",
]

CALL_TIMEOUT = 10.0  # seconds one call of learner code may take before the check gives up
CHECK_TIMEOUT = 20.0  # seconds all the calls of one check may take together
# NB: float64 implementations of the same formula (two-pass or E[x**2] - mean**2 variance, staged
# or closed-form backward, loops, autograd in float64) agree to ~1e-12 on the cases; a result
# computed in float32 and cast back is off by ~1e-7 relative (float32 keeps 24 bits), so it must
# fail: the course judges float32 against float64 truth. 1e-9 sits between the two (tests:
# tests/test_checks.py, test_float32_fails_and_float64_alternatives_pass_*). A task whose float64
# truth itself loses digits (exercise 4's sums of squares at large offsets) sets its own.
RTOL = 1e-9
ATOL = 1e-10  # times the largest |reference| entry, so the tolerance follows the output's scale

_NOT_IMPLEMENTED_HINT = N_("replace `raise NotImplementedError` with your code")

# How the feedback glues its pieces together, each a template of its own so that a translation
# can use its language's punctuation (zh-TW: full-width 「：」「；」「、」「（）」 and no spaces)
_RESULT_LINE = N_("{verdict} ({score}/{max_score}) {feedback}")  # str(CheckResult)
_LEAD = N_("{lead} {hints}")  # "Likely mistakes:" and the hints
_LIST = N_("{first}; {second}")  # phrases (hints, outputs that differ): join_list
_COMMA_LIST = N_("{first}, {second}")  # short items (missing keys): join_list(commas=True)
_RAISED_WHERE = N_("{error} ({where})")  # an exception and the learner's line it was raised at
_RAISED_ADVICE = N_("{error}: {advice}")  # an exception and what to do about it
_REASON_ADVICE = N_("{reason} ({advice})")  # a reason and an aside on it


# --- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, score (out of max_score) and one line of feedback."""

    passed: bool
    score: float
    feedback: str
    max_score: float = 1.0

    def _verdict(self):
        return _("PASS") if self.passed else _("FAIL")

    def __str__(self):
        return _(_RESULT_LINE).format(
            verdict=self._verdict(),
            score=f"{self.score:.2f}",
            max_score=f"{self.max_score:g}",
            feedback=self.feedback,
        )

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
        score = _("score {score}/{max_score}").format(
            score=f"{self.score:.2f}", max_score=f"{self.max_score:g}"
        )
        return (
            f'<div class="bnlib-check" style="{style}">'
            f"<strong>{mark} {self._verdict()}</strong> "
            f"&middot; {score}<br>{self._feedback_html()}</div>"
        )

    def _feedback_html(self):
        """The feedback with a line break before each of its parts, the diagnosis in bold."""
        text = html.escape(self.feedback)
        stop = html.escape(sentence_break())  # ". " in English
        end = stop.rstrip()
        for part in (_("First failing case"), _("Hint:"), _("Note:")):
            text = text.replace(f"{stop}{part}", f"{end}<br>{part}")
        for part in (_("Likely mistakes:"), _("Likely mistake:")):
            text = text.replace(f"{stop}{part}", f"{end}<br><strong>{part}</strong>")
        return text


def fail(feedback, score=0.0, max_score=1.0):
    """A failing CheckResult."""
    return CheckResult(False, float(score), feedback, float(max_score))


# --- comparing outputs and diagnosing mistakes ---------------------------------------------------


def outputs_match(got, want, rtol=None, atol=None):
    """Whether `got` has `want`'s shape and is close to it, NaN where `want` is NaN.

    The absolute tolerance is atol times the largest finite |want| (at least 1), so one tolerance
    serves outputs of every scale (a normalized output ~1, a gradient through a tiny variance ~1e3).
    rtol, atol: RTOL and ATOL by default (read when called).
    """
    rtol = RTOL if rtol is None else rtol
    atol = ATOL if atol is None else atol
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
    """A known wrong implementation: `compute(*args)` is what it outputs on a case's arguments.

    hint: the English text (marked with N_), translated when the feedback is built.
    """

    hint: str
    compute: Callable[..., Any] | None


def matching_mistakes(
    got, mistakes: Sequence[Mistake], *args, reference=None, rtol=None, atol=None
) -> list[str]:
    """The hints of the mistakes whose output on `args` matches `got`, in catalogue order.

    With `reference` (the right output), a mistake that gives the right output on these arguments
    says nothing and is skipped. So is a mistake whose `compute` raises on them. rtol, atol: the
    task's tolerance (`outputs_match`'s defaults when None).
    """
    tol = {"rtol": rtol, "atol": atol}
    hints = []
    for mistake in mistakes:
        try:
            with np.errstate(all="ignore"):  # a mistaken formula may well divide by zero
                expected = mistake.compute(*args)
        except Exception:  # noqa: BLE001 - a mistake that cannot run here simply does not match
            continue
        if reference is not None and outputs_match(expected, reference, **tol):
            continue
        if outputs_match(got, expected, **tol):
            hints.append(mistake.hint)
    return hints


def pick(mistakes, i):
    """The mistakes of a function with several outputs, as mistakes of its i-th output."""
    return [Mistake(m.hint, lambda *a, m=m: m.compute(*a)[i]) for m in mistakes]


def best_hint(hint_lists, catalogue):
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


class Budget:
    """The time one check may still spend in learner code: call_timeout per call, check_timeout
    in all (by default CALL_TIMEOUT and CHECK_TIMEOUT, read when the check starts)."""

    def __init__(self, call_timeout=None, check_timeout=None):
        self.call_timeout = CALL_TIMEOUT if call_timeout is None else call_timeout
        self.check_timeout = CHECK_TIMEOUT if check_timeout is None else check_timeout
        self.deadline = time.monotonic() + self.check_timeout

    def next_timeout(self):
        return min(self.call_timeout, max(0.0, self.deadline - time.monotonic()))


class Stop(Exception):
    """Learner code did not return in time: the check stops calling it (it may still be running)."""


class CallError(Exception):
    """The learner's call raised, or returned something unusable: the message says which."""


def one_line(text, limit=200):
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


_BNLIB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "")


def _in_bnlib(filename):
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_BNLIB_DIR)


def describe_exception(e):
    """'ValueError: message (line 7 of batchnorm_forward)', one line, naming the learner's frame."""
    text = f"{type(e).__name__}: {one_line(e)}" if str(e) else type(e).__name__
    frames = [  # NB: the learner's frames, not bnlib's (a task's helper calling their code)
        f
        for f in traceback.extract_tb(e.__traceback__)
        if not _in_bnlib(f.filename) and "site-packages" not in f.filename
    ]
    where = getattr(e, "__bnlib_where__", None)  # `bnlib grade`: raised in the learner's kernel
    if where is None and frames:
        where = _("line {line} of {function}").format(
            line=frames[-1].lineno, function=frames[-1].name
        )
    if where:
        text = _(_RAISED_WHERE).format(error=text, where=where)
    if isinstance(e, NotImplementedError):
        text = _(_RAISED_ADVICE).format(error=text, advice=_(_NOT_IMPLEMENTED_HINT))
    return text


def call(fn, args, budget, label):
    """fn(*args) in a daemon thread: returns its value, raises CallError or Stop."""
    timeout = budget.next_timeout()
    if timeout <= 0:
        raise Stop(
            _(
                "the check ran out of time ({total} s in all) before it could call {label} "
                "again: is it very slow?"
            ).format(total=f"{budget.check_timeout:g}", label=label)
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
        if timeout < budget.call_timeout:
            why = _("the check's {total} s (in all) ran out while {label} was running").format(
                total=f"{budget.check_timeout:g}", label=label
            )
        else:
            why = _("{label} did not return within {timeout} s (an infinite loop?)").format(
                label=label, timeout=f"{timeout:g}"
            )
        raise Stop(
            _("{why}. It may still be running in the background: restart the kernel").format(
                why=why
            )
        )
    if "error" in box:
        raise CallError(
            _("{label} raised {error}").format(label=label, error=describe_exception(box["error"]))
        )
    return box.get("value")


def _remote_of(value):
    """The grader's handle on the learner's process when `value` lives there (`bnlib grade`)."""
    try:
        return getattr(value, "__bnlib_remote__", None)
    except Exception:  # noqa: BLE001 - an object with a broken __getattr__ is not a handle
        return None


def type_name(value):
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def unpack(value, names, label):
    """Check that `value` is a tuple of len(names); return it as a tuple."""
    want = _("a tuple ({names})").format(names=", ".join(names))
    if value is None:
        raise CallError(
            _("{label} returned None: expected {want}; is a `return` missing?").format(
                label=label, want=want
            )
        )
    if not isinstance(value, tuple | list):
        what = type_name(value)
        if isinstance(value, np.ndarray):
            what += _(" of shape {shape}").format(shape=value.shape)
        raise CallError(
            _("{label} returned {what}: expected {want}").format(label=label, what=what, want=want)
        )
    if len(value) != len(names):
        raise CallError(
            _("{label} returned a {type} of length {length}: expected {want}").format(
                label=label, type=type_name(value), length=len(value), want=want
            )
        )
    return tuple(value)


def array_problem(value, name, shape, dtype):
    """Why `value` cannot be compared with a reference of `shape` and `dtype`, or None."""
    if value is None:
        return _("{name} is None").format(name=name)
    if not isinstance(value, np.ndarray):
        return _("{name} is a {type}, expected a numpy array").format(
            name=name, type=type_name(value)
        )
    if value.dtype != dtype:
        return _("{name} has dtype {dtype}, expected {expected} (the input's)").format(
            name=name, dtype=value.dtype, expected=np.dtype(dtype)
        )
    if value.shape != shape:
        return _("{name} has shape {shape}, expected {expected}").format(
            name=name, shape=value.shape, expected=shape
        )
    return None


_FLOAT32_LEVEL = 1e-4  # float32 keeps ~7 digits; float64 mistakes are far larger than this
_FLOAT32_ADVICE = N_(
    "computed in float32? compute in float64, the input's dtype (no np.float32, "
    ".astype(np.float32) or torch float32 tensors on the way)"
)


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


def _all_float32(got):
    """Whether every entry of the float64 array `got` is a float32 number (float32 work cast
    back to float64 gives such entries; float64 work almost never does)."""
    got = np.asarray(got)
    if got.dtype != np.float64 or got.size == 0:
        return False
    with np.errstate(all="ignore"):  # a huge float64 overflows float32: not float32 then
        return bool(np.array_equal(got.astype(np.float32).astype(np.float64), got))


def mismatch(name, got, want, *, float32_note=True, float32_by_size=True):
    """One line on how `got` differs from `want` (same shape assumed).

    float32_note: say so when `got` looks computed in float32 and cast back (off where float32
    is the expected precision, e.g. a torch module's output). float32_by_size: an error at
    float32's rounding level is taken as a sign of float32 work; False where named mistakes (an
    eps slip) or cancellation make errors that small: then only an output whose every entry is
    a float32 number is.
    """
    if float32_note and not float32_by_size and not _all_float32(got):
        float32_note = False
    advice = _(_FLOAT32_ADVICE)
    if float32_note and _float32_rounded(got, want):
        return _(
            "{name} differs from the reference: every entry is a float32 number: {advice}"
        ).format(name=name, advice=advice)
    got = np.asarray(got, dtype=np.float64)
    bad = ~np.isfinite(got)
    if bad.any():
        kind = "NaN" if np.isnan(got).any() else "inf"
        return _("{name} contains {kind} ({count} of {size} entries)").format(
            name=name, kind=kind, count=int(bad.sum()), size=got.size
        )
    err = np.abs(got - want)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    index = ", ".join(str(int(i)) for i in where)
    # enough digits that got and expected print differently
    rel = err[where] / max(abs(float(want[where])), 1e-300)
    digits = min(17, max(4, 2 - math.floor(math.log10(rel)) if rel > 0 else 4))
    text = _(
        "{name} differs from the reference (largest error {error} at [{index}]: "
        "got {got}, expected {expected})"
    ).format(
        name=name,
        error=f"{err[where]:.2g}",
        index=index,
        got=f"{got[where]:.{digits}g}",
        expected=f"{want[where]:.{digits}g}",
    )
    finite = np.abs(want[np.isfinite(want)])
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    if float32_note and err[where] <= _FLOAT32_LEVEL * scale:
        text += _(", an error at float32's rounding level: {advice}").format(advice=advice)
    return text


def modified(label, names, originals, passed, advice=None):
    """The reason when the learner's call changed one of its array arguments, else None.

    advice: {argument name: a hint (marked N_) said after the reason for that argument}.
    """
    for name, original, value in zip(names, originals, passed, strict=True):
        if not np.array_equal(original, value, equal_nan=True):
            reason = _(
                "{label} modified its argument {name} in place; compute new arrays instead "
                "(e.g. xc = x - mu, not x -= mu)"
            ).format(label=label, name=name)
            if advice and advice.get(name):
                reason = _(_REASON_ADVICE).format(reason=reason, advice=_(advice[name]))
            return reason
    return None


# --- cases, hidden from a secret -----------------------------------------------------------------

_HIDDEN = threading.local()  # per thread: `bnlib grade` grades several notebooks at once


@contextmanager
def hidden_cases(secret):
    """While active (in this thread), every task draws its cases from generators seeded with
    `secret` as well as the task's fixed seed: the cases `bnlib grade` uses are then ones the
    learner has never seen. Outside, the tasks' cases are the fixed, reproducible ones."""
    before = getattr(_HIDDEN, "secret", None)
    _HIDDEN.secret = int(secret)
    try:
        yield
    finally:
        _HIDDEN.secret = before


def case_rng(seed):
    """The generator a task draws its cases from: `seed`'s, mixed with the grading secret."""
    secret = getattr(_HIDDEN, "secret", None)
    return np.random.default_rng(seed if secret is None else [secret, seed])


def case_seed(seed):
    """An integer seed (for torch) for a task's cases: `seed`, mixed with the grading secret."""
    if getattr(_HIDDEN, "secret", None) is None:
        return seed
    return int(case_rng(seed).integers(2**31))


class EpsCase:
    """For the case dataclasses with an `eps` field: None calls the learner's function without
    eps, so its default (1e-5, as PyTorch's) is what the reference must use."""

    @property
    def eps_used(self):
        return 1e-5 if self.eps is None else self.eps


@dataclass
class Outcome:
    """What one case gave: reason None when it passed; per output, the matching mistakes;
    setup_ok False when a helper called first (the forward making a cache) was wrong."""

    case: Any
    reason: str | None = None
    hints: dict[str, list[str]] | None = None
    setup_ok: bool | None = None  # the helpers called first (a forward) matched their reference


def compare_outputs(
    outputs,
    wants,
    catalogues,
    args,
    case,
    *,
    float32_note=True,
    float32_by_size=True,
    rtol=None,
    atol=None,
):
    """The Outcome for named outputs against their references.

    outputs: {name: what the learner returned}; wants: the references, in the same order;
    catalogues: {name: mistakes}, each mistake's compute called on `args`. An output a named
    mistake explains is not also said to look computed in float32 (float32_note: False to never
    say it, where float32 is the expected precision; float32_by_size: see `mismatch`).
    rtol, atol: the tolerance (RTOL and ATOL when None), for the reference and the mistakes.
    """
    reasons, hints = [], {}
    tol = {"rtol": rtol, "atol": atol}
    for name, got, want in zip(outputs, outputs.values(), wants, strict=True):
        problem = array_problem(got, name, want.shape, want.dtype)
        if problem is None and outputs_match(got, want, **tol):
            continue
        if isinstance(got, np.ndarray) and catalogues.get(name):
            hints[name] = matching_mistakes(got, catalogues[name], *args, reference=want, **tol)
        # NB: a named mistake may differ from the reference by as little as float32's rounding
        # (eps outside the root): its hint says what is wrong, "computed in float32?" would not
        note = float32_note and not hints.get(name)
        reasons.append(
            problem or mismatch(name, got, want, float32_note=note, float32_by_size=float32_by_size)
        )
    if not reasons:
        return Outcome(case)
    return Outcome(case, join_list(reasons), hints)


# --- tasks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One graded task of an exercise, as data.

    name: the task (and, by default, the name the feedback gives the graded function);
    needs: the names the task takes from the learner's namespace, in call order; the last one is
        the graded function (or class), the others are called to set it up (a forward for its
        cache);
    cases: () -> the cases; each has `name` (said when it fails), `short` (listed on a pass),
        `hint` (said when it alone fails, unexplained) and optionally `weight` (0: must pass but
        earns nothing); the generic runner also calls `args()` (fresh copies, in call order) and
        `ref_args()` (the originals, what the reference and the mistakes take);
    reference: (*ref_args) -> the float64 outputs, a tuple when the function returns several;
    outputs: the names of what the graded function returns, in order ("out" alone: an array, not
        a tuple); extra: names returned but not graded (a cache);
    inputs: the names of the arguments, in call order, that must not be modified in place (None
        for one the function may update in place); in_place_advice: {input name: a hint (N_)
        added when the function modified that one};
    mistakes: {output name: [Mistake]}, each compute taking ref_args;
    run_case: (task, functions, case, budget, labels) -> Outcome, for what the generic runner
        cannot do (a module class, a stateful probe): calls learner code through `call`, and sets
        the Outcome's setup_ok when helpers ran first; `run_backward_case` is the one for a
        backward pass that takes the cache of a forward called first;
    setup_reference: (*ref_args) -> what the helper called first must output (a forward's out,
        for `run_backward_case`), so the feedback can say when that helper is wrong;
    float32_by_size: False where a named mistake or cancellation makes errors as small as
        float32's rounding: an output is then said to look computed in float32 only when every
        entry is a float32 number (`mismatch`);
    rtol, atol: the tolerance of this task's comparisons (RTOL and ATOL when None), for a task
        whose float64 truth itself loses digits (say why where it is set);
    kind: "function" or "class", what `needs[-1]` must be;
    named: the feedback calls the graded function by the task's name, whatever its __name__
        (two tasks sharing one check: batchnorm_backward and batchnorm_backward_alt);
    points: what a full pass earns.
    """

    name: str
    needs: tuple[str, ...]
    cases: Callable[[], Sequence[Any]]
    reference: Callable[..., Any] | None = None
    outputs: tuple[str, ...] = ("out",)
    extra: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    in_place_advice: Mapping[str, str] = field(default_factory=dict)
    mistakes: Mapping[str, Sequence[Mistake]] = field(default_factory=dict)
    run_case: Callable[..., Outcome] | None = None
    setup_reference: Callable[..., Any] | None = None
    float32_by_size: bool = True
    rtol: float | None = None
    atol: float | None = None
    kind: str = "function"
    named: bool = False
    points: float = 1.0

    def run(self, namespace) -> CheckResult:
        """The task's check on the functions `namespace` holds (a failing result for a missing
        name, not a KeyError)."""
        for n in self.needs:
            if n not in namespace:
                return fail(
                    _("{name} is not defined: run the cell that defines it (or restore it)").format(
                        name=n
                    ),
                    max_score=self.points,
                )
        label = self.name if self.named else None
        return check(self, *(namespace[n] for n in self.needs), label=label)


def label_of(fn, default):
    """What the feedback calls `fn`: its __name__ when that is an identifier, else `default`."""
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else default


def not_callable(label, fn, points=1.0):
    return fail(
        _("{label} must be a function, got {type} {value}").format(
            label=label, type=type_name(fn), value=one_line(repr(fn), 60)
        ),
        max_score=points,
    )


def guarded(check_fn):
    """Turn an unexpected error inside a check into a failing result: a check never raises."""

    def run(*args, **kwargs):
        try:
            return check_fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a bug of the check must not break the notebook
            return fail(
                _(
                    "the check itself failed ({error}); please report this to the course "
                    "maintainers"
                ).format(error=describe_exception(e))
            )

    run.__name__, run.__qualname__ = check_fn.__name__, check_fn.__qualname__
    run.__doc__, run.__wrapped__ = check_fn.__doc__, check_fn
    return run


@guarded
def check(task: Task, *functions, label=None) -> CheckResult:
    """Run `task` on the learner's `functions` (one per name in task.needs): a CheckResult.

    label: what the feedback calls the graded function (default: its __name__).
    """
    *helpers, graded = functions
    labels = [label_of(fn, n) for fn, n in zip(helpers, task.needs, strict=False)]
    if task.kind == "class":
        labels.append(label or getattr(graded, "__name__", task.needs[-1]))
        if not isinstance(graded, type):
            return fail(
                _("{name} must be a class (class {name}(torch.nn.Module): ...), got {type}").format(
                    name=task.needs[-1], type=type_name(graded)
                ),
                max_score=task.points,
            )
    else:
        labels.append(label or label_of(graded, task.needs[-1]))
        for i, fn in enumerate(functions):
            if not callable(fn):
                what = task.needs[i] if i < len(helpers) or label is None else labels[-1]
                return not_callable(what, fn, task.points)
    cases = task.cases()
    run = task.run_case or run_function_case
    outcomes = run_cases(lambda c, b: run(task, functions, c, b, labels), cases)
    notes = []
    if any(o.setup_ok is False for o in outcomes) and any(o.reason for o in outcomes):
        notes.append(
            _("Note: {helper} fails its own check too; fix it first").format(helper=labels[0])
        )
    return summary(labels[-1], outcomes, len(cases), task.mistakes, notes=notes, points=task.points)


def run_function_case(task, functions, case, budget, labels):
    """The generic case: call the graded function on fresh copies of the case's arguments, check
    it returned `task.outputs` (+ `task.extra`) and left its inputs alone, and compare each output
    with the reference, the mistakes of task.mistakes computed on case.ref_args()."""
    fn, label = functions[-1], labels[-1]
    args = case.args()
    try:
        value = call(fn, args, budget, label)
        names = task.outputs + task.extra
        if names == ("out",):
            got = (_single(value, label),)
        else:
            got = unpack(value, names, label)[: len(task.outputs)]
    except CallError as e:
        return Outcome(case, str(e))
    ref_args = case.ref_args()
    kept = [i for i, name in enumerate(task.inputs) if name is not None]
    changed = modified(
        label,
        [task.inputs[i] for i in kept],
        [ref_args[i] for i in kept],
        [args[i] for i in kept],
        task.in_place_advice,
    )
    if changed:
        return Outcome(case, changed)
    want = task.reference(*ref_args)
    wants = (want,) if len(task.outputs) == 1 and not isinstance(want, tuple) else want
    outputs = dict(zip(task.outputs, got, strict=True))
    return compare_outputs(
        outputs,
        wants,
        task.mistakes,
        ref_args,
        case,
        float32_by_size=task.float32_by_size,
        rtol=task.rtol,
        atol=task.atol,
    )


def run_backward_case(task, functions, case, budget, labels):
    """The case of a backward task, needs = (forward, backward): call the forward on fresh copies
    of case.args() for its cache, then the backward on a copy of case.dout and that cache; check
    it returned task.outputs and left dout alone, and compare them with
    task.reference(*case.grad_args()) (the mistakes of task.mistakes take grad_args too).

    The outcome's setup_ok: whether the forward's out matched task.setup_reference(*ref_args).
    """
    forward, backward = functions
    called = _("{label} (called first, to make the cache)").format(label=labels[0])
    try:
        out, cache = unpack(call(forward, case.args(), budget, called), ("out", "cache"), called)
    except CallError as e:
        return Outcome(case, str(e))
    setup_ok = None
    if task.setup_reference is not None:
        want_out = task.setup_reference(*case.ref_args())
        setup_ok = isinstance(out, np.ndarray) and outputs_match(
            out, want_out, rtol=task.rtol, atol=task.atol
        )
    dout = case.dout.copy()
    try:
        value = call(backward, (dout, cache), budget, labels[-1])
        grads = unpack(value, task.outputs + task.extra, labels[-1])[: len(task.outputs)]
    except CallError as e:
        return Outcome(case, str(e), setup_ok=setup_ok)
    changed = modified(labels[-1], ("dout",), (case.dout,), (dout,))
    if changed:
        return Outcome(case, changed, setup_ok=setup_ok)
    grad_args = case.grad_args()
    want = task.reference(*grad_args)
    wants = (want,) if len(task.outputs) == 1 and not isinstance(want, tuple) else want
    outputs = dict(zip(task.outputs, grads, strict=True))
    outcome = compare_outputs(
        outputs,
        wants,
        task.mistakes,
        grad_args,
        case,
        float32_by_size=task.float32_by_size,
        rtol=task.rtol,
        atol=task.atol,
    )
    outcome.setup_ok = setup_ok
    return outcome


def _single(value, label):
    """The one array a function returns (not a tuple): CallError for None or a tuple."""
    if value is None:
        raise CallError(
            _("{label} returned None: expected out, an array; is a `return` missing?").format(
                label=label
            )
        )
    if isinstance(value, tuple | list):
        raise CallError(
            _(
                "{label} returned a {type} of length {length}: return only out, the array (no "
                "cache: no backward pass needs one here)"
            ).format(label=label, type=type_name(value), length=len(value))
        )
    return value


def run_cases(run_case, cases, budget=None):
    """run_case(case, budget) for each case in order, all sharing one time budget; stops at the
    first case whose learner code does not finish in time (its outcome says so). Returns the
    outcomes: fewer than the cases when it stopped."""
    budget, outcomes = budget or Budget(), []
    for case in cases:
        try:
            outcomes.append(run_case(case, budget))
        except Stop as stop:
            outcomes.append(Outcome(case, str(stop)))
            break
    return outcomes


def _weight(case):
    """A case's weight in the score: 0 for a degenerate case wrong code may pass by chance."""
    return float(getattr(case, "weight", 1.0))


def summary(label, outcomes, total, catalogues, notes=(), points=1.0):
    """The CheckResult for the case outcomes (fewer than `total` when the check had to stop).

    `catalogues` maps each output's name to its mistakes, for the "likely mistake" part. The
    score is the weighted fraction of the cases passed times `points`, within [0, points].
    """
    passed = sum(o.reason is None for o in outcomes)
    weights = [_weight(o.case) for o in outcomes]
    # NB: a degenerate case (weight 0) must pass, but wrong code passing it earns nothing
    skipped = total - len(outcomes)
    earned = sum(w for o, w in zip(outcomes, weights, strict=True) if o.reason is None)
    whole = sum(weights) + skipped
    if passed == total:
        cases = case_list(_(o.case.short) for o in outcomes)
        feedback = _("{label}: all {total} hidden cases match ({cases}).").format(
            label=label, total=total, cases=cases
        )
        return CheckResult(True, float(points), feedback, float(points))
    failing = [o for o in outcomes if o.reason is not None]
    if len(outcomes) < total:
        parts = [
            _("{label}: stopped at hidden case {done} of {total}").format(
                label=label, done=len(outcomes), total=total
            )
        ]
    elif len(failing) == total:
        parts = [_("{label}: all {total} hidden cases failed").format(label=label, total=total)]
    else:
        parts = [
            _("{label}: {failed} of {total} hidden cases failed").format(
                label=label, failed=len(failing), total=total
            )
        ]
    hints = []
    for output, catalogue in catalogues.items():
        best = best_hint([(o.hints or {}).get(output, []) for o in failing], catalogue)
        if best is not None and best not in hints:
            hints.append(best)
    if hints:
        lead = _("Likely mistake:") if len(hints) == 1 else _("Likely mistakes:")
        parts.append(_(_LEAD).format(lead=lead, hints=join_list(_(h) for h in hints)))
    first = failing[0]
    if len(failing) == total and len({o.reason for o in failing}) == 1:
        parts.append(first.reason)  # the same reason every time: say it once
    else:
        parts.append(
            _("First failing case ({case}): {reason}").format(
                case=_(first.case.name), reason=first.reason
            )
        )
    if len(outcomes) < total and first is not outcomes[-1]:
        parts.append(outcomes[-1].reason)
    if len(failing) == 1 and not hints and first.case.hint:
        parts.append(_("Hint: {hint}").format(hint=_(first.case.hint)))
    parts.extend(notes)
    fraction = earned / whole if whole else 0.0
    score = min(max(fraction * points, 0.0), points)
    return fail(sentences(parts), score, points)


# How the feedback's sentences end and follow each other, in the language shown: English
# "A. B? C.", Chinese "A。B？C。" (a full-width full stop, and no space after it)
_SENTENCE = N_("{sentence}.")
_NEXT_SENTENCE = N_("{sentences} {sentence}")
_STOPS = ". \u3002"  # what a phrase may already end with: its own full stop is not doubled
_QUESTION_MARKS = ("?", "\uff1f")


def sentences(parts):
    """Join phrases into sentences, each ending in one full stop (or its own question mark),
    as the language of the feedback writes them (through bnlib.i18n)."""
    close, follow = _(_SENTENCE), _(_NEXT_SENTENCE)
    text = None
    for part in parts:
        part = part.rstrip(_STOPS)
        sentence = part if part.endswith(_QUESTION_MARKS) else close.format(sentence=part)
        text = sentence if text is None else follow.format(sentences=text, sentence=sentence)
    return text or ""


_CASE_LIST = N_("{cases}; {case}")  # NB: not ", ": a case's name may hold commas (N=4, D=5)


def case_list(names):
    """The names of cases as one list, "N=4, D=5; N=1" in English (through bnlib.i18n)."""
    follow, text = _(_CASE_LIST), None
    for name in names:
        text = name if text is None else follow.format(cases=text, case=name)
    return text or ""


def join_list(items, commas=False):
    """The phrases `items` as one list, "a; b; c" in English ("a, b, c" with commas=True, for
    short items), the separator translated through bnlib.i18n."""
    follow, text = _(_COMMA_LIST if commas else _LIST), None
    for item in items:
        text = item if text is None else follow.format(first=text, second=item)
    return text or ""


def sentence_break():
    """What `sentences` puts between two sentences after a full stop (". " in English)."""
    return _(_SENTENCE).format(sentence="") + _(_NEXT_SENTENCE).format(sentences="", sentence="")


def run_task(task, namespace) -> CheckResult:
    """task.run(namespace), never raising: a task that raises, or returns something else than a
    CheckResult with a finite score, gives a failing result."""
    points = float(getattr(task, "points", 1.0))
    try:
        result = task.run(namespace)
    except Exception as e:  # noqa: BLE001 - one broken task must not hide the others
        return fail(
            _("{task}: the check itself failed ({error})").format(
                task=task.name, error=describe_exception(e)
            ),
            max_score=points,
        )
    if not isinstance(result, CheckResult) or not math.isfinite(result.score):
        return fail(
            _("{task}: the check returned {type}").format(task=task.name, type=type_name(result)),
            max_score=points,
        )
    return result


def run_tasks(tasks, namespace) -> list[tuple[str, CheckResult]]:
    """Run each task against `namespace`: [(task name, CheckResult)], in order."""
    return [(t.name, run_task(t, namespace)) for t in tasks]
