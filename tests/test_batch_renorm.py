"""bnlib.nn.BatchRenorm1d/2d and GhostBatchNorm: batch norm as the limiting case, r and d clipped
as in Ioffe 2017, against a numpy reference and PyTorch."""

import numpy as np
import pytest
import torch

from bnlib.nn import BatchRenorm1d, BatchRenorm2d, GhostBatchNorm


def renorm_numpy(x, gamma, beta, running_mean, running_var, rmax, dmax, eps=1e-5):
    """Ioffe 2017, Alg. 1, for (N, D): returns out, r, d."""
    mu, var = x.mean(axis=0), x.var(axis=0)
    sigma_b, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    r = np.clip(sigma_b / sigma, 1 / rmax, rmax)
    d = np.clip((mu - running_mean) / sigma, -dmax, dmax)
    return gamma * ((x - mu) / sigma_b * r + d) + beta, r, d


def _with_state(module, weight, bias, mean, var):
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weight))
        module.bias.copy_(torch.as_tensor(bias))
        module.running_mean.copy_(torch.as_tensor(mean))
        module.running_var.copy_(torch.as_tensor(var))
    return module


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)) * np.array([0.1, 1.0, 5.0, 2.0]) + np.array([3, -1, 0, 8])
    return x, rng.uniform(0.5, 2, 4), rng.standard_normal(4), np.zeros(4), np.ones(4)


def test_rmax_1_dmax_0_is_batch_norm(case):
    x, w, b, m, v = case
    xt = torch.tensor(x, requires_grad=True)
    brn = _with_state(BatchRenorm1d(4, rmax=1.0, dmax=0.0, dtype=torch.float64), w, b, m, v)
    bn = _with_state(torch.nn.BatchNorm1d(4, dtype=torch.float64), w, b, m, v)
    dout = torch.randn(6, 4, dtype=torch.float64)
    out = brn(xt)
    (dx,) = torch.autograd.grad(out, xt, dout)
    xt2 = torch.tensor(x, requires_grad=True)
    ref = bn(xt2)
    (dx_ref,) = torch.autograd.grad(ref, xt2, dout)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(brn.running_var, bn.running_var, rtol=1e-12, atol=1e-12)
    brn.eval(), bn.eval()
    torch.testing.assert_close(brn(xt), bn(xt2), rtol=1e-12, atol=1e-12)
    assert set(brn.state_dict()) == set(bn.state_dict())


@pytest.mark.parametrize("rmax, dmax", [(1.5, 0.5), (3.0, 2.0), (1.1, 0.0)])
def test_against_numpy_with_clipping(case, rmax, dmax):
    x, w, b, _, _ = case
    mean, var = np.array([0.0, 0.0, 1.0, 10.0]), np.array([1.0, 0.5, 1.0, 9.0])
    brn = _with_state(BatchRenorm1d(4, rmax=rmax, dmax=dmax, dtype=torch.float64), w, b, mean, var)
    want, r, d = renorm_numpy(x, w, b, mean, var, rmax, dmax)
    assert (r == rmax).any() or (r == 1 / rmax).any(), "the case must exercise r's clipping"
    if dmax:
        assert (np.abs(d) == dmax).any(), "the case must exercise d's clipping"
    np.testing.assert_allclose(brn(torch.tensor(x)).detach().numpy(), want, rtol=1e-12)


def test_r_and_d_are_constants_in_backprop(case):
    x, w, b, _, _ = case
    mean, var = np.array([0.0, 0.0, 1.0, 10.0]), np.array([1.0, 0.5, 1.0, 9.0])
    brn = _with_state(BatchRenorm1d(4, rmax=3.0, dmax=5.0, dtype=torch.float64), w, b, mean, var)
    bn = torch.nn.BatchNorm1d(4, affine=False, dtype=torch.float64)
    xt, xt2 = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    dout = torch.randn(6, 4, dtype=torch.float64)
    _, r, _ = renorm_numpy(x, w, b, mean, var, 3.0, 5.0)
    (dx,) = torch.autograd.grad(brn(xt), xt, dout)
    (dx_bn,) = torch.autograd.grad(bn(xt2), xt2, dout * torch.tensor(w * r))
    torch.testing.assert_close(dx, dx_bn, rtol=1e-10, atol=1e-12)  # BN's gradient, scaled by r


def test_batch_renorm_2d_matches_bn_2d_in_the_limit():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64) * 3 + 1
    brn, bn = BatchRenorm2d(2, rmax=1, dmax=0).double(), torch.nn.BatchNorm2d(2).double()
    torch.testing.assert_close(brn(x), bn(x))
    torch.testing.assert_close(brn.running_mean, bn.running_mean)


def test_ghost_bn_normalizes_each_virtual_batch():
    x = torch.randn(10, 3, dtype=torch.float64) * 2 + 5
    ghost = GhostBatchNorm(3, virtual_batch_size=4).double()
    out = ghost(x)
    parts = [torch.nn.functional.batch_norm(c, None, None, training=True) for c in x.split(4)]
    torch.testing.assert_close(out, torch.cat(parts))
    unbiased = torch.stack([c.var(dim=0) for c in x.split(4)]).mean(dim=0)
    torch.testing.assert_close(ghost.running_var, 0.9 + 0.1 * unbiased)
    big = GhostBatchNorm(3, virtual_batch_size=64).double()  # one virtual batch: plain BN
    torch.testing.assert_close(big(x), torch.nn.BatchNorm1d(3).double()(x))


def test_errors():
    with pytest.raises(ValueError, match="rmax >= 1"):
        BatchRenorm1d(3, rmax=0.5)
    with pytest.raises(ValueError, match="2D or 3D"):
        BatchRenorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="4D"):
        BatchRenorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="more than 1 value"):
        BatchRenorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="one value per channel"):
        GhostBatchNorm(3, virtual_batch_size=4)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        GhostBatchNorm(3, virtual_batch_size=1)


def test_frozen_batchnorm_uses_running_statistics_in_train_mode():
    from bnlib.nn import freeze_batchnorm

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    model(torch.randn(8, 3, dtype=torch.float64) * 3 + 1)  # some running statistics
    x = torch.randn(2, 3, dtype=torch.float64)
    model.eval()
    want = model(x)
    frozen = freeze_batchnorm(model).train()
    torch.testing.assert_close(frozen(x), want)
    before = frozen[1].running_mean.clone()
    frozen(x).sum().backward()
    torch.testing.assert_close(frozen[1].running_mean, before)
    assert frozen[1].weight.grad is not None
