"""Exercise 4's checks (bnlib.grading.exercises.ex04, behind bnlib.checks): right code passes (on
the fixed and on hidden cases), each named mistake is diagnosed, broken code fails cleanly with a
one-line reason (never an exception), and the references agree with PyTorch's autograd in
float64."""

import time
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from bnlib import functional as F
from bnlib.checks import (
    CheckResult,
    check_batch_renorm_backward,
    check_batch_renorm_forward,
    check_global_batch_stats,
    check_local_stats,
)
from bnlib.grading import engine
from bnlib.grading.exercises import TASKS
from bnlib.grading.exercises.ex04 import (
    _LARGE_OFFSET,
    BATCH_RENORM_BACKWARD_MISTAKES,
    BATCH_RENORM_MISTAKES,
    GLOBAL_STATS_MISTAKES,
    LOCAL_STATS_MISTAKES,
    batch_renorm_backward_reference,
    batch_renorm_reference,
    global_stats_cases,
    global_stats_reference,
    local_stats_cases,
    local_stats_reference,
    renorm_backward_cases,
    renorm_cases,
)

SECRETS = (1, 2, 12345)

# --- right implementations, written here independently of bnlib ----------------------------------


def renorm(x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5):
    mu, var = x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).mean(axis=0)
    sigma_b, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    r = np.clip(sigma_b / sigma, 1.0 / rmax, rmax)
    d = np.clip((mu - running_mean) / sigma, -dmax, dmax)
    z = (x - mu) / sigma_b
    return gamma * (z * r + d) + beta, {"z": z, "r": r, "d": d, "sigma_b": sigma_b, "gamma": gamma}


def renorm_backward(dout, cache):
    """The staged chain rule, r and d held constant."""
    z, r, d, sigma_b, gamma = (cache[k] for k in ("z", "r", "d", "sigma_b", "gamma"))
    N = dout.shape[0]
    dz = dout * gamma * r
    xc = z * sigma_b  # x - mu
    dvar = (dz * xc).sum(axis=0) * -0.5 * sigma_b**-3
    dmu = -dz.sum(axis=0) / sigma_b - 2 * dvar * xc.mean(axis=0)
    dx = dz / sigma_b + dvar * 2 * xc / N + dmu / N
    return dx, (dout * (z * r + d)).sum(axis=0), dout.sum(axis=0)


def local(x):
    return len(x), x.sum(axis=0), np.einsum("nd,nd->d", x, x)


def combine(counts, sums, sumsqs):
    n = counts.sum()
    mean = sums.sum(axis=0) / n
    return mean, sumsqs.sum(axis=0) / n - mean**2


def combine_centered(counts, sums, sumsqs):  # the same maths, another rounding
    n, total = counts.sum(), sums.sum(axis=0)
    return total / n, (sumsqs.sum(axis=0) - total * total / n) / n


def combine_chan(counts, sums, sumsqs):  # per-process mean and M2, combined (Chan et al.)
    keep = counts > 0
    n_k = counts[keep][:, None].astype(float)
    means = sums[keep] / n_k
    m2 = sumsqs[keep] - n_k * means**2
    mean = (n_k * means).sum(axis=0) / n_k.sum()
    return mean, (m2.sum(axis=0) + (n_k * (means - mean) ** 2).sum(axis=0)) / n_k.sum()


COMBINES = [combine, combine_centered, combine_chan]


def _all_checks():
    return [
        check_batch_renorm_forward(renorm),
        check_batch_renorm_backward(renorm, renorm_backward),
        check_local_stats(local),
        *(check_global_batch_stats(c) for c in COMBINES),
    ]


def test_right_implementations_pass():
    for result in _all_checks():
        assert isinstance(result, CheckResult)
        assert result.passed and result.score == 1.0, result.feedback


@pytest.mark.parametrize("secret", SECRETS)
def test_right_implementations_pass_the_hidden_cases(secret):
    with engine.hidden_cases(secret):
        for result in _all_checks():
            assert result.passed and result.score == 1.0, (secret, result.feedback)


def _arrays(cases):
    out = []
    for c in cases:
        for name in ("x", "gamma", "beta", "batches"):
            value = getattr(c, name, None)
            if value is not None:
                out.extend(value if isinstance(value, tuple) else [value])
    return [a for a in out if a.size]


@pytest.mark.parametrize(
    "make", [renorm_cases, renorm_backward_cases, local_stats_cases, global_stats_cases]
)
def test_hidden_cases_differ_from_the_self_check_cases(make):
    fixed = _arrays(make())
    assert _arrays(make()) and all(
        np.array_equal(a, b) for a, b in zip(fixed, _arrays(make()), strict=True)
    ), "the self-check cases must be reproducible"
    seen = [fixed]
    for secret in SECRETS:
        with engine.hidden_cases(secret):
            hidden = _arrays(make())
        assert len(hidden) == len(fixed)
        for other in seen:
            assert not any(np.array_equal(a, b) for a, b in zip(hidden, other, strict=True))
        seen.append(hidden)


# --- the references against PyTorch's autograd, float64 ------------------------------------------


def _torch_renorm(case, detach):
    """Batch Renorm's forward in torch, r and d detached (the paper's stop_gradient) or not."""
    x = torch.tensor(case.x, requires_grad=True)
    gamma = torch.tensor(case.gamma, requires_grad=True)
    beta = torch.tensor(case.beta, requires_grad=True)
    mean, var = torch.tensor(case.running_mean), torch.tensor(case.running_var)
    eps = case.eps_used
    mu = x.mean(dim=0)
    sigma_b = (x.var(dim=0, unbiased=False) + eps).sqrt()
    sigma = (var + eps).sqrt()
    r = torch.clamp(sigma_b / sigma, 1 / case.rmax, case.rmax)
    d = torch.clamp((mu - mean) / sigma, -case.dmax, case.dmax)
    if detach:
        r, d = r.detach(), d.detach()
    out = gamma * ((x - mu) / sigma_b * r + d) + beta
    return out, (x, gamma, beta)


def _ref_args(case):
    return (case.x, case.gamma, case.running_mean, case.running_var, case.rmax, case.dmax)


@pytest.mark.parametrize("secret", (None, *SECRETS))
@pytest.mark.parametrize("detach", [True, False], ids=["stop_gradient", "through_rd"])
def test_the_backward_reference_is_autograd_with_r_and_d_detached(secret, detach):
    """The reference is torch's gradient with r and d detached; the "through r and d" mistake is
    torch's gradient without the detach (so the catalogue names what it claims)."""
    variant = None if detach else "through_rd"
    with engine.hidden_cases(secret) if secret else nullcontext():
        cases = renorm_backward_cases()
    for case in cases:
        out, leaves = _torch_renorm(case, detach)
        want = torch.autograd.grad(out, leaves, torch.tensor(case.dout))
        got = batch_renorm_backward_reference(
            case.dout, *_ref_args(case), case.eps_used, variant=variant
        )
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-10, atol=1e-12, err_msg=case.name)
        np.testing.assert_allclose(
            out.detach().numpy(), batch_renorm_reference(*case.ref_args()), rtol=1e-12
        )


@pytest.mark.parametrize("secret", (None, *SECRETS))
def test_the_backward_cases_clip_where_they_say(secret):
    """Clipped everywhere, nowhere (with r != 1 and d != 0), on some features, and rmax=1/dmax=0:
    together they tell the mistakes apart (where nothing is clipped, the gradient through r and d
    is not zero; where everything is, it is)."""
    with engine.hidden_cases(secret) if secret else nullcontext():
        cases = renorm_backward_cases()
    states = {}
    for case in cases:
        x, mean, var, eps = case.x, case.running_mean, case.running_var, case.eps_used
        sigma_b, sigma = np.sqrt(x.var(axis=0) + eps), np.sqrt(var + eps)
        r_raw, d_raw = sigma_b / sigma, (x.mean(axis=0) - mean) / sigma
        r_free = (r_raw > 1 / case.rmax) & (r_raw < case.rmax)
        d_free = np.abs(d_raw) < case.dmax
        states[case.short] = (r_free, d_free, r_raw, d_raw)
    r_free, d_free, r_raw, d_raw = states["unclipped"]
    assert r_free.all() and d_free.all()
    assert (np.abs(r_raw - 1) > 0.15).all() and (np.abs(d_raw) > 0.15).all()
    r_free, d_free, _, _ = states["all clipped"]
    assert not r_free.any() and not d_free.any()
    r_free, d_free, _, _ = states["mixed"]
    assert {(bool(a), bool(b)) for a, b in zip(r_free, d_free, strict=True)} == {
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    }
    assert states["eps passed"][0].all() and states["eps passed"][1].all()
    r_free, d_free, _, _ = states["rmax=1, dmax=0"]
    assert not r_free.any() and not d_free.any()


# --- each named mistake is diagnosed -------------------------------------------------------------

RENORM_VARIANTS = [
    "no_clip",
    "r_upper_only",
    "r_inverted",
    "d_sign",
    "d_not_scaled",
    "no_eps_sigma",
    "eps_outside_sigma",
    "no_eps_r",
    "no_eps_sigma_b",
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


def _renorm_eps_slip(slip):
    """A learner's forward with one eps slip, written independently of the reference."""

    def forward(x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5):
        mu, sigma_b = x.mean(axis=0), np.sqrt(x.var(axis=0) + eps)
        sigma = np.sqrt(running_var + eps)
        if slip == "eps outside the root":
            sigma = np.sqrt(running_var) + eps
        r = (x.std(axis=0) if slip == "r from x.std" else sigma_b) / sigma
        r, d = np.clip(r, 1 / rmax, rmax), np.clip((mu - running_mean) / sigma, -dmax, dmax)
        return gamma * ((x - mu) / sigma_b * r + d) + beta, None

    return forward


@pytest.mark.parametrize(
    "slip, named",
    [("eps outside the root", "eps_outside_sigma"), ("r from x.std", "no_eps_r")],
)
@pytest.mark.parametrize("secret", (None, *SECRETS))
def test_eps_slips_are_named_not_taken_for_float32(slip, named, secret):
    """These differ from the reference by ~1e-5, float32's order: the check must name them and
    must not ask "computed in float32?"."""
    hint = dict(zip(RENORM_VARIANTS, BATCH_RENORM_MISTAKES, strict=True))[named].hint
    with nullcontext() if secret is None else engine.hidden_cases(secret):
        result = check_batch_renorm_forward(_renorm_eps_slip(slip))
    assert not result.passed
    assert hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback


def test_a_forward_computed_in_float32_is_told_so():
    def in_float32(x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5):
        args = (x, gamma, beta, running_mean, running_var)
        out, _ = renorm(*(a.astype(np.float32) for a in args), rmax, dmax, np.float32(eps))
        return out.astype(np.float64), None

    result = check_batch_renorm_forward(in_float32)
    assert not result.passed
    assert "computed in float32?" in result.feedback, result.feedback


def test_an_unnamed_small_error_is_not_taken_for_float32():
    def off_by_1e5(*args):
        out, cache = renorm(*args)
        return out * (1 + 1e-5), cache

    result = check_batch_renorm_forward(off_by_1e5)
    assert not result.passed
    assert "float32" not in result.feedback, result.feedback


BACKWARD_VARIANTS = {
    "dx": [
        "through_rd",
        "running_stats",
        "no_r",
        "no_gamma",
        "constants",
        "xhat_in_closed_form",
    ],
    "dgamma": ["swapped", "dgamma_z", "axis1"],
    "dbeta": ["swapped", "axis1"],
}
BACKWARD = [
    (variant, mistake)
    for output, variants in BACKWARD_VARIANTS.items()
    for variant, mistake in zip(variants, BATCH_RENORM_BACKWARD_MISTAKES[output], strict=True)
]


def _cache_forward(x, g, b, m, v, rmax, dmax, eps=1e-5):
    out, _ = renorm(x, g, b, m, v, rmax, dmax, eps)
    return out, (x, g, m, v, rmax, dmax, eps)


@pytest.mark.parametrize("variant, mistake", BACKWARD, ids=[v for v, _ in BACKWARD])
def test_each_renorm_backward_mistake_is_named(variant, mistake):
    def learner(dout, cache):
        return batch_renorm_backward_reference(dout, *cache, variant=variant)

    result = check_batch_renorm_backward(_cache_forward, learner)
    assert not result.passed and result.score < 1
    assert mistake.hint in result.feedback, result.feedback
    assert "fails its own check" not in result.feedback


def test_plain_batch_norm_backward_is_named():
    """A learner who reuses exercise 1's backward pass as is: dx lacks r, dgamma uses z."""

    def plain_bn_backward(dout, cache):
        x, gamma, _, _, _, _, eps = cache
        return F.batch_norm_backward(dout, x, gamma, eps)

    result = check_batch_renorm_backward(_cache_forward, plain_bn_backward)
    assert not result.passed and result.score == pytest.approx(1 / 5), result.feedback
    assert "plain batch norm's dx" in result.feedback, result.feedback
    assert "gamma multiplies xhat, after r and d" in result.feedback, result.feedback


def test_gradient_through_r_and_d_is_named_and_loses_the_unclipped_cases():
    """Autograd through clip is right where r and d are clipped (clip passes no gradient there)
    and wrong where they are not: its score counts only the fully clipped cases."""

    def autograd_through_clip(dout, cache):
        return batch_renorm_backward_reference(dout, *cache, variant="through_rd")

    result = check_batch_renorm_backward(_cache_forward, autograd_through_clip)
    assert result.score == pytest.approx(2 / 5), result.feedback
    assert "stop_gradient" in result.feedback and "flowed through r and d" in result.feedback


def test_a_wrong_forward_is_pointed_out_by_the_backward_check():
    def wrong_forward(x, g, b, m, v, rmax, dmax, eps=1e-5):
        out, cache = renorm(x, g, b, m, v, rmax, dmax, eps)
        return out + 1.0, cache

    def backward_ignoring_r(dout, cache):
        dx, dgamma, dbeta = renorm_backward(dout, cache)
        return dx / cache["r"], dgamma, dbeta

    result = check_batch_renorm_backward(wrong_forward, backward_ignoring_r)
    assert not result.passed and "fails its own check too" in result.feedback, result.feedback
    assert check_batch_renorm_backward(wrong_forward, renorm_backward).passed  # the grads are right


LOCAL_VARIANTS = {
    "count": ["size", "features"],
    "sum": ["mean", "axis1"],
    "sumsq": ["mean", "deviations", "square_of_sum", "axis1"],
}
LOCAL = [
    (output, variant, mistake)
    for output, variants in LOCAL_VARIANTS.items()
    for variant, mistake in zip(variants, LOCAL_STATS_MISTAKES[output], strict=True)
]


@pytest.mark.parametrize("output, variant, mistake", LOCAL, ids=[f"{o}-{v}" for o, v, _ in LOCAL])
def test_each_local_stats_mistake_is_named(output, variant, mistake):
    index = ("count", "sum", "sumsq").index(output)

    def learner(x):
        right = list(local_stats_reference(x))
        with np.errstate(all="ignore"):
            right[index] = local_stats_reference(x, variant=variant)[index]
        return tuple(right)

    result = check_local_stats(learner)
    assert not result.passed
    assert mistake.hint in result.feedback, result.feedback


STATS_VARIANTS = {
    "mean": ["mean_of_means", "by_processes", "first_only"],
    "var": [
        "mean_of_means",
        "mean_of_vars",
        "weighted_vars",
        "no_mean_squared",
        "unbiased",
        "std",
        "by_processes",
        "first_only",
    ],
}
STATS = [
    (output, variant, mistake)
    for output, variants in STATS_VARIANTS.items()
    for variant, mistake in zip(variants, GLOBAL_STATS_MISTAKES[output], strict=True)
]


@pytest.mark.parametrize("output, variant, mistake", STATS, ids=[f"{o}-{v}" for o, v, _ in STATS])
def test_each_global_stats_mistake_is_named(output, variant, mistake):
    def learner(counts, sums, sumsqs):
        with np.errstate(all="ignore"):
            return global_stats_reference(counts, sums, sumsqs, variant=variant)

    result = check_global_batch_stats(learner)
    assert not result.passed
    assert mistake.hint in result.feedback, result.feedback


def test_the_global_reference_is_the_data_statistics_at_the_cases_offsets():
    """The direct formula on the sums agrees with the data's own two-pass statistics on every
    case, the large offsets included, far inside the check's tolerance (so a naive formula is not
    mistaken for wrong maths); at an extreme offset no formula on sums of squares could."""
    for secret in (None, *SECRETS):
        with engine.hidden_cases(secret) if secret else nullcontext():
            cases = global_stats_cases()
        for case in cases:
            for got, want in zip(global_stats_reference(*case.sent), case.want(), strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-7, err_msg=case.name)
    rng = np.random.default_rng(0)
    far = [rng.standard_normal((4, 2)) + 1e8 for _ in range(2)]
    sent = (
        np.array([4, 4]),
        np.stack([b.sum(0) for b in far]),
        np.stack([(b**2).sum(0) for b in far]),
    )
    exact = np.concatenate(far).var(axis=0)
    assert not np.allclose(global_stats_reference(*sent)[1], exact, rtol=0.1)


def test_the_large_offset_case_says_its_offset():
    (case,) = [c for c in global_stats_cases() if c.short == "large offsets"]
    # a literal name, for translation; numbers written as the other case names write them (1e3)
    mantissa, exponent = f"{_LARGE_OFFSET:.0e}".split("e")
    assert f"values near {mantissa}e{int(exponent)} " in case.name
    assert all(np.abs(b.mean() - _LARGE_OFFSET) < 2 for b in case.batches)


def test_the_empty_process_case_has_its_hint():
    def per_process_means(counts, sums, sumsqs):  # right, except that it forms 0/0 when empty
        means = sums / counts[:, None]
        mean = (counts[:, None] * means).sum(axis=0) / counts.sum()
        return mean, sumsqs.sum(axis=0) / counts.sum() - mean**2

    result = check_global_batch_stats(per_process_means)
    assert not result.passed and result.score == pytest.approx(5 / 6)
    assert "count 0" in result.feedback and "NaN" in result.feedback, result.feedback

    def local_mean_first(x):  # 0/0 for the empty batch
        with np.errstate(all="ignore"):
            return len(x), x.sum(axis=0) / len(x) * len(x), (x**2).sum(axis=0)

    result = check_local_stats(local_mean_first)
    assert result.score == pytest.approx(3 / 4) and "count 0" in result.feedback, result.feedback


# --- broken code fails cleanly -------------------------------------------------------------------


def _stuck(*args):
    time.sleep(5)


def _nan(*args):
    first = args[0]
    return (np.full_like(first, np.nan),) * 3


BROKEN = {
    "returns None": (lambda *a: None, "returned None"),
    "returns an array": (lambda *a: np.zeros(3), "expected a tuple"),
    "raises": (lambda *a: 1 / 0, "ZeroDivisionError"),
    "not implemented": (lambda *a: (_ for _ in ()).throw(NotImplementedError()), "replace"),
    "NaN": (_nan, ""),
    "wrong length": (lambda *a: (1, 2, 3, 4, 5), "length 5"),
}
CHECKS = {
    "forward": check_batch_renorm_forward,
    "backward": lambda fn: check_batch_renorm_backward(renorm, fn),
    "backward, broken forward": lambda fn: check_batch_renorm_backward(fn, renorm_backward),
    "local": check_local_stats,
    "global": check_global_batch_stats,
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_code_fails_with_a_reason(check, name):
    fn, words = BROKEN[name]
    result = CHECKS[check](fn)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert words in result.feedback and "\n" not in result.feedback, result.feedback
    assert "the check itself failed" not in result.feedback, result.feedback


def test_not_callable_and_input_mutation():
    assert "must be a function" in check_batch_renorm_forward(42).feedback
    assert "must be a function" in check_batch_renorm_backward(renorm, None).feedback
    assert "must be a function" in check_local_stats("local_stats").feedback
    assert "must be a function" in check_global_batch_stats(3.0).feedback

    def updates_running_in_place(x, g, b, m, v, rmax, dmax, eps=1e-5):
        out, cache = renorm(x, g, b, m, v, rmax, dmax, eps)
        m += 0.1 * (x.mean(axis=0) - m)
        return out, cache

    result = check_batch_renorm_forward(updates_running_in_place)
    assert not result.passed and "running_mean in place" in result.feedback, result.feedback

    def scales_dout_in_place(dout, cache):
        dout *= cache["gamma"]
        return renorm_backward(dout / cache["gamma"], cache)

    result = check_batch_renorm_backward(renorm, scales_dout_in_place)
    assert not result.passed and "dout in place" in result.feedback, result.feedback

    def squares_in_place(x):
        n, s = len(x), x.sum(axis=0)
        x **= 2
        return n, s, x.sum(axis=0)

    result = check_local_stats(squares_in_place)
    assert not result.passed and "x in place" in result.feedback, result.feedback

    def sums_in_place(counts, sums, sumsqs):
        sums /= np.maximum(counts, 1)[:, None]
        return combine(counts, sums * np.maximum(counts, 1)[:, None], sumsqs)

    result = check_global_batch_stats(sums_in_place)
    assert not result.passed and "sums in place" in result.feedback, result.feedback


def test_wrong_shape_dtype_and_count():
    result = check_global_batch_stats(lambda c, s, q: (np.zeros(1), np.zeros(1)))
    assert "shape" in result.feedback
    result = check_global_batch_stats(lambda c, s, q: combine(c, s, q)[::-1][:1] + (None,))
    assert "var is None" in result.feedback
    result = check_batch_renorm_forward(lambda *a: (renorm(*a)[0].astype(np.float32), None))
    assert "dtype float32" in result.feedback
    result = check_batch_renorm_backward(
        renorm, lambda d, c: tuple(g.astype(np.float32) for g in renorm_backward(d, c))
    )
    assert "dtype float32" in result.feedback
    result = check_local_stats(lambda x: ("many", x.sum(0), (x**2).sum(0)))
    assert "count is a str" in result.feedback
    result = check_local_stats(lambda x: (np.float64(len(x)), x.sum(0), (x**2).sum(0)))
    assert result.passed, result.feedback  # a count that is a float64 of the right value is fine


def test_a_function_that_never_returns_is_abandoned(monkeypatch):
    monkeypatch.setattr(engine, "CALL_TIMEOUT", 0.3)
    monkeypatch.setattr(engine, "CHECK_TIMEOUT", 0.5)
    for check in CHECKS.values():
        result = check(_stuck)
        assert not result.passed and "did not return" in result.feedback, result.feedback


def test_the_tasks_grade_the_four_functions():
    tasks = TASKS["ex04_small_batches"]
    assert [t.name for t in tasks] == [
        "batch_renorm_forward",
        "batch_renorm_backward",
        "local_stats",
        "global_batch_stats",
    ]
    namespace = {
        "batch_renorm_forward": renorm,
        "batch_renorm_backward": renorm_backward,
        "local_stats": local,
        "global_batch_stats": combine,
    }
    results = {t.name: t.run(namespace) for t in tasks}
    assert all(r.passed and r.score == 1.0 for r in results.values()), results
    del namespace["batch_renorm_forward"]
    results = {t.name: t.run(namespace) for t in tasks}
    assert "batch_renorm_forward is not defined" in results["batch_renorm_backward"].feedback
    assert results["local_stats"].passed
