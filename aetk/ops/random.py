"""The counter-based RNG from Python: raw Philox words and standard normals in the exact
element order the fused kernels use, plus a pure-PyTorch Philox4x32-10 as reference.

Element i draws word ``(i // 16) % 4`` of the Philox block at counter
``16 * (i // 64) + i % 16``; the counter's upper 64 bits hold the offset, the key is the
seed (csrc/include/aetk/philox.h).
"""

from __future__ import annotations

import math

import torch

from aetk.ops._common import backend, check_seed, ptr

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
TWO_POW_M24 = 2.0**-24


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of a * m for int64 tensors holding uint32 values.

    Split into 16-bit halves so no intermediate overflows int64.
    """
    p_lo = (a & 0xFFFF) * m  # < 2**48
    p_hi = (a >> 16) * m  # < 2**48
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & MASK32
    hi = (p_hi + (p_lo >> 16)) >> 16
    return hi, lo


def philox4x32_10_ref(counter: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """Philox4x32-10 in plain PyTorch: counter (..., 4) int64 of uint32 values -> (..., 4)."""
    c0, c1, c2, c3 = counter.unbind(-1)
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        hi0, lo0 = _mulhilo(c0, M0)
        hi1, lo1 = _mulhilo(c2, M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return torch.stack([c0, c1, c2, c3], dim=-1)


def _block_words_ref(n: int, seed: int, offset: int, device) -> torch.Tensor:
    """Words of every block covering n elements, shaped (blocks, 16 streams, 4 words)."""
    blocks = max(1, math.ceil(n / 64))
    c = torch.arange(blocks * 16, dtype=torch.int64, device=device)
    ctr = torch.stack(
        [
            c & MASK32,
            c >> 32,
            torch.full_like(c, offset & MASK32),
            torch.full_like(c, offset >> 32),
        ],
        dim=-1,
    )
    return philox4x32_10_ref(ctr, (seed & MASK32, seed >> 32)).view(blocks, 16, 4)


def _to_element_order(per_stream: torch.Tensor, n: int) -> torch.Tensor:
    """(blocks, 16, 4) -> flat element order: element 64b + 16j + l is [b, l, j]."""
    return per_stream.permute(0, 2, 1).reshape(-1)[:n]


def random_words_ref(n: int, seed: int, offset: int, device="cpu") -> torch.Tensor:
    """The 32-bit word each of n elements draws, as int64 (reference)."""
    return _to_element_order(_block_words_ref(n, seed, offset, device), n)


def uniform_ref(words: torch.Tensor) -> torch.Tensor:
    """Exact float32 uniforms in [0, 1) from the top 24 bits."""
    return (words >> 8).to(torch.float32) * TWO_POW_M24


def normal_ref(n: int, seed: int, offset: int, device="cpu") -> torch.Tensor:
    """Standard normals of n elements (reference): Box-Muller on word pairs (0, 1), (2, 3)
    of each counter, evaluated in float64 with torch's log/cos/sin, returned as float32."""
    w = _block_words_ref(n, seed, offset, device)
    u1 = ((w[..., 0::2] >> 8) + 1).double() * TWO_POW_M24  # (0, 1]
    u2 = (w[..., 1::2] >> 8).double() * TWO_POW_M24
    r = torch.sqrt(-2.0 * torch.log(u1))
    theta = 2.0 * math.pi * u2
    n_even, n_odd = r * torch.cos(theta), r * torch.sin(theta)  # words 0/2 and 1/3
    z = torch.stack([n_even[..., 0], n_odd[..., 0], n_even[..., 1], n_odd[..., 1]], dim=-1)
    return _to_element_order(z, n).float()


def random_words(n: int, seed: int, offset: int, device="cpu") -> torch.Tensor:
    """The 32-bit word of each of n elements from the native kernels, as int64."""
    check_seed("random_words", seed, offset)
    device = torch.device(device)
    out = torch.empty(n, dtype=torch.int32, device=device)
    if n:
        mod, extra = backend(out)
        mod.random_words(ptr(out), n, seed, offset, *extra)
    return out.to(torch.int64) & MASK32


def normal(n: int, seed: int, offset: int, device="cpu") -> torch.Tensor:
    """n standard normals (float32) from the native kernels, in element order."""
    check_seed("normal", seed, offset)
    device = torch.device(device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        mod, extra = backend(out)
        mod.normal_noise(ptr(out), n, seed, offset, *extra)
    return out
