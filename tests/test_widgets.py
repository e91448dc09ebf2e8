"""bnlib.widgets.bn_explorer: builds, redraws when a slider moves, agrees with the reference;
NormGroupExplorer: its G slider is live for GN only."""

import base64

import numpy as np
import pytest

from bnlib import functional as F
from bnlib.widgets import BATCH_SIZES, NormGroupExplorer, bn_explorer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = "tiny spread (std 0.003)"


@pytest.fixture
def explorer():
    return bn_explorer(seed=0)


def test_builds_with_the_css_hooks_of_the_browser_test(explorer):
    assert "bnlib-slider-gamma" in explorer.gamma._dom_classes
    assert "bnlib-bn-figure" in explorer.image._dom_classes
    assert "bnlib-bn-explorer" in explorer.widget._dom_classes
    assert explorer.image.format == "png"
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert not explorer.gamma.continuous_update


def test_moving_gamma_redraws_the_figure(explorer):
    before = bytes(explorer.image.value)
    explorer.gamma.value = 2.0
    after = bytes(explorer.image.value)
    assert after.startswith(PNG_SIGNATURE) and after != before
    explorer.gamma.value = 1.0
    assert bytes(explorer.image.value) == before  # the same state draws the same bytes


@pytest.mark.parametrize("slider, value", [("beta", 1.5), ("eps", 1e-1), ("batch_size", 8)])
def test_every_slider_redraws(explorer, slider, value):
    before = bytes(explorer.image.value)
    explorer.set(**{slider: value})
    assert bytes(explorer.image.value) != before


def test_values_match_the_reference_batch_norm(explorer):
    explorer.set(gamma=1.7, beta=-0.4, eps=1e-3, batch_size=16)
    x, xhat, y = explorer.values()
    assert x.shape == xhat.shape == y.shape == (16,)
    ref = F.batch_norm(
        x[:, None], None, None, np.array([1.7]), np.array([-0.4]), training=True, eps=1e-3
    )
    np.testing.assert_allclose(y, ref[:, 0], rtol=1e-12, atol=1e-12)


def test_gamma_and_beta_set_the_output_mean_and_std_and_leave_xhat_alone(explorer):
    xhat_before = explorer.stats()["xhat"]
    explorer.set(gamma=2.5, beta=-1.0)
    stats = explorer.stats()
    assert stats["xhat"] == pytest.approx(xhat_before, abs=1e-12)
    assert stats["y"][0] == pytest.approx(-1.0, abs=1e-9)
    assert stats["y"][1] == pytest.approx(2.5 * stats["xhat"][1], rel=1e-12)


def test_eps_matters_for_the_tiny_spread_feature_only(explorer):
    explorer.set(eps=1e-5)
    assert explorer.stats()["xhat"][1] == pytest.approx(1.0, abs=1e-4)  # var ~0.3 >> eps
    explorer.set(feature=TINY, batch_size=512)
    var = explorer.values()[0].var()
    assert var < 1e-5  # below eps: eps, not the data, sets the scale
    assert explorer.stats()["xhat"][1] == pytest.approx(np.sqrt(var / (var + 1e-5)), rel=1e-9)
    assert explorer.stats()["xhat"][1] < 0.8
    explorer.set(eps=1e-8)
    assert explorer.stats()["xhat"][1] > 0.99


def test_the_input_is_skewed_and_offset(explorer):
    explorer.set(batch_size=BATCH_SIZES[-1])
    x = explorer.values()[0]
    mean, std = x.mean(), x.std()
    assert mean > 3 * std  # far from zero
    assert np.mean(((x - mean) / std) ** 3) > 0.5  # skewed to the right


def test_text_fallback_and_static_image(explorer):
    explorer.set(gamma=2.0, beta=0.5)
    bundle = explorer._repr_mimebundle_()
    text = bundle["text/plain"]
    assert "gamma=2" in text and "beta=0.5" in text and "eps=1e-05" in text
    assert "y   : mean   0.5000, std  2.0000" in text
    assert "xhat: mean   0.0000, std  1.0000" in text
    assert base64.b64decode(bundle["image/png"]) == bytes(explorer.image.value)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert repr(explorer) == text


def test_seed_changes_the_samples():
    a, b = bn_explorer(seed=0), bn_explorer(seed=1)
    assert not np.array_equal(a.values()[0], b.values()[0])
    assert np.array_equal(a.values()[0], bn_explorer(seed=0).values()[0])


def test_set_rejects_unknown_sliders(explorer):
    with pytest.raises(ValueError, match="gamma"):
        explorer.set(gama=2.0)


def test_groups_slider_is_enabled_for_gn_only():
    """Lesson 5's explorer: G means something for GN only, so its slider is greyed out for BN, LN
    and IN (moving it there would change nothing)."""
    explorer = NormGroupExplorer()
    assert explorer.method.value == "BN" and explorer.groups.disabled
    explorer.method.value = "GN"
    assert not explorer.groups.disabled
    explorer.groups.value = 3
    assert explorer.image.value == explorer.frames["GN", 3]
    for method in ("LN", "IN", "BN"):
        explorer.method.value = method
        assert explorer.groups.disabled
        assert explorer.image.value == explorer.frames[method, 2]
