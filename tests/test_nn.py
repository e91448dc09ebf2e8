"""bnlib.nn's modules against torch.nn's: training sequences, eval, gradients, state_dict both ways.

Each property builds a bnlib module and its torch.nn twin with the same arguments, gives both the
same random parameters and running statistics, runs a few training steps (forward, backward with a
random upstream gradient) and then an eval step, and compares outputs, input and parameter
gradients and every buffer after each step. The oracle is PyTorch in float64 on the same values;
bnlib runs in float64 (rtol 1e-10) or float32 (rtol 1e-5).
"""

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlib import nn as bnn

PROPERTY = settings(max_examples=200, deadline=None)
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([torch.float64, torch.float32])
momenta = st.one_of(st.none(), st.sampled_from([0.1, 1.0]), st.floats(0.0, 1.0))
steps = st.integers(1, 4)


def twins(name, *args, dtype=torch.float64, seed=0, **kwargs):
    """(bnlib.nn.name(...), torch.nn.name(...)) with equal random parameters and buffers.

    bnlib's module has `dtype`; PyTorch's, the oracle, is float64 and holds the same values.
    """
    ours = getattr(bnn, name)(*args, dtype=dtype, **kwargs)
    theirs = getattr(torch.nn, name)(*args, dtype=torch.float64, **kwargs)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for key, value in ours.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            low = 0.2 if key.endswith("running_var") else -2.0  # a variance stays positive
            new = torch.from_numpy(rng.uniform(low, 2.0, tuple(value.shape)))
            value.copy_(new)  # the state_dict's tensors share memory with the module's
            theirs.state_dict()[key].copy_(value)  # ours' values, rounded to dtype if float32
    return ours, theirs


def assert_close(ours, theirs, dtype):
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.detach().double(), theirs.detach(), **TOL[dtype])


def assert_same_state(ours, theirs, dtype):
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        if key.endswith("num_batches_tracked"):
            assert a[key].dtype == b[key].dtype == torch.long and int(a[key]) == int(b[key])
        else:
            assert_close(a[key], b[key], dtype)


def run_twins(ours, theirs, shapes, dtype, seed):
    """Train steps on inputs of `shapes`, then one eval step; compare everything after each."""
    rng = np.random.default_rng(seed)
    for shape in shapes:
        x64 = torch.from_numpy(rng.uniform(-1, 1) + rng.uniform(0.5, 3) * rng.normal(size=shape))
        dy64 = torch.from_numpy(rng.normal(size=shape))  # random, never all ones
        x = x64.to(dtype).requires_grad_()
        xt = x.detach().double().requires_grad_()
        y, yt = ours(x), theirs(xt)
        assert_close(y, yt, dtype)
        y.backward(dy64.to(dtype))
        yt.backward(dy64.to(dtype).double())
        assert_close(x.grad, xt.grad, dtype)
        for (name, p), (name_t, pt) in zip(
            ours.named_parameters(), theirs.named_parameters(), strict=True
        ):
            assert name == name_t
            assert_close(p.grad, pt.grad, dtype)  # accumulated over the steps, as in torch
        assert_same_state(ours, theirs, dtype)
    ours.eval(), theirs.eval()
    x = torch.from_numpy(rng.normal(size=shapes[-1]))
    with torch.no_grad():
        assert_close(ours(x.to(dtype)), theirs(x.to(dtype).double()), dtype)
    assert_same_state(ours, theirs, dtype)  # eval leaves the running statistics alone


@st.composite
def batch_norm_cases(draw):
    """(module name, C, [input shape per step]); more than one value per channel each step."""
    kinds = {
        "BatchNorm1d (N, C)": 0,
        "BatchNorm1d (N, C, L)": 1,
        "BatchNorm2d": 2,
        "BatchNorm3d": 3,
    }
    kind = draw(st.sampled_from(list(kinds)))
    C = draw(st.integers(1, 4))
    shapes = []
    for _ in range(draw(steps)):
        N = draw(st.integers(2, 6))
        side = 4 if kinds[kind] < 3 else 3
        shapes.append((N, C) + tuple(draw(st.integers(1, side)) for _ in range(kinds[kind])))
    return kind.split()[0], C, shapes


@PROPERTY
@given(
    case=batch_norm_cases(),
    dtype=dtypes,
    momentum=momenta,
    affine=st.booleans(),
    track_running_stats=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3]),
    seed=seeds,
)
def test_batch_norm_modules_match_torch(
    case, dtype, momentum, affine, track_running_stats, eps, seed
):
    name, C, shapes = case
    kwargs = dict(eps=eps, momentum=momentum, affine=affine)
    ours, theirs = twins(
        name, C, dtype=dtype, seed=seed, track_running_stats=track_running_stats, **kwargs
    )
    run_twins(ours, theirs, shapes, dtype, seed)


@PROPERTY
@given(
    spatial_rank=st.sampled_from([1, 2, 3]),
    C=st.integers(1, 4),
    sizes=st.lists(  # (N, first spatial side, other sides) per step; last side >= 2
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 4)), min_size=1, max_size=4
    ),
    unbatched=st.booleans(),
    dtype=dtypes,
    momentum=momenta,
    affine=st.booleans(),
    track_running_stats=st.booleans(),
    seed=seeds,
)
def test_instance_norm_matches_torch(
    spatial_rank, C, sizes, unbatched, dtype, momentum, affine, track_running_stats, seed
):
    """InstanceNorm1d/2d/3d: (N, C, *) or unbatched (C, *), more than one spatial element."""
    ours, theirs = twins(
        f"InstanceNorm{spatial_rank}d",
        C,
        dtype=dtype,
        seed=seed,
        momentum=momentum,
        affine=affine,
        track_running_stats=track_running_stats,
    )
    shapes = []
    for N, first, last in sizes:
        spatial = ((first,) * (spatial_rank - 1)) + (last,)
        shapes.append((C, *spatial) if unbatched else (N, C, *spatial))
    run_twins(ours, theirs, shapes, dtype, seed)


@PROPERTY
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    k=st.integers(1, 3),
    n_steps=steps,
    dtype=dtypes,
    elementwise_affine=st.booleans(),
    bias=st.booleans(),
    as_int=st.booleans(),
    seed=seeds,
)
def test_layer_norm_matches_torch(shape, k, n_steps, dtype, elementwise_affine, bias, as_int, seed):
    k = min(k, len(shape))
    normalized_shape = tuple(shape[len(shape) - k :])
    if as_int and k == 1:
        normalized_shape = normalized_shape[0]
    ours, theirs = twins(
        "LayerNorm",
        normalized_shape,
        dtype=dtype,
        seed=seed,
        elementwise_affine=elementwise_affine,
        bias=bias,
    )
    run_twins(ours, theirs, [tuple(shape)] * n_steps, dtype, seed)


@PROPERTY
@given(
    groups=st.sampled_from([(1, 1), (1, 3), (3, 3), (2, 4), (4, 4), (2, 6), (3, 6), (1, 6)]),
    rest=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    N=st.integers(2, 4),
    n_steps=steps,
    dtype=dtypes,
    affine=st.booleans(),
    seed=seeds,
)
def test_group_norm_matches_torch(groups, rest, N, n_steps, dtype, affine, seed):
    G, C = groups
    ours, theirs = twins("GroupNorm", G, C, dtype=dtype, seed=seed, affine=affine)
    run_twins(ours, theirs, [(N, C, *rest)] * n_steps, dtype, seed)


# --- state_dict: the same keys, loadable both ways ----------------------------------------------

CONFIGS = {  # name: (module, positional arguments, keyword arguments, input shape)
    "BatchNorm1d": ("BatchNorm1d", (3,), {}, (5, 3, 4)),
    "BatchNorm1d no stats": ("BatchNorm1d", (3,), dict(track_running_stats=False), (5, 3)),
    "BatchNorm1d cumulative": ("BatchNorm1d", (3, 1e-5, None), {}, (5, 3)),
    "BatchNorm2d": ("BatchNorm2d", (3,), {}, (4, 3, 2, 5)),
    "BatchNorm2d no affine": ("BatchNorm2d", (3, 1e-5, 0.1, False), {}, (4, 3, 2, 5)),
    "BatchNorm2d no bias": ("BatchNorm2d", (3,), dict(bias=False), (4, 3, 2, 5)),
    "BatchNorm3d": ("BatchNorm3d", (3,), {}, (2, 3, 2, 2, 3)),
    "InstanceNorm1d tracked": ("InstanceNorm1d", (3,), dict(track_running_stats=True), (2, 3, 5)),
    "InstanceNorm3d affine": ("InstanceNorm3d", (3,), dict(affine=True), (2, 3, 2, 2, 3)),
    "InstanceNorm2d": ("InstanceNorm2d", (3,), {}, (2, 3, 4, 4)),
    "InstanceNorm2d tracked": ("InstanceNorm2d", (3, 1e-5, 0.1, True, True), {}, (2, 3, 4, 4)),
    "InstanceNorm2d no bias": ("InstanceNorm2d", (3,), dict(affine=True, bias=False), (2, 3, 4, 4)),
    "LayerNorm": ("LayerNorm", ((3, 4),), {}, (2, 3, 4)),
    "LayerNorm no bias": ("LayerNorm", (4, 1e-5, True, False), {}, (2, 3, 4)),
    "LayerNorm no affine": ("LayerNorm", (4, 1e-5, False), {}, (2, 3, 4)),
    "GroupNorm": ("GroupNorm", (2, 4), {}, (3, 4, 5)),
    "GroupNorm no affine": ("GroupNorm", (2, 4, 1e-5, False), {}, (3, 4, 5)),
    "GroupNorm no bias": ("GroupNorm", (2, 4), dict(bias=False), (3, 4, 5)),
}


def make(lib, config):
    name, args, kwargs, _ = CONFIGS[config]
    return getattr(lib, name)(*args, dtype=torch.float64, **kwargs)


def train(module, shape, seed, n=3):
    """A few training steps with random inputs, so the buffers leave their initial values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5)
        for _ in range(n):
            module(2 + 3 * torch.randn(shape, generator=gen, dtype=torch.float64))
    return module


@pytest.mark.parametrize("config", list(CONFIGS))
def test_state_dict_keys_shapes_and_repr_are_torchs(config):
    ours, theirs = make(bnn, config), make(torch.nn, config)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert [(v.shape, v.dtype) for v in a.values()] == [(v.shape, v.dtype) for v in b.values()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert repr(ours) == repr(theirs)


TORCH_TWINS = [name for name in bnn.__all__ if hasattr(torch.nn, name) and name[0].isupper()]


def test_every_torch_layer_of_the_course_has_a_twin():
    per_rank = {f"{n}{k}d" for n in ["BatchNorm", "InstanceNorm"] for k in (1, 2, 3)}
    assert per_rank | {"LayerNorm", "GroupNorm", "RMSNorm"} <= set(TORCH_TWINS)


@pytest.mark.parametrize("name", TORCH_TWINS)
def test_constructor_signatures_are_torchs(name):
    """The same argument names, order, kinds and defaults as torch.nn's (annotations aside)."""

    def plain(cls):
        params = inspect.signature(cls.__init__).parameters.values()
        return [(p.name, p.kind, p.default) for p in params]

    assert plain(getattr(bnn, name)) == plain(getattr(torch.nn, name))


@pytest.mark.parametrize("direction", ["torch -> bnlib", "bnlib -> torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_load_state_dict_both_ways_gives_the_same_outputs(config, direction):
    shape = CONFIGS[config][-1]
    ours, theirs = make(bnn, config), make(torch.nn, config)
    if direction == "torch -> bnlib":
        train(theirs, shape, seed=1)
        ours.load_state_dict(theirs.state_dict())  # strict: every key must match
    else:
        train(ours, shape, seed=1)
        theirs.load_state_dict(ours.state_dict())
    assert_same_state(ours, theirs, torch.float64)
    x = 2 + 3 * torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for mode in ("eval", "train"):  # eval: the loaded statistics; train: one more update
        getattr(ours, mode)(), getattr(theirs, mode)()
        with torch.no_grad():
            assert_close(ours(x), theirs(x), torch.float64)
        assert_same_state(ours, theirs, torch.float64)


def test_loaded_running_stats_are_what_eval_uses():
    """After loading, eval normalizes with the loaded statistics, not with the batch's."""
    ours = bnn.BatchNorm1d(2, dtype=torch.float64)
    state = {
        "weight": torch.tensor([1.0, 2.0], dtype=torch.float64),
        "bias": torch.tensor([0.0, 1.0], dtype=torch.float64),
        "running_mean": torch.tensor([10.0, -1.0], dtype=torch.float64),
        "running_var": torch.tensor([4.0, 0.25], dtype=torch.float64),
        "num_batches_tracked": torch.tensor(7),
    }
    ours.load_state_dict(state)
    ours.eval()
    x = torch.tensor([[12.0, -1.5]], dtype=torch.float64)
    expected = [[2 / (4 + 1e-5) ** 0.5, 2 * -0.5 / (0.25 + 1e-5) ** 0.5 + 1]]
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(ours(x).detach(), expected, rtol=1e-12, atol=1e-12)
    assert int(ours.num_batches_tracked) == 7


# --- behaviours worth a name ----------------------------------------------------------------------


def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics():
    bn = bnn.BatchNorm1d(1, momentum=None, dtype=torch.float64)
    batches = [
        torch.tensor([[1.0], [3.0]]),
        torch.tensor([[5.0], [9.0]]),
        torch.tensor([[0.0], [0.0]]),
    ]
    for x in batches:
        bn(x.double())
    means = [2.0, 7.0, 0.0]
    unbiased_vars = [2.0, 8.0, 0.0]
    assert int(bn.num_batches_tracked) == 3
    torch.testing.assert_close(bn.running_mean, torch.tensor([np.mean(means)]).double())
    torch.testing.assert_close(bn.running_var, torch.tensor([np.mean(unbiased_vars)]).double())


def test_instance_norm_momentum_none_leaves_running_stats_unchanged_as_pytorch_does():
    ours, theirs = twins("InstanceNorm2d", 2, momentum=None, track_running_stats=True, seed=3)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    assert_close(ours(x), theirs(x), torch.float64)
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert_same_state(ours, theirs, torch.float64)


def test_no_grad_in_train_mode_still_updates_the_running_stats():
    """NB: torch.no_grad() is not eval(): the batch statistics are used and the buffers move."""
    bn = bnn.BatchNorm2d(2, dtype=torch.float64)
    with torch.no_grad():
        bn(5 + torch.randn(4, 2, 3, 3, dtype=torch.float64))
    assert int(bn.num_batches_tracked) == 1
    assert (bn.running_mean > 0.3).all()


def test_requires_grad_false_freezes_the_affine_but_not_the_running_stats():
    bn = bnn.BatchNorm1d(2, dtype=torch.float64)
    bn.requires_grad_(False)
    y = bn(3 + torch.randn(8, 2, dtype=torch.float64))
    assert not y.requires_grad and bn.weight.grad is None
    assert (bn.running_mean > 0.1).all()


def test_instance_norm_channel_mismatch_without_affine_or_stats_only_warns_like_torch():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="4 channels"):
        y = bnn.InstanceNorm2d(3, dtype=torch.float64)(x)
    with pytest.warns(UserWarning):
        yt = torch.nn.InstanceNorm2d(3, dtype=torch.float64)(x)
    assert_close(y, yt, torch.float64)


@pytest.mark.parametrize(
    "name", ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d"]
)
def test_reset_running_stats_and_parameters(name):
    m = bnn.__dict__[name](3, affine=True, track_running_stats=True, dtype=torch.float64)
    shape = (4, 3) + {"1": (5,), "2": (2, 5), "3": (2, 2, 5)}[name[-2]]
    with torch.no_grad():
        m.weight.mul_(3)
        m(1 + torch.randn(shape, dtype=torch.float64))
    m.reset_parameters()
    fresh = bnn.__dict__[name](3, affine=True, track_running_stats=True, dtype=torch.float64)
    assert_same_state(m, fresh, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", ["BatchNorm1d", "InstanceNorm1d"])
def test_running_stats_in_low_precision_are_the_truth_rounded_once(name, dtype):
    """The update is computed in float64 and rounded once into the buffers: within one unit of
    the float64 truth after each of several steps (float16 arithmetic drifts further)."""
    kwargs = {"track_running_stats": True} if name.startswith("Instance") else {}
    ours, theirs = twins(name, 4, dtype=dtype, seed=1, momentum=0.3, **kwargs)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        x = (3 + 2 * torch.randn(6, 4, 5, generator=gen, dtype=torch.float64)).to(dtype)
        ours(x)
        theirs(x.double())
        for key in ("running_mean", "running_var"):
            a, b = getattr(ours, key), getattr(theirs, key)
            assert a.dtype == dtype
            unit = torch.finfo(dtype).eps * torch.exp2(torch.floor(torch.log2(b.abs())))
            assert ((a.double() - b).abs() <= unit).all(), key
            with torch.no_grad():  # the next step starts from the same rounded values
                b.copy_(a)


def test_empty_batch_counts_a_step_but_keeps_the_running_stats():
    """As torch.nn: num_batches_tracked counts the call, the statistics stay (no NaN)."""
    ours, theirs = twins("BatchNorm1d", 3, seed=4, momentum=None)
    x = torch.zeros(0, 3, dtype=torch.float64)
    assert ours(x).shape == theirs(x).shape == (0, 3)
    assert_same_state(ours, theirs, torch.float64)
    assert int(ours.num_batches_tracked) == 1 and torch.isfinite(ours.running_var).all()


def test_old_checkpoint_without_num_batches_tracked_loads_with_zero():
    """A version-1 state_dict (before PyTorch 0.4.1) has no num_batches_tracked: it counts 0."""
    theirs = torch.nn.BatchNorm2d(3)
    state = theirs.state_dict()
    del state["num_batches_tracked"]
    state._metadata[""]["version"] = 1
    ours = bnn.BatchNorm2d(3)
    ours.num_batches_tracked.fill_(5)
    ours.load_state_dict(state)  # strict
    assert int(ours.num_batches_tracked) == 5  # as torch.nn's: the module's own count is kept
    fresh = bnn.BatchNorm2d(3)
    with torch.device("meta"):
        meta = bnn.BatchNorm2d(3)
    meta.load_state_dict(state, assign=True)
    assert meta.num_batches_tracked.device == torch.device("cpu")
    assert int(meta.num_batches_tracked) == int(fresh.num_batches_tracked) == 0


def test_group_norm_keeps_a_channels_last_layout():
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
    y = bnn.GroupNorm(2, 4, dtype=torch.float64)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, torch.nn.GroupNorm(2, 4, dtype=torch.float64)(x), torch.float64)
