"""Exercise 5's checks (bnlib.grading.exercises.ex05, behind bnlib.checks): right code passes,
each named mistake is diagnosed, broken code fails cleanly with a one-line reason (never an
exception); the references equal bnlib.functional and PyTorch (float64)."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from bnlib import functional as F
from bnlib.checks import (
    CheckResult,
    check_groupnorm_forward,
    check_instancenorm_forward,
    check_layernorm_backward,
    check_layernorm_forward,
    check_rmsnorm_backward,
    check_rmsnorm_forward,
)
from bnlib.grading.engine import hidden_cases
from bnlib.grading.exercises import TASKS
from bnlib.grading.exercises.ex05 import (
    GROUPNORM_MISTAKES,
    INSTANCENORM_MISTAKES,
    LAYERNORM_BACKWARD_MISTAKES,
    LAYERNORM_MISTAKES,
    RMSNORM_BACKWARD_MISTAKES,
    RMSNORM_MISTAKES,
    groupnorm_reference,
    instancenorm_reference,
    layernorm_backward_reference,
    layernorm_reference,
    rmsnorm_backward_reference,
    rmsnorm_cases,
    rmsnorm_reference,
)

# --- right implementations, written here independently of bnlib ----------------------------------


def ln_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, np.sqrt(var + eps))


def ln_backward(dout, cache):
    xhat, gamma, std = cache
    D = xhat.shape[1]
    dxhat = dout * gamma
    dx = D * dxhat - dxhat.sum(1, keepdims=True) - xhat * (dxhat * xhat).sum(1, keepdims=True)
    return dx / (D * std), (dout * xhat).sum(0), dout.sum(0)


def gn_forward(x, gamma, beta, num_groups, eps=1e-5):
    N, C, H, W = x.shape
    xg = x.reshape(N, num_groups, -1)
    xhat = (xg - xg.mean(2, keepdims=True)) / np.sqrt(xg.var(2, keepdims=True) + eps)
    return xhat.reshape(x.shape) * gamma[:, None, None] + beta[:, None, None], None


def in_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean((2, 3), keepdims=True), x.var((2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma[:, None, None] + beta[:, None, None], None


def rms_forward(x, gamma, eps=1e-5):
    rms = np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)
    return x / rms * gamma, (x, gamma, rms)


def rms_backward(dout, cache):  # the staged chain rule, not the closed form of the reference
    x, gamma, rms = cache
    D = x.shape[1]
    dxhat = dout * gamma
    drms = -(dxhat * x).sum(axis=1, keepdims=True) / rms**2
    dms = drms / (2 * rms)
    return dxhat / rms + 2 * x / D * dms, (dout * x / rms).sum(axis=0)


def test_right_implementations_pass():
    results = [
        check_layernorm_forward(ln_forward),
        check_layernorm_backward(ln_forward, ln_backward),
        check_rmsnorm_forward(rms_forward),
        check_rmsnorm_backward(rms_forward, rms_backward),
        check_groupnorm_forward(gn_forward),
        check_instancenorm_forward(in_forward),
    ]
    for result in results:
        assert isinstance(result, CheckResult)
        assert result.passed and result.score == 1.0, result.feedback


def test_references_equal_bnlib_functional():
    rng = np.random.default_rng(0)
    x2, x4 = rng.standard_normal((3, 5)), rng.standard_normal((2, 6, 3, 2)) * 2 + 1
    g5, b5, g6, b6 = (rng.standard_normal(n) for n in (5, 5, 6, 6))
    np.testing.assert_allclose(layernorm_reference(x2, g5, b5), F.layer_norm(x2, 5, g5, b5))
    np.testing.assert_allclose(
        groupnorm_reference(x4, g6, b6, 3), F.group_norm(x4, 3, g6, b6), rtol=1e-12
    )
    np.testing.assert_allclose(
        instancenorm_reference(x4, g6, b6), F.instance_norm(x4, weight=g6, bias=b6), rtol=1e-12
    )


@pytest.mark.parametrize("shape", [(4, 6), (1, 8), (5, 1), (3, 5)])
@pytest.mark.parametrize("eps", [1e-5, 1e-6, 0.1])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_rmsnorm_references_equal_torch(shape, eps, offset):
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    x = rng.standard_normal(shape) * rng.uniform(1e-3, 3) + offset
    gamma, dout = rng.uniform(-2, 2, shape[1]), rng.standard_normal(shape)
    xt = torch.from_numpy(x).requires_grad_()
    gt = torch.from_numpy(gamma).requires_grad_()
    out = TF.rms_norm(xt, (shape[1],), gt, eps)
    out.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(rmsnorm_reference(x, gamma, eps), out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        rmsnorm_reference(x, gamma, eps), F.rms_norm(x, shape[1], gamma, eps), rtol=1e-12
    )
    dx, dgamma = rmsnorm_backward_reference(x, gamma, dout, eps)
    # NB: dx's own scale is dout * gamma / rms; at D=1 dx is far smaller (a cancellation)
    scale = np.abs(dout * gamma / np.sqrt(np.mean(x**2, axis=1, keepdims=True) + eps)).max()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-13 * scale)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), rtol=1e-10)


def test_rmsnorm_cases_cover_the_hard_inputs():
    cases = rmsnorm_cases()
    assert any(c.x.shape[1] == 1 for c in cases), "D=1"
    assert any(c.x.shape[0] == 1 for c in cases), "N=1"
    assert any(np.abs(c.x).min() > 100 for c in cases), "a large offset"
    assert any((c.x.std(axis=1) < 1e-2 * np.abs(c.x.mean(axis=1))).all() for c in cases), (
        "a small variance around an offset"
    )
    assert any((np.mean(c.x**2, axis=1) < c.eps).all() for c in cases), "values where eps matters"
    assert len({c.eps for c in cases}) > 1, "more than one eps"


# --- each named mistake is diagnosed -------------------------------------------------------------

LN = ["batch_axis", "unbiased", "eps_outside", "no_affine", "swapped"]
GN = ["strided", "with_batch", "per_group_affine", "per_group_size", "layer", "instance"]
GN += ["unbiased", "eps_outside", "no_affine"]
IN = ["with_batch", "with_channels", "unbiased", "eps_outside", "no_affine"]


@pytest.mark.parametrize("variant, mistake", list(zip(LN, LAYERNORM_MISTAKES, strict=True)))
def test_each_layernorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, eps=1e-5):
        return layernorm_reference(x, g, b, eps, variant=variant), None

    result = check_layernorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback  # a named mistake, not rounding


@pytest.mark.parametrize("variant, mistake", list(zip(GN, GROUPNORM_MISTAKES, strict=True)))
def test_each_groupnorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, G, eps=1e-5):
        return groupnorm_reference(x, g, b, G, eps, variant=variant), None

    result = check_groupnorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback


@pytest.mark.parametrize("variant, mistake", list(zip(IN, INSTANCENORM_MISTAKES, strict=True)))
def test_each_instancenorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, eps=1e-5):
        return instancenorm_reference(x, g, b, eps, variant=variant), None

    result = check_instancenorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback


RMS = ["layer", "std", "eps_outside", "no_sqrt", "default_eps", "eps_over_d", "abs_mean"]
RMS += ["abs_mean_inside", "sum", "batch_axis", "no_gamma"]


@pytest.mark.parametrize("variant, mistake", list(zip(RMS, RMSNORM_MISTAKES, strict=True)))
def test_each_rmsnorm_mistake_is_named(variant, mistake):
    def learner(x, g, eps=1e-5):
        return rmsnorm_reference(x, g, eps, variant=variant), None

    result = check_rmsnorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback  # a named mistake, not rounding


@pytest.mark.parametrize(
    "variant, output, index",
    [
        ("constant_rms", "dx", 0),
        ("mean_term", "dx", 1),
        ("no_1_over_d", "dx", 2),
        ("no_gamma", "dx", 3),
        ("r_no_eps", "dx", 4),
        ("no_eps", "dx", 5),
        ("r_path_no_eps", "dx", 6),
        ("dgamma_mean", "dgamma", 0),
        ("dgamma_x", "dgamma", 1),
        ("dgamma_dout", "dgamma", 2),
    ],
)
def test_each_rmsnorm_backward_mistake_is_named(variant, output, index):
    def backward(dout, cache):
        x, gamma, eps = cache
        return rmsnorm_backward_reference(x, gamma, dout, eps, variant=variant)

    def forward(x, gamma, eps=1e-5):
        return rms_forward(x, gamma, eps)[0], (x, gamma, eps)

    result = check_rmsnorm_backward(forward, backward)
    hint = RMSNORM_BACKWARD_MISTAKES[output][index].hint
    assert not result.passed and hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback


def test_eps_left_out_of_the_path_through_r_only_is_named():
    # written out as a learner would: r**2 = ms + eps, dms = sum(dxhat * x) * d(1/r)/dms, with
    # the eps forgotten in that derivative only
    def forward(x, gamma, eps=1e-5):
        r = np.sqrt((x**2).mean(axis=1, keepdims=True) + eps)
        return x / r * gamma, (x, gamma, r)

    def backward(dout, cache):
        x, gamma, r = cache
        ms, dxhat = (x**2).mean(axis=1, keepdims=True), dout * gamma
        dms = -0.5 * (dxhat * x).sum(axis=1, keepdims=True) * ms**-1.5
        return dxhat / r + dms * 2 * x / x.shape[1], (dout * x / r).sum(axis=0)

    result = check_rmsnorm_backward(forward, backward)
    assert not result.passed and "Likely mistake: dx divides by sqrt(mean(x**2)) without eps" in (
        result.feedback
    ), result.feedback


def test_eps_left_out_of_the_path_through_var_only_is_named_in_layer_norm():
    def forward(x, gamma, beta, eps=1e-5):
        xc = x - x.mean(axis=1, keepdims=True)
        var = (xc**2).mean(axis=1, keepdims=True)
        return gamma * xc / np.sqrt(var + eps) + beta, (xc, var, np.sqrt(var + eps), gamma)

    def backward(dout, cache):  # staged, the eps forgotten in dvar
        xc, var, std, gamma = cache
        dxhat = dout * gamma
        dvar = -0.5 * (dxhat * xc).sum(axis=1, keepdims=True) * var**-1.5
        dxc = dxhat / std + 2 * xc * dvar / xc.shape[1]
        dx = dxc - dxc.mean(axis=1, keepdims=True)
        return dx, (dout * xc / std).sum(axis=0), dout.sum(axis=0)

    result = check_layernorm_backward(forward, backward)
    assert not result.passed and "Likely mistake: dx divides by sqrt(var) without eps" in (
        result.feedback
    ), result.feedback


def test_rmsnorm_backward_names_a_broken_forward():
    def forward(x, gamma, eps=1e-5):
        return rmsnorm_reference(x, gamma, eps, variant="layer"), (x, gamma, eps)

    result = check_rmsnorm_backward(forward, lambda dout, cache: (dout, dout[0]))
    assert not result.passed and "forward fails its own check too" in result.feedback


@pytest.mark.parametrize(
    "variant, output, index",
    [
        ("bn_formula", "dx", 0),
        ("constant_stats", "dx", 1),
        ("no_gamma", "dx", 2),
        ("std_no_eps", "dx", 3),
        ("no_eps", "dx", 4),
        ("var_path_no_eps", "dx", 5),
        ("params_axis1", "dgamma", 0),
        ("params_mean", "dbeta", 1),
    ],
)
def test_each_layernorm_backward_mistake_is_named(variant, output, index):
    def backward(dout, cache):
        x, gamma, eps = cache
        return layernorm_backward_reference(x, gamma, dout, eps, variant=variant)

    def forward(x, gamma, beta, eps=1e-5):
        return ln_forward(x, gamma, beta, eps)[0], (x, gamma, eps)

    result = check_layernorm_backward(forward, backward)
    hint = LAYERNORM_BACKWARD_MISTAKES[output][index].hint
    assert not result.passed and hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback


def test_backward_check_notes_a_broken_forward():
    def forward(x, gamma, beta, eps=1e-5):
        return layernorm_reference(x, gamma, beta, eps, variant="batch_axis"), None

    result = check_layernorm_backward(forward, lambda dout, cache: (dout, dout[0], dout[0]))
    assert not result.passed and "fails its own check too" in result.feedback


# --- broken code fails cleanly -------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [
        check_layernorm_forward,
        check_rmsnorm_forward,
        check_groupnorm_forward,
        check_instancenorm_forward,
    ],
)
@pytest.mark.parametrize(
    "learner, words",
    [
        (None, "must be a function"),
        (lambda *a, **k: None, "returned None"),
        (lambda *a, **k: 1 / 0, "ZeroDivisionError"),
        (lambda x, *a, **k: (x.astype(np.float32), None), "dtype float32"),
        (lambda x, *a, **k: (x[:1], None), "shape"),
    ],
)
def test_broken_code_fails_with_a_reason(check, learner, words):
    result = check(learner)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert words in result.feedback and "\n" not in result.feedback, result.feedback


def test_input_modified_in_place_fails():
    def learner(x, gamma, beta, eps=1e-5):
        x -= x.mean(axis=1, keepdims=True)
        return ln_forward(x, gamma, beta, eps)

    result = check_layernorm_forward(learner)
    assert not result.passed and "modified its argument x in place" in result.feedback


def unimplemented(*args, **kwargs):
    raise NotImplementedError  # YOUR CODE HERE, as in the exercise


@pytest.mark.parametrize(
    "backward, words",
    [
        (unimplemented, "replace `raise NotImplementedError` with your code"),
        (lambda dout, cache: None, "returned None"),
        (lambda dout, cache: (dout, dout[0], dout[0]), "expected a tuple (dx, dgamma)"),
        (lambda dout, cache: (dout[:1], dout[0]), "dx has shape"),
        (lambda dout, cache: (dout, None), "dgamma is None"),
        (lambda dout, cache: cache[5], "IndexError"),
        (None, "must be a function"),
    ],
)
def test_broken_rmsnorm_backward_fails_with_a_reason(backward, words):
    result = check_rmsnorm_backward(rms_forward, backward)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert words in result.feedback and "\n" not in result.feedback, result.feedback


def test_unimplemented_rmsnorm_forward_fails_in_both_checks():
    for result in (
        check_rmsnorm_forward(unimplemented),
        check_rmsnorm_backward(unimplemented, rms_backward),
    ):
        assert not result.passed and result.score == 0
        assert "NotImplementedError" in result.feedback, result.feedback


def test_rmsnorm_forward_modifying_gamma_in_place_fails():
    def learner(x, gamma, eps=1e-5):
        gamma *= 1.0 / np.sqrt(np.mean(x**2) + eps)
        return x * gamma, None

    result = check_rmsnorm_forward(learner)
    assert not result.passed and "modified its argument gamma in place" in result.feedback


def test_the_grader_runs_the_rmsnorm_tasks_on_hidden_cases():
    names = [t.name for t in TASKS["ex05_norm_family"]]
    assert {"rmsnorm_forward", "rmsnorm_backward"} <= set(names)
    solution = {
        "layernorm_forward": ln_forward,
        "layernorm_backward": ln_backward,
        "rmsnorm_forward": rms_forward,
        "rmsnorm_backward": rms_backward,
        "groupnorm_forward": gn_forward,
        "instancenorm_forward": in_forward,
    }
    tasks = TASKS["ex05_norm_family"]
    with hidden_cases(12345):  # as `bnlib grade` runs each task
        hidden = rmsnorm_cases()
        results = {t.name: t.run(solution) for t in tasks}
    assert not np.array_equal(hidden[0].x, rmsnorm_cases()[0].x)  # not the learner's cases
    assert all(r.passed and r.score == 1.0 for r in results.values()), results
    missing = {t.name: t.run({"rmsnorm_forward": rms_forward}) for t in tasks}
    assert "rmsnorm_backward is not defined" in missing["rmsnorm_backward"].feedback
    assert missing["rmsnorm_forward"].passed


# --- eps slips and a misread num_groups, as a learner writes them: named, never "float32?" -------


def _ln_forward_keeping_eps(x, gamma, beta, eps=1e-5):
    out, (xhat, g, std) = ln_forward(x, gamma, beta, eps)
    return out, (xhat, g, np.sqrt(std**2 - eps))  # the cache holds sqrt(var): eps left out


def _rms_backward_without_eps(dout, cache):
    x, gamma, rms = cache
    return rms_backward(dout, (x, gamma, np.sqrt((x**2).mean(axis=1, keepdims=True))))


SLIPS = {
    "LN backward, eps left out of std": (
        lambda: check_layernorm_backward(_ln_forward_keeping_eps, ln_backward),
        LAYERNORM_BACKWARD_MISTAKES["dx"][3].hint,
    ),
    "RMSNorm backward, eps left out": (
        lambda: check_rmsnorm_backward(rms_forward, _rms_backward_without_eps),
        RMSNORM_BACKWARD_MISTAKES["dx"][4].hint,
    ),
    "RMSNorm forward, eps argument ignored": (
        lambda: check_rmsnorm_forward(lambda x, g, eps=1e-5: rms_forward(x, g)),
        "the eps argument is ignored",
    ),
    "RMSNorm forward, sqrt(D) x / sqrt(||x||**2 + eps)": (
        lambda: check_rmsnorm_forward(
            lambda x, g, eps: (
                np.sqrt(x.shape[1]) * x / np.sqrt((x**2).sum(1, keepdims=True) + eps) * g,
                None,
            )
        ),
        "eps divided by D",
    ),
    "GN, eps outside the root": (
        lambda: check_groupnorm_forward(
            lambda x, g, b, G, eps=1e-5: (
                groupnorm_reference(x, g, b, G, eps, variant="eps_outside"),
                None,
            )
        ),
        "eps outside the square root",
    ),
    "IN, eps outside the root": (
        lambda: check_instancenorm_forward(
            lambda x, g, b, eps=1e-5: (
                (x - x.mean((2, 3), keepdims=True))
                / (x.std((2, 3), keepdims=True) + eps)
                * g[:, None, None]
                + b[:, None, None],
                None,
            )
        ),
        "eps outside the square root",
    ),
    "GN, num_groups read as channels per group": (
        lambda: check_groupnorm_forward(
            lambda x, g, b, G, eps=1e-5: gn_forward(x, g, b, x.shape[1] // G, eps)
        ),
        "num_groups used as the number of channels per group (C/G)",
    ),
}


@pytest.mark.parametrize("secret", [None, 1, 2, 12345])
@pytest.mark.parametrize("name", list(SLIPS))
def test_eps_slips_and_the_group_size_are_named_not_float32(name, secret):
    run, hint = SLIPS[name]
    with hidden_cases(secret) if secret is not None else nullcontext():
        result = run()
    assert not result.passed and hint in result.feedback, result.feedback
    assert "float32" not in result.feedback, result.feedback
