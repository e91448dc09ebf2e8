"""Numpy references for torch.nn.functional's normalizations, forward and backward.

The four normalizations differ in one thing only: which axes share a mean and a variance.
`normalize` says that once; `batch_norm`, `layer_norm`, `instance_norm` and `group_norm` are thin
views of it (`rms_norm` is its sibling without the mean), with PyTorch's names, argument order,
defaults and semantics, including updating the running arrays in place (NB: the course's
exercises return new arrays instead).

Conventions, as PyTorch's (torch/nn/functional.py, aten's CPU kernels):
- statistics accumulate in float64; elementwise work is in float32 for float16 and float32 input
  (float64 for float64), and outputs keep the input's dtype;
- normalization uses the biased variance (divide by m), running_var stores the unbiased one
  (divide by m - 1), Ioffe & Szegedy 2015 Alg. 2;
- running = (1 - momentum) * running + momentum * batch_statistic, computed in float64 and
  rounded once into the running array's dtype;
- batch norm wants eps > 0 when it uses the batch's statistics (eps >= 0 otherwise); an empty
  batch gives an empty output and leaves the running arrays alone.
Bad input raises InputError, a ValueError and a RuntimeError at once (PyTorch raises either).

Shape legend: N batch, C channels, D features, G groups, * spatial (L, H, W, ...).
References: Ioffe & Szegedy 2015 (arXiv 1502.03167), Ba et al. 2016 (arXiv 1607.06450),
Ulyanov et al. 2016 (arXiv 1607.08022), Wu & He 2018 (arXiv 1803.08494).
"""

from __future__ import annotations

from math import prod

import numpy as np

__all__ = [
    "InputError",
    "normalize",
    "normalize_backward",
    "batch_norm",
    "layer_norm",
    "instance_norm",
    "group_norm",
    "rms_norm",
    "batch_norm_backward",
    "instance_norm_backward",
    "layer_norm_backward",
    "group_norm_backward",
]


class InputError(ValueError, RuntimeError):
    """Bad input to a normalization: a shape, a size or an argument that cannot work.

    Both a ValueError (what the course raises for bad input) and a RuntimeError (what PyTorch
    raises for most of these, e.g. "running_mean should contain 3 elements not 2"), so a learner's
    `except ValueError` and a PyTorch user's `except RuntimeError` both catch it. The message says
    what was expected and what came.
    """


# --- the one core --------------------------------------------------------------------------------


def normalize(x, axes, eps=1e-5):
    """Standardize over `axes`: xhat = (x - mean) / sqrt(var + eps), statistics in float64.

    x: any shape; axes: tuple of the axes that share one mean and one variance.
    Returns (xhat, mean, var): xhat with x's shape in x's working precision (float64 for float64
    x, float32 for float32 and float16 x); mean and var (biased, 1/m) in float64 with keepdims,
    so they broadcast against x. Sums accumulate in float64; the deviations x - mean are rounded
    to x's working precision before they are squared, so var is as accurate as x's precision.
    """
    x = _working(x)
    m = prod(x.shape[a] for a in axes)
    mean = _sum(x, axes) / m
    # Two passes (mean first, then the mean of squared deviations) stay exact for inputs with a
    # large offset and a tiny spread, where E[x^2] - E[x]^2 cancels catastrophically.
    # NB: x is centered on the mean rounded to x's precision, mean_x; what the rounding left,
    # shift = mean - mean_x, is exact in float64 and corrects the variance, since
    # mean((x - mean_x)^2) = var + shift^2 (the "corrected two-pass" algorithm, Chan, Golub &
    # LeVeque 1983). For float64 x, shift is 0.
    mean_x = mean.astype(x.dtype)
    shift = mean - mean_x
    xc = x - mean_x
    var = _sum(xc, axes, xc) / m - np.square(shift)
    xc -= shift.astype(x.dtype)
    xc *= _inverse_std(var, eps).astype(x.dtype)  # in place: xc becomes xhat
    return xc, mean, var


def _inverse_std(var, eps):
    """1 / sqrt(var + eps) in float64; inf or NaN where var + eps <= 0, as PyTorch, silently."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 / np.sqrt(var + eps)


def normalize_backward(grad_xhat, xhat, var, axes, eps=1e-5):
    """Gradient of the loss with respect to x through xhat = normalize(x, axes, eps).

    Closed form (Ioffe & Szegedy 2015 §3, simplified), with m values per group and means over
    `axes`:  dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps).
    The two subtracted terms are what the mean and the variance contribute, because both depend
    on every x in the group.
    grad_xhat, xhat: x's shape; var: the keepdims float64 variance from `normalize`.
    Returns dx in xhat's precision; the means accumulate in float64.
    """
    g = np.asarray(grad_xhat).astype(xhat.dtype, copy=False)
    m = prod(g.shape[a] for a in axes)
    mean_g = _sum(g, axes) / m
    mean_gx = _sum(g, axes, xhat) / m
    dx = xhat * mean_gx.astype(g.dtype)
    np.subtract(g, dx, out=dx)
    dx -= mean_g.astype(g.dtype)
    dx *= _inverse_std(var, eps).astype(g.dtype)
    return dx


def _sum(a, axes, b=None, keepdims=True):
    """sum(a) or sum(a * b) over `axes` (a tuple of non-negative axes), accumulated in float64.

    np.einsum accumulates in float64 as it goes, with no float64 copy of a and no temporary a * b
    (about 1.5x faster than np.sum(a * b, dtype=np.float64) on large float32 arrays).
    a, b: the same shape. Returns float64, with the summed axes kept as 1s when keepdims.
    """
    index = list(range(a.ndim))
    kept = [i for i in index if i not in axes]
    operands = [a, index] if b is None else [a, index, b, index]
    total = np.einsum(*operands, kept, dtype=np.float64)
    if keepdims:
        total = total.reshape([1 if i in axes else n for i, n in enumerate(a.shape)])
    return total


# --- input validation ----------------------------------------------------------------------------


def _float_array(fn, name, value):
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {a.dtype}")
    return a


def _input(fn, input, min_rank):
    x = _float_array(fn, "input", input)
    if x.ndim < min_rank:
        raise InputError(
            f"{fn}: expected input with at least {min_rank} dimensions, got shape {x.shape}"
        )
    return x


def _per_channel(fn, name, value, shape, *, running=False):
    """Check an optional weight, bias or running array against the shape it must have."""
    if value is None:
        return None
    if running and not isinstance(value, np.ndarray):
        raise TypeError(
            f"{fn}: {name} must be a numpy array (it is updated in place), "
            f"got {type(value).__name__}"
        )
    a = _float_array(fn, name, value)
    if a.shape != tuple(shape):
        raise InputError(f"{fn}: {name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def _working(a):
    """a as a float array to compute in: float64 stays, float16 and float32 become float32."""
    a = np.asarray(a)
    return a.astype(np.result_type(a.dtype, np.float32), copy=False)


def _channel_view(a, ndim):
    """(C,) -> (1, C, 1, ..., 1), to broadcast against an (N, C, *) input."""
    return a.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(xhat, weight, bias, shape):
    """y = xhat * weight + bias, in place in xhat (a fresh array); weight, bias: `shape`."""
    if weight is not None:
        xhat *= weight.reshape(shape)
    if bias is not None:
        xhat += bias.reshape(shape)
    return xhat


def _update_running(running_mean, running_var, mean, var_biased, count, momentum):
    """running = (1 - momentum) * running + momentum * batch, with the unbiased variance stored.

    Computed in float64 and rounded once into the running array's dtype (float16 arithmetic
    would round at every step and drift a unit further than PyTorch, which updates in float32).
    """
    if running_mean is not None:
        running_mean[...] = (1 - momentum) * running_mean.astype(np.float64) + momentum * mean
    if running_var is not None:
        # NB: Bessel's correction m / (m - 1) here only; the normalization itself used 1/m.
        unbiased = var_biased * count / (count - 1)
        running_var[...] = (1 - momentum) * running_var.astype(np.float64) + momentum * unbiased


def _check_eps(fn, eps, training):
    """PyTorch's rule for batch norm: eps > 0 with the batch's statistics, else eps >= 0."""
    if training and not eps > 0:
        raise InputError(
            f"{fn}: eps must be positive during training, got eps={eps} (a constant channel has "
            "variance 0, and 1 / sqrt(0 + eps) must stay finite)"
        )
    if not eps >= 0:
        raise InputError(f"{fn}: eps must be non-negative, got eps={eps}")


def _as_channels(fn, x):
    """x as (N, C, *): an empty 1-D input is read as (0, 0), no samples and no channels, as PyTorch
    reads it; any other input needs at least 2 dimensions."""
    if x.ndim == 1 and x.size == 0:
        return x.reshape(0, 0)
    if x.ndim < 2:
        raise InputError(f"{fn}: expected input with at least 2 dimensions, got shape {x.shape}")
    return x


# --- forward -------------------------------------------------------------------------------------


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
):
    """Batch normalization: y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.

    Per channel c, statistics over (N, *): the batch's when training (and then running_mean and
    running_var, if given, are updated IN PLACE with the unbiased variance), the running ones in
    evaluation.
    input: (N, C, *); running_mean, running_var: (C,) numpy arrays or None (None only when
    training); weight, bias: (C,) or None.
    Returns y, input's shape and dtype.
    Ioffe & Szegedy 2015, Alg. 1 (training) and Alg. 2 (inference).
    """
    fn = "batch_norm"
    given = _float_array(fn, "input", input)
    x = _as_channels(fn, given)
    C = x.shape[1]
    running_mean = _per_channel(fn, "running_mean", running_mean, (C,), running=True)
    running_var = _per_channel(fn, "running_var", running_var, (C,), running=True)
    weight = _per_channel(fn, "weight", weight, (C,))
    bias = _per_channel(fn, "bias", bias, (C,))
    axes = (0,) + tuple(range(2, x.ndim))  # every axis but C
    if training:
        _check_count(fn, x)
        _check_eps(fn, eps, training)
        if x.size == 0:  # NB: an empty batch has no statistics: nothing to normalize or to learn
            return np.zeros(given.shape, given.dtype)
        xhat, mean, var = normalize(x, axes, eps)
        _update_running(running_mean, running_var, mean.ravel(), var.ravel(), x.size // C, momentum)
    else:
        _check_eps(fn, eps, training)
        xhat = _running_xhat(fn, x, running_mean, running_var, eps, "training=False")
    shape = (1, C) + (1,) * (x.ndim - 2)
    y = _affine(xhat, weight, bias, shape).astype(x.dtype, copy=False)
    return y.reshape(given.shape)


def _check_count(fn, x):
    """Batch statistics need more than one value per channel: N * prod(*) != 1."""
    C = x.shape[1]
    if C and x.size // C == 1:
        raise InputError(
            f"{fn}: expected more than 1 value per channel when training, got input of shape "
            f"{x.shape}; a batch of one has no spread to normalize by (use eval mode, or a "
            "batch-independent norm such as layer_norm or group_norm)"
        )


def _running_xhat(fn, x, running_mean, running_var, eps, mode):
    """(x - running_mean) / sqrt(running_var + eps) per channel, in float64; x: (N, C, *)."""
    if running_mean is None or running_var is None:
        raise InputError(f"{fn}: running_mean and running_var are required when {mode}")
    mean = _channel_view(running_mean.astype(np.float64), x.ndim)
    var = _channel_view(running_var.astype(np.float64), x.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):  # as PyTorch: inf or NaN, silently
        return (x.astype(np.float64) - mean) / np.sqrt(var + eps)


def _normalized_axes(fn, x, normalized_shape):
    if isinstance(normalized_shape, int | np.integer):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(d) for d in normalized_shape)
    k = len(normalized_shape)
    if k == 0:
        raise InputError(
            f"{fn}: normalized_shape must name at least one dimension (the statistics are over "
            f"the last len(normalized_shape) axes), got normalized_shape=()"
        )
    if x.ndim < k or x.shape[x.ndim - k :] != normalized_shape:
        raise InputError(
            f"{fn}: normalized_shape={normalized_shape} must match the last dimensions of the "
            f"input, got input of shape {x.shape}"
        )
    return normalized_shape, tuple(range(x.ndim - k, x.ndim))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization: y = (x - mean) / sqrt(var + eps) * weight + bias.

    Per sample, statistics over the last len(normalized_shape) axes; the same at train and test.
    input: (*, *normalized_shape); weight, bias: normalized_shape or None.
    Returns y, input's shape and dtype.
    Ba et al. 2016, arXiv 1607.06450.
    """
    fn = "layer_norm"
    x = _input(fn, input, 1)
    normalized_shape, axes = _normalized_axes(fn, x, normalized_shape)
    weight = _per_channel(fn, "weight", weight, normalized_shape)
    bias = _per_channel(fn, "bias", bias, normalized_shape)
    xhat, _, _ = normalize(x, axes, eps)
    return _affine(xhat, weight, bias, normalized_shape).astype(x.dtype, copy=False)


def instance_norm(
    input,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
):
    """Instance normalization: y = (x - mean_nc) / sqrt(var_nc + eps) * weight_c + bias_c.

    Per sample and channel, statistics over the spatial axes (*). With use_input_stats and
    running arrays given, they are updated IN PLACE with the batch average of the per-instance
    statistics; with use_input_stats=False the running statistics are used instead.
    input: (N, C, *); running_mean, running_var, weight, bias: (C,) or None.
    Returns y, input's shape and dtype.
    Ulyanov et al. 2016, arXiv 1607.08022.
    """
    fn = "instance_norm"
    x = _input(fn, input, 2)
    C = x.shape[1]
    running_mean = _per_channel(fn, "running_mean", running_mean, (C,), running=True)
    running_var = _per_channel(fn, "running_var", running_var, (C,), running=True)
    weight = _per_channel(fn, "weight", weight, (C,))
    bias = _per_channel(fn, "bias", bias, (C,))
    axes = tuple(range(2, x.ndim))  # the spatial axes
    if use_input_stats:
        count = _check_spatial(fn, x)
        xhat, mean, var = normalize(x, axes, eps)
        if x.shape[0]:  # an empty batch has no statistics to learn from
            _update_running(  # (N, C, 1, ...) -> (C,): the batch average of per-instance statistics
                running_mean,
                running_var,
                mean.reshape(x.shape[:2]).mean(axis=0),
                var.reshape(x.shape[:2]).mean(axis=0),
                count,
                momentum,
            )
    else:
        xhat = _running_xhat(fn, x, running_mean, running_var, eps, "use_input_stats=False")
    shape = (1, C) + (1,) * (x.ndim - 2)
    return _affine(xhat, weight, bias, shape).astype(x.dtype, copy=False)


def _check_spatial(fn, x):
    """Instance statistics need more than one spatial element: prod(*) > 1. Returns prod(*)."""
    count = prod(x.shape[2:])
    if count == 1:
        raise InputError(
            f"{fn}: expected more than 1 spatial element when training, got input of shape "
            f"{x.shape}"
        )
    return count


def _groups(fn, x, num_groups):
    """G, checked to divide C; and, as PyTorch, more than one value in N * (C/G * prod(*))."""
    N, C = x.shape[:2]
    G = int(num_groups)
    if G <= 0 or C % G:
        raise InputError(f"{fn}: num_groups={G} must divide the {C} channels of input {x.shape}")
    if N * (C // G) * prod(x.shape[2:]) == 1:
        raise InputError(
            f"{fn}: expected more than 1 value per group, got input of shape {x.shape} with "
            f"num_groups={G}; a group of one value has no spread to normalize by"
        )
    return G


def _grouped(x, G):
    """(N, C, *) -> (N, G, C/G * prod(*)); explicit sizes, so an empty batch reshapes too."""
    N, C = x.shape[:2]
    return x.reshape(N, G, C // G * prod(x.shape[2:]))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalization: y = (x - mean_ng) / sqrt(var_ng + eps) * weight_c + bias_c.

    Per sample, statistics over (C/G, *) for each of the G groups of consecutive channels.
    G = 1 is layer norm over (C, *); G = C is instance norm.
    input: (N, C, *); num_groups divides C; weight, bias: (C,) or None.
    Returns y, input's shape and dtype.
    Wu & He 2018, arXiv 1803.08494.
    """
    fn = "group_norm"
    x = _input(fn, input, 2)
    N, C = x.shape[:2]
    G = _groups(fn, x, num_groups)
    weight = _per_channel(fn, "weight", weight, (C,))
    bias = _per_channel(fn, "bias", bias, (C,))
    xhat, _, _ = normalize(_grouped(x, G), (2,), eps)  # (N, G, C/G * prod(*))
    shape = (1, C) + (1,) * (x.ndim - 2)
    return _affine(xhat.reshape(x.shape), weight, bias, shape).astype(x.dtype, copy=False)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """RMS normalization: y = x / sqrt(mean(x^2) + eps) * weight, per sample over the last
    len(normalized_shape) axes. No mean is subtracted and there is no bias: it rescales but does
    not re-center. eps=None uses the machine epsilon of the input's dtype, as PyTorch does.
    input: (*, *normalized_shape); weight: normalized_shape or None.
    Returns y, input's shape and dtype.
    Zhang & Sennrich 2019, arXiv 1910.07467.
    """
    fn = "rms_norm"
    x = _input(fn, input, 1)
    normalized_shape, axes = _normalized_axes(fn, x, normalized_shape)
    weight = _per_channel(fn, "weight", weight, normalized_shape)
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    xw = _working(x)
    mean_square = _sum(xw, axes, xw) / prod(normalized_shape)  # float64, keepdims
    y = xw * (1.0 / np.sqrt(mean_square + eps)).astype(xw.dtype)  # a fresh array
    return _affine(y, weight, None, normalized_shape).astype(x.dtype, copy=False)


# --- backward (training mode: the statistics are the batch's own) --------------------------------


def _param_grads(dy, xhat, axes, weight):
    """grad_weight = sum(dy * xhat), grad_bias = sum(dy) over `axes`; None without an affine."""
    if weight is None:
        return None, None
    return _sum(dy, axes, xhat, keepdims=False), _sum(dy, axes, keepdims=False)


def _grad_output(fn, grad_output, x):
    dy = _float_array(fn, "grad_output", grad_output)
    if dy.shape != x.shape:
        raise InputError(f"{fn}: grad_output must have the input's shape {x.shape}, got {dy.shape}")
    return _working(dy)


def batch_norm_backward(
    grad_output,
    input,
    weight=None,
    eps=1e-5,
    *,
    running_mean=None,
    running_var=None,
    training=True,
):
    """Gradients of batch_norm with respect to input, weight and bias.

    Training (the batch's statistics), with m values per channel and sums over (N, *):
        grad_bias = sum(dy),  grad_weight = sum(dy * xhat),
        grad_input = weight / sqrt(var + eps) * (dy - (grad_bias + xhat * grad_weight) / m).
    This is normalize_backward with dxhat = dy * weight: the weight is constant over the values
    that share statistics, so it factors out, and the two means there are the parameter
    gradients divided by m.
    Evaluation (training=False, the running statistics, constants): batch norm is the per-channel
    affine map y = weight * (x - running_mean) / sqrt(running_var + eps) + bias, so
        grad_input = weight / sqrt(running_var + eps) * dy, and the same grad_weight, grad_bias
    with xhat = (x - running_mean) / sqrt(running_var + eps).
    input, grad_output: (N, C, *); weight, running_mean, running_var: (C,) or None (the running
    statistics are required when training=False).
    Returns (grad_input, grad_weight, grad_bias): input's shape, (C,), (C,); the last two are None
    when weight is None (no affine).
    Ioffe & Szegedy 2015, §3 (training) and Alg. 2 (inference).
    """
    fn = "batch_norm_backward"
    given = _float_array(fn, "input", input)
    x = _as_channels(fn, given)
    C = x.shape[1]
    weight = _per_channel(fn, "weight", weight, (C,))
    running_mean = _per_channel(fn, "running_mean", running_mean, (C,))
    running_var = _per_channel(fn, "running_var", running_var, (C,))
    dy = _grad_output(fn, grad_output, given).reshape(x.shape)
    _check_eps(fn, eps, training)
    if not training:
        xhat = _running_xhat(fn, x, running_mean, running_var, eps, "training=False")
        inv_std = _inverse_std(running_var.astype(np.float64), eps)  # (C,)
        dx, dw, db = _affine_backward(dy, x, xhat, inv_std, weight)
        return dx.reshape(given.shape), dw, db
    _check_count(fn, x)
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // C if C else 0
    if m == 0:  # an empty batch: every gradient is a sum over nothing
        dx, dw, db = _affine_backward(dy, x, np.zeros(x.shape), np.zeros(C), weight)
        return dx.reshape(given.shape), dw, db
    xhat, _, var = normalize(x, axes, eps)
    grad_bias = _sum(dy, axes, keepdims=False)  # (C,)
    grad_weight = _sum(dy, axes, xhat, keepdims=False)  # (C,)
    scale = _inverse_std(var.ravel(), eps)  # (C,)
    if weight is not None:
        scale = scale * weight

    def channels(a):  # (C,) float64 -> (1, C, 1, ...) in dy's precision
        return _channel_view(a, x.ndim).astype(dy.dtype)

    dx = xhat  # computed in place: xhat is not needed any more
    dx *= channels(grad_weight / m)
    np.subtract(dy, dx, out=dx)
    dx -= channels(grad_bias / m)
    dx *= channels(scale)
    if weight is None:
        return _cast(dx, x.dtype), None, None
    return _cast(dx, x.dtype), _cast(grad_weight, x.dtype), _cast(grad_bias, x.dtype)


def _affine_backward(dy, x, xhat, inv_std, weight):
    """Gradients of y = weight * xhat + bias with xhat = (x - mean) * inv_std, where mean and
    inv_std (C,) are constants (the running statistics). dy, x, xhat: (N, C, *)."""
    scale = inv_std if weight is None else inv_std * weight  # (C,) float64
    dx = dy * _channel_view(scale, x.ndim).astype(dy.dtype)
    if weight is None:
        return _cast(dx, x.dtype), None, None
    axes = (0,) + tuple(range(2, x.ndim))
    dw, db = _param_grads(dy, xhat, axes, weight)
    return _cast(dx, x.dtype), _cast(dw, x.dtype), _cast(db, x.dtype)


def instance_norm_backward(
    grad_output,
    input,
    weight=None,
    eps=1e-5,
    *,
    running_mean=None,
    running_var=None,
    use_input_stats=True,
):
    """Gradients of instance_norm with respect to input, weight and bias.

    With use_input_stats (each instance's own statistics over the spatial axes *), this is
    normalize_backward per sample and channel with dxhat = dy * weight_c; grad_weight and
    grad_bias sum dy * xhat and dy over (N, *). With use_input_stats=False the running statistics
    are constants and the gradients are batch_norm_backward(..., training=False)'s.
    input, grad_output: (N, C, *); weight, running_mean, running_var: (C,) or None.
    Returns (grad_input, grad_weight, grad_bias), None for the last two when weight is None.
    Ulyanov et al. 2016, arXiv 1607.08022.
    """
    fn = "instance_norm_backward"
    x = _input(fn, input, 2)
    C = x.shape[1]
    weight = _per_channel(fn, "weight", weight, (C,))
    running_mean = _per_channel(fn, "running_mean", running_mean, (C,))
    running_var = _per_channel(fn, "running_var", running_var, (C,))
    dy = _grad_output(fn, grad_output, x)
    if not use_input_stats:
        xhat = _running_xhat(fn, x, running_mean, running_var, eps, "use_input_stats=False")
        inv_std = _inverse_std(running_var.astype(np.float64), eps)  # (C,)
        return _affine_backward(dy, x, xhat, inv_std, weight)
    _check_spatial(fn, x)
    axes = tuple(range(2, x.ndim))  # the spatial axes
    xhat, _, var = normalize(x, axes, eps)
    dxhat = dy if weight is None else dy * _channel_view(weight, x.ndim).astype(dy.dtype)
    dx = normalize_backward(dxhat, xhat, var, axes, eps)
    dw, db = _param_grads(dy, xhat, (0, *axes), weight)
    return _cast(dx, x.dtype), _cast(dw, x.dtype), _cast(db, x.dtype)


def layer_norm_backward(grad_output, input, normalized_shape, weight=None, eps=1e-5):
    """Gradients of layer_norm with respect to input, weight and bias.

    input, grad_output: (*, *normalized_shape); weight: normalized_shape or None.
    Returns (grad_input, grad_weight, grad_bias), None for the last two when weight is None.
    """
    fn = "layer_norm_backward"
    x = _input(fn, input, 1)
    normalized_shape, axes = _normalized_axes(fn, x, normalized_shape)
    weight = _per_channel(fn, "weight", weight, normalized_shape)
    dy = _grad_output(fn, grad_output, x)
    xhat, _, var = normalize(x, axes, eps)
    dxhat = dy if weight is None else dy * weight
    dx = normalize_backward(dxhat, xhat, var, axes, eps)
    batch_axes = tuple(range(x.ndim - len(normalized_shape)))
    dw, db = _param_grads(dy, xhat, batch_axes, weight)
    return _cast(dx, x.dtype), _cast(dw, x.dtype), _cast(db, x.dtype)


def group_norm_backward(grad_output, input, num_groups, weight=None, eps=1e-5):
    """Gradients of group_norm with respect to input, weight and bias.

    input, grad_output: (N, C, *); weight: (C,) or None.
    Returns (grad_input, grad_weight, grad_bias), None for the last two when weight is None.
    """
    fn = "group_norm_backward"
    x = _input(fn, input, 2)
    N, C = x.shape[:2]
    G = _groups(fn, x, num_groups)
    weight = _per_channel(fn, "weight", weight, (C,))
    dy = _grad_output(fn, grad_output, x)
    shape = (1, C) + (1,) * (x.ndim - 2)
    xhat, _, var = normalize(_grouped(x, G), (2,), eps)  # (N, G, C/G * prod(*))
    dxhat = dy if weight is None else dy * weight.reshape(shape)
    dx = normalize_backward(_grouped(dxhat, G), xhat, var, (2,), eps).reshape(x.shape)
    channel_axes = (0,) + tuple(range(2, x.ndim))
    dw, db = _param_grads(dy, xhat.reshape(x.shape), channel_axes, weight)
    return _cast(dx, x.dtype), _cast(dw, x.dtype), _cast(db, x.dtype)


def _cast(a, dtype):
    return None if a is None else a.astype(dtype, copy=False)
