"""bnlib.inference: folding equals Linear/Conv2d + eval-mode BN, recalibration computes the
statistics from the data, the cost measurements count what they say, and the running-statistics
widget's traces follow PyTorch's update."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import nn as bnn
from bnlib.inference import (
    fold_batchnorm,
    fold_model,
    recalibrate,
    saved_bytes,
    saved_tensors,
    step_times,
)
from bnlib.train import mlp, small_cnn
from bnlib.widgets import RunningStatsExplorer, running_stats_traces


def trained_bn(bn, shape, seed=0):
    """Give bn non-trivial weight, bias and running statistics; return it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    bn.train()
    for _ in range(3):
        bn(torch.randn(*shape, generator=g, dtype=bn.running_mean.dtype) * 3 + 2)
    return bn.eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_folding_equals_layer_then_bn(kind, affine, bias):
    torch.manual_seed(0)
    if kind == "linear":
        layer = nn.Linear(6, 4, bias=bias).double()
        bn = trained_bn(nn.BatchNorm1d(4, affine=affine).double(), (16, 4))
        x = torch.randn(5, 6, dtype=torch.float64)
    else:
        layer = nn.Conv2d(3, 4, 3, padding=1, bias=bias).double()
        bn = trained_bn(nn.BatchNorm2d(4, affine=affine).double(), (8, 4, 5, 5))
        x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    before = copy.deepcopy(layer.state_dict())
    folded = fold_batchnorm(layer, bn)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(layer(x)), rtol=1e-12, atol=1e-12)
    for k, v in layer.state_dict().items():  # the original layer is unchanged
        assert torch.equal(v, before[k])


def test_folding_works_with_bnlib_layers_and_float32():
    layer = nn.Linear(5, 3)
    bn = trained_bn(bnn.BatchNorm1d(3), (32, 3))
    x = torch.randn(7, 5)
    with torch.no_grad():
        assert (fold_batchnorm(layer, bn)(x) - bn(layer(x))).abs().max() < 1e-5


@pytest.mark.parametrize("make, shape", [(mlp, (9, 64)), (small_cnn, (9, 1, 8, 8))])
def test_fold_model_removes_every_bn_and_keeps_the_outputs(make, shape):
    torch.manual_seed(0)
    model = make(norm="bn").double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            trained_bn(m, (32, m.num_features) + shape[2:])
    model.eval()
    folded = fold_model(model)
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in folded.modules())
    assert len(folded) == len(model) - 2
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-10, atol=1e-10)


def test_fold_errors_name_the_problem():
    with pytest.raises(ValueError, match="4 outputs but bn normalizes 3"):
        fold_batchnorm(nn.Linear(2, 4), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fold_batchnorm(nn.Linear(2, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv2d"):
        fold_batchnorm(nn.ReLU(), nn.BatchNorm1d(3))
    with pytest.raises(TypeError, match="BatchNorm1d or BatchNorm2d"):
        fold_batchnorm(nn.Linear(2, 3), nn.LayerNorm(3))
    with pytest.raises(TypeError, match="nn.Sequential"):
        fold_model(nn.Linear(2, 3))


def test_recalibrate_computes_the_mean_of_the_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=0.3)).double()
    x = torch.randn(64, 4, dtype=torch.float64) * 2 + 1
    recalibrate(model, x, batch_size=16)
    bn = model[1]
    assert bn.momentum == 0.3 and not model.training  # restored, and in eval mode
    with torch.no_grad():
        h = model[0](x).view(4, 16, 3)  # the four batches of 16
    torch.testing.assert_close(bn.running_mean, h.mean(1).mean(0))
    torch.testing.assert_close(bn.running_var, h.var(1, unbiased=True).mean(0))
    assert int(bn.num_batches_tracked) == 4
    with pytest.raises(ValueError, match="no BatchNorm"):
        recalibrate(nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="batch_size"):
        recalibrate(model, x, batch_size=1)


def test_saved_bytes_counts_what_backward_keeps():
    x = torch.randn(64, 10)
    # Linear(10 -> 10) keeps its input x (64 x 10 float32 = 2560 bytes); parameters not counted
    assert saved_bytes(nn.Sequential(nn.Linear(10, 10)), x) == 64 * 10 * 4
    digits = torch.randn(64, 64)
    assert saved_bytes(mlp(norm="bn"), digits) > saved_bytes(mlp(), digits) > 0
    # a slice of a data set counts as the slice, not as the whole storage it shares
    data_set = torch.randn(1000, 10)
    assert saved_bytes(nn.Sequential(nn.Linear(10, 10)), data_set[:64]) == 64 * 10 * 4


def test_saved_tensors_of_batchnorm_are_its_input_and_per_channel_vectors():
    saved = saved_tensors(nn.BatchNorm1d(5), torch.randn(8, 5))
    assert [(s.kind, s.shape, s.nbytes) for s in saved] == [
        ("input", (8, 5), 8 * 5 * 4),
        ("buffer", (5,), 20),  # running_mean
        ("buffer", (5,), 20),  # running_var
        ("parameter", (5,), 20),  # weight
        ("computed", (5,), 20),  # batch mean
        ("computed", (5,), 20),  # 1 / sqrt(var + eps)
    ]


def test_saved_tensors_names_the_layer_and_marks_shared_storage():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    saved = saved_tensors(model, torch.randn(5, 4))
    # Linear 0 keeps x; ReLU its output; Linear 2 the same output again (not new) and its weight
    assert [(s.layer, s.kind, s.new) for s in saved] == [
        ("0", "input", True),
        ("1", "computed", True),
        ("2", "computed", False),
        ("2", "parameter", True),
    ]
    assert saved_bytes(model, torch.randn(5, 4)) == 5 * 4 * 4 + 5 * 3 * 4
    assert not model._forward_hooks and not model[0]._forward_pre_hooks  # hooks removed


def test_step_times_returns_a_time_per_model():
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    times = step_times({"a": mlp(), "b": mlp(norm="bn")}, x, y, repeats=3, warmup=1)
    assert set(times) == {"a", "b"} and all(0 < t < 1 for t in times.values())


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_stats_traces_follow_pytorch(momentum):
    n, steps = 4, 20
    rm, rv = running_stats_traces(momentum, n, steps=steps, seed=3)
    rng = np.random.default_rng([3, n])  # the traces' own draws
    x = rng.standard_normal((steps, n)) * 2.0 + 2.0
    bn = nn.BatchNorm1d(1, momentum=momentum).double()
    for t in range(steps):
        bn(torch.from_numpy(x[t]).view(n, 1))
        assert np.isclose(rm[t + 1], bn.running_mean.item())
        assert np.isclose(rv[t + 1], bn.running_var.item())


def test_running_stats_explorer_redraws_for_every_slider():
    explorer = RunningStatsExplorer()
    first = explorer.image.value
    explorer.momentum.value = "None"
    second = explorer.image.value
    explorer.batch_size.value = 128
    assert len({first, second, explorer.image.value}) == 3
    assert "None (cumulative)" in explorer.summary() and "N=128" in explorer.summary()
    assert explorer.errors(1.0, 2, current=False)[1] > explorer.errors(None, 2, current=False)[1]
