"""bnlib.checks_ex02: right code passes, each named mistake is diagnosed, broken code fails
cleanly with a one-line reason (never an exception)."""

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.checks import (
    CheckResult,
    check_batchnorm_eval,
    check_batchnorm_module,
    check_fold_bn,
    check_running_stats,
)
from bnlib.grading.engine import hidden_cases
from bnlib.grading.exercises.ex02 import (
    EVAL_MISTAKES,
    FOLD_MISTAKES,
    RUNNING_MISTAKES,
    batchnorm_eval_reference,
    fold_bn_reference,
    running_stats_reference,
)

# --- right implementations, written here independently of bnlib ----------------------------------


def update(rm, rv, x, m):
    rm *= 1 - m  # in place: allowed, the check passes copies
    rm += m * x.mean(axis=0)
    return rm, (1 - m) * rv + m * np.var(x, axis=0, ddof=1)


def bn_eval(x, gamma, beta, rm, rv, eps=1e-5):
    return (x - rm) * (gamma / np.sqrt(rv + eps)) + beta


def fold(W, b, gamma, beta, rm, rv, eps=1e-5):
    s = gamma / np.sqrt(rv + eps)
    return np.diag(s) @ W, s * (b - rm) + beta


def make_module(
    *,
    biased=False,
    inverted=False,
    eval_batch=False,
    eval_updates=False,
    count=True,
    graph=False,
    no_none=False,
    one_ok=False,
):
    """A BatchNorm1d written from scratch, optionally with one classic mistake."""

    class Module(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            self.eps, self.momentum = eps, momentum
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            if count:
                self.register_buffer("num_batches_tracked", torch.tensor(0))

        def _update(self, mean, var_u):
            if count:
                self.num_batches_tracked += 1
            m = self.momentum
            if m is None:  # the cumulative average (no_none: a fixed 0.1 instead)
                m = 0.1 if no_none else 1.0 / float(self.num_batches_tracked)
            m = 1 - m if inverted else m
            self.running_mean = (1 - m) * self.running_mean + m * mean
            self.running_var = (1 - m) * self.running_var + m * var_u

        def forward(self, x):
            n = x.shape[0]
            if self.training and n == 1 and not one_ok:
                raise ValueError("Expected more than 1 value per channel when training")
            mean, var = x.mean(0), x.var(0, unbiased=False)
            var_u = var if biased else var * n / (n - 1) if n > 1 else var
            use_batch = self.training or eval_batch
            if self.training or eval_updates:
                if graph:
                    self._update(mean, var_u)
                else:
                    with torch.no_grad():
                        self._update(mean, var_u)
            if not use_batch:
                mean, var = self.running_mean, self.running_var
            return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    return Module


def test_right_implementations_pass():
    results = [
        check_running_stats(update),
        check_batchnorm_eval(bn_eval),
        check_fold_bn(fold),
        check_batchnorm_module(make_module()),
        check_batchnorm_module(nn.BatchNorm1d),  # PyTorch's own passes, of course
    ]
    for result in results:
        assert isinstance(result, CheckResult)
        assert result.passed and result.score == 1.0, result.feedback


# --- each named mistake is diagnosed -------------------------------------------------------------

RUNNING = ["biased", "inverted", "batch_only", "std", "about_running", "mean_only"]
EVAL = ["batch_stats", "no_eps", "eps_outside", "no_sqrt", "swapped", "no_affine"]
FOLD = [
    "bias_unchanged",
    "old_bias_dropped",
    "bias_not_scaled",
    "columns",
    "W_not_scaled",
    "no_eps",
    "no_sqrt",
    "no_mean",
    "no_beta",
]


@pytest.mark.parametrize("variant, mistake", list(zip(RUNNING, RUNNING_MISTAKES, strict=True)))
def test_each_running_stats_mistake_is_named(variant, mistake):
    def learner(rm, rv, x, m):
        return running_stats_reference(rm, rv, x, m, variant=variant)

    result = check_running_stats(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize("variant, mistake", list(zip(EVAL, EVAL_MISTAKES, strict=True)))
def test_each_eval_mistake_is_named(variant, mistake):
    def learner(x, g, b, rm, rv, eps=1e-5):
        return batchnorm_eval_reference(x, g, b, rm, rv, eps, variant=variant)

    result = check_batchnorm_eval(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize("variant, mistake", list(zip(FOLD, FOLD_MISTAKES, strict=True)))
def test_each_fold_mistake_is_named(variant, mistake):
    def learner(W, b, g, be, rm, rv, eps=1e-5):
        return fold_bn_reference(W, b, g, be, rm, rv, eps, variant=variant)

    result = check_fold_bn(learner)
    assert not result.passed and mistake.hint in result.feedback, result.feedback


@pytest.mark.parametrize(
    "flaw, words",
    [
        ({"biased": True}, "unbiased"),
        ({"inverted": True}, "momentum inverted"),
        ({"eval_batch": True}, "batch's own mean and variance"),
        ({"eval_updates": True}, "changed in eval mode"),
        ({"count": False}, "missing ['num_batches_tracked']"),
        ({"no_none": True}, "momentum=None: the running statistics are the cumulative"),
        ({"one_ok": True}, "training with one value per channel"),
    ],
)
def test_each_module_mistake_is_named(flaw, words):
    result = check_batchnorm_module(make_module(**flaw))
    assert not result.passed and words in result.feedback, result.feedback


def test_module_without_parameters_is_told_about_the_state_dict():
    class Plain(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            self.weight = torch.ones(num_features)  # a plain tensor: not a parameter, not saved

        def forward(self, x):
            return x

    result = check_batchnorm_module(Plain)
    assert not result.passed and "missing ['bias', 'num_batches_tracked'" in result.feedback
    assert "register_buffer" in result.feedback


# --- broken code fails cleanly -------------------------------------------------------------------


@pytest.mark.parametrize(
    "check", [check_running_stats, check_batchnorm_eval, check_fold_bn, check_batchnorm_module]
)
@pytest.mark.parametrize(
    "learner, words",
    [
        (None, "must be"),
        (lambda *a, **k: None, None),
        (lambda *a, **k: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_broken_code_fails_with_a_reason(check, learner, words):
    result = check(learner)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert result.feedback and "\n" not in result.feedback
    if check is check_batchnorm_module and learner is not None:
        words = "must be a class"
    if words:
        assert words in result.feedback, result.feedback


def test_module_that_raises_names_the_step():
    class Broken(nn.Module):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__()
            self.inner = nn.BatchNorm1d(num_features, eps, momentum)

        def forward(self, x):
            if not self.training:
                raise RuntimeError("eval not written yet")
            return self.inner(x)

    result = check_batchnorm_module(Broken)
    assert not result.passed and "state_dict" in result.feedback  # keys come first: inner.*

    class NoEval(nn.BatchNorm1d):
        def forward(self, x):
            if not self.training:
                raise RuntimeError("eval not written yet")
            return super().forward(x)

    result = check_batchnorm_module(NoEval)
    assert not result.passed
    assert "step 3 (eval mode, a batch of 5): raised RuntimeError" in result.feedback


def test_running_statistics_updated_through_the_graph_get_a_hint():
    result = check_batchnorm_module(make_module(graph=True))
    # a graph through the running statistics breaks the next backward (or keeps memory growing)
    assert not result.passed and "no_grad" in result.feedback, result.feedback


def test_modifying_x_in_place_fails():
    def learner(rm, rv, x, m):
        x -= x.mean(axis=0)
        return rm, rv

    result = check_running_stats(learner)
    assert not result.passed and "modified its argument x in place" in result.feedback


def test_each_module_behaviour_is_tested_and_named():
    """The behaviours task 4 lists: a module failing just one of them fails, naming it."""
    result = check_batchnorm_module(make_module(no_none=True))
    assert result.score == pytest.approx(2 / 3) and "momentum=None" in result.feedback
    result = check_batchnorm_module(make_module(one_ok=True))
    assert not result.passed and "expected a ValueError" in result.feedback, result.feedback

    class NoneFails(make_module()):
        def __init__(self, num_features, eps=1e-5, momentum=0.1):
            super().__init__(num_features, eps, momentum)
            self.momentum = 0.1 if momentum is None else momentum
            self.fail = momentum is None

        def forward(self, x):
            if self.fail and self.training:
                return x * (1 - None)  # TypeError, as `1 - self.momentum` with momentum=None
            return super().forward(x)

    result = check_batchnorm_module(NoneFails)
    assert not result.passed and "TypeError" in result.feedback
    assert "cumulative (plain) average" in result.feedback, result.feedback


def test_an_error_inside_the_learners_module_names_the_learners_line():
    class Raises(make_module()):
        def forward(self, x):
            return x.no_such_attribute  # the learner's line

    result = check_batchnorm_module(Raises)
    assert "AttributeError" in result.feedback and "of forward)" in result.feedback
    assert "_run_module" not in result.feedback, result.feedback

    class WrongInit(make_module()):
        def __init__(self, num_features):  # eps and momentum missing: raised at the check's call
            super().__init__(num_features)

    with hidden_cases(1):
        result = check_batchnorm_module(WrongInit)
    assert "TypeError" in result.feedback
    assert "_run_module" not in result.feedback and "checks_ex02" not in result.feedback


def test_the_momentum_1_case_must_pass_but_earns_nothing():
    # at momentum=1 the batch's own statistics are the right answer: no credit for skipping the
    # moving average there
    result = check_running_stats(lambda rm, rv, x, m: (x.mean(0), x.var(0, ddof=1)))
    assert not result.passed and result.score == 0.0, result.feedback
    assert "without the moving average" in result.feedback
