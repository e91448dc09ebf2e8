"""Numeric gradients by central differences, and the relative error used to compare gradients.

In the style of CS231n's gradient_check.py, in one place instead of copied into every notebook.
NB: check with a random upstream gradient. An all-ones upstream gradient gives dx = 0 for any
batch norm (the normalized outputs of a channel sum to zero), so it hides bugs.
"""

import numpy as np

__all__ = ["numeric_gradient", "rel_error"]


def numeric_gradient(f, x, dout, h=1e-5):
    """d(sum(f(x) * dout)) / dx by central differences: (f(x + h) - f(x - h)) / 2h per entry.

    f: a function of the array x (it may read x, which is perturbed in place and restored);
    x: float array, any shape; dout: the upstream gradient, f(x)'s shape.
    Returns an array of x's shape. Use float64: in float32, h = 1e-5 drowns in rounding.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"numeric_gradient: x must be a floating-point array, got {x.dtype}")
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: perturbing it perturbs x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old - h
        minus = np.sum(np.asarray(f(x), dtype=np.float64) * dout)
        flat[i] = old
        grad.reshape(-1)[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b):
    """max |a - b| / max(|a| + |b|, 1e-8): about 1e-8 or less for a correct float64 gradient."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))
