"""Lesson 4's plot and widget helpers, and replace_batchnorm. (The lesson's claims from training
runs are checked over seeds 0-4 in tests/test_claims_lesson04.py.)"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bnlib.plots import WU_HE_IMAGENET, error_vs_batch, wu_he_panel  # noqa: E402
from bnlib.train import mlp, replace_batchnorm  # noqa: E402
from bnlib.widgets import batch_noise_explorer, batch_noise_samples  # noqa: E402


def test_replace_batchnorm_keeps_the_other_weights():
    from bnlib.nn import BatchRenorm1d

    torch.manual_seed(0)
    plain = mlp(norm="bn")
    torch.manual_seed(0)
    swapped = replace_batchnorm(mlp(norm="bn"), lambda c: BatchRenorm1d(c))
    assert sum(isinstance(m, BatchRenorm1d) for m in swapped) == 2
    torch.testing.assert_close(swapped[0].weight, plain[0].weight)


def test_wu_he_numbers_are_the_papers():
    assert WU_HE_IMAGENET["BN"] == (23.6, 23.7, 24.8, 27.3, 34.7)
    assert WU_HE_IMAGENET["GN"] == (24.1, 24.2, 24.0, 24.2, 24.1)


def test_error_vs_batch_draws_reversed_axes_and_bands():
    ax = error_vs_batch([2, 4, 8], np.random.rand(2, 3, 3), ["a", "b"])
    lo, hi = ax.get_xlim()
    assert lo > hi  # small batches on the right, as in Wu & He's Fig. 1
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    with pytest.raises(ValueError, match="errors must have shape"):
        error_vs_batch([2, 4], np.zeros((2, 3)), ["a", "b"])
    ax = wu_he_panel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BN", "GN"]
    plt.close("all")


def test_batch_noise_samples():
    mean, std, xhat = batch_noise_samples(2, trials=500)
    assert np.mean(np.abs(np.abs(xhat) - 1) < 0.01) > 0.95  # N = 2: about +-1 (unless x ~ x0)
    spreads = [batch_noise_samples(n, trials=2000)[0].std() for n in (8, 32, 128)]
    assert spreads[0] > spreads[1] > spreads[2]
    assert abs(spreads[2] - 1 / np.sqrt(128)) < 0.02  # the mean's spread ~ 1/sqrt(N)


@pytest.mark.parametrize("n", [2, 4])
def test_batch_noise_samples_small_batches_follow_the_population_law(n):
    """The batch means come from N population samples: centred on 1, spread 1/sqrt(N)."""
    mean, std, xhat = batch_noise_samples(n)
    assert abs(mean.std() - 1 / np.sqrt(n)) < 0.05
    assert abs(mean.mean() - 1) < 0.05
    assert abs(std.mean() - 1) < 0.5  # biased, and below 1 for small N, but not wildly off


def test_batch_noise_explorer_does_not_pile_off_axis_values_into_end_bins():
    explorer = batch_noise_explorer()  # N = 2: some batch means fall beyond the axis
    explorer.render()
    (ax, stairs, text, edges), values = explorer._artists[0], explorer.samples[2][0]
    inside = np.mean((values >= edges[0]) & (values <= edges[-1]))
    assert inside < 1 and "off the axis" in text.get_text()
    np.testing.assert_allclose(stairs.get_data().values.sum(), inside)
    assert ax.get_yticklabels()  # the "share of batches" axis has tick labels
    plt.close("all")


def test_batch_noise_explorer_redraws_fast():
    import time

    explorer = batch_noise_explorer()
    assert "N=2" in explorer.summary()
    start = time.perf_counter()
    explorer.batch_size.value = 64
    assert time.perf_counter() - start < 0.5  # < 100 ms unloaded; margin for a busy machine
    assert "N=64" in repr(explorer)
    assert explorer.spreads()["xhat"] < explorer.spreads(2)["xhat"]
    bundle = explorer._repr_mimebundle_()
    assert {"text/plain", "image/png"} <= set(bundle)
