"""bnlib.gradcheck, bnlib.data and the foundation helpers of bnlib.plots."""

import matplotlib

matplotlib.use("Agg")  # no display: draw into memory only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bnlib import plots  # noqa: E402
from bnlib.data import Digits, load_digits  # noqa: E402
from bnlib.gradcheck import numeric_gradient, rel_error  # noqa: E402

# --- gradcheck -----------------------------------------------------------------------------------


def test_numeric_gradient_matches_an_elementwise_analytic_gradient():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    analytic = (np.cos(x) * x**2 + 2 * x * np.sin(x)) * dout  # d/dx sum(sin(x) x^2 * dout)
    numeric = numeric_gradient(lambda v: np.sin(v) * v**2, x, dout)
    assert numeric.shape == x.shape and numeric.dtype == np.float64
    assert rel_error(numeric, analytic) < 1e-8


def test_numeric_gradient_matches_a_matrix_gradient():
    """f(x) = A @ x mixes every entry: d sum(f(x) * dout) / dx = A.T @ dout."""
    rng = np.random.default_rng(1)
    A, x, dout = (
        rng.standard_normal((5, 3)),
        rng.standard_normal((3, 2)),
        rng.standard_normal((5, 2)),
    )
    numeric = numeric_gradient(lambda v: A @ v, x, dout)
    np.testing.assert_allclose(numeric, A.T @ dout, rtol=1e-8, atol=1e-10)


def test_numeric_gradient_is_a_central_difference_with_step_h():
    """For x^3, ((x + h)^3 - (x - h)^3) / 2h = 3 x^2 + h^2 exactly: the truncation term shows."""
    x = np.array([-1.5, 0.0, 2.0])
    numeric = numeric_gradient(lambda v: v**3, x, np.ones(3), h=0.1)
    np.testing.assert_allclose(numeric, 3 * x**2 + 0.1**2, rtol=1e-12, atol=1e-12)


def test_numeric_gradient_restores_x_and_accepts_float32():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    x0 = x.copy()
    g = numeric_gradient(lambda v: v * v, x, np.ones_like(x), h=1e-2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(g, 2 * x0, rtol=1e-4)


def test_numeric_gradient_rejects_integer_x():
    with pytest.raises(TypeError, match=r"x must be a floating-point array, got int64"):
        numeric_gradient(lambda v: v, np.arange(3), np.ones(3))


def test_rel_error_basics():
    a = np.array([1.0, -2.0, 0.0])
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0  # 0 / max(0, 1e-8)
    assert rel_error(1.0, 1.1) == pytest.approx(0.1 / 2.1, rel=1e-12)
    assert rel_error([1.0, 10.0], [1.0, 11.0]) == pytest.approx(1 / 21, rel=1e-12)
    assert rel_error(a, -a) == rel_error(-a, a) == 1.0  # opposite signs: the maximum
    assert rel_error(np.array([]), np.array([])) == 0.0
    assert isinstance(rel_error(a, a + 1e-9), float)


def test_rel_error_floor_keeps_tiny_values_from_dividing_by_zero():
    assert rel_error(1e-12, 0.0) == pytest.approx(1e-12 / 1e-8)


def test_rel_error_rejects_shapes_that_differ():
    with pytest.raises(ValueError, match=r"rel_error: shapes differ, \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(2, 3\) vs \(3, 2\)"):
        rel_error(np.zeros((2, 3)), np.zeros((3, 2)))


# --- data ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shapes_and_dtypes(digits):
    assert isinstance(digits, Digits)
    n_train, n_test = len(digits.x_train), len(digits.x_test)
    assert n_train + n_test == 1797
    assert digits.x_train.shape == (n_train, 64) and digits.x_test.shape == (n_test, 64)
    assert digits.y_train.shape == (n_train,) and digits.y_test.shape == (n_test,)
    assert digits.x_train.dtype == np.float64 and digits.y_train.dtype == np.int64


def test_digits_split_is_1347_train_and_450_test(digits):
    assert digits.x_train.shape == (1347, 64) and digits.x_test.shape == (450, 64)
    assert load_digits(images=True).x_test.shape == (450, 1, 8, 8)


def test_digits_images_are_n_1_8_8_views_of_the_same_pixels(digits):
    images = load_digits(images=True)
    n_train, n_test = len(digits.x_train), len(digits.x_test)
    assert images.x_train.shape == (n_train, 1, 8, 8) and images.x_test.shape == (n_test, 1, 8, 8)
    np.testing.assert_array_equal(images.x_train.reshape(n_train, 64), digits.x_train)
    np.testing.assert_array_equal(images.y_test, digits.y_test)


def test_digits_as_tensors(digits):
    t = load_digits(images=True, tensors=True)
    assert all(isinstance(part, torch.Tensor) for part in t)
    assert t.x_train.dtype == torch.float32 and t.y_train.dtype == torch.int64
    assert tuple(t.x_test.shape) == (len(digits.x_test), 1, 8, 8)
    np.testing.assert_allclose(t.x_train.numpy().reshape(-1, 64), digits.x_train, rtol=1e-7)
    np.testing.assert_array_equal(t.y_train.numpy(), digits.y_train)


def test_digits_values_are_scaled_to_0_1(digits):
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0  # pixel values 0..16, divided by 16
    assert set(np.unique(digits.x_train * 16)) <= set(range(17))
    assert set(np.unique(digits.y_train)) == set(np.unique(digits.y_test)) == set(range(10))


def test_digits_split_is_fixed_and_does_not_depend_on_global_seeds(digits):
    np.random.seed(123)
    torch.manual_seed(123)
    again = load_digits()
    for a, b in zip(digits, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_digits_split_is_a_partition_of_the_1797_images(digits):
    from sklearn.datasets import load_digits as sklearn_digits

    full = sklearn_digits().data / 16.0
    both = np.concatenate([digits.x_train, digits.x_test])
    assert len(both) == 1797

    def rows(a):
        return sorted(map(bytes, np.ascontiguousarray(a)))

    assert rows(both) == rows(full)  # every image once (as a multiset: the set has duplicates)


# --- plots ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_use_style_sets_the_course_style():
    with matplotlib.rc_context():  # restores the global settings afterwards
        matplotlib.rcdefaults()
        assert not matplotlib.rcParams["axes.grid"]  # so the style has something to change
        plots.use_style()
        for key, value in plots.STYLE.items():
            expected = list(value) if isinstance(value, tuple) else value  # rcParams keeps lists
            assert matplotlib.rcParams[key] == expected, key


def test_percentile_ribbons_draws_the_median_and_the_band():
    rng = np.random.default_rng(0)
    steps = np.arange(5) * 10
    values = rng.standard_normal((5, 200)) + np.arange(5)[:, None]
    ax = plots.percentile_ribbons(steps, values, label="with BN")
    assert isinstance(ax, matplotlib.axes.Axes)
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), np.percentile(values, 50, axis=1))
    (band,) = ax.collections
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    lo, hi = np.percentile(values, [15, 85], axis=1)
    assert ys.min() == pytest.approx(lo.min()) and ys.max() == pytest.approx(hi.max())
    assert ax.get_xlabel() == "training step"
    assert ax.get_legend() is not None


def test_percentile_ribbons_draws_on_a_given_axes():
    _, ax = plt.subplots()
    assert plots.percentile_ribbons([0, 1], np.zeros((2, 3)), ax=ax) is ax
    assert ax.get_legend() is None  # no label, no legend


@pytest.mark.parametrize(
    "values, got",
    [
        (np.zeros(5), r"\(5,\)"),
        (np.zeros((6, 3)), r"\(6, 3\)"),
        (np.zeros((5, 2, 2)), r"\(5, 2, 2\)"),
    ],
)
def test_percentile_ribbons_rejects_bad_shapes(values, got):
    with pytest.raises(
        ValueError, match=r"values must have shape \(len\(steps\), M\) = \(5, M\), got " + got
    ):
        plots.percentile_ribbons(np.arange(5), values)


def test_layer_histograms_draws_one_histogram_per_layer():
    rng = np.random.default_rng(0)
    acts = {"layer 1": rng.standard_normal(100), "layer 2": rng.standard_normal((10, 30))}
    axes = plots.layer_histograms(acts, bins=10, title="activations")
    assert len(axes) == 2 and all(isinstance(ax, matplotlib.axes.Axes) for ax in axes)
    assert [ax.get_title() for ax in axes] == ["layer 1", "layer 2"]
    counts = [sum(p.get_height() for p in ax.patches) for ax in axes]
    assert counts == [100, 300]  # every value lands in a bin
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert axes[0].figure.get_suptitle() == "activations"


def test_layer_histograms_on_given_axes():
    _, given = plt.subplots(1, 2)
    axes = plots.layer_histograms({"a": np.zeros(3), "b": np.ones(3)}, axes=given)
    assert list(axes) == list(given)


def test_layer_histograms_rejects_no_layers_and_axes_of_the_wrong_count():
    with pytest.raises(ValueError, match="layer_histograms: no layers given"):
        plots.layer_histograms({})
    _, given = plt.subplots(1, 3)
    with pytest.raises(ValueError):  # zip(strict=True): 3 axes for 2 layers
        plots.layer_histograms({"a": np.zeros(3), "b": np.ones(3)}, axes=given)
