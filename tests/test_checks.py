"""bnlib.checks: pass right code, name each known mistake, never raise on broken code."""

import threading
import time
import warnings
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from bnlib.checks import (
    CheckResult,
    check_batchnorm_backward,
    check_batchnorm_forward,
    check_spatial_batchnorm_backward,
    check_spatial_batchnorm_forward,
)
from bnlib.grading import engine
from bnlib.grading.engine import Mistake, matching_mistakes, outputs_match, run_tasks
from bnlib.grading.exercises import TASKS, ex01

# --- right implementations, written here independently of bnlib ----------------------------------


def forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    xc = x - mu
    std = np.sqrt((xc**2).mean(axis=0) + eps)
    xhat = xc / std
    return gamma * xhat + beta, (xc, std, xhat, gamma)


def backward_staged(dout, cache):
    xc, std, xhat, gamma = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dxc = dxhat / std
    dvar = -(dxhat * xc).sum(axis=0) / std**3 / 2
    dxc = dxc + 2 * xc * dvar / N
    dx = dxc - dxc.sum(axis=0) / N
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def backward_alt(dout, cache):
    _, std, xhat, gamma = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def test_right_implementations_pass():
    for result in (
        check_batchnorm_forward(forward),
        check_batchnorm_backward(forward, backward_staged),
        check_batchnorm_backward(forward, backward_alt),
    ):
        assert isinstance(result, CheckResult)
        assert result.passed and result.score == 1.0, result.feedback
        assert "all 6 hidden cases match" in result.feedback


def test_the_check_does_not_touch_the_learners_random_state():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    check_batchnorm_backward(forward, backward_alt)
    assert np.array_equal(np.random.get_state()[1], before)


# --- forward mistakes ----------------------------------------------------------------------------


def _bn(x, gamma, beta, eps=1e-5, *, axis=0, ddof=0, where="inside", center=True, root=True):
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True, ddof=ddof)
    if not root:
        denom = var + eps
    elif where == "inside":
        denom = np.sqrt(var + eps)
    elif where == "outside":
        denom = np.sqrt(var) + eps
    else:
        denom = np.sqrt(var)
    return ((x - mu) if center else x) / denom


def _with_cache(f):
    return lambda x, gamma, beta, eps=1e-5: (f(x, gamma, beta, eps), None)


FORWARD_BUGS = {
    "unbiased variance": lambda x, g, b, eps: g * _bn(x, g, b, eps, ddof=1) + b,
    "eps outside the square root": lambda x, g, b, eps: g * _bn(x, g, b, eps, where="outside") + b,
    "no eps": lambda x, g, b, eps: g * _bn(x, g, b, eps, where="none") + b,
    "no square root": lambda x, g, b, eps: g * _bn(x, g, b, eps, root=False) + b,
    "axis 1": lambda x, g, b, eps: g * _bn(x, g, b, eps, axis=1) + b,
    "whole array": lambda x, g, b, eps: g * _bn(x, g, b, eps, axis=None) + b,
    "mean is not subtracted": lambda x, g, b, eps: g * _bn(x, g, b, eps, center=False) + b,
    "gamma and beta swapped": lambda x, g, b, eps: b * _bn(x, g, b, eps) + g,
    "affine step is missing": lambda x, g, b, eps: _bn(x, g, b, eps),
    "beta is missing": lambda x, g, b, eps: g * _bn(x, g, b, eps),
    "gamma is missing": lambda x, g, b, eps: _bn(x, g, b, eps) + b,
    "eps argument is ignored": lambda x, g, b, eps: g * _bn(x, g, b) + b,
}


@pytest.mark.parametrize("keyword", sorted(FORWARD_BUGS))
def test_forward_mistakes_are_named(keyword):
    result = check_batchnorm_forward(_with_cache(FORWARD_BUGS[keyword]))
    assert not result.passed and result.score < 1
    assert "Likely mistake: " in result.feedback
    assert keyword in result.feedback.split("Likely mistake: ")[1].split(". First")[0]


def test_one_pass_variance_fails_only_the_large_offset_case_with_its_hint():
    def one_pass(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=0)
        var = (x**2).mean(axis=0) - mu**2  # NB: cancels catastrophically at a large offset
        return gamma * (x - mu) / np.sqrt(var + eps) + beta, None

    result = check_batchnorm_forward(one_pass)
    assert not result.passed
    assert result.score == pytest.approx(5 / 6)
    assert "large offsets" in result.feedback and "E[x^2] - E[x]^2" in result.feedback


def test_per_sample_mean_without_keepdims_reports_the_broadcast_error():
    def bug(x, gamma, beta, eps=1e-5):
        return gamma * (x - x.mean(axis=1)) / np.sqrt(x.var(axis=1) + eps) + beta, None

    result = check_batchnorm_forward(bug)
    assert not result.passed
    assert "raised ValueError: operands could not be broadcast" in result.feedback
    assert "of bug)" in result.feedback  # names the learner's function and line


# --- backward mistakes ---------------------------------------------------------------------------


def _backward_with(dx=None, dgamma=None, dbeta=None):
    def backward(dout, cache):
        xc, std, xhat, gamma = cache
        N = dout.shape[0]
        right = backward_alt(dout, cache)
        return (
            right[0] if dx is None else dx(dout, xhat, gamma, std, N),
            right[1] if dgamma is None else dgamma(dout, xhat, xc),
            right[2] if dbeta is None else dbeta(dout, xhat),
        )

    return backward


BACKWARD_BUGS = {
    "mean term is missing": _backward_with(
        dx=lambda d, xh, g, s, N: (N * d * g - xh * (d * g * xh).sum(0)) / (N * s)
    ),
    "variance term is missing": _backward_with(
        dx=lambda d, xh, g, s, N: (N * d * g - (d * g).sum(0)) / (N * s)
    ),
    "treated as constants": _backward_with(dx=lambda d, xh, g, s, N: d * g / s),
    "gradient with respect to xhat": _backward_with(dx=lambda d, xh, g, s, N: d * g),
    "dx: gamma is missing": _backward_with(
        dx=lambda d, xh, g, s, N: (N * d - d.sum(0) - xh * (d * xh).sum(0)) / (N * s)
    ),
    "N times too large": _backward_with(
        dx=lambda d, xh, g, s, N: (N * d * g - (d * g).sum(0) - xh * (d * g * xh).sum(0)) / s
    ),
    "dgamma and dbeta swapped": _backward_with(
        dgamma=lambda d, xh, xc: d.sum(0), dbeta=lambda d, xh: (d * xh).sum(0)
    ),
    "summed over axis 1": _backward_with(
        dgamma=lambda d, xh, xc: (d * xh).sum(1), dbeta=lambda d, xh: d.sum(1)
    ),
    "not summed over the batch": _backward_with(
        dgamma=lambda d, xh, xc: d * xh, dbeta=lambda d, xh: d
    ),
    "averaged over the batch": _backward_with(
        dgamma=lambda d, xh, xc: (d * xh).mean(0), dbeta=lambda d, xh: d.mean(0)
    ),
}


@pytest.mark.parametrize("keyword", sorted(BACKWARD_BUGS))
def test_backward_mistakes_are_named(keyword):
    result = check_batchnorm_backward(forward, BACKWARD_BUGS[keyword], name="batchnorm_backward")
    assert not result.passed and result.score < 1
    assert result.feedback.startswith("batchnorm_backward: ")
    hints = result.feedback.split("Likely mistake")[1].split(". First")[0]
    assert keyword in hints


def test_dgamma_from_x_instead_of_xhat_is_named():
    # x itself, not x - mean: the cache above only has xc, so rebuild x from a cache holding it
    def fwd(x, gamma, beta, eps=1e-5):
        out, cache = forward(x, gamma, beta, eps)
        return out, (cache, x)

    def bwd(dout, cache):
        (xc, std, xhat, gamma), x = cache
        dx, _, dbeta = backward_alt(dout, (xc, std, xhat, gamma))
        return dx, (dout * x).sum(axis=0), dbeta

    result = check_batchnorm_backward(fwd, bwd)
    assert not result.passed and "not the input x" in result.feedback


def test_exact_gradient_of_an_unbiased_forward_is_named():
    def fwd(x, gamma, beta, eps=1e-5):
        xc = x - x.mean(axis=0)
        std = np.sqrt(x.var(axis=0, ddof=1) + eps)
        return gamma * xc / std + beta, (xc / std, std, gamma)

    def bwd(dout, cache):  # the right derivative of the wrong (N - 1) forward
        xhat, std, gamma = cache
        N = dout.shape[0]
        dxhat = dout * gamma
        dx = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).sum(0) / (N - 1)) / std
        return dx, (dout * xhat).sum(0), dout.sum(0)

    result = check_batchnorm_backward(fwd, bwd)
    assert not result.passed
    assert "unbiased variance (N - 1)" in result.feedback
    assert "fails its own check too" in result.feedback


def test_a_dx_that_an_all_ones_dout_would_accept_fails():
    # With dout = 1 everywhere the true dx is exactly 0; the check's dout is random.
    x = np.random.default_rng(0).standard_normal((5, 3))
    cache = forward(x, np.ones(3), np.zeros(3))[1]
    assert np.allclose(backward_alt(np.ones((5, 3)), cache)[0], 0.0)

    def zeros(dout, cache):
        _, dgamma, dbeta = backward_alt(dout, cache)
        return np.zeros_like(dout), dgamma, dbeta

    result = check_batchnorm_backward(forward, zeros)
    assert not result.passed and result.score == 0.0
    assert "dx differs from the reference" in result.feedback
    # named as what it is, not as a missing eps (a backward without eps gives dx = 0 at N=2 too)
    assert "Likely mistake: dx is zero everywhere: only a constant dout" in result.feedback
    assert "eps" not in result.feedback.split("First failing")[0], result.feedback


def _no_eps_forward(x, gamma, beta, eps=1e-5):
    out, (xc, std, xhat, g) = forward(x, gamma, beta, eps)
    return out, (xc, (xc**2).mean(axis=0), std, xhat, g)  # var without eps, for the backward


def _backward_without_eps(dout, cache):  # eps left out everywhere: xhat and std from var alone
    xc, var, _, xhat_eps, gamma = cache
    N = dout.shape[0]
    with np.errstate(all="ignore"):  # the constant feature: 0 / 0
        std = np.sqrt(var)
        xhat, dxhat = xc / std, dout * gamma
        dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * std)
    return dx, (dout * xhat_eps).sum(axis=0), dout.sum(axis=0)


def _backward_without_eps_in_dvar(dout, cache):  # staged: eps left out of dvar only
    xc, var, std, xhat, gamma = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    with np.errstate(all="ignore"):
        dvar = -0.5 * (dxhat * xc).sum(axis=0) * var**-1.5
    dxc = dxhat / std + 2 * xc * dvar / N
    return dxc - dxc.mean(axis=0), (dout * xhat).sum(axis=0), dout.sum(axis=0)


@pytest.mark.parametrize("backward", [_backward_without_eps, _backward_without_eps_in_dvar])
def test_a_backward_without_eps_is_named_as_such_not_as_zero(backward):
    result = check_batchnorm_backward(_no_eps_forward, backward)
    assert not result.passed
    assert "Likely mistake: dx: eps is missing in the backward pass" in result.feedback
    assert "zero everywhere" not in result.feedback and "float32" not in result.feedback


# --- broken code never makes a check raise -------------------------------------------------------


def _out(value):
    return lambda x, gamma, beta, eps=1e-5: value(x)


def _raise(exc):
    def f(*args, **kwargs):
        raise exc

    return f


def _modify_x(x, gamma, beta, eps=1e-5):
    out = forward(x, gamma, beta, eps)
    x -= 1.0
    return out


BROKEN_FORWARDS = {
    "returned None": lambda *a: None,
    "returned a list of length 3": lambda *a: [1, 2, 3],
    "returned numpy.ndarray of shape": lambda x, g, b, eps=1e-5: forward(x, g, b, eps)[0],
    "returned a tuple of length 3": lambda x, g, b, eps=1e-5: (*forward(x, g, b, eps), 0),
    "out is a list": _out(lambda x: (x.tolist(), None)),
    "out is None": _out(lambda x: (None, None)),
    "out has shape": _out(lambda x: (x.T.copy(), None)),
    "out has dtype float32": _out(lambda x: (x.astype(np.float32), None)),
    "out contains NaN": _out(lambda x: (np.full_like(x, np.nan), None)),
    "out contains inf": _out(lambda x: (np.full_like(x, np.inf), None)),
    "raised ZeroDivisionError: boom": _raise(ZeroDivisionError("boom")),
    "raised NotImplementedError": _raise(NotImplementedError),
    "raised SystemExit": _raise(SystemExit(1)),
    "raised KeyboardInterrupt": _raise(KeyboardInterrupt),
    "raised TypeError": lambda x: x,  # wrong signature
    "modified its argument x in place": _modify_x,
}


@pytest.mark.parametrize("reason", sorted(BROKEN_FORWARDS))
def test_broken_forwards_fail_with_a_one_line_reason(reason):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the check itself does not warn
        result = check_batchnorm_forward(BROKEN_FORWARDS[reason])
    assert isinstance(result, CheckResult)
    assert not result.passed and result.score == 0.0
    assert reason in result.feedback
    assert "\n" not in result.feedback


def test_not_implemented_says_what_to_do():
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        raise NotImplementedError  # YOUR CODE HERE

    result = check_batchnorm_forward(batchnorm_forward)
    assert "replace `raise NotImplementedError` with your code" in result.feedback
    backward = check_batchnorm_backward(batchnorm_forward, backward_alt)
    assert "called first, to make the cache" in backward.feedback


BROKEN_BACKWARDS = {
    "returned None": lambda dout, cache: None,
    "of length 2": lambda dout, cache: backward_alt(dout, cache)[:2],
    "dgamma is None": lambda dout, cache: (backward_alt(dout, cache)[0], None, dout.sum(0)),
    "dx has shape": lambda dout, cache: (dout[:1], *backward_alt(dout, cache)[1:]),
    "dbeta has dtype float32": lambda dout, cache: (
        *backward_alt(dout, cache)[:2],
        dout.sum(0).astype(np.float32),
    ),
    "raised RuntimeError: bad": _raise(RuntimeError("bad\nsecond line")),
}


@pytest.mark.parametrize("reason", sorted(BROKEN_BACKWARDS))
def test_broken_backwards_fail_with_a_one_line_reason(reason):
    result = check_batchnorm_backward(forward, BROKEN_BACKWARDS[reason])
    assert not result.passed and result.score == 0.0
    assert reason in result.feedback and "\n" not in result.feedback


def test_a_backward_that_modifies_dout_fails():
    def bwd(dout, cache):
        grads = backward_alt(dout.copy(), cache)
        dout *= 2
        return grads

    result = check_batchnorm_backward(forward, bwd)
    assert not result.passed and "modified its argument dout in place" in result.feedback


@pytest.mark.parametrize("bad", [None, 3, "batchnorm_forward", np.zeros(3)])
def test_non_callables_fail(bad):
    for result in (
        check_batchnorm_forward(bad),
        check_batchnorm_backward(bad, backward_alt),
        check_batchnorm_backward(forward, bad),
    ):
        assert not result.passed and "must be a function" in result.feedback


def test_a_function_that_never_returns_fails_within_the_time_limit():
    stop = threading.Event()  # lets the test end the loop; the check cannot and does not

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        while not stop.is_set():
            pass

    start = time.monotonic()
    try:
        result = check_batchnorm_forward(batchnorm_forward)
    finally:
        stop.set()
    elapsed = time.monotonic() - start
    assert engine.CALL_TIMEOUT == 10.0
    assert elapsed < 12.0
    assert not result.passed and result.score == 0.0
    assert "did not return within 10 s" in result.feedback
    assert "restart the kernel" in result.feedback


def test_a_slow_function_is_stopped_by_the_checks_total_time(monkeypatch):
    monkeypatch.setattr(engine, "CALL_TIMEOUT", 0.5)
    monkeypatch.setattr(engine, "CHECK_TIMEOUT", 1.0)

    def slow(x, gamma, beta, eps=1e-5):
        time.sleep(0.3)
        return forward(x, gamma, beta, eps)

    start = time.monotonic()
    result = check_batchnorm_forward(slow)
    assert time.monotonic() - start < 1.5
    assert not result.passed and 0 < result.score < 1  # the cases run before the limit count
    assert "stopped at hidden case" in result.feedback and "ran out" in result.feedback


def test_a_bug_in_a_check_becomes_a_failing_result(monkeypatch):
    monkeypatch.setattr(ex01, "FORWARD", replace(ex01.FORWARD, cases=lambda: 1 / 0))
    result = check_batchnorm_forward(forward)
    assert not result.passed and "the check itself failed (ZeroDivisionError" in result.feedback


# --- the result object and the generic diagnosis -------------------------------------------------


def test_check_result_shows_itself():
    ok, bad = CheckResult(True, 1.0, "fine"), CheckResult(False, 0.5, "x < y & z")
    assert str(ok).startswith("PASS") and str(bad).startswith("FAIL")
    assert "0.50/1" in str(bad)
    html = bad._repr_html_()
    assert "FAIL" in html and "❌" in html and "x &lt; y &amp; z" in html
    assert "PASS" in ok._repr_html_() and "✅" in ok._repr_html_()
    with pytest.raises(AttributeError):
        ok.passed = False  # frozen


def test_outputs_match_scales_its_tolerance_and_compares_shapes():
    a = np.array([1e3, 2e3])
    assert outputs_match(a + 1e-7, a)
    assert not outputs_match(a + 1e-2, a)
    assert not outputs_match(a[:1], a)
    assert outputs_match(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert not outputs_match(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert not outputs_match("not numbers", a)


def test_matching_mistakes_is_generic():
    catalogue = [
        Mistake("doubled", lambda v: 2 * v),
        Mistake("crashes", lambda v: 1 / 0),
        Mistake("unchanged", lambda v: v),
        Mistake("negated", lambda v: -v),
    ]
    v = np.array([1.0, 2.0])
    assert matching_mistakes(2 * v, catalogue, v) == ["doubled"]
    assert matching_mistakes(-v, catalogue, v) == ["negated"]
    assert matching_mistakes(v, catalogue, v) == ["unchanged"]
    # a mistake that gives the right answer on these inputs says nothing
    assert matching_mistakes(v, catalogue, v, reference=v) == []
    assert matching_mistakes(3 * v, catalogue, v) == []


def test_a_named_mistake_is_not_also_called_float32():
    # NB: a mistake may differ from the reference by as little as float32's rounding (eps outside
    # the root); its hint says what is wrong, and "computed in float32?" would mislead
    want = np.linspace(1.0, 2.0, 8)
    got = want * (1 + 1e-5)
    case = SimpleNamespace(name="c", short="c", hint="")
    named = [Mistake("scaled by 1 + 1e-5", lambda w: w * (1 + 1e-5))]
    outcome = engine.compare_outputs({"out": got}, (want,), {"out": named}, (want,), case)
    assert outcome.hints == {"out": ["scaled by 1 + 1e-5"]}
    assert "float32" not in outcome.reason, outcome.reason
    unexplained = engine.compare_outputs({"out": got}, (want,), {"out": []}, (want,), case)
    assert "computed in float32?" in unexplained.reason, unexplained.reason
    result = engine.summary("f", [outcome], 1, {"out": named})
    assert "Likely mistake: scaled by 1 + 1e-5" in result.feedback and "float32" not in str(result)


# --- the registry --------------------------------------------------------------------------------


def test_ex01_tasks_run_against_a_namespace():
    names = [t.name for t in TASKS["ex01_forward_backward"]]
    assert names == [
        "batchnorm_forward",
        "batchnorm_backward",
        "batchnorm_backward_alt",
        "spatial_batchnorm_forward",
        "spatial_batchnorm_backward",
    ]
    namespace = {
        "batchnorm_forward": forward,
        "batchnorm_backward": backward_staged,
        "batchnorm_backward_alt": backward_alt,
        "spatial_batchnorm_forward": spatial_forward,
        "spatial_batchnorm_backward": spatial_backward,
    }
    results = run_tasks(TASKS["ex01_forward_backward"], namespace)
    assert [name for name, _ in results] == names
    assert all(r.passed for _, r in results)

    del namespace["batchnorm_backward"]
    namespace["batchnorm_backward_alt"] = BACKWARD_BUGS["variance term is missing"]
    results = dict(run_tasks(TASKS["ex01_forward_backward"], namespace))
    assert results["batchnorm_forward"].passed
    assert results["batchnorm_backward"].feedback.startswith("batchnorm_backward is not defined")
    assert results["batchnorm_backward_alt"].feedback.startswith("batchnorm_backward_alt: ")
    assert "variance term is missing" in results["batchnorm_backward_alt"].feedback


def test_run_tasks_survives_a_broken_task(monkeypatch):
    broken = SimpleNamespace(name="broken", run=lambda ns: 1 / 0)
    not_a_result = SimpleNamespace(name="odd", run=lambda ns: "yes")
    (_, r1), (_, r2) = run_tasks([broken, not_a_result], {})
    assert not r1.passed and "ZeroDivisionError" in r1.feedback
    assert not r2.passed and "returned str" in r2.feedback


# --- more named mistakes: float32, var used as std, degenerate cases -----------------------------


def test_a_forward_computed_in_float32_and_cast_back_is_told_so():
    def in_float32(x, gamma, beta, eps=1e-5):
        out, cache = forward(x.astype(np.float32), gamma.astype(np.float32), beta, eps)
        return out.astype(np.float64), cache

    result = check_batchnorm_forward(in_float32)
    assert not result.passed
    assert "computed in float32? compute in float64" in result.feedback, result.feedback

    def cast_back(x, gamma, beta, eps=1e-5):  # all in float32: every entry a float32 number
        f32 = [a.astype(np.float32) for a in (x, gamma, beta)]
        return forward(*f32, np.float32(eps))[0].astype(np.float64), None

    result = check_batchnorm_forward(cast_back)
    assert not result.passed and "every entry is a float32 number" in result.feedback
    # a float64 mistake is not called float32
    result = check_batchnorm_forward(lambda x, g, b, eps=1e-5: (forward(x, g, b, eps)[0] + 1e-3, 0))
    assert not result.passed and "float32" not in result.feedback, result.feedback


@pytest.mark.parametrize("with_eps", [True, False])
@pytest.mark.parametrize("staged", [True, False])
def test_var_used_as_std_in_the_backward_is_named(staged, with_eps):
    def fwd(x, gamma, beta, eps=1e-5):
        out, (xc, std, xhat, g) = forward(x, gamma, beta, eps)
        var = (xc**2).mean(axis=0)
        return out, (xc, var + eps if with_eps else var, xhat, g)  # var, cached as "std"

    bwd = backward_staged if staged else backward_alt
    result = check_batchnorm_backward(fwd, bwd, name="batchnorm_backward")
    assert not result.passed
    assert "the variance was used where the standard deviation belongs" in result.feedback


def test_the_n2_case_must_pass_but_earns_nothing_in_the_backward():
    # at N=2, dx = 0 for BN with the biased or the unbiased variance: wrong code may pass it
    def right_at_n2_only(dout, cache):
        dx, dgamma, dbeta = backward_alt(dout, cache)
        return (dx if dout.shape[0] == 2 else dx + 1.0), dgamma, dbeta

    result = check_batchnorm_backward(forward, right_at_n2_only)
    assert not result.passed and result.score == 0.0, result.feedback
    assert "5 of 6 hidden cases failed" in result.feedback

    def wrong_at_n2_only(dout, cache):
        dx, dgamma, dbeta = backward_alt(dout, cache)
        return (dx + 1.0 if dout.shape[0] == 2 else dx), dgamma, dbeta

    result = check_batchnorm_backward(forward, wrong_at_n2_only)
    assert not result.passed and result.score == 1.0, result.feedback


# --- task 4: spatial batch norm, (N, C, H, W) ----------------------------------------------------


def _to_rows(a):
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])  # (N*H*W, C)


def _from_rows(a, shape):
    N, C, H, W = shape
    return a.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def spatial_forward(x, gamma, beta, eps=1e-5):
    out, cache = forward(_to_rows(x), gamma, beta, eps)
    return _from_rows(out, x.shape), (cache, x.shape)


def spatial_backward(dout, cache):
    cache, shape = cache
    dx, dgamma, dbeta = backward_staged(_to_rows(dout), cache)
    return _from_rows(dx, shape), dgamma, dbeta


def test_spatial_right_implementations_pass_fixed_and_hidden_cases():
    for secret in (None, 1, 2):
        if secret is None:
            results = [
                check_spatial_batchnorm_forward(spatial_forward),
                check_spatial_batchnorm_backward(spatial_forward, spatial_backward),
            ]
        else:
            with engine.hidden_cases(secret):
                results = [
                    check_spatial_batchnorm_forward(spatial_forward),
                    check_spatial_batchnorm_backward(spatial_forward, spatial_backward),
                ]
        for result in results:
            assert result.passed and result.score == 1.0, result.feedback


def _per_channel(a):
    return a[None, :, None, None]


def _axes_forward(axes, ddof=0):
    def fwd(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True, ddof=ddof)
        return _per_channel(gamma) * (x - mu) / np.sqrt(var + eps) + _per_channel(beta), None

    return fwd


def _reshaped_forward(transpose, back):
    def fwd(x, gamma, beta, eps=1e-5):
        N, C, H, W = x.shape
        rows = _to_rows(x) if transpose else x.reshape(-1, C)
        out, cache = forward(rows, gamma, beta, eps)
        out = _from_rows(out, x.shape) if back else out.reshape(x.shape)
        return out, (cache, x.shape, transpose, back)

    return fwd


def _reshaped_backward(dout, cache):
    cache, shape, transpose, back = cache
    N, C, H, W = shape
    rows = _to_rows(dout) if transpose else dout.reshape(-1, C)
    dx, dgamma, dbeta = backward_alt(rows, cache)
    return (_from_rows(dx, shape) if back else dx.reshape(shape)), dgamma, dbeta


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (_axes_forward((0,)), "statistics over N only"),
        (_axes_forward((0, 1)), "statistics over (N, C), one per position"),
        (_reshaped_forward(False, False), "x.reshape(-1, C) straight from (N, C, H, W)"),
        (_reshaped_forward(True, False), "the (N*H*W, C) result was reshaped straight to"),
        (_axes_forward((0, 2, 3), ddof=1), "unbiased variance (divided by N*H*W - 1)"),
        (_axes_forward((1, 2, 3)), "statistics per sample over (C, H, W) (layer norm)"),
        (_axes_forward((2, 3)), "statistics per sample and channel over (H, W)"),
    ],
)
def test_spatial_forward_mistakes_are_named(wrong, hint):
    result = check_spatial_batchnorm_forward(wrong)
    assert not result.passed and result.score == 0.0, result.feedback
    assert f"Likely mistake: {hint}" in result.feedback, result.feedback


@pytest.mark.parametrize(
    "fwd, hint",
    [
        (_reshaped_forward(False, False), "x.reshape(-1, C) straight from (N, C, H, W)"),
        (_reshaped_forward(True, False), "reshaped straight to (N, C, H, W)"),
    ],
)
def test_spatial_backward_reshape_mistakes_are_named(fwd, hint):
    result = check_spatial_batchnorm_backward(fwd, _reshaped_backward)
    assert not result.passed and result.score == 0.0, result.feedback
    assert hint in result.feedback and "fails its own check too" in result.feedback


def test_spatial_backward_other_mistakes_are_named():
    def per_position(dout, cache):  # dx as if the statistics were per channel and position
        cache, shape = cache
        N = shape[0]
        x = _from_rows(cache[0], shape)
        g = cache[3]
        xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
        dxhat = dout * _per_channel(g)
        dx = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)) / np.sqrt(x.var(0) + 1e-5)
        _, dgamma, dbeta = spatial_backward(dout, (cache, shape))
        return dx + 0 * N, dgamma, dbeta

    def params_over_n(dout, cache):
        dx, _, _ = spatial_backward(dout, cache)
        x = _from_rows(cache[0][0], cache[1])  # xc, (N, C, H, W)
        xhat = x / np.sqrt((x**2).mean(axis=(0, 2, 3), keepdims=True) + 1e-5)
        return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)

    def unbiased(dout, cache):
        cache, shape = cache
        xc, std, xhat, gamma = cache
        m = dout.size // dout.shape[1]
        dxhat = _to_rows(dout) * gamma
        std_u = std * np.sqrt(m / (m - 1))  # ~ sqrt(unbiased var): eps aside
        xhat_u = xc / std_u
        dx = (dxhat - dxhat.mean(0) - xhat_u * (dxhat * xhat_u).sum(0) / (m - 1)) / std_u
        return _from_rows(dx, shape), (_to_rows(dout) * xhat).sum(0), dout.sum(axis=(0, 2, 3))

    result = check_spatial_batchnorm_backward(spatial_forward, per_position)
    assert not result.passed and "statistics over N only" in result.feedback, result.feedback
    result = check_spatial_batchnorm_backward(spatial_forward, params_over_n)
    assert not result.passed and "dgamma and dbeta summed over N only" in result.feedback
    assert "dbeta has shape (" in result.feedback
    result = check_spatial_batchnorm_backward(_axes_forward((0, 2, 3), ddof=1), unbiased)
    assert not result.passed, result.feedback

    def zeros(dout, cache):
        _, dgamma, dbeta = spatial_backward(dout, cache)
        return np.zeros_like(dout), dgamma, dbeta

    result = check_spatial_batchnorm_backward(spatial_forward, zeros)
    assert not result.passed and "Likely mistake: dx is zero everywhere" in result.feedback


def test_spatial_checks_fail_cleanly_on_broken_code():
    for bad, words in [
        (None, "must be a function"),
        (lambda *a: None, "returned None"),
        (lambda *a: 1 / 0, "ZeroDivisionError"),
    ]:
        result = check_spatial_batchnorm_forward(bad)
        assert not result.passed and words in result.feedback, result.feedback
        result = check_spatial_batchnorm_backward(spatial_forward, bad)
        assert not result.passed and words in result.feedback, result.feedback


# --- translatable: every text of the feedback goes through bnlib.i18n ----------------------------


def test_the_feedback_is_built_from_translated_messages(monkeypatch):
    from bnlib import i18n
    from bnlib.grading.exercises.ex01 import FORWARD_MISTAKES

    unbiased = FORWARD_MISTAKES[2].hint  # a module-level hint, marked N_, translated when shown
    fake = {
        "FAIL": "未通過",
        "{label}: all {total} hidden cases failed": "{label}：{total} 個隱藏案例都未通過",
        "Likely mistake:": "可能的錯誤：",
        unbiased: "用了不偏變異數",
        "basic, N=8, D=5": "基本，N=8，D=5",
        "First failing case ({case}): {reason}": "第一個未通過的案例（{case}）：{reason}",
    }
    monkeypatch.setattr(i18n, "_translations", lambda language: fake if language == "zh-TW" else {})
    monkeypatch.setattr(i18n, "_default", "en")
    i18n.set_language("zh-TW")
    try:
        result = check_batchnorm_forward(_with_cache(FORWARD_BUGS["unbiased variance"]))
        text, html = str(result), result._repr_html_()  # the verdict is translated when shown
    finally:
        i18n.set_language("en")
    assert text.startswith("未通過") and str(result).startswith("FAIL")
    assert result.feedback.startswith("batchnorm_forward：6 個隱藏案例都未通過.")
    assert "可能的錯誤： 用了不偏變異數" in result.feedback
    assert "第一個未通過的案例（基本，N=8，D=5）" in result.feedback
    assert "<strong>可能的錯誤：</strong>" in html  # the HTML finds the translated parts too
    assert check_batchnorm_forward(forward).feedback.startswith("forward: all 6")  # English again


def test_the_sentences_of_the_feedback_end_as_the_language_writes_them(monkeypatch):
    from bnlib import i18n

    # a zh-TW edition: a full-width full stop and no space between sentences
    fake = {"{sentence}.": "{sentence}\u3002", "{sentences} {sentence}": "{sentences}{sentence}"}
    monkeypatch.setattr(i18n, "_translations", lambda language: fake if language == "zh-TW" else {})
    monkeypatch.setattr(i18n, "_default", "en")
    parts = ["a", "b.", "is it slow?", "c"]
    assert engine.sentences(parts) == "a. b. is it slow? c."
    i18n.set_language("zh-TW")
    try:
        assert engine.sentences(parts) == "a\u3002b\u3002is it slow?c\u3002"
        assert engine.sentences(["\u4e00\u3002", "\u4e8c\uff1f"]) == "\u4e00\u3002\u4e8c\uff1f"
        result = check_batchnorm_forward(_with_cache(FORWARD_BUGS["unbiased variance"]))
        html = result._repr_html_()
    finally:
        i18n.set_language("en")
    assert ". " not in result.feedback and "\u3002Likely mistake:" in result.feedback
    assert "\u3002<br><strong>Likely mistake:</strong>" in html  # the parts still break lines
    assert "\u3002<br>First failing case" in html


def test_a_task_scores_out_of_its_points():
    def one_pass(x, gamma, beta, eps=1e-5):  # fails the large-offset case only
        mu = x.mean(axis=0)
        return gamma * (x - mu) / np.sqrt((x**2).mean(axis=0) - mu**2 + eps) + beta, None

    task = replace(ex01.FORWARD, points=2.0)
    partial, full = engine.check(task, one_pass), engine.check(task, forward)
    assert partial.max_score == full.max_score == 2.0
    assert partial.score == pytest.approx(2.0 * 5 / 6) and not partial.passed
    assert full.score == 2.0 and full.passed
    missing = task.run({})
    assert (
        missing.max_score == 2.0 and missing.score == 0.0 and "is not defined" in missing.feedback
    )


def test_the_cases_of_a_pass_are_listed_apart_though_their_names_hold_commas(monkeypatch):
    from bnlib import i18n
    from bnlib.grading.exercises.ex05 import check_layernorm_forward

    def ln(x, gamma, beta, eps=1e-5):
        mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        return gamma * (x - mu) / np.sqrt(var + eps) + beta, None

    result = check_layernorm_forward(ln)
    assert result.passed and "(N=4, D=5; N=1; N=8, D=3; eps passed)" in result.feedback
    assert engine.case_list(["a, b", "c"]) == "a, b; c" and engine.case_list([]) == ""
    # the joiner is translated, as the other joiners of the feedback
    fake = {"{cases}; {case}": "{cases}\uff1b{case}"}
    monkeypatch.setattr(i18n, "_translations", lambda language: fake if language == "zh-TW" else {})
    monkeypatch.setattr(i18n, "_default", "en")
    i18n.set_language("zh-TW")
    try:
        assert engine.case_list(["a, b", "c"]) == "a, b\uff1bc"
    finally:
        i18n.set_language("en")


def test_a_translation_glues_the_pieces_of_the_feedback_with_its_own_punctuation(monkeypatch):
    from bnlib import i18n

    def fwd_raise(x, gamma, beta, eps=1e-5):
        raise NotImplementedError

    # a zh-TW edition: every template that glues two pieces (lead and hints, list items, an
    # exception and its line, a reason and its advice, the verdict line) written without spaces
    fake = {
        "FAIL": "未通過",
        "{verdict} ({score}/{max_score}) {feedback}": "{verdict}（{score}/{max_score}）{feedback}",
        "{sentence}.": "{sentence}\u3002",
        "{sentences} {sentence}": "{sentences}{sentence}",
        "{label}: all {total} hidden cases failed": "{label}：{total} 個隱藏案例都未通過",
        "{label}: {failed} of {total} hidden cases failed": (
            "{label}：{total} 個隱藏案例有 {failed} 個未通過"
        ),
        "{label} raised {error}": "{label} 引發了 {error}",
        "line {line} of {function}": "{function} 的第 {line} 行",
        "{error} ({where})": "{error}（{where}）",
        "{error}: {advice}": "{error}：{advice}",
        "replace `raise NotImplementedError` with your code": (
            "請把 `raise NotImplementedError` 換成你的程式碼"
        ),
        "Likely mistakes:": "可能的錯誤：",
        "{lead} {hints}": "{lead}{hints}",
        "{first}; {second}": "{first}；{second}",
        "{first}, {second}": "{first}、{second}",
        "{reason} ({advice})": "{reason}（{advice}）",
        "First failing case ({case}): {reason}": "第一個未通過的案例（{case}）：{reason}",
    }
    monkeypatch.setattr(i18n, "_translations", lambda language: fake if language == "zh-TW" else {})
    monkeypatch.setattr(i18n, "_default", "en")

    def compose():
        raised = check_batchnorm_forward(fwd_raise)
        case = SimpleNamespace(name="甲案例", short="甲", hint="", weight=1.0)
        outcomes = [
            engine.Outcome(case, "原因", {"dx": ["少了一項"], "dgamma": ["多乘了 N"]}),
            engine.Outcome(case),
        ]
        catalogues = {"dx": [Mistake("少了一項", None)], "dgamma": [Mistake("多乘了 N", None)]}
        hinted = engine.summary("反向", outcomes, 2, catalogues)
        x = np.zeros(3)
        changed = engine.modified("正向", ("x",), (x,), (x + 1,), {"x": "先複製"})
        return str(raised), hinted.feedback, changed, engine.join_list(["甲", "乙", "丙"], True)

    english = compose()
    i18n.set_language("zh-TW")
    try:
        raised, hinted, changed, listed = compose()
    finally:
        i18n.set_language("en")
    # English reads as before: the templates reproduce the old punctuation
    assert english[0].startswith("FAIL (0.00/1) fwd_raise: all 6 hidden cases failed. ")
    assert "raised NotImplementedError (line " in english[0]
    assert " of fwd_raise): replace `raise NotImplementedError`" in english[0]
    assert "Likely mistakes: 少了一項; 多乘了 N." in english[1]
    assert english[2].endswith("(e.g. xc = x - mu, not x -= mu) (先複製)")
    assert english[3] == "甲, 乙, 丙"
    # zh-TW: the pieces meet with full-width punctuation, no ASCII ": ", "; " or " (" between
    assert raised.startswith("未通過（0.00/1）fwd_raise：6 個隱藏案例都未通過。")
    assert "NotImplementedError（fwd_raise 的第 " in raised
    assert "行）：請把 `raise NotImplementedError` 換成你的程式碼。" in raised
    assert "可能的錯誤：少了一項；多乘了 N。" in hinted
    assert changed.endswith("（先複製）") and listed == "甲、乙、丙"
    for text in (raised, hinted, changed[-8:], listed):
        for ascii_glue in (": ", "; ", " ("):
            assert ascii_glue not in text, (ascii_glue, text)
