"""Synchronized batch norm on CPU processes, and a launcher that runs a function on K processes.

`torch.nn.SyncBatchNorm` refuses CPU tensors, so this module computes BN's statistics over the
union of every process's local batch with `torch.distributed` collectives on the gloo backend:

- forward: each process's (count, mean, M2 = sum of squared deviations) per channel are
  all-gathered and combined exactly (Chan et al.'s parallel formula: counts may differ), giving
  the global mean and biased variance; NB: the textbook (count, sum, sum of squares) all-reduce
  gives the same numbers in exact arithmetic but loses digits at large offsets;
- backward: sum(dy) and sum(dy * xhat) per channel are all-reduced, and dx is BN's closed form
  with the global count;
- running statistics: updated from the global mean and unbiased variance, identical everywhere.

Parameter gradients stay local, as with torch.nn.SyncBatchNorm: DistributedDataParallel (or an
all-reduce, `average_gradients`) combines them.

`run_on_processes(fn, K, *args)` runs fn(rank, world_size, *args) on K spawned processes joined in
a gloo process group, and returns the K results. The processes meet through a file in a fresh
temporary folder (a FileStore), not a TCP port, so two launches at once cannot clash. NB: spawned
processes import fn by name, so fn must live in an importable module (as the functions below
do), not in a notebook cell.

Shape legend: N batch, C channels, D features, K processes.
References: torch/nn/modules/batchnorm.py (SyncBatchNorm), torch/nn/modules/_functions.py;
Chan, Golub & LeVeque 1979 (pairwise variance); Ioffe & Szegedy 2015, arXiv 1502.03167.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time

import torch
import torch.distributed as dist

from bnlib.nn import _BatchNorm

__all__ = [
    "SyncBatchNorm",
    "sync_batch_norm",
    "global_stats",
    "run_on_processes",
    "free_port",
    "average_gradients",
    "sync_bn_step",
    "sync_bn_steps",
    "train_data_parallel",
    "local_vs_sync",
]


def _reduce_dims(x):
    return [0] + list(range(2, x.dim()))  # every axis but C


def _channel_view(t, x):
    return t.view((1, x.shape[1]) + (1,) * (x.dim() - 2))  # (1, C, 1, ...)


def global_stats(x, group=None):
    """Global (count, mean, biased var) per channel over every process's x: (N_k, C, *).

    Local statistics in float64, all-gathered as (count, mean, M2) and combined exactly.
    """
    C = x.shape[1]
    dims = _reduce_dims(x)
    x64 = x.detach().double()
    n = x64.numel() // C
    if n > 0:
        mean = x64.mean(dim=dims)  # (C,)
        m2 = (x64 - _channel_view(mean, x64)).square().sum(dim=dims)  # (C,)
    else:  # an empty local batch contributes nothing
        mean = m2 = torch.zeros(C, dtype=torch.float64)
    local = torch.cat([torch.tensor([float(n)], dtype=torch.float64), mean, m2])  # (1 + 2C,)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    table = torch.stack(gathered)  # (K, 1 + 2C)
    counts, means, m2s = table[:, :1], table[:, 1 : C + 1], table[:, C + 1 :]
    total = counts.sum()
    g_mean = (counts * means).sum(dim=0) / total  # (C,)
    g_m2 = (m2s + counts * (means - g_mean).square()).sum(dim=0)  # (C,)
    return int(total.item()), g_mean, g_m2 / total


class _SyncBatchNormFunction(torch.autograd.Function):
    """y = xhat * weight + bias with given global statistics; backward all-reduces two sums.

    mean, invstd: (C,) float64, the global statistics (computed by `global_stats`); the backward
    accounts for their dependence on x analytically, so they enter as constants.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, count, group):
        xhat = (x.double() - _channel_view(mean, x)) * _channel_view(invstd, x)
        y = xhat
        if weight is not None:
            y = y * _channel_view(weight.double(), x)
        if bias is not None:
            y = y + _channel_view(bias.double(), x)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.count, ctx.group, ctx.has_bias, ctx.dtype = count, group, bias is not None, x.dtype
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        xhat, invstd, weight = ctx.saved_tensors
        dims = _reduce_dims(xhat)
        dy64 = dy.double()
        sum_dy = dy64.sum(dim=dims)  # (C,), local
        sum_dy_xhat = (dy64 * xhat).sum(dim=dims)  # (C,), local
        both = torch.cat([sum_dy, sum_dy_xhat])  # (2C,)
        dist.all_reduce(both, group=ctx.group)  # NB: the two sums BN's dx needs, over all ranks
        C, n = sum_dy.numel(), ctx.count
        mean_dy = _channel_view(both[:C] / n, xhat)
        mean_dy_xhat = _channel_view(both[C:] / n, xhat)
        scale = invstd if weight is None else invstd * weight.double()  # (C,)
        dx = (dy64 - mean_dy - xhat * mean_dy_xhat) * _channel_view(scale, xhat)
        # parameter gradients stay local: DDP (or average_gradients) sums them over processes
        dweight = None if weight is None else sum_dy_xhat.to(weight.dtype)
        dbias = None if not ctx.has_bias else sum_dy.to(dy.dtype)
        return dx.to(ctx.dtype), dweight, dbias, None, None, None, None


def sync_batch_norm(x, weight=None, bias=None, eps=1e-5, group=None):
    """Batch norm in training mode over the union of every process's x: (N_k, C, *).

    y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased var over all processes.
    weight, bias: (C,) or None. Returns (y, count, mean, var): y of x's shape; the global count;
    mean and var (C,) float64. Needs an initialized process group (gloo for CPU tensors).
    """
    count, mean, var = global_stats(x, group)
    if count <= 1:
        raise ValueError(
            "SyncBatchNorm: expected more than 1 value per channel over all processes when "
            f"training, got {count} (local input of shape {tuple(x.shape)})"
        )
    invstd = torch.rsqrt(var + eps)
    y = _SyncBatchNormFunction.apply(x, weight, bias, mean, invstd, count, group)
    return y, count, mean, var


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose statistics span the local batches of all processes (CPU, gloo).

    A drop-in for BatchNorm1d/2d ((N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W) input), with
    the same parameters and buffers (so state_dicts load both ways). In training mode with an
    initialized process group of more than one process, statistics are global: each process may
    hold a different number of samples; running statistics get the global mean and unbiased
    variance and are identical on every process. Otherwise (eval mode, no process group, or one
    process) it is plain batch norm, as torch.nn.SyncBatchNorm.
    process_group: the group to synchronize over (default: the whole world).
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        process_group=None,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _needs_sync(self):
        return (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size(self.process_group) > 1
        )

    def forward(self, x):
        if not self._needs_sync():
            return super().forward(x)
        self._check_input_dim(x)
        self._check_channels(x)
        y, count, mean, var = sync_batch_norm(
            x, self.weight, self.bias, self.eps, self.process_group
        )
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            self._update_running(mean, var, count, factor)  # the same on every process
        return y


# --- running a function on K processes -----------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that is free now (the OS picks it). NB: another program may take
    it before you bind it, which is why run_on_processes meets through a file instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, fn, world_size, out_dir, args):
    torch.set_num_threads(1)  # K processes share the machine's cores
    # NB: a file in this launch's own folder, not a TCP port: a port picked as free can be taken
    # by another launch (or any program) before the processes bind it; a fresh folder cannot.
    store = os.path.join(out_dir, "rendezvous")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        dist.barrier()
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
        # NB: leave gloo only once every process is out of the barrier: a process that tears its
        # connections down while a peer still finishes the barrier makes that peer abort.
        _wait_for_files(out_dir, [f"{r}.pt" for r in range(world_size)])
    finally:
        dist.destroy_process_group()


def _wait_for_files(folder, names, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(os.path.join(folder, n)) for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run_on_processes: the other processes did not finish: {names}")
        time.sleep(0.01)


def run_on_processes(fn, world_size, *args):
    """Run fn(rank, world_size, *args) on world_size CPU processes; return the results by rank.

    The processes are started with torch.multiprocessing's spawn and joined in a gloo process
    group that meets through a file in a fresh temporary folder (torch.distributed works inside
    each; launches running at the same time share nothing, no port either). Results travel back
    through torch.save, so tensors, numbers and dicts of them are fine. NB: fn must be importable
    (defined in a module, e.g. bnlib.distributed.sync_bn_step), not in a notebook cell: spawned
    processes find it by its module and name. An exception in any process is raised here; a
    launch whose process was killed by a signal is run once more, then that is raised too.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"run_on_processes: world_size must be at least 1, got {world_size}")
    if getattr(fn, "__module__", "__main__") == "__main__" or "<locals>" in getattr(
        fn, "__qualname__", "<locals>"
    ):
        raise ValueError(
            f"run_on_processes: {getattr(fn, '__qualname__', fn)!r} must be defined at the top "
            "level of an importable module (spawned processes import it by name), not in a "
            "notebook cell, a script's __main__ or another function"
        )
    for attempt in range(2):
        with tempfile.TemporaryDirectory(prefix="bnlib-dist-") as out_dir:
            try:
                mp.spawn(
                    _worker,
                    args=(fn, world_size, out_dir, args),
                    nprocs=world_size,
                    join=True,
                )
            except mp.ProcessExitedException:
                # killed by a signal (gloo aborts its process on a lost connection), not an
                # exception of fn's (that is ProcessRaisedException, raised at once): once more
                if attempt:
                    raise
                continue
            return [
                torch.load(os.path.join(out_dir, f"{r}.pt"), weights_only=False)
                for r in range(world_size)
            ]


# --- functions to run on the processes (importable, so spawn can find them) ----------------------


def sync_bn_step(rank, world_size, batches, weight, bias, douts, sync=True):
    """One training-mode BN forward and backward on this process's batch: the test and the lesson.

    batches, douts: lists of K tensors (N_k, C, *), one per process (N_k may differ); weight,
    bias: (C,), or both None for affine=False. sync=False uses a local bnlib BatchNorm instead
    (each process its own statistics).
    Returns a dict of this process's out, dx, dweight, dbias (local), running_mean, running_var.
    """
    x = batches[rank].clone().requires_grad_()
    C, affine = x.shape[1], weight is not None
    if sync:
        bn = SyncBatchNorm(C, affine=affine, dtype=x.dtype)
    else:
        from bnlib.nn import BatchNorm1d, BatchNorm2d

        bn = (BatchNorm1d if x.dim() < 4 else BatchNorm2d)(C, affine=affine, dtype=x.dtype)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
    out = bn(x)
    out.backward(douts[rank])
    return {
        "out": out.detach(),
        "dx": x.grad,
        "dweight": bn.weight.grad if affine else None,
        "dbias": bn.bias.grad if affine else None,
        "running_mean": bn.running_mean.clone(),
        "running_var": bn.running_var.clone(),
    }


def sync_bn_steps(rank, world_size, cases, sync=True):
    """sync_bn_step for each (batches, weight, bias, douts) in cases, in one process launch."""
    return [sync_bn_step(rank, world_size, *case, sync=sync) for case in cases]


def average_gradients(model, group=None):
    """All-reduce every parameter's gradient and divide by the number of processes (what
    DistributedDataParallel does during backward)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or not dist.is_initialized():  # one process: nothing to average
        return
    flat = torch.cat([g.flatten() for g in grads])  # one collective instead of one per tensor
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def train_data_parallel(
    rank,
    world_size,
    sync,
    local_batch,
    epochs,
    lr,
    seed=0,
    dtype=torch.float32,
    steps=None,
    data=None,
):
    """Data-parallel SGD on the digits MLP of bnlib.train.mlp(norm="bn"), run on every process.

    Each step takes one global batch of world_size * local_batch samples (bnlib.train.train's
    seeded order), gives each process its local_batch slice, and averages the gradients. sync:
    SyncBatchNorm instead of each process's local BatchNorm1d. With sync=True this is, up to
    rounding, train(mlp(norm="bn"), batch_size=world_size * local_batch) on one process.
    steps: stop after that many steps (as train(..., steps=...)), None for all the epochs.
    dtype: of the model and the data (float64 keeps rounding differences from growing over the
    steps, for an exact comparison). data: the digits as bnlib.data.load_digits(tensors=True)
    gives them (default: loaded here; passing them spares each process scikit-learn's import).
    Returns this process's test accuracy in eval mode (rank 0's counts: DDP broadcasts rank 0's
    buffers), its first BN layer's running mean and its state_dict.
    """
    from torch import nn

    from bnlib.train import accuracy, mlp

    if data is None:
        from bnlib.data import load_digits

        data = load_digits(tensors=True)
    x, y, x_test, y_test = data[:4]
    x, x_test = x.to(dtype), x_test.to(dtype)
    torch.manual_seed(seed)
    model = mlp(norm="bn").to(dtype)  # the same initial weights on every process
    if sync:
        for i, layer in enumerate(model):
            if isinstance(layer, nn.BatchNorm1d):
                model[i] = SyncBatchNorm(layer.num_features, dtype=dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    batch = world_size * local_batch
    per_epoch = len(x) // batch
    total = epochs * per_epoch if steps is None else steps
    for epoch in range(math.ceil(total / per_epoch)):
        order = torch.randperm(len(x), generator=generator)
        for step in range(min(per_epoch, total - epoch * per_epoch)):
            idx = order[step * batch : (step + 1) * batch]  # the global batch
            mine = idx[rank * local_batch : (rank + 1) * local_batch]  # (local_batch,)
            model.train()
            loss = nn.functional.cross_entropy(model(x[mine]), y[mine])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(model)
            opt.step()
    first_bn = next(m for m in model if isinstance(m, nn.BatchNorm1d | SyncBatchNorm))
    return {
        "test_acc": accuracy(model, x_test, y_test),
        "running_mean": first_bn.running_mean.clone(),
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
    }


def local_vs_sync(
    rank, world_size, local_batch, epochs, lr, seed=0, dtype=torch.float32, steps=None, data=None
):
    """train_data_parallel twice in the same processes (one launch): {"local": ..., "sync": ...}."""
    return {
        kind: train_data_parallel(
            rank, world_size, sync, local_batch, epochs, lr, seed, dtype, steps, data
        )
        for kind, sync in (("local", False), ("sync", True))
    }
