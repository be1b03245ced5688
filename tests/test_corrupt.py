"""corrupt: fused kernel vs corrupt_ref, distributions, gradients, bad input."""

import math

import pytest
import torch

from aetk import native
from aetk.ops import CORRUPTION_KINDS, corrupt, corrupt_ref

LEVELS = {"gaussian": 0.3, "masking": 0.25, "masking_exact": 0.25, "salt_pepper": 0.2,
          "uniform": 0.5}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
@pytest.mark.parametrize("shape", [(37, 53), (8, 3, 5, 7), (130,), (2, 64)])
def test_matches_reference(kind, dtype, shape):
    x = torch.rand(shape, dtype=dtype)
    y, m = corrupt(x, kind, LEVELS[kind], 11, 5, lo=-1.0, hi=2.0, return_mask=True)
    yr, mr = corrupt_ref(x, kind, LEVELS[kind], 11, 5, lo=-1.0, hi=2.0, return_mask=True)
    assert y.shape == x.shape and y.dtype == dtype and m.dtype == torch.bool
    assert torch.equal(m, mr)
    if kind == "gaussian":  # own log/sin/cos vs torch's: float rounding only
        torch.testing.assert_close(y, yr, rtol=0, atol=1e-6)
    else:
        assert torch.equal(y, yr)


def test_masking_fraction_and_values():
    n, p = 1 << 20, 0.25
    x = torch.rand(1024, 1024) + 1.0  # never 0, so zeros are exactly the masked elements
    y, m = corrupt(x, "masking", p, 1, 2, return_mask=True)
    frac = m.double().mean().item()
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(y == 0, m)
    assert torch.equal(y[~m], x[~m])


def test_masking_exact_zeroes_exactly_round_v_d_per_example():
    for d, v in ((784, 0.25), (10, 0.55), (7, 0.5), (100, 0.0), (100, 1.0)):
        x = torch.rand(300, d) + 1.0
        y, m = corrupt(x, "masking_exact", v, 3, 4, return_mask=True)
        k = math.floor(v * d + 0.5)
        assert torch.equal(m.sum(1), torch.full((300,), k)), (d, v)
        assert torch.equal(y == 0, m)
    # which components are dropped varies between examples and covers them evenly
    m = corrupt(torch.ones(20000, 8), "masking_exact", 0.25, 9, 9, return_mask=True)[1]
    per_column = m.double().mean(0)
    assert (per_column - 0.25).abs().max().item() < 5 * math.sqrt(0.25 * 0.75 / 20000)


def test_gaussian_noise_statistics():
    x = torch.full((1 << 20,), 0.5)
    sigma = 0.3
    noise = corrupt(x, "gaussian", sigma, 5, 6) - x
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 * sigma / math.sqrt(n)
    assert abs(noise.std().item() / sigma - 1) < 5 * math.sqrt(0.5 / n)


def test_uniform_noise_statistics():
    a = 0.5
    noise = corrupt(torch.zeros(1 << 20), "uniform", a, 5, 6)
    assert noise.min().item() >= -a and noise.max().item() < a
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 * a / math.sqrt(3 * n)
    assert abs(noise.var().item() - a * a / 3) < 0.01 * a * a / 3


def test_salt_pepper_values_and_coin():
    n, v = 1 << 20, 0.3
    x = torch.full((n,), 0.5)
    y, m = corrupt(x, "salt_pepper", v, 7, 8, lo=-1.0, hi=3.0, return_mask=True)
    assert abs(m.double().mean().item() - v) < 5 * math.sqrt(v * (1 - v) / n)
    assert set(torch.unique(y[m]).tolist()) == {-1.0, 3.0}
    salt = (y[m] == 3.0).double().mean().item()
    assert abs(salt - 0.5) < 5 * math.sqrt(0.25 / m.sum().item())
    assert torch.equal(y[~m], x[~m])


@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
def test_reproducible_and_offsets_independent(kind):
    x = torch.rand(512, 256)
    a = corrupt(x, kind, LEVELS[kind], 1, 100)
    assert torch.equal(a, corrupt(x, kind, LEVELS[kind], 1, 100))
    b = corrupt(x, kind, LEVELS[kind], 1, 101)
    c = corrupt(x, kind, LEVELS[kind], 2, 100)
    if kind in ("gaussian", "uniform"):
        for other in (b, c):
            r = torch.corrcoef(torch.stack([(a - x).flatten(), (other - x).flatten()]))[0, 1]
            assert abs(r.item()) < 5 / math.sqrt(x.numel())
    else:
        # independent masks agree on a fraction p^2 + (1 - p)^2 of the elements
        p = LEVELS[kind]
        expected = p * p + (1 - p) * (1 - p)
        for other in (b, c):
            agree = ((a == x) == (other == x)).double().mean().item()
            assert abs(agree - expected) < 0.01


@pytest.mark.parametrize("kind", CORRUPTION_KINDS)
def test_backward_regenerates_the_mask(kind):
    x = torch.rand(64, 100, dtype=torch.float64, requires_grad=True)
    y, m = corrupt(x, kind, LEVELS[kind], 4, 2, return_mask=True)
    g = torch.randn_like(y)
    y.backward(g)
    if kind in ("gaussian", "uniform"):
        assert torch.equal(x.grad, g)
    else:
        assert torch.equal(x.grad, torch.where(m, 0.0, g))
    small = torch.rand(3, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: corrupt(t, kind, LEVELS[kind], 4, 2), (small,))


def test_simd_paths_agree(simd_paths):
    C = native.extension()
    x = torch.rand(33, 129)
    results = []
    for p in simd_paths:
        C.cpu.set_simd_path(p)
        results.append([corrupt(x, k, LEVELS[k], 9, 1, return_mask=True) for k in CORRUPTION_KINDS])
    for other in results[1:]:
        for (y0, m0), (y1, m1) in zip(results[0], other):
            assert torch.equal(y0, y1) and torch.equal(m0, m1)


def test_empty_tensors():
    for shape in ((0,), (0, 5), (4, 0)):
        x = torch.empty(shape)
        for kind in CORRUPTION_KINDS:
            y, m = corrupt(x, kind, 0.5, return_mask=True)
            assert y.shape == x.shape and m.shape == x.shape


def test_level_zero_is_identity():
    x = torch.rand(10, 10)
    for kind in CORRUPTION_KINDS:
        assert torch.equal(corrupt(x, kind, 0.0), x)


def test_opcheck():
    x = torch.rand(8, 70, requires_grad=True)
    for kind in CORRUPTION_KINDS:
        torch.library.opcheck(torch.ops.aetk.corrupt.default, (x, kind, 0.25, 0.0, 1.0, 3, 4, True))
    g = torch.rand(8, 70)
    torch.library.opcheck(torch.ops.aetk.corrupt_backward.default, (g, "masking", 0.25, 0.0, 1.0, 3, 4))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(x=torch.randint(0, 5, (4, 4))), TypeError, "x must have dtype float32, float64 on cpu"),
        (dict(x=torch.rand(4, 4, dtype=torch.float16)), TypeError, "got float16"),
        (dict(x=torch.rand(4, 6).t()), ValueError, "x must be contiguous"),
        (dict(x=[1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
        (dict(kind="blur"), ValueError, "unknown kind 'blur'; expected one of gaussian, masking"),
        (dict(kind="masking", level=1.5), ValueError, r"must be in \[0, 1\], got 1.5"),
        (dict(kind="masking_exact", level=-0.1), ValueError, r"must be in \[0, 1\]"),
        (dict(kind="salt_pepper", level=2.0), ValueError, r"must be in \[0, 1\]"),
        (dict(kind="gaussian", level=-0.1), ValueError, "standard deviation sigma\\) must be >= 0"),
        (dict(kind="uniform", level=-1.0), ValueError, "half-width a of the noise"),
        (dict(kind="gaussian", level=float("nan")), ValueError, "must be a finite number"),
        (dict(kind="salt_pepper", lo=1.0, hi=0.0), ValueError, "lo <= hi"),
        (dict(seed=-1), ValueError, r"seed must be in \[0, 2\*\*63 - 1\]"),
        (dict(offset=2**64), ValueError, "offset must be in"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(x=torch.rand(4, 4), kind="masking", level=0.5, seed=0, offset=0, lo=0.0, hi=1.0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        corrupt(args.pop("x"), args.pop("kind"), args.pop("level"), **args)
