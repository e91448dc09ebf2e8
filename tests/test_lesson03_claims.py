"""Lesson 3's qualitative claims, on the same bnlib code paths as notebooks/03_why_bn_works.ipynb
(smaller configurations where the full one is slow), so a change that breaks the lesson fails
here first. Each test names the lesson section it guards."""

import numpy as np
import pytest
import torch
from torch import nn

from bnlib.data import load_digits
from bnlib.hooks import trace_training, weight_grad_norms
from bnlib.landscape import track_optimization
from bnlib.nn import NoisyBatchNorm1d
from bnlib.train import accuracy, lr_sweep, mlp, replace_batchnorm, steps_to


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return load_digits(tensors=True)


def _sigmoid_net(kind):
    torch.manual_seed(0)
    model = mlp(
        (64, 100, 100, 100, 10), norm="none" if kind == "none" else "bn", activation="sigmoid"
    )
    if kind == "noisy":
        noise = torch.Generator().manual_seed(1)
        replace_batchnorm(model, lambda c: NoisyBatchNorm1d(c, generator=noise))
    return model


@pytest.fixture(scope="module")
def fig1(data):
    """Lesson §1 and §5 at the lesson's configuration (about 6 s for the three runs)."""
    config = dict(steps=2000, batch_size=60, lr=0.2, momentum=0.9, eval_every=50)
    return {k: trace_training(_sigmoid_net(k), data, **config) for k in ("none", "bn", "noisy")}


def _median_moves(trace):
    pct = list(trace.percentiles.values())[-1]  # the last hidden layer, (T, Q, D)
    late = pct[len(pct) // 10 :]
    band = late[:, -1] - late[:, 0]
    return np.mean(late[:, 1].max(0) - late[:, 1].min(0)), np.mean(band[-20:])


def test_s1_bn_keeps_the_percentiles_steady_and_trains_faster(fig1):
    (none_moves, none_band), (bn_moves, bn_band) = (
        _median_moves(fig1[k][1]) for k in ("none", "bn")
    )
    assert bn_moves < 0.5 * none_moves
    assert bn_band < none_band
    assert steps_to(fig1["bn"][0], 0.9) * 10 <= steps_to(fig1["none"][0], 0.9)


def test_s5_noisy_bn_trains_about_as_well_as_bn_with_less_stable_inputs(fig1):
    bn, noisy, none = (fig1[k][0] for k in ("bn", "noisy", "none"))
    assert abs(noisy.final_test_acc - bn.final_test_acc) <= 0.02
    assert steps_to(noisy, 0.9) * 10 <= steps_to(none, 0.9)
    assert _median_moves(fig1["noisy"][1])[0] > _median_moves(fig1["bn"][1])[0]


def test_s3_bn_tolerates_a_larger_learning_rate(data):
    runs = lr_sweep(
        lambda kind: mlp((64, 100, 100, 100, 10), norm=kind),
        ("none", "bn"),
        (0.1, 1.0),
        data,
        steps=300,
        batch_size=60,
        eval_every=50,
    )
    assert runs["none", 0.1].final_test_acc > 0.9 and runs["bn", 0.1].final_test_acc > 0.9
    assert runs["none", 1.0].final_test_acc < 0.2 < 0.9 < runs["bn", 1.0].final_test_acc


def test_s4_sigmoid_gradients_vanish_without_bn(data):
    ratios = {}
    for kind in ("none", "bn"):
        torch.manual_seed(0)
        model = mlp((64,) + (64,) * 10 + (10,), norm=kind, activation="sigmoid")
        g = weight_grad_norms(model, data.x_train[:128], data.y_train[:128])
        ratios[kind] = g[0] / g[-1]
    assert ratios["none"] < 1e-6 and 0.1 < ratios["bn"] < 10


def test_s4b_bn_makes_gradients_explode_with_depth_in_plain_relu_nets(data):
    def ratio(kind, depth):
        torch.manual_seed(0)
        model = mlp((64,) + (128,) * depth + (10,), norm=kind, activation="relu")
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        g = weight_grad_norms(model, data.x_train[:128], data.y_train[:128])
        return g[0] / g[-2]

    bn = [ratio("bn", d) for d in (5, 20, 50)]
    assert bn[0] < bn[1] < bn[2] and bn[2] > 100
    assert all(0.1 < ratio("none", d) < 10 for d in (5, 20, 50))


@pytest.fixture(scope="module")
def tracked(data):
    """Lesson §6-§8 at the lesson's configuration: {kind: (trained model, measures)}."""
    out = {}
    for kind in ("none", "bn"):
        torch.manual_seed(0)
        model = mlp((64, 100, 100, 100, 10), norm=kind)
        probe = (data.x_train[:60], data.y_train[:60])
        _, measures = track_optimization(
            model, data, probe, every=50, lr=0.1, steps=600, batch_size=60
        )
        out[kind] = (model, measures)
    return out


def test_s6_ics_is_not_smaller_with_bn_relative_to_the_gradient(tracked):
    ics = {k: m["ics"][:, 1:].mean() for k, (_, m) in tracked.items()}
    rel = {k: (m["ics"] / m["grad_norm"])[:, 1:].mean() for k, (_, m) in tracked.items()}
    assert ics["bn"] < ics["none"]
    assert rel["bn"] > 0.9 * rel["none"]


def test_s7_the_landscape_is_smoother_with_bn_early_in_training(tracked):
    for name in ("loss_range", "grad_change"):
        assert np.all(tracked["bn"][1][name][:3] < 0.7 * tracked["none"][1][name][:3]), name


def test_s8_batch_mates_change_a_samples_output_only_with_bn(tracked, data):
    g = torch.Generator().manual_seed(0)
    sample, spread, gap = data.x_test[:1], {}, {}
    for kind, (model, _) in tracked.items():
        model.train()
        with torch.no_grad():
            logits = torch.stack(
                [
                    model(
                        torch.cat([sample, data.x_train[torch.randperm(1347, generator=g)[:59]]])
                    )[0]
                    for _ in range(20)
                ]
            )
        model.eval()
        spread[kind] = logits.std(0).mean().item()
        gap[kind] = accuracy(model, data.x_train, data.y_train) - accuracy(
            model, data.x_test, data.y_test
        )
    assert spread["none"] == 0 and spread["bn"] > 0.01
    assert gap["bn"] <= gap["none"] + 0.01
