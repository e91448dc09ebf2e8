"""bnlib's RMSNorm (functional and module) against PyTorch's, the oracle."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlib import functional as F
from bnlib import nn as bnn

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    k = draw(st.integers(1, rank))
    normalized_shape = shape[rank - k :]
    if k == 1 and draw(st.booleans()):
        normalized_shape = normalized_shape[0]  # an int, as torch.nn.RMSNorm(D)
    return shape, normalized_shape


@settings(max_examples=200, deadline=None)
@given(
    case=cases(),
    dtype=st.sampled_from([np.float64, np.float32]),
    weighted=st.booleans(),
    eps=st.sampled_from([None, 1e-6, 1e-2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_rms_norm_matches_torch(case, dtype, weighted, eps, seed):
    shape, normalized_shape = case
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    rng = np.random.default_rng(seed)
    x = (rng.uniform(-3, 3) + rng.uniform(0.5, 3) * rng.standard_normal(shape)).astype(dtype)
    weight = rng.uniform(-2, 2, ns).astype(dtype) if weighted else None
    y = F.rms_norm(x, normalized_shape, weight, eps)
    yt = TF.rms_norm(
        torch.from_numpy(x), ns, None if weight is None else torch.from_numpy(weight), eps
    )  # NB: in x's own dtype, so that eps=None means the same machine epsilon on both sides
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, yt.numpy(), **TOL[dtype])


def test_rms_norm_rescales_but_does_not_recenter():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    y = F.rms_norm(x, 4, eps=0.0)
    np.testing.assert_allclose(np.mean(y**2), 1.0)  # unit root mean square ...
    assert y.mean() > 0.5  # ... but the mean is kept (layer norm would make it 0)
    np.testing.assert_allclose(F.rms_norm(3 * x, 4, eps=0.0), y)  # scale invariant
    assert not np.allclose(F.rms_norm(x + 1, 4, eps=0.0), y)  # not shift invariant


def test_rms_norm_errors_name_the_problem():
    with pytest.raises(ValueError, match="normalized_shape=\\(3,\\) must match"):
        F.rms_norm(np.ones((2, 4)), 3)
    with pytest.raises(ValueError, match="weight must have shape \\(4,\\)"):
        F.rms_norm(np.ones((2, 4)), 4, np.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        F.rms_norm(np.ones((2, 4), dtype=int), 4)
    with pytest.raises(ValueError, match="RMSNorm: normalized_shape"):
        bnn.RMSNorm(3)(torch.ones(2, 4))


@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_module_matches_torch_and_loads_its_state(affine):
    torch.manual_seed(0)
    theirs = torch.nn.RMSNorm((3, 4), eps=1e-5, elementwise_affine=affine).double()
    if affine:
        with torch.no_grad():
            theirs.weight.copy_(torch.rand(3, 4) + 0.5)
    ours = bnn.RMSNorm((3, 4), eps=1e-5, elementwise_affine=affine).double()
    ours.load_state_dict(theirs.state_dict())  # strict
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, yt = ours(x), theirs(x2)
    torch.testing.assert_close(y, yt)
    dy = torch.randn_like(y)
    y.backward(dy)
    yt.backward(dy)
    torch.testing.assert_close(x.grad, x2.grad)
    if affine:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
