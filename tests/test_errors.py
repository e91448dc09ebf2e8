"""Every error path of bnlib.functional and bnlib.nn: the exception, its message, and PyTorch's.

Each case names bnlib's call, the exception it must raise, a pattern its message must match (what
was expected and what came), and, where PyTorch rejects the same input, PyTorch's call, which must
raise too, so the two keep refusing the same conditions. bnlib's ValueErrors are
bnlib.functional.InputError, a ValueError and a RuntimeError at once: whichever of the two PyTorch
raises for the input, a PyTorch user's `except` catches bnlib's error too (checked below). bnlib
never uses `assert` for these checks, so they also hold under `python -O`.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from bnlib import functional as F
from bnlib import nn as bnn
from bnlib.functional import InputError


def arr(*shape, dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def ten(*shape, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


ONES3, ZEROS3 = np.ones(3), np.zeros(3)


def t(a):
    return None if a is None else torch.from_numpy(np.asarray(a))


# (id, bnlib call, exception, message pattern, PyTorch call that must raise too, or None)
CASES = [
    # --- a batch of one value per channel, in training -------------------------------------------
    (
        "batch_norm (1, C) training",
        lambda: F.batch_norm(arr(1, 3), ZEROS3.copy(), ONES3.copy(), training=True),
        ValueError,
        r"more than 1 value per channel when training, got input of shape \(1, 3\)",
        lambda: TF.batch_norm(ten(1, 3), t(ZEROS3), t(ONES3), training=True),
    ),
    (
        "batch_norm (1, C, 1, 1) training",
        lambda: F.batch_norm(arr(1, 3, 1, 1), None, None, training=True),
        ValueError,
        r"more than 1 value per channel when training, got input of shape \(1, 3, 1, 1\)",
        lambda: TF.batch_norm(ten(1, 3, 1, 1), None, None, training=True),
    ),
    (
        "BatchNorm1d (1, C) training",
        lambda: bnn.BatchNorm1d(3)(ten(1, 3, dtype=torch.float32)),
        ValueError,
        r"BatchNorm1d: expected more than 1 value per channel when training, got input of shape "
        r"\(1, 3\)",
        lambda: torch.nn.BatchNorm1d(3)(ten(1, 3, dtype=torch.float32)),
    ),
    (
        "BatchNorm1d (1, C, 1) training",
        lambda: bnn.BatchNorm1d(3)(ten(1, 3, 1, dtype=torch.float32)),
        ValueError,
        r"more than 1 value per channel",
        lambda: torch.nn.BatchNorm1d(3)(ten(1, 3, 1, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d (1, C, 1, 1) training",
        lambda: bnn.BatchNorm2d(3)(ten(1, 3, 1, 1, dtype=torch.float32)),
        ValueError,
        r"BatchNorm2d: expected more than 1 value per channel when training, got input of shape "
        r"\(1, 3, 1, 1\)",
        lambda: torch.nn.BatchNorm2d(3)(ten(1, 3, 1, 1, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d (1, C, 1, 1) eval without running statistics (batch statistics again)",
        lambda: bnn.BatchNorm2d(3, track_running_stats=False).eval()(ten(1, 3, 1, 1).float()),
        ValueError,
        r"more than 1 value per channel",
        lambda: torch.nn.BatchNorm2d(3, track_running_stats=False).eval()(ten(1, 3, 1, 1).float()),
    ),
    # --- eps: positive when the batch's statistics are used, non-negative otherwise -------------
    (
        "batch_norm eps=0 training",
        lambda: F.batch_norm(arr(4, 3), None, None, training=True, eps=0.0),
        ValueError,
        r"batch_norm: eps must be positive during training, got eps=0.0",
        lambda: TF.batch_norm(ten(4, 3), None, None, training=True, eps=0.0),
    ),
    (
        "batch_norm eps<0 eval",
        lambda: F.batch_norm(arr(4, 3), ZEROS3, ONES3, eps=-1.0),
        ValueError,
        r"batch_norm: eps must be non-negative, got eps=-1.0",
        lambda: TF.batch_norm(ten(4, 3), t(ZEROS3), t(ONES3), eps=-1.0),
    ),
    (
        "batch_norm_backward eps=0 training",
        lambda: F.batch_norm_backward(arr(4, 3), arr(4, 3), eps=0.0),
        ValueError,
        r"batch_norm_backward: eps must be positive during training",
        None,
    ),
    (
        "BatchNorm1d(eps=0) training",
        lambda: bnn.BatchNorm1d(3, eps=0.0)(ten(4, 3)),
        ValueError,
        r"BatchNorm1d: eps must be positive during training, got eps=0.0",
        lambda: torch.nn.BatchNorm1d(3, eps=0.0)(ten(4, 3, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d(eps=-1) eval",
        lambda: bnn.BatchNorm2d(3, eps=-1.0).eval()(ten(2, 3, 2, 2, dtype=torch.float32)),
        ValueError,
        r"BatchNorm2d: eps must be non-negative, got eps=-1.0",
        lambda: torch.nn.BatchNorm2d(3, eps=-1.0).eval()(ten(2, 3, 2, 2, dtype=torch.float32)),
    ),
    # --- group norm: more than one value in N * (C/G) * prod(*), as PyTorch checks ---------------
    (
        "group_norm one value per group, batch of one",
        lambda: F.group_norm(arr(1, 10, 1), 10),
        ValueError,
        r"group_norm: expected more than 1 value per group, got input of shape \(1, 10, 1\) with "
        r"num_groups=10",
        lambda: TF.group_norm(ten(1, 10, 1), 10),
    ),
    (
        "GroupNorm(10, 10) on (1, 10, 1)",
        lambda: bnn.GroupNorm(10, 10)(ten(1, 10, 1, dtype=torch.float32)),
        ValueError,
        r"GroupNorm: expected more than 1 value per group, got input of shape \(1, 10, 1\)",
        lambda: torch.nn.GroupNorm(10, 10)(ten(1, 10, 1, dtype=torch.float32)),
    ),
    # --- instance norm needs more than one spatial element ---------------------------------------
    (
        "instance_norm (N, C, 1)",
        lambda: F.instance_norm(arr(2, 3, 1)),
        ValueError,
        r"instance_norm: expected more than 1 spatial element when training, got input of shape "
        r"\(2, 3, 1\)",
        lambda: TF.instance_norm(ten(2, 3, 1)),
    ),
    (
        "instance_norm (N, C, 1, 1) with running statistics",
        lambda: F.instance_norm(arr(2, 3, 1, 1), ZEROS3.copy(), ONES3.copy()),
        ValueError,
        r"more than 1 spatial element when training, got input of shape \(2, 3, 1, 1\)",
        lambda: TF.instance_norm(ten(2, 3, 1, 1), t(ZEROS3.copy()), t(ONES3.copy())),
    ),
    (
        "instance_norm (N, C): no spatial axes",
        lambda: F.instance_norm(arr(2, 3)),
        ValueError,
        r"more than 1 spatial element",
        lambda: TF.instance_norm(ten(2, 3)),
    ),
    (
        "instance_norm_backward (N, C, 1)",
        lambda: F.instance_norm_backward(arr(2, 3, 1), arr(2, 3, 1)),
        ValueError,
        r"instance_norm_backward: expected more than 1 spatial element",
        None,
    ),
    (
        "InstanceNorm1d (N, C, 1)",
        lambda: bnn.InstanceNorm1d(3)(ten(2, 3, 1)),
        ValueError,
        r"InstanceNorm1d: expected more than 1 spatial element when training",
        lambda: torch.nn.InstanceNorm1d(3)(ten(2, 3, 1)),
    ),
    (
        "InstanceNorm3d (N, C, 1, 1, 1)",
        lambda: bnn.InstanceNorm3d(3)(ten(2, 3, 1, 1, 1)),
        ValueError,
        r"InstanceNorm3d: expected more than 1 spatial element when training",
        lambda: torch.nn.InstanceNorm3d(3)(ten(2, 3, 1, 1, 1)),
    ),
    (
        "InstanceNorm2d (N, C, 1, 1)",
        lambda: bnn.InstanceNorm2d(3)(ten(2, 3, 1, 1)),
        ValueError,
        r"InstanceNorm2d: expected more than 1 spatial element when training, got input of shape "
        r"\(2, 3, 1, 1\)",
        lambda: torch.nn.InstanceNorm2d(3)(ten(2, 3, 1, 1)),
    ),
    # --- the running statistics are required in eval ---------------------------------------------
    (
        "batch_norm eval without running statistics",
        lambda: F.batch_norm(arr(4, 3), None, None, training=False),
        ValueError,
        r"batch_norm: running_mean and running_var are required when training=False",
        lambda: TF.batch_norm(ten(4, 3), None, None, training=False),
    ),
    (
        "batch_norm eval without running_var",
        lambda: F.batch_norm(arr(4, 3), ZEROS3, None, training=False),
        ValueError,
        r"running_mean and running_var are required",
        lambda: TF.batch_norm(ten(4, 3), t(ZEROS3), None, training=False),
    ),
    (
        "batch_norm_backward eval without running statistics",
        lambda: F.batch_norm_backward(arr(4, 3), arr(4, 3), training=False),
        ValueError,
        r"batch_norm_backward: running_mean and running_var are required when training=False",
        None,
    ),
    (
        "instance_norm_backward use_input_stats=False without running_var",
        lambda: F.instance_norm_backward(
            arr(2, 3, 4), arr(2, 3, 4), running_mean=ZEROS3, use_input_stats=False
        ),
        ValueError,
        r"instance_norm_backward: running_mean and running_var are required when "
        r"use_input_stats=False",
        None,
    ),
    (
        "instance_norm use_input_stats=False without running statistics",
        lambda: F.instance_norm(arr(2, 3, 4), use_input_stats=False),
        ValueError,
        r"instance_norm: running_mean and running_var are required when use_input_stats=False",
        lambda: TF.instance_norm(ten(2, 3, 4), use_input_stats=False),
    ),
    # --- channel counts that do not match --------------------------------------------------------
    (
        "batch_norm running_mean of the wrong length",
        lambda: F.batch_norm(arr(4, 3), np.zeros(2), ONES3.copy(), training=True),
        ValueError,
        r"batch_norm: running_mean must have shape \(3,\), got \(2,\)",
        lambda: TF.batch_norm(ten(4, 3), torch.zeros(2).double(), t(ONES3.copy()), training=True),
    ),
    (
        "batch_norm running_var of the wrong length, eval",
        lambda: F.batch_norm(arr(4, 3), ZEROS3, np.ones(4)),
        ValueError,
        r"batch_norm: running_var must have shape \(3,\), got \(4,\)",
        lambda: TF.batch_norm(ten(4, 3), t(ZEROS3), torch.ones(4).double()),
    ),
    (
        "batch_norm weight of the wrong shape",
        lambda: F.batch_norm(arr(4, 3, 2), None, None, np.ones((3, 1)), training=True),
        ValueError,
        r"batch_norm: weight must have shape \(3,\), got \(3, 1\)",
        lambda: TF.batch_norm(ten(4, 3, 2), None, None, torch.ones(2).double(), training=True),
    ),
    (
        "batch_norm bias of the wrong length",
        lambda: F.batch_norm(arr(4, 3), None, None, ONES3, np.zeros(2), training=True),
        ValueError,
        r"batch_norm: bias must have shape \(3,\), got \(2,\)",
        lambda: TF.batch_norm(ten(4, 3), None, None, t(ONES3), torch.zeros(2).double(), True),
    ),
    (
        "instance_norm running_mean of the wrong length",
        lambda: F.instance_norm(arr(2, 3, 4), np.zeros(6), np.ones(6)),
        ValueError,
        r"instance_norm: running_mean must have shape \(3,\), got \(6,\)",
        lambda: TF.instance_norm(ten(2, 3, 4), torch.zeros(6).double(), torch.ones(6).double()),
    ),
    (
        "instance_norm weight of the wrong length",
        lambda: F.instance_norm(arr(2, 3, 4), weight=np.ones(2)),
        ValueError,
        r"instance_norm: weight must have shape \(3,\), got \(2,\)",
        lambda: TF.instance_norm(ten(2, 3, 4), weight=torch.ones(2).double()),
    ),
    (
        "group_norm weight of the wrong length",
        lambda: F.group_norm(arr(2, 6, 4), 3, np.ones(5)),
        ValueError,
        r"group_norm: weight must have shape \(6,\), got \(5,\)",
        lambda: TF.group_norm(ten(2, 6, 4), 3, torch.ones(5).double()),
    ),
    (
        "layer_norm weight of the wrong shape",
        lambda: F.layer_norm(arr(2, 6, 4), (4,), np.ones(3)),
        ValueError,
        r"layer_norm: weight must have shape \(4,\), got \(3,\)",
        lambda: TF.layer_norm(ten(2, 6, 4), (4,), torch.ones(3).double()),
    ),
    (
        "batch_norm_backward weight of the wrong length",
        lambda: F.batch_norm_backward(arr(4, 3), arr(4, 3), np.ones(4)),
        ValueError,
        r"batch_norm_backward: weight must have shape \(3,\), got \(4,\)",
        None,
    ),
    (
        "BatchNorm1d num_features mismatch",
        lambda: bnn.BatchNorm1d(3)(ten(4, 5, dtype=torch.float32)),
        ValueError,
        r"BatchNorm1d: expected 3 channels \(dim 1\), got input of shape \(4, 5\)",
        lambda: torch.nn.BatchNorm1d(3)(ten(4, 5, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d num_features mismatch, eval",
        lambda: bnn.BatchNorm2d(3).eval()(ten(2, 4, 3, 3, dtype=torch.float32)),
        ValueError,
        r"BatchNorm2d: expected 3 channels \(dim 1\), got input of shape \(2, 4, 3, 3\)",
        lambda: torch.nn.BatchNorm2d(3).eval()(ten(2, 4, 3, 3, dtype=torch.float32)),
    ),
    (
        # NB: stricter than PyTorch, which lets this one through when there is neither an affine
        # nor a running statistic whose size could disagree.
        "BatchNorm2d num_features mismatch without affine or running statistics",
        lambda: bnn.BatchNorm2d(3, affine=False, track_running_stats=False)(ten(2, 4, 3, 3)),
        ValueError,
        r"expected 3 channels",
        None,
    ),
    (
        "InstanceNorm2d num_features mismatch with affine",
        lambda: bnn.InstanceNorm2d(3, affine=True)(ten(2, 4, 3, 3, dtype=torch.float32)),
        ValueError,
        r"InstanceNorm2d: expected 3 channels \(dim 1\), got input of shape \(2, 4, 3, 3\)",
        lambda: torch.nn.InstanceNorm2d(3, affine=True)(ten(2, 4, 3, 3, dtype=torch.float32)),
    ),
    (
        "GroupNorm channel mismatch",
        lambda: bnn.GroupNorm(2, 4)(ten(2, 6, 3, dtype=torch.float32)),
        ValueError,
        r"GroupNorm: expected input of shape \(N, 4, \*\), got \(2, 6, 3\)",
        lambda: torch.nn.GroupNorm(2, 4)(ten(2, 6, 3, dtype=torch.float32)),
    ),
    # --- num_groups that does not divide the channels --------------------------------------------
    (
        "group_norm 4 groups of 6 channels",
        lambda: F.group_norm(arr(2, 6, 4), 4),
        ValueError,
        r"group_norm: num_groups=4 must divide the 6 channels of input \(2, 6, 4\)",
        lambda: TF.group_norm(ten(2, 6, 4), 4),
    ),
    (
        "group_norm 0 groups",
        lambda: F.group_norm(arr(2, 6, 4), 0),
        ValueError,
        r"num_groups=0 must divide the 6 channels",
        lambda: TF.group_norm(ten(2, 6, 4), 0),
    ),
    (
        "group_norm_backward 4 groups of 6 channels",
        lambda: F.group_norm_backward(arr(2, 6, 4), arr(2, 6, 4), 4),
        ValueError,
        r"group_norm_backward: num_groups=4 must divide the 6 channels",
        None,
    ),
    (
        "GroupNorm(4, 6)",
        lambda: bnn.GroupNorm(4, 6),
        ValueError,
        r"GroupNorm: num_groups=4 must divide num_channels=6",
        lambda: torch.nn.GroupNorm(4, 6),
    ),
    (
        "GroupNorm(0, 6)",
        lambda: bnn.GroupNorm(0, 6),
        ValueError,
        r"num_groups=0 must divide num_channels=6",
        lambda: torch.nn.GroupNorm(0, 6),
    ),
    # --- the wrong rank -------------------------------------------------------------------------
    (
        "BatchNorm1d with 4D input",
        lambda: bnn.BatchNorm1d(3)(ten(2, 3, 4, 4, dtype=torch.float32)),
        ValueError,
        r"BatchNorm1d: expected 2D or 3D input, got 4D input",
        lambda: torch.nn.BatchNorm1d(3)(ten(2, 3, 4, 4, dtype=torch.float32)),
    ),
    (
        "BatchNorm1d with 1D input",
        lambda: bnn.BatchNorm1d(3)(ten(3, dtype=torch.float32)),
        ValueError,
        r"expected 2D or 3D input, got 1D input",
        lambda: torch.nn.BatchNorm1d(3)(ten(3, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d with 3D input",
        lambda: bnn.BatchNorm2d(3)(ten(2, 3, 4, dtype=torch.float32)),
        ValueError,
        r"BatchNorm2d: expected 4D input, got 3D input",
        lambda: torch.nn.BatchNorm2d(3)(ten(2, 3, 4, dtype=torch.float32)),
    ),
    (
        "BatchNorm2d with 5D input",
        lambda: bnn.BatchNorm2d(3)(ten(2, 3, 2, 2, 2, dtype=torch.float32)),
        ValueError,
        r"expected 4D input, got 5D input",
        lambda: torch.nn.BatchNorm2d(3)(ten(2, 3, 2, 2, 2, dtype=torch.float32)),
    ),
    (
        "InstanceNorm1d with 4D input",
        lambda: bnn.InstanceNorm1d(3)(ten(2, 3, 4, 4)),
        ValueError,
        r"InstanceNorm1d: expected 2D or 3D input, got 4D input",
        lambda: torch.nn.InstanceNorm1d(3)(ten(2, 3, 4, 4)),
    ),
    (
        "InstanceNorm3d with 3D input",
        lambda: bnn.InstanceNorm3d(3)(ten(2, 3, 4)),
        ValueError,
        r"InstanceNorm3d: expected 4D or 5D input, got 3D input",
        lambda: torch.nn.InstanceNorm3d(3)(ten(2, 3, 4)),
    ),
    (
        "BatchNorm3d with 4D input",
        lambda: bnn.BatchNorm3d(3)(ten(2, 3, 4, 4, dtype=torch.float32)),
        ValueError,
        r"BatchNorm3d: expected 5D input, got 4D input",
        lambda: torch.nn.BatchNorm3d(3)(ten(2, 3, 4, 4, dtype=torch.float32)),
    ),
    (
        "InstanceNorm1d unbatched (C, L) with affine, channel mismatch",
        lambda: bnn.InstanceNorm1d(3, affine=True)(ten(4, 5, dtype=torch.float32)),
        ValueError,
        r"InstanceNorm1d: expected 3 channels \(dim 0\), got input of shape \(4, 5\)",
        lambda: torch.nn.InstanceNorm1d(3, affine=True)(ten(4, 5, dtype=torch.float32)),
    ),
    (
        "InstanceNorm2d with 2D input",
        lambda: bnn.InstanceNorm2d(3)(ten(2, 3)),
        ValueError,
        r"InstanceNorm2d: expected 3D or 4D input, got 2D input",
        lambda: torch.nn.InstanceNorm2d(3)(ten(2, 3)),
    ),
    (
        "GroupNorm with 1D input",
        lambda: bnn.GroupNorm(1, 4)(ten(4)),
        ValueError,
        r"GroupNorm: expected input of shape \(N, 4, \*\), got \(4,\)",
        lambda: torch.nn.GroupNorm(1, 4)(ten(4)),
    ),
    (
        "batch_norm with 1D input",
        lambda: F.batch_norm(arr(4), None, None, training=True),
        ValueError,
        r"batch_norm: expected input with at least 2 dimensions, got shape \(4,\)",
        lambda: TF.batch_norm(ten(4), None, None, training=True),
    ),
    (
        "group_norm with 1D input",
        lambda: F.group_norm(arr(6), 3),
        ValueError,
        r"group_norm: expected input with at least 2 dimensions, got shape \(6,\)",
        lambda: TF.group_norm(ten(6), 3),
    ),
    (
        "instance_norm with 1D input",
        lambda: F.instance_norm(arr(6)),
        ValueError,
        r"instance_norm: expected input with at least 2 dimensions, got shape \(6,\)",
        lambda: TF.instance_norm(ten(6)),
    ),
    (
        "layer_norm with a scalar input",
        lambda: F.layer_norm(np.float64(1.0), (1,)),
        ValueError,
        r"layer_norm: expected input with at least 1 dimensions, got shape \(\)",
        lambda: TF.layer_norm(torch.tensor(1.0), (1,)),
    ),
    (
        "batch_norm_backward with 1D input",
        lambda: F.batch_norm_backward(arr(4), arr(4)),
        ValueError,
        r"batch_norm_backward: expected input with at least 2 dimensions, got shape \(4,\)",
        None,
    ),
    # --- normalized_shape that does not match the input ------------------------------------------
    (
        "layer_norm normalized_shape not the last dimensions",
        lambda: F.layer_norm(arr(2, 6, 4), (6,)),
        ValueError,
        r"layer_norm: normalized_shape=\(6,\) must match the last dimensions of the input, got "
        r"input of shape \(2, 6, 4\)",
        lambda: TF.layer_norm(ten(2, 6, 4), (6,)),
    ),
    (
        "layer_norm normalized_shape longer than the input",
        lambda: F.layer_norm(arr(6, 4), (2, 6, 4)),
        ValueError,
        r"normalized_shape=\(2, 6, 4\) must match the last dimensions",
        lambda: TF.layer_norm(ten(6, 4), (2, 6, 4)),
    ),
    (
        "layer_norm empty normalized_shape",
        lambda: F.layer_norm(arr(6, 4), ()),
        ValueError,
        r"layer_norm: normalized_shape must name at least one dimension .*, got "
        r"normalized_shape=\(\)",
        lambda: TF.layer_norm(ten(6, 4), ()),
    ),
    (
        "rms_norm empty normalized_shape",
        lambda: F.rms_norm(arr(6, 4), ()),
        ValueError,
        r"rms_norm: normalized_shape must name at least one dimension",
        lambda: TF.rms_norm(ten(6, 4), ()),
    ),
    (
        "LayerNorm(()) at forward (accepted at construction, as torch.nn's)",
        lambda: bnn.LayerNorm(())(ten(2, 3, dtype=torch.float32)),
        ValueError,
        r"LayerNorm: normalized_shape must name at least one dimension",
        lambda: torch.nn.LayerNorm(())(ten(2, 3, dtype=torch.float32)),
    ),
    (
        "RMSNorm(()) at forward",
        lambda: bnn.RMSNorm(())(ten(2, 3, dtype=torch.float32)),
        ValueError,
        r"RMSNorm: normalized_shape must name at least one dimension",
        lambda: torch.nn.RMSNorm(())(ten(2, 3, dtype=torch.float32)),
    ),
    (
        "layer_norm_backward normalized_shape mismatch",
        lambda: F.layer_norm_backward(arr(2, 5), arr(2, 5), 4),
        ValueError,
        r"layer_norm_backward: normalized_shape=\(4,\) must match the last dimensions of the input",
        None,
    ),
    (
        "LayerNorm normalized_shape mismatch",
        lambda: bnn.LayerNorm(5)(ten(2, 4, dtype=torch.float32)),
        ValueError,
        r"LayerNorm: normalized_shape=\(5,\) must match the last dimensions of the input, got "
        r"input of shape \(2, 4\)",
        lambda: torch.nn.LayerNorm(5)(ten(2, 4, dtype=torch.float32)),
    ),
    (
        "LayerNorm normalized_shape longer than the input",
        lambda: bnn.LayerNorm((2, 3, 4))(ten(3, 4, dtype=torch.float32)),
        ValueError,
        r"normalized_shape=\(2, 3, 4\) must match",
        lambda: torch.nn.LayerNorm((2, 3, 4))(ten(3, 4, dtype=torch.float32)),
    ),
    # --- integer and other non-floating inputs ---------------------------------------------------
    (
        "batch_norm integer input",
        lambda: F.batch_norm(np.arange(12).reshape(4, 3), None, None, training=True),
        TypeError,
        r"batch_norm: input must be a floating-point array, got dtype int64",
        lambda: TF.batch_norm(torch.arange(12).reshape(4, 3), None, None, training=True),
    ),
    (
        "layer_norm integer input",
        lambda: F.layer_norm(np.arange(12).reshape(4, 3), 3),
        TypeError,
        r"layer_norm: input must be a floating-point array, got dtype int64",
        lambda: TF.layer_norm(torch.arange(12).reshape(4, 3), (3,)),
    ),
    (
        "instance_norm integer input",
        lambda: F.instance_norm(np.arange(24, dtype=np.int32).reshape(2, 3, 4)),
        TypeError,
        r"instance_norm: input must be a floating-point array, got dtype int32",
        lambda: TF.instance_norm(torch.arange(24, dtype=torch.int32).reshape(2, 3, 4)),
    ),
    (
        "group_norm boolean input",
        lambda: F.group_norm(np.ones((2, 4, 3), dtype=bool), 2),
        TypeError,
        r"group_norm: input must be a floating-point array, got dtype bool",
        lambda: TF.group_norm(torch.ones(2, 4, 3, dtype=torch.bool), 2),
    ),
    (
        "batch_norm integer weight",
        lambda: F.batch_norm(arr(4, 3), None, None, np.ones(3, dtype=int), training=True),
        TypeError,
        r"batch_norm: weight must be a floating-point array, got dtype int64",
        None,
    ),
    (
        "batch_norm_backward integer input",
        lambda: F.batch_norm_backward(arr(4, 3), np.ones((4, 3), dtype=int)),
        TypeError,
        r"batch_norm_backward: input must be a floating-point array",
        None,
    ),
    (
        "layer_norm_backward integer grad_output",
        lambda: F.layer_norm_backward(np.ones((4, 3), dtype=int), arr(4, 3), 3),
        TypeError,
        r"layer_norm_backward: grad_output must be a floating-point array, got dtype int64",
        None,
    ),
    # --- running arrays that cannot be updated in place ------------------------------------------
    (
        "batch_norm running_mean as a list",
        lambda: F.batch_norm(arr(4, 3), [0.0, 0.0, 0.0], ONES3.copy(), training=True),
        TypeError,
        r"batch_norm: running_mean must be a numpy array \(it is updated in place\), got list",
        None,
    ),
    (
        "batch_norm running_var as a torch tensor",
        lambda: F.batch_norm(arr(4, 3), ZEROS3.copy(), torch.ones(3), training=True),
        TypeError,
        r"batch_norm: running_var must be a numpy array \(it is updated in place\), got Tensor",
        None,
    ),
    (
        "instance_norm running_mean as a tuple",
        lambda: F.instance_norm(arr(2, 3, 4), (0.0, 0.0, 0.0), ONES3.copy()),
        TypeError,
        r"instance_norm: running_mean must be a numpy array",
        None,
    ),
    (
        "batch_norm integer running_mean",
        lambda: F.batch_norm(arr(4, 3), np.zeros(3, dtype=int), ONES3.copy(), training=True),
        TypeError,
        r"batch_norm: running_mean must be a floating-point array, got dtype int64",
        None,
    ),
    # --- grad_output of the wrong shape ----------------------------------------------------------
    (
        "batch_norm_backward grad_output shape",
        lambda: F.batch_norm_backward(arr(4, 2), arr(4, 3), ONES3),
        ValueError,
        r"batch_norm_backward: grad_output must have the input's shape \(4, 3\), got \(4, 2\)",
        lambda: TF.batch_norm(ten(4, 3).requires_grad_(), None, None, training=True).backward(
            ten(4, 2)
        ),
    ),
    (
        "layer_norm_backward grad_output shape",
        lambda: F.layer_norm_backward(arr(3, 4), arr(4, 3), 3),
        ValueError,
        r"layer_norm_backward: grad_output must have the input's shape \(4, 3\), got \(3, 4\)",
        lambda: TF.layer_norm(ten(4, 3).requires_grad_(), (3,)).backward(ten(3, 4)),
    ),
    (
        "group_norm_backward grad_output shape",
        lambda: F.group_norm_backward(arr(2, 4), arr(2, 4, 3), 2),
        ValueError,
        r"group_norm_backward: grad_output must have the input's shape \(2, 4, 3\), got \(2, 4\)",
        lambda: TF.group_norm(ten(2, 4, 3).requires_grad_(), 2).backward(ten(2, 4)),
    ),
]


@pytest.mark.parametrize(
    "call, error, message, torch_call", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bnlib_raises_with_a_message_that_says_expected_and_got(call, error, message, torch_call):
    with pytest.raises(error, match=message) as ours:
        call()
    if error is ValueError:  # every ValueError of bnlib is an InputError: a RuntimeError as well
        assert isinstance(ours.value, InputError) and isinstance(ours.value, RuntimeError)
    if torch_call is not None:
        with pytest.raises(Exception) as theirs:  # noqa: B017 - its type is checked just below
            torch_call()
        # NB: where PyTorch raises ValueError or RuntimeError, its users' `except` catches ours
        # (elsewhere PyTorch raises IndexError, ZeroDivisionError, ...: no type to keep in step)
        if error is ValueError and isinstance(theirs.value, ValueError | RuntimeError):
            assert isinstance(ours.value, type(theirs.value))


def test_each_case_has_a_distinct_name():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


# --- and where neither raises ---------------------------------------------------------------------


def test_batch_of_one_is_fine_in_eval_with_running_statistics():
    """NB: eval normalizes with the running statistics, so one sample is enough."""
    x = arr(1, 3)
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.0, 4.0, 0.25])
    y = F.batch_norm(x, rm, rv, ONES3, ZEROS3, training=False)
    yt = TF.batch_norm(t(x), t(rm), t(rv), t(ONES3), t(ZEROS3), training=False)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-12)
    for module in (bnn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)):
        module.eval()(ten(1, 3, dtype=torch.float32))
    for module in (bnn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)):
        module.eval()(ten(1, 3, 1, 1, dtype=torch.float32))


def test_one_value_per_channel_is_fine_when_the_batch_gives_more():
    """The rule counts N * H * W per channel: one sample of 2 positions, or 2 samples, pass."""
    F.batch_norm(arr(1, 3, 2), None, None, training=True)
    F.batch_norm(arr(2, 3, 1, 1), None, None, training=True)
    bnn.BatchNorm1d(3)(ten(1, 3, 2, dtype=torch.float32))
    bnn.BatchNorm2d(3)(ten(2, 3, 1, 1, dtype=torch.float32))


def test_instance_norm_with_one_spatial_element_is_fine_with_running_statistics():
    x = arr(2, 3, 1)
    rm, rv = np.zeros(3), np.ones(3)
    y = F.instance_norm(x, rm, rv, use_input_stats=False)
    yt = TF.instance_norm(t(x), t(rm), t(rv), use_input_stats=False)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-12)


def test_float16_and_float32_weights_are_accepted_with_float64_input():
    y = F.batch_norm(arr(4, 3), None, None, np.ones(3, np.float16), np.zeros(3, np.float32), True)
    assert y.dtype == np.float64


def test_checks_do_not_use_assert_so_they_hold_under_python_O():
    import inspect
    import re

    from bnlib.grading import engine
    from bnlib.grading.exercises import ex01, ex02, ex03, ex04, ex05

    for module in (F, bnn, engine, ex01, ex02, ex03, ex04, ex05):
        source = inspect.getsource(module)
        assert not re.search(r"^\s+assert ", source, re.MULTILINE), module.__name__
