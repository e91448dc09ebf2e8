"""Interactive explorers for the lessons: sliders that redraw a figure in well under 100 ms.

The figures are rendered off-screen with matplotlib's Agg canvas into PNG bytes held by an
`ipywidgets.Image`, so they work with the default inline backend (no ipympl) and in a browser
test. Speed comes from precomputing the samples, keeping one Figure and updating its artists
(`StepPatch.set_data`, `Line2D.set_data`, ...) instead of building a new one, and rendering at a
modest dpi; benchmarks/bench_widgets.py measures the redraw.

Each PNG is rendered at the pixel width it is shown at (figure width x dpi = the Image widget's CSS
width, at most the notebook's width, about 964 px in JupyterLab at a 1280-px window), so the
browser never stretches it (a VBox would otherwise stretch the image to the full width, softening
it and enlarging its text). Words a learner reads on a widget (control and option labels, the
caption line under or beside a figure, the text summary) go through `bnlib.i18n._` when they are
shown, for the zh-TW edition; words inside a figure stay English (axis labels, panel titles and,
in lesson 4's, the per-panel notes): matplotlib has no CJK font here, so anything longer is put in
the caption (an HTML widget) instead.

Displayed where no widget front end runs (nbconvert, nbval, a code host), an explorer shows as a
text summary and the PNG of its current state (with its caption, as HTML, where it has one).

CSS classes, a contract with the browser tests: the explorer `bnlib-bn-explorer`; its sliders
`bnlib-slider-gamma`, `bnlib-slider-beta`, `bnlib-slider-eps`, `bnlib-slider-batch`; the feature
picker `bnlib-feature`; the figure (an Image widget) `bnlib-bn-figure`. A caption line, where a
widget has one: `bnlib-figure-caption`.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from bnlib.i18n import N_, _
from bnlib.plots import STYLE

__all__ = ["BNExplorer", "bn_explorer", "png_width"]

POOL = 512  # samples drawn once per feature; a batch of size N is the first N of them
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256, 512)
BINS = 40
DPI = 80  # the PNG is shown 1:1 (CSS px = PNG px), 80 px per figure inch like the lessons'
# 12-inch static figures shown at the notebook's 964-px width; 10-pt text is 11 px high


# --- shared by the explorers: a figure shown as an ipywidgets Image -----------------------


_LIST = N_("{first}, {second}")  # a list of short items, "15, 50, 85" in English


def _join(items):
    """The strings `items` as one list, "a, b, c" in English, the separator translated."""
    follow, text = _(_LIST), None
    for item in items:
        text = item if text is None else follow.format(first=text, second=item)
    return text or ""


def _png(figure):
    """PNG bytes of a Figure drawn on its Agg canvas (fast: RGB, low compression)."""
    from PIL import Image

    canvas = figure.canvas
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    rgb = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba()).convert("RGB")
    buf = io.BytesIO()
    # compress_level 1: PNG's default level takes a large part of the redraw and barely shrinks
    rgb.save(buf, format="png", compress_level=1)
    return buf.getvalue()


def png_width(png):
    """The width in pixels of PNG bytes (read from the IHDR chunk)."""
    if bytes(png[:8]) != b"\x89PNG\r\n\x1a\n":
        raise ValueError("png_width: expected PNG bytes")
    return int.from_bytes(bytes(png[16:20]), "big")


def _image(png, css_class):
    """An Image widget showing `png` at its own pixel width: not stretched to the output area's
    width by the VBox around it, and shrunk (keeping its aspect) only in a narrower window."""
    import ipywidgets as w

    layout = w.Layout(width=f"{png_width(png)}px", max_width="100%", height="auto")
    return w.Image(value=png, format="png", layout=layout).add_class(css_class)


def _caption(png):
    """The text line under a figure (an HTML widget as wide as the figure, wrapping); set its
    text with `_set_caption`."""
    import ipywidgets as w

    layout = w.Layout(width=f"{png_width(png)}px", max_width="100%")
    return w.HTML(layout=layout).add_class("bnlib-figure-caption")


def _set_caption(caption, text, legend=()):
    """Show `text` (plain text, escaped here) in the caption line, after a legend drawn in HTML:
    legend holds (color, label) pairs, each shown as a line of that color and the label."""
    import html

    keys = "".join(
        f'<span style="white-space: nowrap; margin-right: 1.2em"><span style="color: {color}">'
        f"&#9473;&#9473;</span> {html.escape(label)}</span>"
        for color, label in legend
    )
    lines = "<br>".join(html.escape(line) for line in text.split("\n"))
    caption.value = f"<div>{keys}{lines}</div>"


class _PngWidget:
    """Shared display logic: a VBox `widget` with an Image `image`, and a text `summary()`; shown
    where no widget front end runs as the summary and the current figure (base64 PNG, as Jupyter
    stores images)."""

    def __repr__(self):
        return self.summary()

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget._repr_mimebundle_() or {}
        bundle["text/plain"] = self.summary()
        bundle["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        if self.caption is not None:  # static views (nbconvert, slides) show the caption too
            bundle["text/html"] = (
                f'<div class="bnlib-static-figure"><img src="data:image/png;base64,'
                f'{bundle["image/png"]}" style="width: {png_width(self.image.value)}px; '
                f'max-width: 100%; height: auto" alt="">{self.caption.value}</div>'
            )
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle

    def _figure(self, figsize):
        import matplotlib as mpl
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        with mpl.rc_context(STYLE):  # the axes take the style when they are made
            fig = Figure(figsize=figsize, dpi=self.dpi, layout="constrained")
            FigureCanvasAgg(fig)
            ax = fig.subplots()
        return fig, ax

    caption = None  # the text line under the figure, for the widgets that have one

    def caption_text(self):
        """The caption line's text for the current controls (translated)."""
        return ""

    def caption_legend(self):
        """(color, label) pairs shown as a legend at the start of the caption line."""
        return ()

    def _show(self, css_class):
        """Render the current state; make `image` (and `caption`, if the widget has a
        caption_text) for it."""
        png = self.render()
        self.image = _image(png, css_class)
        if type(self).caption_text is not _PngWidget.caption_text:
            self.caption = _caption(png)
            _set_caption(self.caption, self.caption_text(), self.caption_legend())

    def _redraw(self, _change=None):
        self.image.value = self.render()
        if self.caption is not None:
            _set_caption(self.caption, self.caption_text(), self.caption_legend())


def _features(seed):
    """The two features the explorer offers, POOL samples each (float64)."""
    rng = np.random.default_rng(seed)
    return {
        # Skewed and far from zero: normalization visibly moves and rescales it.
        N_("skewed, offset"): 3.0 + rng.lognormal(mean=0.0, sigma=0.5, size=POOL),
        # A spread of 0.003 (variance 9e-6) is below sqrt(eps) for eps >= 1e-5: eps matters here.
        N_("tiny spread (std 0.003)"): 1.0 + 0.003 * rng.standard_normal(POOL),
    }


class BNExplorer(_PngWidget):
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
            1.0, min=0.0, max=3.0, step=0.1, description=_("γ (gamma)"), **common
        )
        self.beta = w.FloatSlider(
            0.0, min=-3.0, max=3.0, step=0.1, description=_("β (beta)"), **common
        )
        self.eps = w.FloatLogSlider(
            1e-5,
            base=10,
            min=-8,
            max=0,
            step=0.5,
            description=_("ε (eps)"),
            readout_format=".0e",
            **common,
        )
        self.batch_size = w.SelectionSlider(
            options=BATCH_SIZES, value=64, description=_("batch N"), **common
        )
        self.feature = w.ToggleButtons(  # labels translated, values the features' keys
            options=[(_(name), name) for name in self.features],
            value="skewed, offset",
            style={"button_width": "auto"},
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
        self._show("bnlib-bn-figure")
        for widget in (self.gamma, self.beta, self.eps, self.batch_size, self.feature):
            widget.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.gamma, self.beta]),
                w.HBox([self.eps, self.batch_size]),
                w.HBox([w.Label(_("feature:")), self.feature]),
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
            _(
                "BN explorer: feature '{feature}', batch N={n}, gamma={gamma:g}, beta={beta:g}, "
                "eps={eps:.0e}"
            ).format(
                feature=_(self.feature.value),
                n=self.batch_size.value,
                gamma=self.gamma.value,
                beta=self.beta.value,
                eps=self.eps.value,
            )
        ]
        for name, label in [("x", "x   "), ("xhat", "xhat"), ("y", "y   ")]:
            mean, std = s[name]
            mean = 0.0 if abs(mean) < 5e-5 else mean  # no "-0.0000" from rounding noise
            lines.append(
                _("  {name}: mean {mean:8.4f}, std {std:7.4f}").format(
                    name=label, mean=mean, std=std
                )
            )
        lines.append(_("(Run the notebook in Jupyter to move the sliders.)"))
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
            counts = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0]
            stairs.set_data(counts, edges)
            top = max(counts.max(), 1) * 1.35  # headroom for the mean and std
            mean, std = v.mean(), v.std()
            band.set_x(mean - std)
            band.set_width(2 * std)
            mean_line.set_data([mean, mean], [0, top])
            rug.set_data(v, np.full(v.shape, top * 0.025))
            text.set_text(f"mean {mean + 0.0:.2f}\nstd {std:.3g}".replace("-0.00", "0.00"))
            lo, hi = edges[0], edges[-1]
            near = self._fixed_edges[0]  # x̂'s range
            if edges is self._fixed_edges[1] and near[0] <= v.min() and v.max() <= near[-1]:
                # y's axis: x̂'s range while y fits in it (the static image shows the defaults,
                # γ = 1, β = 0, and y compares with x̂ directly), the wide range once it does not
                lo, hi = near[0], near[-1]
            ax.set_xlim(lo, hi)
            ax.set_ylim(0, top)

    def render(self):
        """Redraw the figure for the current sliders; returns the PNG bytes."""
        self._update_artists()
        return _png(self.figure)  # one Agg pass; the layout was fixed once in _build_figure

    def _on_change(self, _change):
        self._redraw()

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


def bn_explorer(seed=0):
    """The lesson 1 explorer: sliders for gamma, beta, eps and the batch size N, and histograms of
    one feature's x, xhat and y over the batch. Display the returned `BNExplorer` in a cell.
    """
    return BNExplorer(seed=seed)


# --- lesson 4: how noisy are the batch statistics? ----------------------------------------------

__all__ += ["BatchNoiseExplorer", "batch_noise_explorer"]

NOISE_BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128)
NOISE_TRIALS = 2000  # batches drawn per batch size


def batch_noise_samples(batch_size, trials=NOISE_TRIALS, seed=0, eps=1e-5):
    """Batch statistics of `trials` batches of N = batch_size values of one feature.

    The feature is x = 1 + (lognormal(0, 0.5) - its mean) / its std, so its population mean is 1
    and its std 1. The batch means and stds come from batches of N fresh population samples (so
    the mean's spread is 1/sqrt(N)). x0's normalized value comes from separate batches holding
    the fixed sample x0 = 2 and N - 1 population samples: x0 sits one standard deviation above
    the mean, so its population-normalized value is exactly 1. Returns (batch means, batch stds
    (biased), x0's normalized value), each of shape (trials,).
    """
    rng = np.random.default_rng([seed, batch_size])
    m, s = np.exp(0.125), np.sqrt((np.exp(0.25) - 1) * np.exp(0.25))  # lognormal(0, 0.5) moments
    fresh = 1.0 + (rng.lognormal(0.0, 0.5, (trials, batch_size)) - m) / s  # (trials, N)
    others = 1.0 + (rng.lognormal(0.0, 0.5, (trials, batch_size - 1)) - m) / s  # (trials, N - 1)
    x = np.concatenate([np.full((trials, 1), 2.0), others], axis=1)  # (trials, N), x0 first
    mean, var = x.mean(axis=1), x.var(axis=1)
    return fresh.mean(axis=1), fresh.std(axis=1), (x[:, 0] - mean) / np.sqrt(var + eps)


class BatchNoiseExplorer(_PngWidget):
    """A batch-size slider and histograms, over many batches, of the batch mean, the batch std
    and the normalized value x̂ of one fixed sample (whose population-normalized value is 1).

    All batch sizes are precomputed (`batch_noise_samples`); a redraw only swaps histogram data.
    CSS classes: the explorer `bnlib-batch-noise`, its slider `bnlib-slider-batch`, the figure
    `bnlib-noise-figure`.
    """

    EDGES = (np.linspace(-1.0, 3.0, 61), np.linspace(0.0, 2.5, 61), np.linspace(-1.5, 3.5, 61))

    def __init__(self, seed=0, dpi=DPI):
        import ipywidgets as w

        self.dpi = dpi
        self.samples = {n: batch_noise_samples(n, seed=seed) for n in NOISE_BATCH_SIZES}
        self.batch_size = w.SelectionSlider(
            options=NOISE_BATCH_SIZES,
            value=2,
            description=_("batch N"),
            continuous_update=False,
            style={"description_width": "6.5em"},
        ).add_class("bnlib-slider-batch")
        self._build_figure()
        self._show("bnlib-noise-figure")
        self.batch_size.observe(self._redraw, "value")
        self.widget = w.VBox([self.batch_size, self.image]).add_class("bnlib-batch-noise")

    def spreads(self, batch_size=None):
        """{"mean": std over batches of the batch mean, "std": ..., "xhat": ...} at batch_size."""
        values = self.samples[batch_size or self.batch_size.value]
        return {k: float(v.std()) for k, v in zip(("mean", "std", "xhat"), values, strict=True)}

    def summary(self):
        n = self.batch_size.value
        s = self.spreads()
        return (
            _(
                "Batch noise explorer: N={n}, over {trials} batches: the batch mean varies by "
                "±{mean:.3f} (1/sqrt(N) = {expected:.3f}), the batch std by ±{std:.3f}, x̂ of the "
                "sample 2.0 by ±{xhat:.3f} (population value 1)."
            ).format(
                n=n,
                trials=NOISE_TRIALS,
                mean=s["mean"],
                expected=1 / np.sqrt(n),
                std=s["std"],
                xhat=s["xhat"],
            )
            + "\n"
            + _("(Run the notebook in Jupyter to move the slider.)")
        )

    def _build_figure(self):
        import matplotlib as mpl
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        titles = ["batch mean μ_B", "batch std σ_B", "x̂ of the sample x₀ = 2"]
        truth = [1.0, 1.0, 1.0]
        colors = ["#1f77b4", "#2ca02c", "#d62728"]
        with mpl.rc_context(STYLE):
            fig = Figure(figsize=(10.0, 2.8), dpi=self.dpi, layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, 3)
            self._artists = []
            for ax, title, edges, t, color in zip(
                axes, titles, self.EDGES, truth, colors, strict=True
            ):
                stairs = ax.stairs(np.zeros(len(edges) - 1), edges, fill=True, color=color)
                ax.axvline(t, color="k", linestyle=":", linewidth=1)
                text = ax.text(0.98, 0.96, "", transform=ax.transAxes, ha="right", va="top")
                ax.set_title(title, fontsize=10)
                ax.set_xlim(edges[0], edges[-1])
                ax.yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0, decimals=0))
                ax.grid(False)
                self._artists.append((ax, stairs, text, edges))
            axes[0].set_ylabel(f"share of {NOISE_TRIALS} batches")
            self.figure = fig
            for ax in axes:  # lay out with the widest tick labels ("100%"), then keep that layout
                ax.set_ylim(0, 1)
            fig.canvas.draw()
            fig.set_layout_engine("none")
            self._update_artists()

    def _update_artists(self):
        values = self.samples[self.batch_size.value]
        for (ax, stairs, text, edges), v in zip(self._artists, values, strict=True):
            counts = np.histogram(v, bins=edges)[0]  # values off the axis are not drawn
            stairs.set_data(counts / len(v), edges)
            ax.set_ylim(0, max(counts.max() / len(v), 1e-3) * 1.25)
            off = np.mean((v < edges[0]) | (v > edges[-1]))
            # NB: words in the figure (tests/test_lesson04_small_batches.py reads them)
            text.set_text(f"spread ±{v.std():.2f}" + (f"\n{off:.1%} off the axis" if off else ""))

    def render(self):
        """Redraw for the current batch size; returns PNG bytes."""
        self._update_artists()
        return _png(self.figure)


def batch_noise_explorer(seed=0):
    """The lesson 4 explorer: a batch-size slider; histograms of the batch mean, the batch std and
    one sample's normalized value over many batches. Display the returned object in a cell."""
    return BatchNoiseExplorer(seed=seed)


# --- lesson 3: inside training (layer distributions, learning rates) -----------------------------

__all__ += ["MODEL_LABELS", "LayerDistributionViewer", "LearningRateSelector"]

# The names lesson 3 gives its models, marked here for the catalogue (a code cell's strings are
# not extracted): the widgets below translate the model labels they show, whatever the caller's
MODEL_LABELS = (N_("without BN"), N_("with BN"), N_("noisy BN"))


class LayerDistributionViewer(_PngWidget):
    """Pick a layer, a model (e.g. without / with BN) and a training step: a histogram of the
    inputs of that layer's nonlinearity over one training batch, all units together.

    The x axis of a layer spans the 0.5th to 99.5th percentile of its inputs over all models and
    steps; values beyond it are not drawn (never piled into the end bins), and the caption under
    the figure says which share of the batch is off the axis on each side.

    traces: {model label: bnlib.hooks.Trace} recorded by trace_training with the same layers and
    keep_every; the labels are English (e.g. MODEL_LABELS), translated where shown. Everything
    is precomputed; a redraw swaps the histogram's data.
    CSS classes: `bnlib-layer-viewer`, `bnlib-layer`, `bnlib-model`, `bnlib-slider-step`,
    `bnlib-layer-figure`, its caption `bnlib-figure-caption`.
    """

    def __init__(self, traces, dpi=DPI, bins=60):
        import ipywidgets as w

        self.traces, self.dpi = dict(traces), dpi
        first = next(iter(self.traces.values()))
        self.layer_names = list(first.snapshots)
        self.edges = {}
        for name in self.layer_names:
            values = np.concatenate([t.snapshots[name].ravel() for t in self.traces.values()])
            lo, hi = np.percentile(values, [0.5, 99.5])
            self.edges[name] = np.linspace(lo, hi, bins + 1)
        labels = [_("layer {i}").format(i=i + 1) for i in range(len(self.layer_names))]
        self.layer = w.Dropdown(
            options=list(zip(labels, self.layer_names, strict=True)),
            value=self.layer_names[-1],
            description=_("layer"),
        ).add_class("bnlib-layer")
        self.model = w.ToggleButtons(  # labels translated, values the traces' keys
            options=[(_(label), label) for label in self.traces], description=_("model")
        )
        self.model.add_class("bnlib-model")
        self.step = w.SelectionSlider(
            options=[int(s) for s in first.snapshot_steps],
            value=int(first.snapshot_steps[-1]),
            description=_("step"),
            continuous_update=False,
        ).add_class("bnlib-slider-step")
        fig, self.ax = self._figure((10.0, 2.8))  # 800 x 224 px
        edges = self.edges[self.layer.value]
        self.stairs = self.ax.stairs(np.zeros(len(edges) - 1), edges, fill=True, alpha=0.8)
        self.lines = [self.ax.axvline(0, color="k", linestyle=":", linewidth=1) for _q in first.q]
        self.ax.set_xlabel("input to the nonlinearity")
        self.ax.set_ylabel("share of values")
        self.figure = fig
        self._show("bnlib-layer-figure")
        for control in (self.layer, self.model, self.step):
            control.observe(self._redraw, "value")
        self.widget = w.VBox(
            [w.HBox([self.layer, self.step]), self.model, self.image, self.caption]
        )
        self.widget.add_class("bnlib-layer-viewer")

    def values(self):
        """The (N, D) inputs shown now."""
        trace = self.traces[self.model.value]
        k = int(np.searchsorted(trace.snapshot_steps, self.step.value))
        return trace.snapshots[self.layer.value][k]

    def summary(self):
        trace = self.traces[self.model.value]
        pct = np.percentile(self.values(), trace.q)
        return (
            _(
                "Layer distribution viewer: {model}, {layer}, step {step}: percentiles ({q}) of "
                "the inputs = {values}."
            ).format(
                model=_(self.model.value),
                layer=self.layer.label,
                step=self.step.value,
                q=_join(map(str, trace.q)),
                values=_join(f"{p:.2f}" for p in pct),
            )
            + "\n"
            + _("(Run the notebook in Jupyter to change layer, model and step.)")
        )

    def caption_text(self):
        """What is shown, the percentiles drawn dotted, and the share of values off the axis."""
        trace = self.traces[self.model.value]
        edges, values = self.edges[self.layer.value], self.values().ravel()
        text = _("{model}, {layer}, step {step}. Dotted lines: the {q} percentiles.").format(
            model=_(self.model.value),
            layer=self.layer.label,
            step=self.step.value,
            q=_join(map(str, trace.q)),
        )
        below, above = np.mean(values < edges[0]), np.mean(values > edges[-1])
        if below or above:
            text += " " + _(
                "Off the axis (not drawn): {below:.1%} below, {above:.1%} above."
            ).format(below=below, above=above)
        return text

    def render(self):
        """Redraw for the current choices; returns PNG bytes."""
        edges = self.edges[self.layer.value]
        values = self.values().ravel()
        counts = np.histogram(values, bins=edges)[0]  # values off the axis are not counted
        self.stairs.set_data(counts / len(values), edges)
        self.ax.set_xlim(edges[0], edges[-1])
        self.ax.set_ylim(0, max(counts.max() / len(values), 1e-3) * 1.15)
        trace = self.traces[self.model.value]
        for line, p in zip(self.lines, np.percentile(values, trace.q), strict=True):
            line.set_xdata([p, p])
        return _png(self.figure)


class LearningRateSelector(_PngWidget):
    """A learning-rate slider over precomputed runs: test accuracy against training steps, one
    line per model kind. runs: {(kind, lr): History} as returned by bnlib.train.lr_sweep;
    labels: {kind: the name shown for it}, English (e.g. MODEL_LABELS), translated where shown
    (the legend is HTML, in the caption line under the figure, so any script shows).
    CSS classes: `bnlib-lr-selector`, `bnlib-slider-lr`, `bnlib-lr-figure`, its caption
    `bnlib-figure-caption`.
    """

    def __init__(self, runs, labels=None, dpi=DPI):
        import ipywidgets as w

        self.runs, self.dpi = dict(runs), dpi
        self.kinds = list(dict.fromkeys(k for k, _lr in self.runs))
        self.lrs = sorted({lr for _kind, lr in self.runs})
        self.labels = labels or {k: k for k in self.kinds}
        self.lr = w.SelectionSlider(
            options=self.lrs,
            value=self.lrs[len(self.lrs) // 2],
            description=_("learning rate"),
            continuous_update=False,
            style={"description_width": "7em"},
        ).add_class("bnlib-slider-lr")
        fig, self.ax = self._figure((8.0, 3.0))  # 640 x 240 px
        last = max(h.steps[-1] for h in self.runs.values())
        self.lines = {k: self.ax.plot([], [])[0] for k in self.kinds}
        self.ax.set_xlim(0, last)
        self.ax.set_ylim(0, 1.02)
        self.ax.axhline(0.1, color="0.6", linestyle=":", linewidth=1)
        self.ax.set_xlabel("training step")
        self.ax.set_ylabel("test accuracy")
        self.figure = fig
        self._show("bnlib-lr-figure")
        fig.set_layout_engine("none")  # laid out once: a redraw only swaps the lines' data
        self.lr.observe(self._redraw, "value")
        self.widget = w.VBox([self.lr, self.image, self.caption]).add_class("bnlib-lr-selector")

    def summary(self):
        lr = self.lr.value
        finals = _join(
            f"{_(self.labels[k])} {self.runs[k, lr].final_test_acc:.3f}" for k in self.kinds
        )
        last = max(self.runs[k, lr].steps[-1] for k in self.kinds)
        return (
            _(
                "Learning-rate selector: lr={lr:g}, test accuracy at the last evaluation (step "
                "{step}): {finals}."
            ).format(lr=lr, step=last, finals=finals)
            + "\n"
            + _("(Run the notebook in Jupyter to move the slider.)")
        )

    def caption_text(self):
        return _("Learning rate {lr:g}. Dotted: chance (10%).").format(lr=self.lr.value)

    def caption_legend(self):
        return [(line.get_color(), _(self.labels[k])) for k, line in self.lines.items()]

    def render(self):
        """Redraw for the current learning rate; returns PNG bytes."""
        for kind, line in self.lines.items():
            h = self.runs[kind, self.lr.value]
            line.set_data(h.steps, h.test_acc)
        return _png(self.figure)


# --- lesson 2: running statistics (momentum and batch size) ---------------------------------------

__all__ += ["running_stats_traces", "RunningStatsExplorer"]

RUNNING_MOMENTA = (0.01, 0.03, 0.1, 0.3, 1.0, None)  # None: the cumulative average
RUNNING_BATCHES = (2, 4, 8, 16, 32, 64, 128)
RUNNING_STEPS = 300
POPULATION = (2.0, 4.0)  # the feature's population mean and variance
CUMULATIVE = N_("None (cumulative)")  # the label of momentum=None


def running_stats_traces(momentum, batch_size, steps=RUNNING_STEPS, seed=0, unbiased=True):
    """PyTorch's running statistics of one feature (population mean 2, variance 4) over `steps`
    batches of batch_size: running_mean, running_var, each of shape (steps + 1,), from the initial
    (0, 1). momentum: PyTorch's (the weight of the new batch), or None for the cumulative average.
    unbiased=False stores the biased batch variance instead (the classic mistake)."""
    rng = np.random.default_rng([seed, batch_size])
    mean, var = POPULATION
    x = rng.standard_normal((steps, batch_size)) * np.sqrt(var) + mean  # (steps, N)
    batch_mean = x.mean(axis=1)
    batch_var = x.var(axis=1, ddof=1 if unbiased else 0)
    rm, rv = np.empty(steps + 1), np.empty(steps + 1)
    rm[0], rv[0] = 0.0, 1.0  # PyTorch's initial running statistics
    for t in range(steps):
        m = 1.0 / (t + 1) if momentum is None else momentum
        rm[t + 1] = (1 - m) * rm[t] + m * batch_mean[t]
        rv[t + 1] = (1 - m) * rv[t] + m * batch_var[t]
    return rm, rv


class RunningStatsExplorer(_PngWidget):
    """Momentum and batch-size sliders: the running mean and variance of one feature over 300
    training steps, against the population values they should estimate.

    Every combination is precomputed (`running_stats_traces`); a redraw swaps line data.
    CSS classes: `bnlib-running-stats`, `bnlib-slider-momentum`, `bnlib-slider-batch`,
    `bnlib-running-figure`, its caption `bnlib-figure-caption`.
    """

    def __init__(self, seed=0, dpi=DPI):
        import ipywidgets as w

        self.dpi = dpi
        self.traces = {
            (m, n): running_stats_traces(m, n, seed=seed)
            for m in RUNNING_MOMENTA
            for n in RUNNING_BATCHES
        }
        # NB: a selection widget takes the value None for "nothing selected": use a string
        labels = [(_(CUMULATIVE), "None") if m is None else (f"{m:g}", m) for m in RUNNING_MOMENTA]
        self.momentum = w.SelectionSlider(
            options=labels,
            value=0.1,
            description=_("momentum"),
            continuous_update=False,
            style={"description_width": "6.5em"},
        ).add_class("bnlib-slider-momentum")
        self.batch_size = w.SelectionSlider(
            options=RUNNING_BATCHES,
            value=8,
            description=_("batch N"),
            continuous_update=False,
            style={"description_width": "6.5em"},
        ).add_class("bnlib-slider-batch")
        import matplotlib as mpl
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        with mpl.rc_context(STYLE):
            fig = Figure(figsize=(9.0, 2.8), dpi=self.dpi, layout="constrained")
            FigureCanvasAgg(fig)
            axes = fig.subplots(1, 2)
        steps = np.arange(RUNNING_STEPS + 1)
        self.lines = []
        for ax, truth, name, limits in zip(
            axes, POPULATION, ("running_mean", "running_var"), ((-0.5, 4.5), (0, 12)), strict=True
        ):
            (line,) = ax.plot(steps, np.zeros_like(steps, dtype=float), color="#1f77b4")
            ax.axhline(truth, color="k", linestyle=":", linewidth=1)
            ax.set_xlim(0, RUNNING_STEPS)
            ax.set_ylim(*limits)
            ax.set_xlabel("training step")
            ax.set_ylabel(name)
            self.lines.append(line)
        self.axes, self.figure = axes, fig
        self._show("bnlib-running-figure")
        fig.set_layout_engine("none")  # laid out once: later redraws only swap the lines' data
        self.momentum.observe(self._redraw, "value")
        self.batch_size.observe(self._redraw, "value")
        self.widget = w.VBox([self.momentum, self.batch_size, self.image, self.caption]).add_class(
            "bnlib-running-stats"
        )

    def errors(self, momentum=None, batch_size=None, last=100, *, current=True):
        """How far the estimates stray over the last `last` steps: the root mean square error of
        running_mean and running_var against the population's, for the sliders' values (or the
        given ones, with current=False)."""
        key = (self._momentum(), self.batch_size.value) if current else (momentum, batch_size)
        rm, rv = self.traces[key]
        mean, var = POPULATION
        return (
            float(np.sqrt(np.mean((rm[-last:] - mean) ** 2))),
            float(np.sqrt(np.mean((rv[-last:] - var) ** 2))),
        )

    def _momentum(self):
        return None if self.momentum.value == "None" else self.momentum.value

    def summary(self):
        m, n = self._momentum(), self.batch_size.value
        e_mean, e_var = self.errors()
        label = _(CUMULATIVE) if m is None else f"{m:g}"
        return (
            _(
                "Running statistics explorer: momentum={momentum}, batch N={n}: over the last 100 "
                "of {steps} steps the running mean is off by {mean:.3f} (rms; population 2) and "
                "the running variance by {var:.3f} (population 4)."
            ).format(momentum=label, n=n, steps=RUNNING_STEPS, mean=e_mean, var=e_var)
            + "\n"
            + _("(Run the notebook in Jupyter to move the sliders.)")
        )

    def caption_text(self):
        e_mean, e_var = self.errors()
        return _(
            "Over the last 100 steps the running mean is off by {mean:.2f} and the running "
            "variance by {var:.2f} (root mean square). Dotted: the population's mean 2 and "
            "variance 4."
        ).format(mean=e_mean, var=e_var)

    def render(self):
        """Redraw for the current sliders; returns PNG bytes."""
        for line, values in zip(
            self.lines, self.traces[self._momentum(), self.batch_size.value], strict=True
        ):
            line.set_ydata(values)
        return _png(self.figure)


# --- lesson 5: which values share statistics ------------------------------------------------------

__all__ += ["NormGroupExplorer"]

_CUBE_SHAPE = (4, 6, 2, 3)  # (N, C, H, W): small enough to see every cell
_CUBE_INDEX = (1, 2, 0, 0)  # the value whose statistics group is highlighted
_GROUPINGS = {  # what each method computes statistics over, and how many pairs for _CUBE_SHAPE
    "BN": (N_("(N, H, W): one channel, every sample"), lambda N, C, G: C),
    "LN": (N_("(C, H, W): one sample, every channel"), lambda N, C, G: N),
    "IN": (N_("(H, W): one sample, one channel"), lambda N, C, G: N * C),
    "GN": (N_("(C/G, H, W): one sample, one group of channels"), lambda N, C, G: N * G),
}


class NormGroupExplorer(_PngWidget):
    """Pick a normalization (BN, LN, IN, GN) and GN's number of groups G: the cube of an
    (N, C, H, W) activation with the values that share one mean and variance highlighted (found
    from bnlib.functional's implementation, `bnlib.plots.shared_statistics`), and the statistics
    themselves, in words beside the cube (the caption). All frames are rendered once, up front; a
    redraw swaps the image. The G slider is disabled unless GN is picked (BN, LN and IN have no
    groups).
    CSS classes: `bnlib-norm-groups`, `bnlib-norm-method`, `bnlib-slider-groups`,
    `bnlib-norm-figure`, its caption `bnlib-figure-caption`.
    """

    GROUPS = (1, 2, 3, 6)

    def __init__(self, seed=0, dpi=DPI):
        import ipywidgets as w

        self.dpi = dpi
        rng = np.random.default_rng(seed)
        N, C = _CUBE_SHAPE[:2]
        # an activation whose channels differ in offset and scale, as in a real network
        self.x = rng.standard_normal(_CUBE_SHAPE) * rng.uniform(0.5, 3.0, (1, C, 1, 1))
        self.x += rng.uniform(-2.0, 2.0, (1, C, 1, 1))
        self.frames = {}
        for method in _GROUPINGS:
            for g in self.GROUPS if method == "GN" else (2,):
                self.frames[method, g] = self._render_frame(method, g)
        self.method = w.ToggleButtons(
            options=list(_GROUPINGS), value="BN", description=_("method")
        ).add_class("bnlib-norm-method")
        self.groups = w.SelectionSlider(
            options=self.GROUPS,
            value=2,
            description=_("G (GN)"),
            disabled=True,  # G only means something for GN: enabled when GN is picked
            continuous_update=False,
            style={"description_width": "6.5em"},
        ).add_class("bnlib-slider-groups")
        self._show("bnlib-norm-figure")
        self.caption.layout = w.Layout(width="26em", max_width="100%", margin="1.5em 0 0 1em")
        self.method.observe(self._on_method, "value")
        self.groups.observe(self._redraw, "value")
        self.widget = w.VBox(
            [self.method, self.groups, w.HBox([self.image, self.caption])]
        ).add_class("bnlib-norm-groups")

    def _on_method(self, _change=None):
        self.groups.disabled = self.method.value != "GN"
        self._redraw()

    def _key(self):
        method = self.method.value
        return method, (self.groups.value if method == "GN" else 2)

    def statistics(self, method=None, groups=None):
        """(values per statistic, number of (mean, var) pairs, the highlighted group's mean and
        variance) for the current controls or the given ones."""
        from bnlib.plots import shared_statistics

        method, groups = method or self._key()[0], groups or self._key()[1]
        mask = shared_statistics(method, _CUBE_SHAPE, _CUBE_INDEX, groups)
        N, C = _CUBE_SHAPE[:2]
        values = self.x[mask]
        return int(mask.sum()), _GROUPINGS[method][1](N, C, groups), values.mean(), values.var()

    def _render_frame(self, method, groups):
        import matplotlib as mpl
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from bnlib.plots import shared_statistics, tensor_cube

        mask = shared_statistics(method, _CUBE_SHAPE, _CUBE_INDEX, groups)
        N, C = _CUBE_SHAPE[:2]
        with mpl.rc_context(STYLE):
            fig = Figure(figsize=(3.6, 3.0), dpi=self.dpi)  # 288 x 240 px
            FigureCanvasAgg(fig)
            ax = fig.add_axes((0.0, 0.07, 1.0, 0.85), projection="3d")
            tensor_cube(ax, mask.reshape(N, C, -1), see_through=True)
            label = f"GN, G={groups}" if method == "GN" else method  # no words: any language
            fig.text(0.5, 0.97, label, ha="center", va="top", fontsize=11)
        return _png(fig)

    def caption_text(self):
        """The current method's statistics, in words (shown beside the cube)."""
        from bnlib.plots import NORM_FUNCTIONS

        method, groups = self._key()
        m, pairs, mean, var = self.statistics()
        name = NORM_FUNCTIONS[method][0] + (f", G={groups}" if method == "GN" else "")
        return "\n".join(
            [
                name,
                _("statistics over {axes}").format(axes=_(_GROUPINGS[method][0])),
                _("values sharing one mean and variance: {m}").format(m=m),
                _("(mean, variance) pairs for this {shape} input: {pairs}").format(
                    shape=_CUBE_SHAPE, pairs=pairs
                ),
                _("the blue group: mean {mean:+.2f}, variance {var:.2f}").format(
                    mean=mean, var=var
                ),
                _("depends on the other samples: yes")
                if method == "BN"
                else _("depends on the other samples: no"),
            ]
        )

    def summary(self):
        method, groups = self._key()
        m, pairs, mean, var = self.statistics()
        label = _("GN with G={groups}").format(groups=groups) if method == "GN" else method
        return (
            _(
                "Normalization groups explorer: {method}: statistics over {axes}; {m} values "
                "share each mean; {pairs} (mean, variance) pairs for an input of shape {shape}."
            ).format(
                method=label, axes=_(_GROUPINGS[method][0]), m=m, pairs=pairs, shape=_CUBE_SHAPE
            )
            + "\n"
            + _("(Run the notebook in Jupyter to use the controls.)")
        )

    def render(self):
        """The frame for the current controls (PNG bytes)."""
        return self.frames[self._key()]
