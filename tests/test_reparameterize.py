"""reparameterize: fused kernel vs reparameterize_ref, gradients, statistics, bad input."""

import math

import pytest
import torch

from aetk import native, ops
from aetk.ops import reparameterize, reparameterize_ref


@pytest.mark.parametrize("shape", [(64, 20), (33, 70), (5, 4, 6, 3), (7,), (3, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_values_and_gradients(shape, dtype):
    mu = torch.randn(shape, dtype=dtype)
    logvar = torch.randn(shape, dtype=dtype) * 0.7
    gz, gkl = torch.randn(shape, dtype=dtype), torch.randn(shape[0], dtype=dtype)

    def run(fn):
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z, kl = fn(m, lv, 21, 8)
        torch.autograd.backward((z, kl), (gz, gkl))
        return z.detach(), kl.detach(), m.grad, lv.grad

    got, want = run(reparameterize), run(reparameterize_ref)
    assert got[1].shape == (shape[0],)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-6, atol=1e-6)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **tol)


def test_z_is_distributed_as_n_mu_sigma():
    n = 1 << 20
    mu = torch.full((1024, 1024), 1.5)
    logvar = torch.full((1024, 1024), math.log(0.25))  # sigma = 0.5
    z, kl = reparameterize(mu, logvar, 3, 3)
    assert abs(z.mean().item() - 1.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(z.std().item() - 0.5) < 5 * 0.5 * math.sqrt(0.5 / n)
    # KL(N(1.5, 0.25) || N(0, 1)) per dimension = 0.5 * (0.25 + 2.25 - 1 - ln 0.25)
    per_dim = 0.5 * (0.25 + 2.25 - 1 - math.log(0.25))
    torch.testing.assert_close(kl, torch.full((1024,), 1024 * per_dim), rtol=1e-5, atol=0)


def test_eps_is_the_documented_normal_stream():
    mu, logvar = torch.zeros(8, 50), torch.zeros(8, 50)
    z, _ = reparameterize(mu, logvar, 4, 5)
    assert torch.equal(z.flatten(), ops.normal(400, 4, 5))


def test_reproducible_and_offsets_independent():
    mu, logvar = torch.zeros(256, 256), torch.zeros(256, 256)
    a = reparameterize(mu, logvar, 1, 1)[0]
    assert torch.equal(a, reparameterize(mu, logvar, 1, 1)[0])
    b = reparameterize(mu, logvar, 1, 2)[0]
    r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
    assert abs(r) < 5 / 256


def test_only_mu_and_logvar_are_saved():
    mu = torch.randn(4, 6, requires_grad=True)
    logvar = torch.randn(4, 6, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        reparameterize(mu, logvar, 0, 0)
    assert len(saved) == 2
    assert all(any(s is t for t in (mu, logvar)) for s in saved)


def test_gradcheck_float64():
    mu = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    logvar = (torch.randn(3, 40, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize(m, lv, 5, 6), (mu, logvar))


def test_simd_paths_agree(simd_paths):
    C = native.extension()
    mu, logvar = torch.randn(17, 130), torch.randn(17, 130)
    outs = []
    for p in simd_paths:
        C.cpu.set_simd_path(p)
        m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
        z, kl = reparameterize(m, lv, 2, 3)
        (z.sum() + kl.sum()).backward()
        outs.append((z, kl, m.grad, lv.grad))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def test_empty():
    z, kl = reparameterize(torch.empty(0, 4), torch.empty(0, 4))
    assert z.shape == (0, 4) and kl.shape == (0,)
    z, kl = reparameterize(torch.empty(3, 0), torch.empty(3, 0))
    assert z.shape == (3, 0) and torch.equal(kl, torch.zeros(3))


def test_opcheck():
    mu = torch.randn(4, 9, requires_grad=True)
    logvar = torch.randn(4, 9, requires_grad=True)
    torch.library.opcheck(torch.ops.aetk.reparameterize.default, (mu, logvar, 1, 2))
    torch.library.opcheck(torch.ops.aetk.reparameterize_backward.default,
                          (mu.detach(), logvar.detach(), torch.randn(4, 9), torch.randn(4), 1, 2))


@pytest.mark.parametrize(
    "mu,logvar,exc,match",
    [
        (torch.zeros(4, 3), torch.zeros(4, 4), ValueError, "same shape, got \\(4, 3\\) and \\(4, 4\\)"),
        (torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.float64), TypeError, "same dtype"),
        (torch.zeros(4, 3), torch.zeros(4, 3, device="meta"), ValueError, "same device"),
        (torch.zeros(4, 3, dtype=torch.int32), torch.zeros(4, 3, dtype=torch.int32), TypeError,
         "mu must have dtype float32, float64 on cpu"),
        (torch.zeros(3, 4).t(), torch.zeros(4, 3), ValueError, "mu must be contiguous"),
        (torch.zeros(()), torch.zeros(()), ValueError, "at least 1 dimension"),
        (torch.zeros(4, 3), None, TypeError, "logvar must be a torch.Tensor"),
    ],
)
def test_bad_input(mu, logvar, exc, match):
    with pytest.raises(exc, match=match):
        reparameterize(mu, logvar)
