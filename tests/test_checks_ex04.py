"""bnlib.checks_ex04: right code passes, each named mistake is diagnosed, broken code fails
cleanly with a one-line reason (never an exception)."""

import time

import numpy as np
import pytest

from bnlib import checks
from bnlib.checks import CheckResult, check_batch_renorm_forward, check_global_batch_stats
from bnlib.checks_ex04 import (
    BATCH_RENORM_MISTAKES,
    GLOBAL_STATS_MISTAKES,
    batch_renorm_reference,
    global_stats_reference,
)

# --- right implementations, written here independently of bnlib ----------------------------------


def renorm(x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5):
    mu, var = x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).mean(axis=0)
    sigma_b, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    r = np.clip(sigma_b / sigma, 1.0 / rmax, rmax)
    d = np.clip((mu - running_mean) / sigma, -dmax, dmax)
    return gamma * ((x - mu) / sigma_b * r + d) + beta, (r, d)


def stats(per_process_batches):
    count = sum(b.shape[0] for b in per_process_batches)
    total = sum(b.sum(axis=0) for b in per_process_batches)
    squares = sum((b**2).sum(axis=0) for b in per_process_batches)
    mean = total / count
    return mean, squares / count - mean**2


def test_right_implementations_pass():
    for result in (check_batch_renorm_forward(renorm), check_global_batch_stats(stats)):
        assert isinstance(result, CheckResult)
        assert result.passed and result.score == 1.0, result.feedback


# --- each named mistake is diagnosed -------------------------------------------------------------

RENORM_VARIANTS = [
    "no_clip",
    "r_upper_only",
    "r_inverted",
    "d_sign",
    "d_not_scaled",
    "no_eps_sigma",
    "plain_bn",
    "d_before_r",
    "unbiased",
    "no_affine",
]


@pytest.mark.parametrize(
    "variant, mistake", list(zip(RENORM_VARIANTS, BATCH_RENORM_MISTAKES, strict=True))
)
def test_each_renorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, m, v, rmax, dmax, eps=1e-5):
        return batch_renorm_reference(x, g, b, m, v, rmax, dmax, eps, variant=variant), None

    result = check_batch_renorm_forward(learner)
    assert not result.passed
    assert mistake.hint in result.feedback, result.feedback


STATS_VARIANTS = ["mean_of_means", "mean_of_vars", "unbiased", "std", "first_only"]


@pytest.mark.parametrize(
    "variant, mistake", list(zip(STATS_VARIANTS, GLOBAL_STATS_MISTAKES, strict=True))
)
def test_each_global_stats_mistake_is_named(variant, mistake):
    def learner(batches):
        with np.errstate(all="ignore"):
            return global_stats_reference(batches, variant=variant)

    result = check_global_batch_stats(learner)
    assert not result.passed
    assert mistake.hint in result.feedback, result.feedback


def test_the_empty_process_case_has_its_hint():
    def per_process_means(batches):  # right, except that it forms 0/0 for an empty process
        counts = np.array([len(b) for b in batches], dtype=float)
        means = np.array(
            [b.mean(axis=0) if len(b) else np.full(b.shape[1], np.nan) for b in batches]
        )
        mean = (counts[:, None] * means).sum(axis=0) / counts.sum()
        return mean, np.concatenate(batches).var(axis=0)

    result = check_global_batch_stats(per_process_means)
    assert not result.passed and result.score == 0.8
    assert "count 0" in result.feedback and "NaN" in result.feedback, result.feedback


# --- broken code fails cleanly -------------------------------------------------------------------


def _stuck(*args):
    time.sleep(5)


BROKEN = {
    "returns None": (lambda *a: None, "returned None"),
    "returns an array": (lambda *a: np.zeros(3), "expected a tuple"),
    "raises": (lambda *a: 1 / 0, "ZeroDivisionError"),
    "not implemented": (lambda *a: (_ for _ in ()).throw(NotImplementedError()), "replace"),
    "NaN": (
        lambda *a: (np.full_like(a[0][0] if isinstance(a[0], list) else a[0], np.nan),) * 2,
        "",
    ),
}


@pytest.mark.parametrize("check", [check_batch_renorm_forward, check_global_batch_stats])
@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_code_fails_with_a_reason(check, name):
    fn, words = BROKEN[name]
    result = check(fn)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert words in result.feedback and "\n" not in result.feedback, result.feedback


def test_not_callable_and_input_mutation():
    assert "must be a function" in check_batch_renorm_forward(42).feedback

    def updates_running_in_place(x, g, b, m, v, rmax, dmax, eps=1e-5):
        out, cache = renorm(x, g, b, m, v, rmax, dmax, eps)
        m += 0.1 * (x.mean(axis=0) - m)
        return out, cache

    result = check_batch_renorm_forward(updates_running_in_place)
    assert not result.passed and "running_mean in place" in result.feedback, result.feedback

    def centers_in_place(batches):
        for b in batches:
            b -= 1.0
        return stats(batches)

    result = check_global_batch_stats(centers_in_place)
    assert not result.passed and "in place" in result.feedback, result.feedback


def test_wrong_shape_and_dtype():
    result = check_global_batch_stats(lambda bs: (np.zeros(1), np.zeros(1)))
    assert "shape" in result.feedback
    result = check_batch_renorm_forward(lambda *a: (renorm(*a)[0].astype(np.float32), None))
    assert "dtype float32" in result.feedback


def test_a_function_that_never_returns_is_abandoned(monkeypatch):
    monkeypatch.setattr(checks, "CALL_TIMEOUT", 0.3)
    monkeypatch.setattr(checks, "CHECK_TIMEOUT", 0.5)
    for check in (check_batch_renorm_forward, check_global_batch_stats):
        result = check(_stuck)
        assert not result.passed and "did not return" in result.feedback, result.feedback
