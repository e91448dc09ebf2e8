"""bnlib.checks_ex05: right code passes, each named mistake is diagnosed, broken code fails
cleanly with a one-line reason (never an exception); the references equal bnlib.functional."""

import numpy as np
import pytest

from bnlib import functional as F
from bnlib.checks import (
    CheckResult,
    check_groupnorm_forward,
    check_instancenorm_forward,
    check_layernorm_backward,
    check_layernorm_forward,
)
from bnlib.checks_ex05 import (
    GROUPNORM_MISTAKES,
    INSTANCENORM_MISTAKES,
    LAYERNORM_BACKWARD_MISTAKES,
    LAYERNORM_MISTAKES,
    _ln_backward,
    groupnorm_reference,
    instancenorm_reference,
    layernorm_reference,
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


def test_right_implementations_pass():
    results = [
        check_layernorm_forward(ln_forward),
        check_layernorm_backward(ln_forward, ln_backward),
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


# --- each named mistake is diagnosed -------------------------------------------------------------

LN = ["batch_axis", "unbiased", "eps_outside", "no_affine", "swapped"]
GN = ["strided", "with_batch", "per_group_affine", "layer", "instance", "unbiased", "no_affine"]
IN = ["with_batch", "with_channels", "unbiased", "no_affine"]


@pytest.mark.parametrize("variant, mistake", list(zip(LN, LAYERNORM_MISTAKES, strict=True)))
def test_each_layernorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, eps=1e-5):
        return layernorm_reference(x, g, b, eps, variant=variant), None

    result = check_layernorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize("variant, mistake", list(zip(GN, GROUPNORM_MISTAKES, strict=True)))
def test_each_groupnorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, G, eps=1e-5):
        return groupnorm_reference(x, g, b, G, eps, variant=variant), None

    result = check_groupnorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize("variant, mistake", list(zip(IN, INSTANCENORM_MISTAKES, strict=True)))
def test_each_instancenorm_mistake_is_named(variant, mistake):
    def learner(x, g, b, eps=1e-5):
        return instancenorm_reference(x, g, b, eps, variant=variant), None

    result = check_instancenorm_forward(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize(
    "variant, output, index",
    [
        ("bn_formula", "dx", 0),
        ("constant_stats", "dx", 1),
        ("no_gamma", "dx", 2),
        ("params_axis1", "dgamma", 0),
        ("params_mean", "dbeta", 1),
    ],
)
def test_each_layernorm_backward_mistake_is_named(variant, output, index):
    def backward(dout, cache):
        x, gamma, eps = cache
        return _ln_backward(x, gamma, dout, eps, variant=variant)

    def forward(x, gamma, beta, eps=1e-5):
        return ln_forward(x, gamma, beta, eps)[0], (x, gamma, eps)

    result = check_layernorm_backward(forward, backward)
    hint = LAYERNORM_BACKWARD_MISTAKES[output][index].hint
    assert not result.passed and hint in result.feedback, result.feedback


def test_backward_check_notes_a_broken_forward():
    def forward(x, gamma, beta, eps=1e-5):
        return layernorm_reference(x, gamma, beta, eps, variant="batch_axis"), None

    result = check_layernorm_backward(forward, lambda dout, cache: (dout, dout[0], dout[0]))
    assert not result.passed and "fails its own check too" in result.feedback


# --- broken code fails cleanly -------------------------------------------------------------------


@pytest.mark.parametrize(
    "check", [check_layernorm_forward, check_groupnorm_forward, check_instancenorm_forward]
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
