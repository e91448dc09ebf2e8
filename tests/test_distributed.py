"""bnlib.distributed.SyncBatchNorm on 2 gloo processes equals batch norm over the concatenated
batch: outputs, input and parameter gradients, running statistics, with uneven local batches."""

import pytest
import torch

from bnlib.distributed import (
    SyncBatchNorm,
    free_port,
    run_on_processes,
    sync_bn_step,
    sync_bn_steps,
)


def _reference(batches, weight, bias, douts):
    x = torch.cat(batches).requires_grad_()
    bn = (torch.nn.BatchNorm1d if x.dim() < 4 else torch.nn.BatchNorm2d)(
        x.shape[1], affine=weight is not None, dtype=torch.float64
    )
    if weight is not None:
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
    out = bn(x)
    out.backward(torch.cat(douts))
    return out.detach(), x.grad, bn


def _cases():
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    C = 3
    flat = [r(3, C) * 2 + 100.0, r(5, C) * 0.5 + 99.0]  # uneven (3 and 5), a large offset
    images = [r(1, C, 2, 2), r(2, C, 2, 2) + 1.0]  # uneven, (N, C, H, W)
    return {
        "uneven (N, C)": (flat, [r(*b.shape) for b in flat]),
        "uneven (N, C, H, W)": (images, [r(*b.shape) for b in images]),
        "equal, batch 1 each": ([r(1, C), r(1, C)], [r(1, C), r(1, C)]),
        "affine=False, uneven": (flat, [r(*b.shape) for b in flat]),
    }


@pytest.fixture(scope="module")
def results():
    """Every case in one launch of 2 processes (a launch costs about a second)."""
    cases = {}
    for name, (batches, douts) in _cases().items():
        C = batches[0].shape[1]
        weight = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
        bias = torch.linspace(-1.0, 1.0, C, dtype=torch.float64)
        if name.startswith("affine=False"):
            weight = bias = None
        cases[name] = (batches, weight, bias, douts)
    ranks = run_on_processes(sync_bn_steps, 2, list(cases.values()))
    return {
        name: ([ranks[0][i], ranks[1][i]], _reference(*case))
        for i, (name, case) in enumerate(cases.items())
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_sync_bn_equals_bn_over_the_concatenated_batch(results, name):
    ranks, (out, dx, bn) = results[name]
    close = {"rtol": 1e-10, "atol": 1e-10}
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out, **close)
    torch.testing.assert_close(torch.cat([r["dx"] for r in ranks]), dx, **close)
    if bn.affine:  # parameter gradients are local: their sum over processes is the full batch's
        torch.testing.assert_close(sum(r["dweight"] for r in ranks), bn.weight.grad, **close)
        torch.testing.assert_close(sum(r["dbias"] for r in ranks), bn.bias.grad, **close)
    else:
        assert all(r["dweight"] is None and r["dbias"] is None for r in ranks)
    for r in ranks:  # identical on every process, and unbiased as in torch.nn.BatchNorm
        torch.testing.assert_close(r["running_mean"], bn.running_mean, **close)
        torch.testing.assert_close(r["running_var"], bn.running_var, **close)


def test_local_bn_differs_so_the_comparison_can_fail():
    (batches, douts) = _cases()["uneven (N, C)"]
    weight, bias = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    local = run_on_processes(sync_bn_step, 2, batches, weight, bias, douts, False)
    out, _, _ = _reference(batches, weight, bias, douts)
    assert not torch.allclose(torch.cat([r["out"] for r in local]), out, atol=1e-3)


def test_two_launches_at_once_do_not_clash():
    """Each launch meets through a file in its own folder (no port to race for): two launched at
    the same time each combine only their own processes' batches."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(1)
    cases = [
        [torch.randn(2, 3, generator=g, dtype=torch.float64) + offset for _ in range(2)]
        for offset in (0.0, 50.0)
    ]
    douts = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        launches = [
            pool.submit(run_on_processes, sync_bn_step, 2, batches, None, None, douts)
            for batches in cases
        ]
        results = [launch.result(timeout=120) for launch in launches]
    for batches, ranks in zip(cases, results, strict=True):
        out, _, _ = _reference(batches, None, None, douts)
        torch.testing.assert_close(
            torch.cat([r["out"] for r in ranks]), out, rtol=1e-10, atol=1e-10
        )


def test_without_a_process_group_it_is_plain_batch_norm():
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    ours, theirs = SyncBatchNorm(4, dtype=torch.float64), torch.nn.BatchNorm2d(4).double()
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_errors():
    with pytest.raises(ValueError, match="at least 2D"):
        SyncBatchNorm(3)(torch.randn(3))
    with pytest.raises(ValueError, match="importable module"):
        run_on_processes(lambda rank, world_size: rank, 2)
    with pytest.raises(ValueError, match="world_size"):
        run_on_processes(sync_bn_step, 0)
    assert 0 < free_port() < 65536
