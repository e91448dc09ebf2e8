"""Progress bars for the lessons' longer experiments that leave a finished line behind.

tqdm's notebook bar is an ipywidget: the plain-text copy stored with the notebook is frozen at its
first state ("0%| 0/5"), and once the kernel is gone JupyterLab can only say "Error displaying
widget". `progress_bar` shows tqdm.auto's bar while the work runs and, when closed, replaces it
in place (a display update) with one line of text, e.g. "four norms: 30 of 30 done", so a stored
lesson reads as finished and reopens cleanly. Outside a notebook it is tqdm's ordinary text bar
(on stderr, gone when closed).

    bar = progress_bar(total=len(jobs), desc="four norms")
    for job in jobs:
        ...
        bar.update(1)
    bar.close()

    for seed in track(range(5), desc="seeds"):   # the same, around an iterable
        ...
"""

from __future__ import annotations

__all__ = ["progress_bar", "track"]


def progress_bar(total, desc):
    """A bar with update(n=1) and close(), like tqdm's; see the module docstring."""
    if total is None or int(total) != total or total < 0:
        raise ValueError(f"progress_bar: total must be a whole number >= 0, got {total!r}")
    from tqdm.auto import tqdm

    try:
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:  # no ipywidgets: tqdm.auto is the text bar anyway
        notebook_tqdm = None
    if notebook_tqdm is not None and issubclass(tqdm, notebook_tqdm):
        return _NotebookBar(tqdm, int(total), desc)
    return tqdm(total=int(total), desc=desc, leave=False)


def track(iterable, desc, total=None):
    """Yield the items of iterable while a progress_bar counts them; total defaults to its len()."""
    bar = progress_bar(total=len(iterable) if total is None else total, desc=desc)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


class _NotebookBar:
    """tqdm's widget bar in a display of our own, which close() overwrites with a text line."""

    def __init__(self, tqdm, total, desc):
        from IPython.display import display

        self._bar = tqdm(total=total, desc=desc, leave=False, display=False)
        self._handle = display(self._bar.container, display_id=True)
        self._desc, self._total, self._closed = desc, total, False

    def update(self, n=1):
        self._bar.update(n)

    def close(self):
        if self._closed:
            return
        self._closed = True
        done = self._bar.n
        self._bar.close()
        line = f"{self._desc}: {done} of {self._total} done"
        self._handle.update({"text/plain": line}, raw=True)
