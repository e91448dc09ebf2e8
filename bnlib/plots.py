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
