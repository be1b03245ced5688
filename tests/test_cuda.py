"""CPU-CUDA identity of the fused ops: same (seed, offset) give the same draws on both.

Skipped where no GPU exists (conftest.py); run them on a GPU machine.
"""

import pytest
import torch

from aetk import ops
from aetk.ops import CORRUPTION_KINDS, contractive_penalty, corrupt, reparameterize

pytestmark = pytest.mark.cuda
LEVELS = {"gaussian": 0.3, "masking": 0.25, "masking_exact": 0.25, "salt_pepper": 0.2,
          "uniform": 0.5}


@pytest.mark.parametrize("n", [1, 63, 64, 1000, 1 << 20])
def test_words_bitwise_and_normals_identical(n):
    for seed, offset in ((0, 0), (2**40 + 5, 2**35 + 1)):
        assert torch.equal(ops.random_words(n, seed, offset, "cuda").cpu(),
                           ops.random_words(n, seed, offset))
        cpu = ops.normal(n, seed, offset)
        gpu = ops.normal(n, seed, offset, "cuda").cpu()
        assert (gpu - cpu).abs().max().item() <= 1e-6


@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
@pytest.mark.parametrize("shape", [(37, 53), (256, 784), (3, 9000), (130,)])
def test_corrupt_float32_identical(kind, shape):
    x = torch.rand(shape)
    y, m = corrupt(x, kind, LEVELS[kind], 5, 6, lo=-1.0, hi=2.0, return_mask=True)
    yg, mg = corrupt(x.cuda(), kind, LEVELS[kind], 5, 6, lo=-1.0, hi=2.0, return_mask=True)
    assert torch.equal(mg.cpu(), m)
    assert (yg.cpu() - y).abs().max().item() <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
def test_corrupt_low_precision(kind, dtype):
    x = torch.rand(64, 300).to(dtype)
    yg, mg = corrupt(x.cuda(), kind, LEVELS[kind], 1, 2, return_mask=True)
    y, m = corrupt(x.float(), kind, LEVELS[kind], 1, 2, return_mask=True)
    assert yg.dtype == dtype
    assert torch.equal(mg.cpu(), m)
    # float math, one rounding to the storage type at the end
    torch.testing.assert_close(yg.cpu().float(), y.to(dtype).float(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
def test_corrupt_backward_identical(kind):
    x = torch.rand(40, 100, requires_grad=True)
    xg = x.detach().cuda().requires_grad_()
    g = torch.randn(40, 100)
    corrupt(x, kind, LEVELS[kind], 3, 3).backward(g)
    corrupt(xg, kind, LEVELS[kind], 3, 3).backward(g.cuda())
    assert torch.equal(xg.grad.cpu(), x.grad)


@pytest.mark.parametrize("shape", [(64, 20), (33, 5000), (4096, 256), (9,)])
def test_reparameterize_close(shape):
    mu, logvar = torch.randn(shape), torch.randn(shape) * 0.5
    gz, gkl = torch.randn(shape), torch.randn(shape[0])
    outs = []
    for dev in ("cpu", "cuda"):
        m = mu.to(dev).requires_grad_()
        lv = logvar.to(dev).requires_grad_()
        z, kl = reparameterize(m, lv, 8, 9)
        torch.autograd.backward((z, kl), (gz.to(dev), gkl.to(dev)))
        outs.append([t.detach().cpu() for t in (z, kl, m.grad, lv.grad)])
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reparameterize_low_precision(dtype):
    mu, logvar = torch.randn(128, 64), torch.randn(128, 64) * 0.5
    z, kl = reparameterize(mu.to(dtype).cuda(), logvar.to(dtype).cuda(), 1, 1)
    zr, klr = reparameterize(mu.to(dtype).float(), logvar.to(dtype).float(), 1, 1)
    assert z.dtype == dtype and kl.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(z.cpu().float(), zr, rtol=tol, atol=tol)
    torch.testing.assert_close(kl.cpu().float(), klr, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows,hidden,inputs", [(256, 1000, 784), (3, 17, 5), (2000, 64, 2048)])
def test_contractive_close(dtype, rows, hidden, inputs):
    h, W = torch.rand(rows, hidden).to(dtype), (torch.randn(hidden, inputs) * 0.05).to(dtype)
    g = torch.randn(rows)
    outs = []
    for dev, dt in (("cpu", torch.float32), ("cuda", dtype)):
        hh = h.to(dev, torch.float32 if dev == "cpu" else dt).requires_grad_()
        WW = W.to(dev, torch.float32 if dev == "cpu" else dt).requires_grad_()
        out = contractive_penalty(hh, WW)
        out.backward(g.to(dev, out.dtype))
        outs.append([t.detach().cpu().float() for t in (out, hh.grad, WW.grad)])
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)


def test_runs_on_the_current_stream():
    x = torch.rand(1 << 20, device="cuda")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = corrupt(x, "masking", 0.5, 1, 1)
    side.synchronize()
    assert torch.equal(y.cpu(), corrupt(x.cpu(), "masking", 0.5, 1, 1))


def test_opcheck_cuda():
    x = torch.rand(8, 70, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.aetk.corrupt.default, (x, "masking", 0.25, 0.0, 1.0, 3, 4, True))
    mu = torch.randn(4, 9, device="cuda", requires_grad=True)
    lv = torch.randn(4, 9, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.aetk.reparameterize.default, (mu, lv, 1, 2))
    h = torch.rand(4, 9, device="cuda", requires_grad=True)
    W = torch.randn(9, 6, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.aetk.contractive_penalty.default, (h, W))


def test_float64_on_cuda_is_refused():
    with pytest.raises(TypeError, match="float32, float16, bfloat16 on cuda, got float64"):
        corrupt(torch.rand(4, 4, dtype=torch.float64, device="cuda"), "masking", 0.5)


def test_device_mismatch():
    with pytest.raises(ValueError, match="same device"):
        reparameterize(torch.zeros(4, 3), torch.zeros(4, 3, device="cuda"))
