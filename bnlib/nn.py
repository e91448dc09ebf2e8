"""torch.nn normalization modules written from scratch with plain tensor ops.

Autograd does the backward. Constructor signatures, defaults, parameter and buffer names are
torch.nn's, so `load_state_dict` works in both directions with torch.nn.BatchNorm1d/2d/3d,
InstanceNorm1d/2d/3d, LayerNorm, GroupNorm and RMSNorm (old checkpoints without
num_batches_tracked load too, as in torch.nn). Statistics are computed in float64 (as PyTorch's
CPU kernels accumulate them), running statistics are updated in float64 and rounded once, and the
output keeps the input's dtype. Bad input raises bnlib.functional.InputError, both a ValueError
and a RuntimeError (PyTorch raises either, depending on the check).

Shape legend: N batch, C channels, D features, G groups, L length, H, W spatial.
Reference: torch/nn/modules/batchnorm.py, instancenorm.py, normalization.py.
"""

from __future__ import annotations

import numbers
import warnings
from math import prod

import torch
from torch import nn

from bnlib.functional import InputError

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "normalize",
]


def normalize(x, dims, eps):
    """xhat = (x - mean) / sqrt(var + eps) over `dims`, in float64; var is the biased one.

    Returns (xhat, mean, var), mean and var with keepdim=True.
    """
    x64 = x.double()
    mean = x64.mean(dim=dims, keepdim=True)
    var = (x64 - mean).square().mean(dim=dims, keepdim=True)
    return (x64 - mean) * torch.rsqrt(var + eps), mean, var


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)  # (1, C, 1, ...) broadcasts over (N, C, *)


def _memory_format(x):
    """The layout PyTorch's norms give their output: channels-last in, channels-last out."""
    if not x.is_contiguous():
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
            return torch.channels_last_3d
    return torch.contiguous_format


def _check_normalized_shape(name, normalized_shape, x):
    k = len(normalized_shape)
    if k == 0:
        raise InputError(
            f"{name}: normalized_shape must name at least one dimension (the statistics are over "
            "the last len(normalized_shape) dimensions), got normalized_shape=()"
        )
    if x.dim() < k or tuple(x.shape[x.dim() - k :]) != normalized_shape:
        raise InputError(
            f"{name}: normalized_shape={normalized_shape} must match the last "
            f"dimensions of the input, got input of shape {tuple(x.shape)}"
        )
    return list(range(x.dim() - k, x.dim()))


class _Norm(nn.Module):
    """Per-channel affine and running statistics shared by BatchNorm and InstanceNorm.

    affine: a weight and a bias per channel; bias=False (keyword) keeps only the weight, as in
    torch.nn. track_running_stats: the running_mean, running_var, num_batches_tracked buffers.
    """

    _version = 2  # as torch.nn's: num_batches_tracked came with version 2 (PyTorch 0.4.1)

    def __init__(
        self, num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=True
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """As torch.nn's: a checkpoint older than version 2 has no num_batches_tracked; count 0."""
        version = local_metadata.get("version", None)
        key = prefix + "num_batches_tracked"
        if (version is None or version < 2) and self.track_running_stats and key not in state_dict:
            current = self.num_batches_tracked
            keep = current is not None and current.device != torch.device("meta")
            state_dict[key] = current if keep else torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _check_channels(self, x, dim=1):
        if x.shape[dim] != self.num_features:
            raise InputError(
                f"{type(self).__name__}: expected {self.num_features} channels (dim {dim}), "
                f"got input of shape {tuple(x.shape)}"
            )

    def _update_running(self, mean, var_biased, count, factor):
        """running = (1 - factor) * running + factor * batch; the unbiased variance is stored.

        In float64, rounded once into the buffers' dtype (a float16 buffer updated in float16
        arithmetic would drift further from the true average than PyTorch's).
        """
        with torch.no_grad():
            unbiased = var_biased.double() * count / (count - 1)  # NB: Bessel's correction, stored
            for buffer, stat in ((self.running_mean, mean.double()), (self.running_var, unbiased)):
                buffer.copy_((1 - factor) * buffer.double() + factor * stat)

    def _running_xhat(self, x):
        shape = _channel_shape(x)
        mean = self.running_mean.double().view(shape)
        var = self.running_var.double().view(shape)
        return (x.double() - mean) * torch.rsqrt(var + self.eps)

    def _affine(self, xhat, x):
        shape = _channel_shape(x)
        if self.weight is not None:
            xhat = xhat * self.weight.view(shape)
        if self.bias is not None:
            xhat = xhat + self.bias.view(shape)
        return xhat.to(x.dtype)


class _BatchNorm(_Norm):
    """y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c, statistics over (N, *).

    Batch statistics in training mode (or whenever running statistics are not tracked), running
    statistics in eval mode. momentum=None makes the running statistics a cumulative average
    (factor 1 / num_batches_tracked). Ioffe & Szegedy 2015, arXiv 1502.03167.
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias
        )

    RANKS = None  # the input ranks a subclass accepts, e.g. (2, 3); None: any of at least 2

    def _check_input_dim(self, x):
        name = type(self).__name__
        if self.RANKS is None and x.dim() < 2:
            raise InputError(f"{name}: expected at least 2D input, got {x.dim()}D input")
        if self.RANKS is not None and x.dim() not in self.RANKS:
            ranks = " or ".join(f"{r}D" for r in self.RANKS)
            raise InputError(f"{name}: expected {ranks} input, got {x.dim()}D input")

    def _check_eps(self, batch_stats):
        """PyTorch's rule: eps > 0 with the batch's statistics, eps >= 0 with the running ones."""
        name = type(self).__name__
        if batch_stats and not self.eps > 0:
            raise InputError(
                f"{name}: eps must be positive during training, got eps={self.eps} (a constant "
                "channel has variance 0, and 1 / sqrt(0 + eps) must stay finite)"
            )
        if not self.eps >= 0:
            raise InputError(f"{name}: eps must be non-negative, got eps={self.eps}")

    def forward(self, x):
        self._check_input_dim(x)
        self._check_channels(x)
        # As torch.nn: batch statistics in training, and in eval when there are no buffers (NB:
        # buffers with track_running_stats switched off afterwards are still used in eval).
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        self._check_eps(use_batch_stats)
        if not use_batch_stats:
            return self._affine(self._running_xhat(x), x)
        count = x.numel() // x.shape[1] if x.shape[1] else 0
        if count == 1:  # NB: also in eval without running statistics, as in PyTorch
            raise InputError(
                f"{type(self).__name__}: expected more than 1 value per channel when training, "
                f"got input of shape {tuple(x.shape)}"
            )
        update = self.training and self.track_running_stats and self.num_batches_tracked is not None
        if update:
            self.num_batches_tracked.add_(1)
        if count == 0:  # NB: an empty batch: no statistics, the running ones stay as they are
            return self._affine(x.double() * 0.0, x)
        dims = [0] + list(range(2, x.dim()))  # every axis but C
        xhat, mean, var = normalize(x, dims, self.eps)
        if update:
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
            self._update_running(mean.detach().flatten(), var.detach().flatten(), count, factor)
        return self._affine(xhat, x)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L) input, statistics per channel."""

    RANKS = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input, statistics per channel over (N, H, W)."""

    RANKS = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalization over (N, C, D, H, W) input, statistics per channel over (N, D, H, W)."""

    RANKS = (5,)


class _InstanceNorm(_Norm):
    """y = (x - mean_nc) / sqrt(var_nc + eps) * weight_c + bias_c, statistics over the spatial axes.

    Input (N, C, *) or unbatched (C, *), with NO_BATCH_DIM = 1 + len(*) set by the subclass.
    Defaults as torch.nn's: no affine, no running statistics. With track_running_stats, eval mode
    uses the running statistics, which average the per-instance ones (momentum=None leaves them
    unchanged, as in PyTorch). Ulyanov et al. 2016, arXiv 1607.08022.
    """

    NO_BATCH_DIM = None  # the rank of an unbatched input, (C, *)

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=False,
        track_running_stats=False,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype, bias
        )

    def forward(self, x):
        name, unbatched = type(self).__name__, self.NO_BATCH_DIM
        if x.dim() not in (unbatched, unbatched + 1):
            raise InputError(
                f"{name}: expected {unbatched}D or {unbatched + 1}D input, got {x.dim()}D input"
            )
        channel_dim = x.dim() - unbatched  # 0 unbatched, 1 batched
        if x.shape[channel_dim] != self.num_features:
            if self.affine or self.track_running_stats:
                self._check_channels(x, channel_dim)
            warnings.warn(
                f"{name}: input has {x.shape[channel_dim]} channels, num_features is "
                f"{self.num_features}; without affine or running statistics this is ignored",
                stacklevel=2,
            )
        if x.dim() == unbatched:  # (C, *) -> (1, C, *) and back
            return self._instance_norm(x.unsqueeze(0)).squeeze(0)
        return self._instance_norm(x)

    def _instance_norm(self, x):
        if not (self.training or not self.track_running_stats):
            return self._affine(self._running_xhat(x), x)
        count = prod(x.shape[2:])
        if count == 1:
            raise InputError(
                f"{type(self).__name__}: expected more than 1 spatial element when training, got "
                f"input of shape {tuple(x.shape)}"
            )
        xhat, mean, var = normalize(x, list(range(2, x.dim())), self.eps)
        # As torch.nn: whenever the batch's statistics are used and there are buffers.
        if self.running_mean is not None and x.shape[0] > 0:
            factor = 0.0 if self.momentum is None else self.momentum
            self._update_running(  # the batch average of the per-instance statistics, (C,)
                mean.detach().mean(dim=0).flatten(),
                var.detach().mean(dim=0).flatten(),
                count,
                factor,
            )
        return self._affine(xhat, x)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over (N, C, L) or unbatched (C, L) input, statistics over L."""

    NO_BATCH_DIM = 2


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over (N, C, H, W) or unbatched (C, H, W), statistics over (H, W)."""

    NO_BATCH_DIM = 3


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over (N, C, D, H, W) or (C, D, H, W), statistics over (D, H, W)."""

    NO_BATCH_DIM = 4


class LayerNorm(nn.Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per sample over the last dimensions.

    normalized_shape: int or tuple, the trailing dimensions to normalize over; weight and bias
    have that shape. The same computation at train and test. Ba et al. 2016, arXiv 1607.06450.
    """

    def __init__(
        self,
        normalized_shape,
        eps=1e-5,
        elementwise_affine=True,
        bias=True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )

    def forward(self, x):
        dims = _check_normalized_shape("LayerNorm", self.normalized_shape, x)
        xhat, _, _ = normalize(x, dims, self.eps)
        if self.weight is not None:
            xhat = xhat * self.weight
        if self.bias is not None:
            xhat = xhat + self.bias
        return xhat.to(x.dtype)


class GroupNorm(nn.Module):
    """y = (x - mean_ng) / sqrt(var_ng + eps) * weight_c + bias_c, per sample and channel group.

    Input (N, C, *); the C channels form num_groups groups of consecutive channels, each
    normalized over (C/G, *). Wu & He 2018, arXiv 1803.08494.
    """

    def __init__(
        self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True
    ):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise InputError(
                f"GroupNorm: num_groups={num_groups} must divide num_channels={num_channels}"
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, **factory))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = nn.Parameter(torch.zeros(num_channels, **factory))
        else:
            self.register_parameter("bias", None)

    def extra_repr(self):
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )

    def forward(self, x):
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise InputError(
                f"GroupNorm: expected input of shape (N, {self.num_channels}, *), "
                f"got {tuple(x.shape)}"
            )
        N, G = x.shape[0], self.num_groups
        group_size = self.num_channels // G * prod(x.shape[2:])
        if N * group_size == 1:  # as PyTorch, which checks N * C/G * prod(*)
            raise InputError(
                f"GroupNorm: expected more than 1 value per group, got input of shape "
                f"{tuple(x.shape)} with num_groups={G}; a group of one value has no spread to "
                "normalize by"
            )
        xhat, _, _ = normalize(x.reshape(N, G, group_size), [2], self.eps)  # (N, G, C/G * prod(*))
        xhat = xhat.reshape(x.shape)
        shape = _channel_shape(x)
        if self.weight is not None:
            xhat = xhat * self.weight.view(shape)
        if self.bias is not None:
            xhat = xhat + self.bias.view(shape)
        return xhat.to(x.dtype).contiguous(memory_format=_memory_format(x))


# --- module 4: remedies for small batches (Batch Renorm, Ghost BN, frozen BN) --------------------

__all__ += [
    "BatchRenorm1d",
    "BatchRenorm2d",
    "GhostBatchNorm",
    "FrozenBatchNorm",
    "freeze_batchnorm",
]


class _BatchRenorm(_BatchNorm):
    """Batch renormalization: xhat = (x - mean_B) / sigma_B * r + d, y = weight * xhat + bias.

    r = clip(sigma_B / sigma, 1/rmax, rmax) and d = clip((mean_B - mean) / sigma, -dmax, dmax),
    with sigma_B = sqrt(var_B + eps) from the batch and mean, sigma = sqrt(running_var + eps) from
    the running statistics before this step's update. r and d are constants in backprop (NB:
    detached), so the gradient is batch norm's scaled by r. rmax=1, dmax=0 is batch norm. Eval
    mode is batch norm's (running statistics), so training sees what inference will see once r
    and d stop clipping. Parameters and buffers are BatchNorm's: state_dicts load both ways.
    Ioffe 2017, arXiv 1702.03275 (Alg. 1; the paper relaxes rmax from 1 to 3 and dmax from 0 to 5).
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        rmax=3.0,
        dmax=5.0,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        if rmax < 1 or dmax < 0:
            raise InputError(
                f"{type(self).__name__}: expected rmax >= 1 and dmax >= 0, got rmax={rmax}, "
                f"dmax={dmax}"
            )
        self.rmax, self.dmax = float(rmax), float(dmax)

    def extra_repr(self):
        return f"{super().extra_repr()}, rmax={self.rmax}, dmax={self.dmax}"

    def forward(self, x):
        self._check_input_dim(x)
        self._check_channels(x)
        if not self.training:
            return self._affine(self._running_xhat(x), x)
        count = x.numel() // x.shape[1]
        if count == 1:
            raise InputError(
                f"{type(self).__name__}: expected more than 1 value per channel when training, "
                f"got input of shape {tuple(x.shape)}"
            )
        dims = [0] + list(range(2, x.dim()))  # every axis but C
        xhat, mean, var = normalize(x, dims, self.eps)
        shape = _channel_shape(x)
        with torch.no_grad():  # NB: r and d are constants for backprop
            sigma_b = torch.sqrt(var + self.eps)  # (1, C, 1, ...)
            sigma = torch.sqrt(self.running_var.double().view(shape) + self.eps)
            r = (sigma_b / sigma).clamp(1 / self.rmax, self.rmax)
            d = ((mean - self.running_mean.double().view(shape)) / sigma).clamp(
                -self.dmax, self.dmax
            )
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self._update_running(mean.detach().flatten(), var.detach().flatten(), count, factor)
        return self._affine(xhat * r + d, x)


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization over (N, C) or (N, C, L) input (see _BatchRenorm)."""

    RANKS = (2, 3)


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization over (N, C, H, W) input (see _BatchRenorm)."""

    RANKS = (4,)


class GhostBatchNorm(_BatchNorm):
    """Ghost batch norm: batch norm over virtual batches of virtual_batch_size samples each.

    In training mode the batch (N, C, *) is cut into ceil(N / virtual_batch_size) consecutive
    chunks, each normalized with its own statistics (the last chunk may be smaller; it needs more
    than one value per channel). The running statistics are updated once per call with the
    average of the chunks' means and unbiased variances. Eval mode is batch norm's. Parameters and
    buffers are BatchNorm's. Hoffer, Hubara & Soudry 2017, arXiv 1705.08741, §4.1.
    """

    def __init__(
        self,
        num_features,
        virtual_batch_size=32,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        if virtual_batch_size < 2:
            raise InputError(
                f"GhostBatchNorm: virtual_batch_size must be at least 2, got {virtual_batch_size}"
            )
        self.virtual_batch_size = int(virtual_batch_size)

    def extra_repr(self):
        return f"{super().extra_repr()}, virtual_batch_size={self.virtual_batch_size}"

    def forward(self, x):
        self._check_input_dim(x)
        self._check_channels(x)
        if not self.training:
            return self._affine(self._running_xhat(x), x)
        dims = [0] + list(range(2, x.dim()))  # every axis but C
        parts, means, unbiased = [], [], []
        for chunk in x.split(self.virtual_batch_size):  # (<= virtual_batch_size, C, *) each
            count = chunk.numel() // x.shape[1]
            if count == 1:
                raise InputError(
                    f"GhostBatchNorm: a virtual batch has one value per channel (batch of "
                    f"{x.shape[0]}, virtual_batch_size={self.virtual_batch_size})"
                )
            xhat, mean, var = normalize(chunk, dims, self.eps)
            parts.append(xhat)
            means.append(mean.detach().flatten())
            unbiased.append(var.detach().flatten() * count / (count - 1))
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        with torch.no_grad():  # the averages of the chunks' statistics; the variance is unbiased
            mean = torch.stack(means).mean(dim=0).to(self.running_mean.dtype)
            var = torch.stack(unbiased).mean(dim=0).to(self.running_var.dtype)
            self.running_mean.mul_(1 - factor).add_(factor * mean)
            self.running_var.mul_(1 - factor).add_(factor * var)
        return self._affine(torch.cat(parts), x)


class FrozenBatchNorm(_BatchNorm):
    """Batch norm that always normalizes with its running statistics, in train mode too.

    For fine-tuning with small batches: the statistics stay those of pretraining (neither used
    from the batch nor updated); weight and bias still train. NB: requires_grad=False on a BN
    layer freezes weight and bias, not the statistics; eval() freezes the statistics, but a
    training loop that calls model.train() undoes it. This layer stays frozen. Parameters and
    buffers are BatchNorm's. (torchvision.ops.FrozenBatchNorm2d also freezes weight and bias.)
    """

    def forward(self, x):
        self._check_input_dim(x)
        self._check_channels(x)
        return self._affine(self._running_xhat(x), x)


def freeze_batchnorm(model):
    """Replace every torch.nn or bnlib BatchNorm1d/2d in `model` by a FrozenBatchNorm with the
    same weight, bias and running statistics; return the model."""
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm1d | nn.BatchNorm2d | BatchNorm1d | BatchNorm2d):
            frozen = FrozenBatchNorm(child.num_features, child.eps, child.momentum)
            frozen.load_state_dict(child.state_dict())
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)
    return model


# --- module 3: batch norm with time-varying noise (Santurkar et al. 2018) ------------------------

__all__ += ["NoisyBatchNorm1d"]


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """Batch norm followed, in training mode, by a random scale and shift of every unit.

    (torch.nn.BatchNorm1d underneath, for speed in the lesson's experiments; the noise is ours.)

    y = (weight * xhat + bias) * s + m, with s_j = exp(scale_std * z_j) and
    m_j = shift_std * z'_j (z, z' standard normal) drawn anew at every training forward pass:
    one scale and one shift per unit (channel) j, shared by every sample of the batch (and every
    position of an (N, C, L) input). Each step the distribution BN produced gets a random non-zero
    mean and non-unit variance, a deliberate "internal covariate shift". Eval mode is plain batch
    norm (no noise). generator: a torch.Generator for the noise (default: the global one), so
    runs are reproducible.
    A variant of the "noisy" BN of Santurkar et al. 2018, arXiv 1805.11604, §2.1 and Fig. 2: they
    perturb each activation of each sample in the batch with i.i.d. noise of non-zero mean and
    non-unit variance, changing every step; here the noise is drawn per unit and per step only.
    """

    def __init__(self, num_features, shift_std=1.0, scale_std=0.5, generator=None, **kwargs):
        super().__init__(num_features, **kwargs)
        if shift_std < 0 or scale_std < 0:
            raise InputError(
                f"NoisyBatchNorm1d: expected shift_std >= 0 and scale_std >= 0, got "
                f"shift_std={shift_std}, scale_std={scale_std}"
            )
        self.shift_std, self.scale_std = float(shift_std), float(scale_std)
        self.generator = generator

    def extra_repr(self):
        return f"{super().extra_repr()}, shift_std={self.shift_std}, scale_std={self.scale_std}"

    def forward(self, x):
        y = super().forward(x)
        if not self.training:
            return y
        shape = _channel_shape(x)  # (1, C) or (1, C, 1): one draw per activation
        z = torch.randn((2, *shape), generator=self.generator, dtype=y.dtype, device=y.device)
        return y * torch.exp(self.scale_std * z[0]) + self.shift_std * z[1]


# --- module 5: RMSNorm, the normalization of today's large language models -----------------------

__all__ += ["RMSNorm"]


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, per sample over the last dimensions.

    No mean subtracted, no bias: LayerNorm without the re-centering. normalized_shape: int or
    tuple, the trailing dimensions; weight has that shape. eps=None uses the machine epsilon of
    the input's dtype, as torch.nn.RMSNorm. Zhang & Sennrich 2019, arXiv 1910.07467.
    """

    def __init__(
        self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None
    ):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(
                torch.ones(self.normalized_shape, device=device, dtype=dtype)
            )
        else:
            self.register_parameter("weight", None)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )

    def forward(self, x):
        dims = _check_normalized_shape("RMSNorm", self.normalized_shape, x)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        x64 = x.double()  # NB: the statistic in float64, as the other layers here
        y = x64 * torch.rsqrt(x64.square().mean(dim=dims, keepdim=True) + eps)
        if self.weight is not None:
            y = y * self.weight
        return y.to(x.dtype)
