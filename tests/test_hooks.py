"""bnlib.hooks, bnlib.landscape, NoisyBatchNorm1d, lesson 3's plot helpers and widgets, the
training helpers lr_sweep / steps_to, and the small helpers of bnlib.experiments.lesson03 (its
experiments themselves are run by tests/test_claims_lesson03.py)."""

import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bnlib.data import load_digits  # noqa: E402
from bnlib.hooks import (  # noqa: E402
    ActivationRecorder,
    GradNormRecorder,
    Trace,
    activation_inputs,
    layer_percentiles,
    percentiles,
    trace_training,
    weight_grad_norms,
)
from bnlib.landscape import (  # noqa: E402
    internal_covariate_shift,
    landscape_along_gradient,
    track_optimization,
)
from bnlib.nn import NoisyBatchNorm1d  # noqa: E402
from bnlib.plots import layer_grad_norms, percentile_band, seed_band  # noqa: E402
from bnlib.train import History, lr_sweep, mlp, steps_to  # noqa: E402


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture
def model():
    torch.manual_seed(0)
    return mlp((5, 7, 6, 3), norm="bn", activation="tanh")


def test_activation_recorder_records_inputs_and_removes_its_hooks(model):
    x = torch.randn(9, 5)
    acts = activation_inputs(model)
    assert list(acts) == ["2", "5"]
    with ActivationRecorder(acts) as rec:
        out = model(x)
        model(x)
    assert _hooks(model) == 0 and len(rec.records["2"]) == 2
    manual = torch.tanh(torch.from_numpy(rec.records["5"][0]).float())
    torch.testing.assert_close(model[6](manual), out)  # what enters tanh, through tanh and Linear


def test_activation_recorder_every_and_train_only(model):
    with ActivationRecorder(activation_inputs(model), what="output", every=2, train_only=True) as r:
        for _ in range(5):
            model(torch.randn(4, 5))
        model.eval()
        model(torch.randn(4, 5))
    assert len(r.records["2"]) == 3  # calls 1, 3, 5 of the five in train mode
    assert np.all(np.abs(r.records["2"][0]) <= 1)  # tanh outputs
    with pytest.raises(ValueError, match="what must be"):
        ActivationRecorder({}, what="grad")
    with pytest.raises(ValueError, match="every"):
        ActivationRecorder({}, every=0)


def test_layer_percentiles_matches_numpy(model):
    model.eval()
    x = torch.randn(30, 5)
    got = layer_percentiles(model, x, q=(10, 50, 90))
    z = model[1](model[0](x)).detach().double().numpy()  # BN(Linear(x)): the first tanh's input
    np.testing.assert_allclose(got["2"], np.percentile(z, (10, 50, 90), axis=0), rtol=1e-6)
    assert got["5"].shape == (3, 6) and _hooks(model) == 0


@pytest.mark.parametrize("n", [1, 2, 5, 60])
def test_percentiles_is_numpys_percentile(n):
    x = torch.randn(n, 7)
    for q in ((15, 50, 85), (0, 100), (10, 33.3, 99.9)):
        got = percentiles(x, q)
        assert got.shape == (len(q), 7) and got.dtype == np.float64
        np.testing.assert_array_equal(got, np.percentile(x.double().numpy(), q, axis=0))


def test_grad_norm_recorder_and_weight_grad_norms(model):
    x, y = torch.randn(8, 5, requires_grad=True), torch.randint(0, 3, (8,))
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    with GradNormRecorder(linears) as rec:
        nn.functional.cross_entropy(model(x), y).backward()
    assert _hooks(model) == 0 and all(len(v) == 1 and v[0] > 0 for v in rec.records.values())
    model.zero_grad()
    norms = weight_grad_norms(model, x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    want = [m.weight.grad.norm().item() for m in linears.values()]
    np.testing.assert_allclose(norms, want, rtol=1e-5)
    model.zero_grad(set_to_none=True)
    weight_grad_norms(model, x, y)
    assert all(p.grad is None for p in model.parameters())


def test_ics_first_layer_is_zero_and_the_model_is_untouched(model):
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with ActivationRecorder(activation_inputs(model)) as rec:  # a hook on the model ...
        ics, cosine, norm = internal_covariate_shift(model, x, y, lr=0.5)
    assert rec.records["2"] == []  # ... is not triggered by the copies
    assert ics.shape == cosine.shape == norm.shape == (3,)
    assert ics[0] == 0 and cosine[0] == pytest.approx(1) and np.all(ics[1:] > 0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_ics_by_hand_on_a_two_layer_linear_net():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    w1, w2 = (net[i].weight.detach().clone().requires_grad_() for i in (0, 1))

    def grad_w2(w1_):
        w2_ = w2.detach().clone().requires_grad_()
        nn.functional.cross_entropy(x @ w1_.T @ w2_.T, y).backward()
        return w2_.grad

    nn.functional.cross_entropy(x @ w1.T @ w2.T, y).backward()
    g, g_moved = grad_w2(w1.detach()), grad_w2((w1 - 0.3 * w1.grad).detach())
    ics, _, _ = internal_covariate_shift(net, x, y, lr=0.3)
    assert ics[1] == pytest.approx(float((g - g_moved).norm()), rel=1e-5)


def test_landscape_along_gradient(model):
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    losses, change, beta = landscape_along_gradient(model, x, y, step_sizes=(0.0, 0.1, 0.2))
    assert losses.shape == change.shape == (3,) and change[0] == 0
    assert np.all(change[1:] > 0) and np.all(np.isfinite(beta))


@pytest.fixture(scope="module")
def data():
    return load_digits(tensors=True)


def test_trace_training_and_track_optimization_shapes(data):
    torch.manual_seed(0)
    m = mlp((64, 8, 8, 10), norm="bn", activation="sigmoid")
    history, trace = trace_training(m, data, steps=20, batch_size=16, eval_every=10, keep_every=5)
    assert history.steps == [10, 20] and _hooks(m) == 0
    assert trace.percentiles["2"].shape == (20, 3, 8)  # eval-mode evaluations are skipped
    assert list(trace.snapshot_steps) == [1, 6, 11, 16] and trace.snapshots["5"].shape == (4, 16, 8)
    _, measures = track_optimization(
        m, data, (data.x_train[:16], data.y_train[:16]), every=5, steps=10, batch_size=16
    )
    assert list(measures["step"]) == [5, 10] and measures["ics"].shape == (2, 3)


def test_lr_sweep_and_steps_to(data):
    runs = lr_sweep(
        lambda kind: mlp((64, 8, 10), norm=kind),
        ("none", "bn"),
        (0.05, 0.1),
        data,
        steps=10,
        batch_size=16,
        eval_every=5,
    )
    assert set(runs) == {("none", 0.05), ("none", 0.1), ("bn", 0.05), ("bn", 0.1)}
    h = History(steps=[5, 10, 15], test_acc=[0.2, 0.95, 0.9])
    assert steps_to(h, 0.9) == 10 and steps_to(h, 0.99) is None


def test_noisy_batchnorm():
    g = torch.Generator().manual_seed(0)
    layer, bn = NoisyBatchNorm1d(4, generator=g), nn.BatchNorm1d(4)
    x = torch.randn(32, 4) * 3 + 1
    y, ref = layer(x), bn(x)
    torch.testing.assert_close(layer.running_mean, bn.running_mean)  # the noise comes after BN
    scale = (y - y.mean(0)) / (ref - ref.mean(0))  # per unit: one positive scale, and a shift
    assert torch.allclose(scale, scale[0].expand_as(scale), atol=1e-4) and bool(
        (scale[0] > 0).all()
    )
    assert not torch.allclose(scale[0], torch.ones(4), atol=1e-2)
    layer.eval(), bn.eval()
    torch.testing.assert_close(layer(x), bn(x))  # eval mode: plain BN, no noise
    layer.train()
    assert not torch.allclose(layer(x), y)  # a fresh draw every step
    torch.manual_seed(0)
    quiet = NoisyBatchNorm1d(4, shift_std=0, scale_std=0)
    torch.testing.assert_close(quiet(x), nn.BatchNorm1d(4)(x))
    again = NoisyBatchNorm1d(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again(x), y)  # reproducible with a seeded generator
    with pytest.raises(ValueError, match="shift_std"):
        NoisyBatchNorm1d(4, shift_std=-1)


def test_plot_helpers():
    ax = percentile_band(np.arange(5), np.random.rand(5, 3), label="a")
    assert ax.get_xlabel() == "training step" and len(ax.collections) == 1
    with pytest.raises(ValueError, match="percentile_band"):
        percentile_band(np.arange(5), np.zeros((4, 3)))
    ax = layer_grad_norms({"a": [1.0, 0.1], "b": [1.0, 1.0]}, title="t")
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    values = np.array([[1.0, 2.0, 4.0], [3.0, 1.0, 2.0], [2.0, 5.0, 3.0]])  # (S, M)
    ax = seed_band([10, 20, 30], values, label="a", logy=True)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [2.0, 2.0, 3.0])  # the median seed
    assert ax.get_yscale() == "log" and len(ax.collections) == 1
    with pytest.raises(ValueError, match="seed_band"):
        seed_band([1, 2], values)
    plt.close("all")


def test_widgets_redraw_fast(data):
    from bnlib.widgets import LayerDistributionViewer, LearningRateSelector

    traces = {}
    for kind in ("none", "bn"):
        torch.manual_seed(0)
        m = mlp((64, 8, 8, 10), norm=kind, activation="sigmoid")
        traces[kind] = trace_training(m, data, steps=20, batch_size=16, keep_every=5)[1]
    viewer = LayerDistributionViewer(traces)
    assert "percentiles" in viewer.summary() and viewer.values().shape == (16, 8)
    viewer.model.value, viewer.step.value, viewer.layer.value = "bn", 6, "2"
    start = time.perf_counter()
    png = viewer.render()
    assert png[:4] == b"\x89PNG" and time.perf_counter() - start < 0.5
    runs = lr_sweep(
        lambda kind: mlp((64, 8, 10), norm=kind),
        ("none", "bn"),
        (0.05, 0.1),
        data,
        steps=10,
        batch_size=16,
        eval_every=5,
    )
    selector = LearningRateSelector(runs)
    selector.lr.value = 0.1
    start = time.perf_counter()
    assert selector.render()[:4] == b"\x89PNG" and time.perf_counter() - start < 0.5
    assert "lr=0.1" in selector.summary() and "image/png" in selector._repr_mimebundle_()


def test_lesson03_helpers_on_known_histories():
    from bnlib.experiments import lesson03 as L

    h = History(steps=[10, 20, 30, 40], test_acc=[0.7, 1.0, 0.8, 1.0])  # last 100 steps: 0.875
    assert L.end_accuracy(h, last=20) == pytest.approx(0.9)  # steps 30 and 40
    runs = {
        ("none", 0.1): h,
        ("none", 1.0): History(steps=[10, 20], test_acc=[0.1, 0.1]),
        ("bn", 1.0): h,
    }
    assert L.largest_working_lr(runs, "none") == 0.1 and L.largest_working_lr(runs, "bn") == 1.0
    assert L.largest_working_lr(runs, "ln") == 0.0
    assert L.steps_to_target(runs, "none", 0.9) == {0.1: 20, 1.0: np.inf}
    with pytest.raises(ValueError, match="sigmoid_net"):
        L.sigmoid_net("ln")
    pct = np.zeros((30, 3, 2))  # (T, Q, D): the band is 2 wide, the median steps by 1 at T = 20
    pct[:, 0], pct[:, 2] = -1, 1
    pct[20:, 1] = 1
    trace = Trace((15, 50, 85), np.arange(1, 31), {"a": pct}, np.arange(1, 31), {})
    assert L.drift(trace, window=1) == {
        "median drift": 1.0,
        "band drift": 0.0,
        "median jitter": 0.0,
        "final band": 2.0,
    }
    assert L.drift(trace, window=4)["median drift"] == 1.0  # a lasting step survives averaging
    noise = pct.copy()  # the median alternates -1, 1: batch noise, no drift
    noise[:, 1] = np.where(np.arange(30) % 2, 1.0, -1.0)[:, None]
    noisy = L.drift(
        Trace((15, 50, 85), np.arange(1, 31), {"a": noise}, np.arange(1, 31), {}), window=2
    )
    assert noisy["median drift"] == 0.0 and noisy["median jitter"] == 1.0
    np.testing.assert_allclose(L.rolling_mean(np.arange(5.0), 2), [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="rolling_mean"):
        L.rolling_mean(np.arange(5.0), 6)


def test_batch_mate_spread_leaves_the_model_untouched():
    from bnlib.experiments.lesson03 import batch_mate_spread

    torch.manual_seed(0)
    model = mlp((5, 8, 3), norm="bn").eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pool = torch.randn(40, 5)
    spread = batch_mate_spread(model, pool[:1], pool, trials=5, batch_size=8)
    assert spread > 0 and not model.training  # BN: the batch-mates change the output ...
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # ... not the model
    torch.manual_seed(0)
    plain = mlp((5, 8, 3), norm="none")
    assert batch_mate_spread(plain, pool[:1], pool, trials=5, batch_size=8) < 1e-6
