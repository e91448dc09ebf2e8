"""Lesson 5's claims, asserted on bnlib itself: the shared-statistics groups of BN, LN, IN and GN
are the ones Wu & He draw, GN spans LN (G=1) to IN (G=C), only BN in training mode depends on the
batch, at batch 2 a fully connected BN collapses and a conv BN does not, and the groups explorer
shows what it says."""

import numpy as np
import pytest

from bnlib import functional as F
from bnlib.data import load_digits
from bnlib.plots import shared_statistics
from bnlib.widgets import NormGroupExplorer

SHAPE = (4, 6, 2, 3)  # (N, C, H, W)
INDEX = (1, 2, 0, 0)


def expected_group(method, groups):
    mask = np.zeros(SHAPE, dtype=bool)
    n, c = INDEX[:2]
    if method == "BN":
        mask[:, c] = True  # one channel, every sample and position
    elif method == "LN":
        mask[n] = True  # one sample, every channel and position
    elif method == "IN":
        mask[n, c] = True  # one sample and channel
    else:
        size = SHAPE[1] // groups
        first = c // size * size  # consecutive channels
        mask[n, first : first + size] = True
    return mask


@pytest.mark.parametrize(
    "method, groups", [("BN", 2), ("LN", 2), ("IN", 2), ("GN", 1), ("GN", 2), ("GN", 3), ("GN", 6)]
)
def test_shared_statistics_are_wu_and_hes_groups(method, groups):
    np.testing.assert_array_equal(
        shared_statistics(method, SHAPE, INDEX, groups), expected_group(method, groups)
    )


def test_group_norm_spans_layer_norm_to_instance_norm():
    np.testing.assert_array_equal(shared_statistics("GN", groups=1), shared_statistics("LN"))
    np.testing.assert_array_equal(shared_statistics("GN", groups=6), shared_statistics("IN"))
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 5)) * 3 + 1
    np.testing.assert_allclose(F.group_norm(x, 1), F.layer_norm(x, x.shape[1:]), atol=1e-12)
    np.testing.assert_allclose(F.group_norm(x, 4), F.instance_norm(x), atol=1e-12)


def test_only_batch_norm_in_training_depends_on_the_batch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3, 3)) + 2
    other = x.copy()
    other[1:] = rng.standard_normal(other[1:].shape) * 4

    def first_changes(f):
        return not np.allclose(f(x)[0], f(other)[0], rtol=0, atol=1e-12)

    running = (np.zeros(6), np.ones(6))
    assert first_changes(lambda v: F.batch_norm(v, None, None, training=True))
    for f in (
        lambda v: F.batch_norm(v, *running, training=False),
        lambda v: F.layer_norm(v, v.shape[1:]),
        F.instance_norm,
        lambda v: F.group_norm(v, 3),
        lambda v: F.rms_norm(v, v.shape[1:]),
    ):
        assert not first_changes(f)


def test_groups_explorer_frames_and_statistics():
    explorer = NormGroupExplorer()
    assert len(set(explorer.frames.values())) == len(explorer.frames) == 7  # all distinct
    first = explorer.image.value
    explorer.method.value = "GN"
    explorer.groups.value = 3
    assert explorer.image.value != first
    m, pairs, mean, var = explorer.statistics("GN", 3)
    assert (m, pairs) == (12, 4 * 3)
    group = explorer.x[1, 2:4]  # sample 1, channels 2-3: the group of channel 2 when G=3
    assert np.isclose(mean, group.mean()) and np.isclose(var, group.var())
    assert "GN with G=3" in explorer.summary()
    explorer.method.value = "LN"  # G is ignored outside GN
    assert explorer.image.value == explorer.frames["LN", 2]


def test_batch_2_collapses_a_fully_connected_bn_but_not_a_conv_bn():
    """§5: at batch 2 a fully connected BN leaves each feature ≈ ±1 (0 where the two values are
    equal), while a conv BN normalizes over N·H·W values and keeps many distinct outputs."""
    two = load_digits(images=True, tensors=True).x_train[:2].numpy().astype(np.float64)
    fc = F.batch_norm(two.reshape(2, 64), None, None, training=True)
    equal = two[0].ravel() == two[1].ravel()
    assert np.all(fc[:, equal] == 0)
    np.testing.assert_allclose(np.abs(fc[:, ~equal]), 1, atol=0.01)
    np.testing.assert_array_equal(
        np.sign(fc[0, ~equal]), np.sign(two[0].ravel() - two[1].ravel())[~equal]
    )
    conv = F.batch_norm(two, None, None, training=True)
    assert len(np.unique(conv.round(6))) > 10
