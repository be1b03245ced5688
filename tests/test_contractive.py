"""contractive_penalty: fused kernel vs reference vs the true Jacobian, gradients, bad input."""

import pytest
import torch

from aetk import native
from aetk.ops import contractive_penalty, contractive_penalty_ref


def test_equals_squared_frobenius_norm_of_the_true_jacobian():
    torch.manual_seed(0)
    x = torch.randn(5, 12, dtype=torch.float64)
    W = torch.randn(7, 12, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64)
    h = torch.sigmoid(x @ W.T + b)
    per_example = contractive_penalty(h, W)
    for i in range(5):
        J = torch.func.jacrev(lambda v: torch.sigmoid(W @ v + b))(x[i])
        torch.testing.assert_close(per_example[i], (J**2).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows,hidden,inputs", [(256, 1000, 784), (3, 17, 5), (1, 1, 1), (70, 33, 129)])
def test_matches_reference_values_and_gradients(dtype, rows, hidden, inputs):
    h = torch.rand(rows, hidden, dtype=dtype)
    W = torch.randn(hidden, inputs, dtype=dtype) * 0.1
    g = torch.randn(rows, dtype=dtype)

    def run(fn):
        hh, WW = h.clone().requires_grad_(), W.clone().requires_grad_()
        out = fn(hh, WW)
        out.backward(g)
        return out.detach(), hh.grad, WW.grad

    tol = dict(rtol=2e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, b in zip(run(contractive_penalty), run(contractive_penalty_ref)):
        torch.testing.assert_close(a, b, **tol)


def test_gradcheck_float64():
    h = torch.rand(4, 9, dtype=torch.float64, requires_grad=True)
    W = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(contractive_penalty, (h, W))


def test_gradient_to_one_input_only():
    h = torch.rand(4, 9, requires_grad=True)
    W = torch.randn(9, 6)
    contractive_penalty(h, W, reduction="sum").backward()
    assert h.grad is not None and W.grad is None


def test_reductions():
    h, W = torch.rand(6, 5), torch.randn(5, 3)
    per = contractive_penalty(h, W)
    torch.testing.assert_close(contractive_penalty(h, W, reduction="sum"), per.sum())
    torch.testing.assert_close(contractive_penalty(h, W, reduction="mean"), per.mean())


def test_simd_paths_agree(simd_paths):
    C = native.extension()
    h, W = torch.rand(40, 70), torch.randn(70, 50)
    outs = []
    for p in simd_paths:
        C.cpu.set_simd_path(p)
        hh, WW = h.clone().requires_grad_(), W.clone().requires_grad_()
        out = contractive_penalty(hh, WW)
        out.sum().backward()
        outs.append((out, hh.grad, WW.grad))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def test_empty():
    assert contractive_penalty(torch.empty(0, 5), torch.randn(5, 3)).shape == (0,)
    assert torch.equal(contractive_penalty(torch.rand(4, 0), torch.empty(0, 3)), torch.zeros(4))


def test_opcheck():
    h = torch.rand(4, 9, requires_grad=True)
    W = torch.randn(9, 6, requires_grad=True)
    torch.library.opcheck(torch.ops.aetk.contractive_penalty.default, (h, W))
    torch.library.opcheck(torch.ops.aetk.contractive_penalty_backward.default,
                          (h.detach(), W.detach(), torch.randn(4), True, True))


@pytest.mark.parametrize(
    "h,W,kwargs,exc,match",
    [
        (torch.rand(4, 10), torch.randn(8, 5), {}, ValueError, "h has 10 hidden units but W has 8 rows"),
        (torch.rand(4, 10), torch.randn(10), {}, ValueError, "W must be the encoder weight of shape"),
        (torch.rand(10), torch.randn(10, 5), {}, ValueError, "h must be \\(batch, hidden\\)"),
        (torch.rand(4, 10), torch.randn(10, 5, dtype=torch.float64), {}, TypeError, "same dtype"),
        (torch.rand(4, 10), torch.randn(10, 5, device="meta"), {}, ValueError, "same device"),
        (torch.rand(10, 4).t(), torch.randn(10, 5), {}, ValueError, "h must be contiguous"),
        (torch.rand(4, 10), torch.randn(10, 5), {"activation": "relu"}, ValueError,
         "holds only for sigmoid encoders, got activation='relu'"),
        (torch.rand(4, 10), torch.randn(10, 5), {"reduction": "max"}, ValueError,
         "reduction must be one of none, sum, mean"),
    ],
)
def test_bad_input(h, W, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        contractive_penalty(h, W, **kwargs)
