"""The lesson 1 figure helpers in bnlib.plots: they draw what they say, and reject bad input."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from bnlib import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_feature_strips_draws_every_sample_and_mean():
    x = np.arange(12.0).reshape(4, 3)  # (N=4, D=3)
    axes = plots.feature_strips({"x": x, "2x": 2 * x})
    assert len(axes) == 2
    dots = [line for line in axes[1].lines if line.get_marker() == "o"]
    assert len(dots) == 3  # one strip per feature
    np.testing.assert_array_equal(dots[2].get_ydata(), 2 * x[:, 2])
    bars = [line for line in axes[1].lines if line.get_marker() != "o"]
    assert [b.get_ydata()[0] for b in bars] == pytest.approx(2 * x.mean(axis=0))


@pytest.mark.parametrize("stages, match", [({}, "no stages"), ({"x": np.zeros(4)}, "(N, D)")])
def test_feature_strips_rejects_bad_input(stages, match):
    with pytest.raises(ValueError, match=match):
        plots.feature_strips(stages)


def test_feature_grid_colors_exactly_the_highlighted_cells():
    highlight = np.zeros((3, 4), dtype=bool)
    highlight[:, 1] = True
    _, ax = plt.subplots()
    plots.feature_grid(ax, highlight)
    colors = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert len(colors) == 12
    assert colors.count(plots._HIGHLIGHT) == 3


def test_tensor_cube_rejects_a_non_3d_mask():
    ax = plt.figure().add_subplot(projection="3d")
    with pytest.raises(ValueError, match="(N, C, S)"):
        plots.tensor_cube(ax, np.zeros((2, 3), dtype=bool))


def test_bn_axes_figure_and_bn_graph_build():
    fig = plots.bn_axes_figure()
    assert len(fig.axes) == 3 and fig.axes[1].name == "3d"
    ax = plots.bn_graph()
    labels = {t.get_text() for t in ax.texts}
    assert {"x", "μ = mean(x)", "y = γ·x̂ + β"} <= labels
    assert len([c for c in ax.get_children() if type(c).__name__ == "Annotation"]) == len(
        plots._BN_EDGES
    )
