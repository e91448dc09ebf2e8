"""The checks of exercise 3: right code passes, each named mistake is diagnosed, and bad learner
code (None, wrong shapes, NaN, exceptions, mutation, hooks left behind, hangs) fails cleanly."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.checks import check_layer_percentiles, check_noisy_bn
from bnlib.grading import engine
from bnlib.grading.exercises import TASKS
from bnlib.grading.exercises.ex03 import (
    _FRACTIONS,
    _OUTPUT,
    _PER_SAMPLE,
    _TRANSPOSED,
    _WHOLE,
    NOISY_BN_MISTAKES,
    noisy_bn_reference,
)
from bnlib.hooks import layer_percentiles

ACTS = (nn.Sigmoid, nn.Tanh, nn.ReLU)


def _recording(pick, q_of=lambda q: q, axis=0, transpose=False, remove=True):
    """A layer_percentiles that records pick(inputs, output) with hooks, with switches."""

    def fn(model, x, q=(15, 50, 85)):
        out, handles = {}, []

        def hook_for(name):
            def hook(module, inputs, output):
                v = pick(inputs, output).detach().double().numpy()
                p = np.percentile(v, q_of(np.asarray(q, dtype=float)), axis=axis)
                out[name] = p.T if transpose else p

            return hook

        for name, m in model.named_modules():
            if isinstance(m, ACTS):
                handles.append(m.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(x)
        if remove:
            for h in handles:
                h.remove()
        return out

    return fn


def _inputs(inputs, output):
    return inputs[0]


def _keeping_buffers(fn):
    """fn, with the model's buffers put back afterwards (bnlib.hooks' probe moves them)."""

    def probe(model, x, q=(15, 50, 85)):
        saved = {k: v.clone() for k, v in model.named_buffers()}
        try:
            return fn(model, x, q)
        finally:
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(saved[k])

    return probe


def test_the_reference_passes():
    result = check_layer_percentiles(_keeping_buffers(layer_percentiles))
    assert result.passed and result.score == 1.0, result.feedback
    assert check_layer_percentiles(_keeping_buffers(_recording(_inputs))).passed


def test_a_probe_that_moves_the_running_statistics_is_named():
    result = check_layer_percentiles(layer_percentiles)  # no restore: train mode moves them
    assert not result.passed and result.score == 0.75, result.feedback
    assert "changed the model's 1.running_mean" in result.feedback
    assert "the probe changed BN's running statistics" in result.feedback

    def counts_only(model, x, q=(15, 50, 85)):
        out = _keeping_buffers(layer_percentiles)(model, x, q)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.num_batches_tracked += 1
        return out

    result = check_layer_percentiles(counts_only)
    assert not result.passed and "num_batches_tracked" in result.feedback, result.feedback


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (_recording(lambda i, o: o), _OUTPUT),
        (_recording(_inputs, axis=1), _PER_SAMPLE),
        (_recording(_inputs, axis=None), _WHOLE),
        (_recording(_inputs, q_of=lambda q: q / 100), _FRACTIONS),
        (_recording(_inputs, transpose=True), _TRANSPOSED),
    ],
)
def test_each_percentile_mistake_is_named(wrong, hint):
    result = check_layer_percentiles(wrong)
    assert not result.passed and hint in result.feedback, result.feedback


def test_hooks_left_behind_fail_with_the_reason():
    result = check_layer_percentiles(_recording(_inputs, remove=False))
    assert not result.passed and "hook(s)" in result.feedback and "remove" in result.feedback


def test_changing_the_mode_or_the_weights_fails():
    def evals(model, x, q=(15, 50, 85)):
        model.eval()
        return layer_percentiles(model, x, q)

    def zeroes(model, x, q=(15, 50, 85)):
        out = layer_percentiles(model, x, q)
        with torch.no_grad():
            next(model.parameters()).zero_()
        return out

    result = check_layer_percentiles(evals)
    assert not result.passed and "mode" in result.feedback, result.feedback
    result = check_layer_percentiles(zeroes)
    assert not result.passed and "changed the model's" in result.feedback, result.feedback


def test_wrong_keys_and_types_fail_cleanly():
    def linear_inputs(model, x, q=(15, 50, 85)):
        return {n: np.zeros(1) for n, m in model.named_modules() if isinstance(m, nn.Linear)}

    cases = {
        "missing": linear_inputs,
        "returned None": lambda m, x, q=(15, 50, 85): None,
        "expected a dict": lambda m, x, q=(15, 50, 85): [1, 2],
        "expected a numpy array": lambda m, x, q=(15, 50, 85): {
            k: "x" for k in layer_percentiles(m, x, q)
        },
        "contains NaN": lambda m, x, q=(15, 50, 85): {
            k: v * np.nan for k, v in layer_percentiles(m, x, q).items()
        },
        "raised ValueError": lambda m, x, q=(15, 50, 85): (_ for _ in ()).throw(ValueError("no")),
    }
    for want, fn in cases.items():
        result = check_layer_percentiles(fn)
        assert not result.passed and want in result.feedback, (want, result.feedback)


def test_torch_tensors_are_accepted():
    def tensors(model, x, q=(15, 50, 85)):
        found = _keeping_buffers(layer_percentiles)(model, x, q)
        return {k: torch.from_numpy(v) for k, v in found.items()}

    assert check_layer_percentiles(tensors).passed


def test_noisy_bn_reference_and_pass():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3))
    g, b, s, m = (rng.standard_normal(3) for _ in range(4))
    want = noisy_bn_reference(x, g, b, s, m)  # the formula's order: scale, then shift
    xhat = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(want, (g * xhat + b) * s + m, rtol=1e-12)
    assert check_noisy_bn(noisy_bn_reference).passed
    with engine.hidden_cases(7):
        assert check_noisy_bn(noisy_bn_reference).passed


def test_the_old_argument_order_is_named():
    def shift_first(x, gamma, beta, shift, scale, eps=1e-5):
        return noisy_bn_reference(x, gamma, beta, scale, shift, eps)

    result = check_noisy_bn(shift_first)
    assert not result.passed and "scale and shift swapped" in result.feedback, result.feedback


@pytest.mark.parametrize("mistake", NOISY_BN_MISTAKES, ids=lambda m: m.hint[:30])
def test_each_noisy_bn_mistake_is_named(mistake):
    result = check_noisy_bn(lambda x, g, b, s, m, eps=1e-5: mistake.compute(x, g, b, s, m, eps))
    assert not result.passed and mistake.hint in result.feedback, result.feedback


def test_noisy_bn_bad_outputs_fail_cleanly():
    def inplace(x, g, b, s, m, eps=1e-5):
        x -= x.mean(0)
        return noisy_bn_reference(x, g, b, s, m, eps)

    cases = {
        "returned None": lambda *a: None,
        "shape": lambda x, *a, **k: np.zeros((1, 1)),
        "float32": lambda *a, **k: noisy_bn_reference(*a, **k).astype(np.float32),
        "NaN": lambda *a, **k: noisy_bn_reference(*a, **k) * np.nan,
        "return only out": lambda *a, **k: (noisy_bn_reference(*a, **k), None),
        "in place": inplace,
        "must be a function": None,
    }
    for want, fn in cases.items():
        result = check_noisy_bn(fn)
        assert not result.passed and want in result.feedback, (want, result.feedback)


def _stuck(*args):
    threading.Event().wait(5)


def test_a_function_that_never_returns_is_abandoned(monkeypatch):
    monkeypatch.setattr(engine, "CALL_TIMEOUT", 0.3)
    monkeypatch.setattr(engine, "CHECK_TIMEOUT", 0.5)
    for check in (check_layer_percentiles, check_noisy_bn):
        result = check(_stuck)
        assert not result.passed and "did not return" in result.feedback, result.feedback


def test_the_tasks_are_registered():
    names = [t.name for t in TASKS["ex03_inside_training"]]
    assert names == ["layer_percentiles", "noisy_bn"]
