"""Lesson 5's claims, asserted on bnlib itself: the shared-statistics groups of BN, LN, IN and GN
are the ones Wu & He draw, GN spans LN (G=1) to IN (G=C), only BN in training mode depends on the
batch, and the groups explorer shows what it says."""

import numpy as np
import pytest

from bnlib import functional as F
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
