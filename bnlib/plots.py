"""The course's one matplotlib style, and the plot helpers that grow out of the lessons.

Every helper draws on an Axes it is given (or makes one) and returns it, so a notebook cell
stays short: `ax = percentile_ribbons(steps, values); plt.show()`.
"""

import numpy as np

__all__ = ["STYLE", "use_style", "percentile_ribbons", "layer_histograms"]

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.prop_cycle": __import__("cycler").cycler(
        color=["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    ),
}


def use_style():
    """Apply the course style to matplotlib's global settings (call once at a notebook's top)."""
    import matplotlib as mpl

    mpl.rcParams.update(STYLE)


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def percentile_ribbons(
    steps, values, percentiles=(15, 50, 85), ax=None, label=None, color=None, ylabel="value"
):
    """Draw the median over training steps with a band from the lowest to the highest percentile.

    steps: (T,) step numbers; values: (T, M) values recorded at each step (M samples, e.g. one
    unit's input over a batch). As Ioffe & Szegedy 2015, Fig. 1 (b, c): 15th, 50th, 85th.
    Returns the Axes.
    """
    ax = _axes(ax)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != len(steps):
        raise ValueError(
            f"percentile_ribbons: values must have shape (len(steps), M) = ({len(steps)}, M), "
            f"got {values.shape}"
        )
    lo, mid, hi = np.percentile(values, [percentiles[0], percentiles[1], percentiles[-1]], axis=1)
    (line,) = ax.plot(steps, mid, color=color, label=label)
    ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend()
    return ax


def layer_histograms(activations, bins=40, axes=None, title=None):
    """One histogram per layer, side by side, sharing the x axis.

    activations: dict {layer name: array of values}. Returns the array of Axes.
    """
    import matplotlib.pyplot as plt

    names = list(activations)
    if not names:
        raise ValueError("layer_histograms: no layers given")
    if axes is None:
        fig, axes = plt.subplots(
            1, len(names), figsize=(2.4 * len(names), 2.4), sharex=True, squeeze=False
        )
        axes = axes[0]
        if title:
            fig.suptitle(title)
    for ax, name in zip(axes, names, strict=True):
        ax.hist(np.ravel(activations[name]), bins=bins, color="#1f77b4", alpha=0.8)
        ax.set_title(name)
        ax.set_yticks([])
    axes[0].set_ylabel("count")
    return axes


# --- lesson 1: what BN computes (feature strips, the axes that share a mean, the graph) ----------

__all__ += ["feature_strips", "feature_grid", "tensor_cube", "bn_axes_figure", "bn_graph"]

_HIGHLIGHT = "#1f77b4"
_PLAIN = "#e6e6e6"


def feature_strips(stages, axes=None, spread=0.0):
    """One panel per stage of a batch, each feature's N values as dots, its mean as a bar.

    stages: dict {title: (N, D) array}, e.g. {"x": x, "x̂": xhat, "y": y}. spread: sample i is
    drawn shifted sideways within its feature's strip, from -spread/2 (the first) to +spread/2
    (the last), so equal values stay visible and a sample sits at the same place in every panel;
    0 (the default) draws them all on the strip's center line. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    names = list(stages)
    if not names:
        raise ValueError("feature_strips: no stages given")
    if axes is None:
        fig, axes = plt.subplots(
            1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False, layout="constrained"
        )
        axes = axes[0]
    for ax, name in zip(axes, names, strict=True):
        v = np.asarray(stages[name], dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"feature_strips: stage {name!r} must be (N, D), got {v.shape}")
        N, D = v.shape
        offsets = spread * (np.arange(N) / max(N - 1, 1) - 0.5)  # (N,) sideways, per sample
        for j in range(D):
            color = f"C{j}"
            ax.plot(j + offsets, v[:, j], "o", color=color, alpha=0.8, markersize=6)
            ax.plot([j - 0.3, j + 0.3], [v[:, j].mean()] * 2, color=color, linewidth=2.5)
        ax.set_xticks(range(D), [f"feature {j}" for j in range(D)])
        ax.set_xlim(-0.6, D - 0.4)
        ax.set_title(name)
    from matplotlib.lines import Line2D

    axes[0].set_ylabel("value")
    handles = [
        Line2D([], [], marker="o", linestyle="", color="0.4", label="one sample"),
        Line2D([], [], color="0.4", linewidth=2.5, label="batch mean of the feature"),
    ]
    axes[0].figure.legend(handles=handles, loc="outside upper center", ncols=2)
    return axes


def feature_grid(ax, highlight, row_label="N (samples)", col_label="D (features)"):
    """Draw a 2-D array as a grid of cells, coloring the cells where `highlight` is True.

    highlight: (rows, cols) bool, e.g. the cells that share one mean. Returns the Axes.
    """
    from matplotlib.patches import Rectangle

    highlight = np.asarray(highlight, dtype=bool)
    rows, cols = highlight.shape
    for i in range(rows):
        for j in range(cols):
            color = _HIGHLIGHT if highlight[i, j] else _PLAIN
            ax.add_patch(Rectangle((j, rows - 1 - i), 1, 1, facecolor=color, edgecolor="0.35"))
    ax.set_xlim(-1.2, cols + 0.2)
    ax.set_ylim(-1.2, rows + 0.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.annotate("", (cols, -0.5), (0, -0.5), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(cols / 2, -1.1, col_label, ha="center", va="center")
    ax.annotate("", (-0.5, 0), (-0.5, rows), arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(-0.9, rows / 2, row_label, ha="center", va="center", rotation=90)
    return ax


def tensor_cube(ax, highlight, axis_labels=("N", "C", "H, W"), see_through=False):
    """Draw an (N, C, S) tensor as a cube of cells on a 3-D Axes, highlighted cells in blue.

    As Wu & He 2018, Fig. 2: the spatial axes (L, or H and W) are flattened into one axis S.
    ax: an Axes made with projection="3d"; highlight: (N, C, S) bool, e.g. the values that
    share one mean. Only the outer faces show, so an inner slice shows as stripes on them;
    see_through=True draws the other cells faint and without edges, so inner cells show.
    Returns the Axes.
    """
    from matplotlib.colors import to_rgba

    highlight = np.asarray(highlight, dtype=bool)
    if highlight.ndim != 3:
        raise ValueError(f"tensor_cube: highlight must be (N, C, S), got {highlight.shape}")
    N, C, S = highlight.shape
    plain = to_rgba(_PLAIN, alpha=0.12 if see_through else 1.0)
    faces = np.where(highlight[..., None], to_rgba(_HIGHLIGHT), plain)  # (N, C, S, 4)
    if see_through:  # the faint cells' edges only as a wire frame of the whole tensor
        ax.voxels(~highlight, facecolors=faces, edgecolor=(0, 0, 0, 0.08), linewidth=0.4)
        ax.voxels(highlight, facecolors=faces, edgecolor="0.2", linewidth=0.6, shade=False)
    else:
        ax.voxels(
            np.ones_like(highlight), facecolors=faces, edgecolor="0.3", linewidth=0.6, shade=False
        )
    ax.set_box_aspect((N, C, S))
    ax.view_init(elev=22, azim=-58)
    ax.set_axis_off()
    ax.text(N / 2, -0.3, -1.1, axis_labels[0], ha="center", va="center")
    ax.text(N + 0.3, C / 2, -1.1, axis_labels[1], ha="center", va="center")
    ax.text(-0.4, -0.3, S / 2, axis_labels[2], ha="right", va="center")
    return ax


def bn_axes_figure(channel=1):
    """Which values share one mean in batch norm, for (N, D), (N, C, L) and (N, C, H, W) inputs.

    Three panels: a grid with feature `channel` highlighted over the batch, and two cubes with
    channel `channel` highlighted over the batch and all positions. Returns the Figure.
    Ioffe & Szegedy 2015, §3.2; drawn as Wu & He 2018, Fig. 2.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(10, 3.6))
    ax = fig.add_subplot(1, 3, 1)
    grid = np.zeros((5, 4), dtype=bool)  # (N, D)
    grid[:, channel] = True
    feature_grid(ax, grid)
    ax.set_title("(N, D): mean over N\none mean per feature", fontsize=10)
    cube = np.zeros((4, 4, 5), dtype=bool)  # (N, C, S)
    cube[:, channel, :] = True
    titles = [
        "(N, C, L): mean over (N, L)\none mean per channel",
        "(N, C, H, W): mean over (N, H, W)\none mean per channel",
    ]
    for k, (labels, title) in enumerate(
        zip([("N", "C", "L"), ("N", "C", "H, W")], titles, strict=True), 2
    ):
        ax = fig.add_subplot(1, 3, k, projection="3d")
        tensor_cube(ax, cube, labels)
        ax.set_title(title, fontsize=10, y=0.98)
    fig.suptitle("Batch norm: the blue values share one mean and one variance", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.06, top=0.8, wspace=0.05)
    return fig


# Node: name -> (x, y, label, shape). The forward pass of Ioffe & Szegedy 2015, Alg. 1, one
# operation per node, as in Kratzert's "Understanding the backward pass through BN" (2016).
_BN_NODES = {
    "x": (0.0, 1.0, "x", "(N, D)"),
    "mu": (1.3, 0.0, "μ = mean(x)", "(D,)"),
    "xc": (2.6, 1.0, "xc = x − μ", "(N, D)"),
    "var": (3.8, 0.0, "σ² = mean(xc²)", "(D,)"),
    "std": (5.3, 0.0, "s = √(σ² + ε)", "(D,)"),
    "xhat": (6.5, 1.0, "x̂ = xc / s", "(N, D)"),
    "params": (7.0, 0.0, "γ, β", "(D,)"),
    "y": (8.0, 1.0, "y = γ·x̂ + β", "(N, D)"),
}
_BN_EDGES = [
    ("x", "mu"),
    ("x", "xc"),
    ("mu", "xc"),
    ("xc", "var"),
    ("var", "std"),
    ("xc", "xhat"),
    ("std", "xhat"),
    ("xhat", "y"),
    ("params", "y"),
]


def bn_graph(ax=None):
    """The computational graph of batch norm's forward pass, one operation per box.

    Boxes with two outgoing arrows (x and xc) are drawn with a red edge: in the backward pass
    their gradient is the sum of what comes back along both arrows. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 2.8))
    sources = [a for a, _ in _BN_EDGES]
    fanout = {n for n in sources if sources.count(n) > 1}
    boxes = {}
    for name, (x, y, label, shape) in _BN_NODES.items():
        edge = "#d62728" if name in fanout else "0.3"
        style = dict(boxstyle="round,pad=0.35", facecolor="white", edgecolor=edge)
        boxes[name] = ax.text(x, y, label, ha="center", va="center", bbox=style, zorder=3)
        dy = 0.3 if y > 0.5 else -0.3  # shapes outside the band the arrows cross
        ax.text(x, y + dy, shape, ha="center", va="center", fontsize=8, color="0.4")
    for a, b in _BN_EDGES:
        ya, yb = _BN_NODES[a][1], _BN_NODES[b][1]
        # Anchors in each label's own (0..1, 0..1) box, so arrowheads land on the boxes' edges.
        if ya == yb:
            start, end = (1.0, 0.5), (0.0, 0.5)
        elif ya > yb:
            start, end = (0.65, 0.0), (0.35, 1.0)
        else:
            start, end = (0.65, 1.0), (0.35, 0.0)
        arrow = dict(arrowstyle="-|>", color="0.3", linewidth=1.2, shrinkA=5, shrinkB=5)
        ax.annotate(
            "", end, start, xycoords=boxes[b], textcoords=boxes[a], arrowprops=arrow, zorder=2
        )
    ax.set_xlim(-0.4, 8.7)
    ax.set_ylim(-0.45, 1.45)
    ax.set_axis_off()
    ax.set_title(
        "Forward: follow the arrows.  Backward: walk them in reverse;\n"
        "a red box is used twice, so its gradient is the sum of the two that come back",
        fontsize=10,
    )
    return ax


# --- lesson 4: small batches --------------------------------------------------------------------

__all__ += ["WU_HE_IMAGENET", "NORM_COLORS", "error_vs_batch", "wu_he_panel"]

# Wu & He 2018 (arXiv 1803.08494), Fig. 1 / Table 2: ResNet-50 ImageNet top-1 error (%) against
# images per GPU.
WU_HE_IMAGENET = {
    "batch_sizes": (32, 16, 8, 4, 2),
    "BN": (23.6, 23.7, 24.8, 27.3, 34.7),
    "GN": (24.1, 24.2, 24.0, 24.2, 24.1),
}


NORM_COLORS = {"BN": "#1f77b4", "LN": "#d62728", "GN": "#2ca02c", "none": "#ff7f0e"}


def error_vs_batch(
    batch_sizes, errors, labels, ax=None, ylabel="test error (%)", title=None, colors=None
):
    """Error against batch size, one line per method, the batch axis reversed as in Wu & He's
    Fig. 1 (large batches on the left). errors: (methods, batch sizes, seeds) or (methods,
    batch sizes); with seeds, the line is the mean and the band mean ± std. colors: one per
    method (default: the style's cycle). Returns the Axes.
    """
    ax = _axes(ax)
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim == 2:
        errors = errors[..., None]
    if errors.shape[:2] != (len(labels), len(batch_sizes)):
        raise ValueError(
            f"error_vs_batch: errors must have shape ({len(labels)}, {len(batch_sizes)}[, seeds]),"
            f" got {errors.shape}"
        )
    colors = colors or [None] * len(labels)
    for label, e, color in zip(labels, errors, colors, strict=True):
        mean, std = e.mean(axis=1), e.std(axis=1)
        (line,) = ax.plot(batch_sizes, mean, "o-", label=label, markersize=4, color=color)
        if errors.shape[2] > 1:
            ax.fill_between(batch_sizes, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(n) for n in batch_sizes])
    ax.minorticks_off()
    ax.set_xlim(max(batch_sizes) * 1.3, min(batch_sizes) / 1.3)  # reversed: small batches right
    ax.set_xlabel("batch size (samples per batch)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def wu_he_panel(ax=None):
    """Wu & He 2018's ImageNet numbers (ResNet-50, top-1 error vs images per GPU), for scale."""
    d = WU_HE_IMAGENET
    ax = error_vs_batch(
        d["batch_sizes"],
        [d["BN"], d["GN"]],
        ["BN", "GN"],
        ax=ax,
        colors=[NORM_COLORS["BN"], NORM_COLORS["GN"]],
        title="ImageNet, ResNet-50 (Wu & He 2018, Fig. 1)",
    )
    ax.set_xlabel("batch size (images per GPU)")
    return ax


# --- lesson 3: inside training (percentile bands, gradient norms per layer) ---------------------

__all__ += ["percentile_band", "layer_grad_norms", "seed_band"]


def percentile_band(
    steps,
    pct,
    ax=None,
    label=None,
    color=None,
    ylabel="input to the sigmoid",
    band_alpha=0.25,
    band_label=None,
    band_linewidth=0.0,
):
    """Draw precomputed percentiles over training: the middle one as a line, a band between the
    lowest and the highest. steps: (T,); pct: (T, Q), Q >= 2 (e.g. 15th, 50th, 85th), as
    Ioffe & Szegedy 2015, Fig. 1 (b, c). label, band_label: legend entries of the line and of the
    band (a legend is drawn if either is given); band_alpha: the band's opacity; band_linewidth:
    the width of its outline, in its colour (an outline keeps a band that jumps from step to step
    visible where the steps are narrower than a pixel). Returns the Axes."""
    ax = _axes(ax)
    pct = np.asarray(pct, dtype=np.float64)
    if pct.ndim != 2 or pct.shape[0] != len(steps) or pct.shape[1] < 2:
        raise ValueError(
            f"percentile_band: pct must have shape (len(steps), Q >= 2) = ({len(steps)}, Q), "
            f"got {pct.shape}"
        )
    (line,) = ax.plot(steps, pct[:, pct.shape[1] // 2], color=color, label=label, linewidth=1.2)
    ax.fill_between(
        steps,
        pct[:, 0],
        pct[:, -1],
        color=line.get_color(),
        alpha=band_alpha,
        linewidth=band_linewidth,
        edgecolor=line.get_color(),
        label=band_label,
    )
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if label is not None or band_label is not None:
        ax.legend()
    return ax


def layer_grad_norms(norms, ax=None, title=None, xlabel="layer (1 = input side)"):
    """Gradient norm per layer on a log scale, one line per entry of norms = {label: (L,) array}.

    Returns the Axes."""
    ax = _axes(ax)
    for label, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        ax.semilogy(np.arange(1, len(values) + 1), values, "o-", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("‖∂L/∂W‖ (log scale)")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def seed_band(x, values, ax=None, label=None, color=None, logy=False):
    """One experiment repeated over seeds: the median over the seeds as a line with markers, and
    a band from the lowest to the highest seed. x: (M,); values: (S, M), one row per seed.
    logy: a log-scaled y axis. Returns the Axes."""
    ax = _axes(ax)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(x):
        raise ValueError(
            f"seed_band: values must have shape (seeds, len(x)) = (S, {len(x)}), got {values.shape}"
        )
    (line,) = ax.plot(x, np.median(values, 0), "o-", markersize=3, color=color, label=label)
    ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
    if logy:
        ax.set_yscale("log")
    if label is not None:
        ax.legend()
    return ax


# --- lesson 5: which values share statistics, in each normalization -------------------------------

__all__ += ["NORM_FUNCTIONS", "shared_statistics", "norm_cubes"]


def _bn(x, groups):
    from bnlib import functional as F

    return F.batch_norm(x, None, None, training=True)


def _ln(x, groups):
    from bnlib import functional as F

    return F.layer_norm(x, x.shape[1:])


def _in(x, groups):
    from bnlib import functional as F

    return F.instance_norm(x)


def _gn(x, groups):
    from bnlib import functional as F

    return F.group_norm(x, groups)


# name -> (title, f(x, groups)): bnlib.functional's implementations, training mode
NORM_FUNCTIONS = {
    "BN": ("Batch Norm", _bn),
    "LN": ("Layer Norm", _ln),
    "IN": ("Instance Norm", _in),
    "GN": ("Group Norm", _gn),
}


def shared_statistics(method, shape=(4, 6, 2, 3), index=(1, 2, 0, 0), groups=2, seed=0):
    """Which values of an (N, C, H, W) input share one mean and variance with the value at
    `index`, found by asking the implementation itself: nudge that one input value and mark
    every output that moves (a value's output depends on the other values only through its
    group's statistics). method: a key of NORM_FUNCTIONS. Returns a bool array of `shape`."""
    f = NORM_FUNCTIONS[method][1]
    x = np.random.default_rng(seed).standard_normal(shape)
    nudged = x.copy()
    nudged[index] += 1.0
    return np.abs(f(nudged, groups) - f(x, groups)) > 1e-9


def norm_cubes(methods=("BN", "LN", "IN", "GN"), groups=2, shape=(4, 6, 2, 3), index=(1, 2, 0, 0)):
    """Wu & He 2018's Fig. 2, computed: for each method, the cube (N, C, H*W) with the values
    that share statistics with one value highlighted (`shared_statistics`). Returns the Figure."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.9 * len(methods), 3.2))
    for k, method in enumerate(methods, 1):
        mask = shared_statistics(method, shape, index, groups)
        ax = fig.add_subplot(1, len(methods), k, projection="3d")
        tensor_cube(ax, mask.reshape(shape[0], shape[1], -1), see_through=True)
        title = NORM_FUNCTIONS[method][0] + (f" (G={groups})" if method == "GN" else "")
        ax.set_title(f"{title}\n{int(mask.sum())} values share a mean", fontsize=10, y=1.0)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.82, wspace=0.02)
    return fig
