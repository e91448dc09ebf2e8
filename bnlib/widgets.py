"""Interactive explorers for the lessons: sliders that redraw a figure in well under 100 ms.

The figures are rendered off-screen with matplotlib's Agg canvas into PNG bytes held by an
`ipywidgets.Image`, so they work with the default inline backend (no ipympl) and in a browser
test. Speed comes from precomputing the samples, keeping one Figure and updating its artists
(`StepPatch.set_data`, `Line2D.set_data`, ...) instead of building a new one, and rendering at a
modest dpi; benchmarks/bench_widgets.py measures the redraw.

Displayed where no widget front end runs (nbconvert, nbval, a code host), an explorer shows as a
text summary and the PNG of its current state.

CSS classes, a contract with the browser tests: the explorer `bnlib-bn-explorer`; its sliders
`bnlib-slider-gamma`, `bnlib-slider-beta`, `bnlib-slider-eps`, `bnlib-slider-batch`; the feature
picker `bnlib-feature`; the figure (an Image widget) `bnlib-bn-figure`.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from bnlib.plots import STYLE

__all__ = ["BNExplorer", "bn_explorer"]

POOL = 512  # samples drawn once per feature; a batch of size N is the first N of them
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512)
BINS = 40
DPI = 80


def _features(seed):
    """The two features the explorer offers, POOL samples each (float64)."""
    rng = np.random.default_rng(seed)
    return {
        # Skewed and far from zero: normalization visibly moves and rescales it.
        "skewed, offset": 3.0 + rng.lognormal(mean=0.0, sigma=0.5, size=POOL),
        # A spread of 0.003 (variance 9e-6) is below sqrt(eps) for eps >= 1e-5: eps matters here.
        "tiny spread (std 0.003)": 1.0 + 0.003 * rng.standard_normal(POOL),
    }


class BNExplorer:
    """Histograms of one feature over a batch: the input x, xhat and y = gamma * xhat + beta.

    xhat = (x - mean) / sqrt(var + eps), with the batch's mean and biased variance
    (Ioffe & Szegedy 2015, Alg. 1). Sliders set gamma, beta, eps and the batch size N; a picker
    chooses a skewed, offset feature or one with a tiny spread, where eps shrinks xhat's spread.
    seed: for the samples; dpi: of the rendered PNG. Build it with `bn_explorer(seed)` and display
    it in a notebook cell.
    """

    def __init__(self, seed=0, dpi=DPI):
        import ipywidgets as w

        self.features = _features(seed)
        self.dpi = dpi
        common = dict(continuous_update=False, style={"description_width": "6.5em"})
        self.gamma = w.FloatSlider(
            1.0, min=0.0, max=3.0, step=0.1, description="γ (gamma)", **common
        )
        self.beta = w.FloatSlider(
            0.0, min=-3.0, max=3.0, step=0.1, description="β (beta)", **common
        )
        self.eps = w.FloatLogSlider(
            1e-5,
            base=10,
            min=-8,
            max=0,
            step=0.5,
            description="ε (eps)",
            readout_format=".0e",
            **common,
        )
        self.batch_size = w.SelectionSlider(
            options=BATCH_SIZES, value=64, description="batch N", **common
        )
        self.feature = w.ToggleButtons(
            options=list(self.features), value="skewed, offset", style={"button_width": "auto"}
        )
        for name, widget in [
            ("gamma", self.gamma),
            ("beta", self.beta),
            ("eps", self.eps),
            ("batch", self.batch_size),
        ]:
            widget.add_class(f"bnlib-slider-{name}")
        self.feature.add_class("bnlib-feature")
        self._build_figure()
        self.image = w.Image(value=self.render(), format="png").add_class("bnlib-bn-figure")
        self.image.layout.max_width = "100%"
        for widget in (self.gamma, self.beta, self.eps, self.batch_size, self.feature):
            widget.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.gamma, self.beta]),
                w.HBox([self.eps, self.batch_size]),
                w.HBox([w.Label("feature:"), self.feature]),
                self.image,
            ]
        ).add_class("bnlib-bn-explorer")

    # --- the numbers -----------------------------------------------------------------------------

    def values(self):
        """(x, xhat, y) for the current sliders: three (N,) float64 arrays."""
        x = self.features[self.feature.value][: self.batch_size.value]
        mu = x.mean()
        var = np.mean((x - mu) ** 2)  # biased: divide by N, as BN does
        xhat = (x - mu) / np.sqrt(var + self.eps.value)
        return x, xhat, self.gamma.value * xhat + self.beta.value

    def stats(self):
        """{"x": (mean, std), "xhat": (...), "y": (...)} of the current batch (biased std)."""
        names = ("x", "xhat", "y")
        return {
            k: (float(v.mean()), float(v.std())) for k, v in zip(names, self.values(), strict=True)
        }

    def summary(self):
        """The current state in words: sliders, then mean and std of x, xhat and y."""
        s = self.stats()
        lines = [
            f"BN explorer: feature '{self.feature.value}', batch N={self.batch_size.value}, "
            f"gamma={self.gamma.value:g}, beta={self.beta.value:g}, eps={self.eps.value:.0e}",
        ]
        for name, label in [("x", "x   "), ("xhat", "xhat"), ("y", "y   ")]:
            mean, std = s[name]
            mean = 0.0 if abs(mean) < 5e-5 else mean  # no "-0.0000" from rounding noise
            lines.append(f"  {label}: mean {mean:8.4f}, std {std:7.4f}")
        lines.append("(Run the notebook in Jupyter to move the sliders.)")
        return "\n".join(lines)

    # --- the picture -----------------------------------------------------------------------------

    def _build_figure(self):
        import matplotlib as mpl
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        # Bins: x's fixed per feature (from its pool); xhat's and y's fixed and equally wide, so
        # gamma visibly stretches y's histogram against xhat's.
        self._edges = {}
        for name, pool in self.features.items():
            pad = 0.05 * np.ptp(pool)
            self._edges[name] = np.linspace(pool.min() - pad, pool.max() + pad, BINS + 1)
        self._fixed_edges = [
            np.linspace(-4.0, 6.0, BINS + 1),
            np.linspace(-10.0, 15.0, 5 * BINS // 2 + 1),
        ]
        titles = [
            "input x (one feature, N samples)",
            "normalized x̂ = (x − μ) / √(σ² + ε)",
            "output y = γ·x̂ + β",
        ]
        colors = ["#7f7f7f", "#1f77b4", "#d62728"]
        with mpl.rc_context(STYLE):
            fig = Figure(figsize=(10.0, 3.0), dpi=self.dpi, layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, 3)
            self._artists = []
            for ax, title, xlabel, color in zip(axes, titles, ["x", "x̂", "y"], colors, strict=True):
                band = ax.axvspan(0, 1, color=color, alpha=0.15, linewidth=0, label="mean ± std")
                stairs = ax.stairs(np.zeros(BINS), np.arange(BINS + 1), fill=True, color=color)
                (mean_line,) = ax.plot([0, 0], [0, 1], color="k", linewidth=1.2, label="mean")
                (rug,) = ax.plot([], [], "|", color="k", markersize=7, alpha=0.5, label="samples")
                text = ax.text(0.98, 0.96, "", transform=ax.transAxes, ha="right", va="top")
                ax.set_title(title, fontsize=10)
                ax.set_xlabel(xlabel)
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(False)
                self._artists.append((ax, band, stairs, mean_line, rug, text))
            axes[0].set_ylabel("count in the batch")
            fig.legend(
                handles=self._artists[1][1:4] + (self._artists[1][4],),
                labels=["mean ± std", "histogram", "mean", "samples"],
                loc="outside upper center",
                ncols=4,
                fontsize=8,
            )
            for v in (-1, 1):  # where xhat's mean ± std should land: 0 ± 1
                axes[1].axvline(v, color="k", linestyle=":", linewidth=0.9)
            axes[1].text(1.1, 0.55, "±1", transform=axes[1].get_xaxis_transform(), fontsize=8)
            self.figure = fig
            self._update_artists()
            fig.canvas.draw()  # lay out once, then freeze it: constrained layout costs a redraw
            fig.set_layout_engine("none")

    def _update_artists(self):
        edges_x = self._edges[self.feature.value]
        for (ax, band, stairs, mean_line, rug, text), v, edges in zip(
            self._artists, self.values(), [edges_x, *self._fixed_edges], strict=True
        ):
            # NB: values beyond the axis are counted in the edge bins, so no sample disappears.
            counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
            stairs.set_data(counts, edges)
            top = max(counts.max(), 1) * 1.35  # headroom for the mean and std
            mean, std = v.mean(), v.std()
            band.set_x(mean - std)
            band.set_width(2 * std)
            mean_line.set_data([mean, mean], [0, top])
            rug.set_data(v, np.full(v.shape, top * 0.025))
            text.set_text(f"mean {mean + 0.0:.2f}\nstd {std:.3g}".replace("-0.00", "0.00"))
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, top)

    def render(self):
        """Redraw the figure for the current sliders; returns the PNG bytes."""
        from PIL import Image

        self._update_artists()
        canvas = self.figure.canvas
        canvas.draw()  # one Agg pass; the layout was fixed once in _build_figure
        width, height = canvas.get_width_height(physical=True)
        rgb = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba()).convert("RGB")
        buf = io.BytesIO()
        # compress_level 1: PNG's default level takes a large part of the redraw and barely shrinks.
        rgb.save(buf, format="png", compress_level=1)
        return buf.getvalue()

    def _on_change(self, _change):
        self.image.value = self.render()

    def set(self, **values):
        """Move sliders from code, e.g. `explorer.set(gamma=2.0, batch_size=8)`; returns self.

        Keys: gamma, beta, eps, batch_size, feature. The figure redraws once per key.
        """
        widgets = {
            "gamma": self.gamma,
            "beta": self.beta,
            "eps": self.eps,
            "batch_size": self.batch_size,
            "feature": self.feature,
        }
        for key, value in values.items():
            if key not in widgets:
                raise ValueError(f"BNExplorer.set: expected one of {sorted(widgets)}, got {key!r}")
            widgets[key].value = value
        return self

    # --- display ---------------------------------------------------------------------------------

    def __repr__(self):
        return self.summary()

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_() or {}
        bundle["text/plain"] = self.summary()
        # The current figure, for static viewers (base64 text, as Jupyter stores images).
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle


def bn_explorer(seed=0):
    """The lesson 1 explorer: sliders for gamma, beta, eps and the batch size N, and histograms of
    one feature's x, xhat and y over the batch. Display the returned `BNExplorer` in a cell.
    """
    return BNExplorer(seed=seed)
