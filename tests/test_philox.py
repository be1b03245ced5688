"""The counter-based RNG: Random123 known answers, the element mapping, and agreement of
the native kernels with the pure-PyTorch Philox."""

import torch
import pytest

from aetk import native, ops
from aetk.ops.random import philox4x32_10_ref

# Published known-answer vectors of Random123 (kat_vectors) for philox4x32_10.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_native_philox_matches_random123(ctr, key, expected):
    assert native.extension().philox4x32_10(ctr, key) == expected


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_reference_philox_matches_random123(ctr, key, expected):
    out = philox4x32_10_ref(torch.tensor([ctr], dtype=torch.int64), key)
    assert tuple(out[0].tolist()) == expected


def test_element_mapping():
    # Element i draws word (i // 16) % 4 of counter 16 * (i // 64) + i % 16.
    seed, offset = 0x1234_5678_9ABC, 77
    words = ops.random_words(200, seed, offset)
    C = native.extension()
    for i in (0, 1, 15, 16, 17, 63, 64, 100, 199):
        c = 16 * (i // 64) + i % 16
        ctr = (c & 0xFFFFFFFF, c >> 32, offset & 0xFFFFFFFF, offset >> 32)
        key = (seed & 0xFFFFFFFF, seed >> 32)
        assert words[i].item() == C.philox4x32_10(ctr, key)[(i // 16) % 4], i


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 4097])
def test_native_words_equal_reference(n):
    seed, offset = 2**40 + 3, 2**33 + 9  # exercise the upper words of key and counter
    assert torch.equal(ops.random_words(n, seed, offset), ops.random_words_ref(n, seed, offset))


def test_normals_close_to_reference_and_standard():
    n = 1 << 20
    z = ops.normal(n, 7, 1)
    ref = ops.normal_ref(n, 7, 1)
    assert (z - ref).abs().max().item() < 2e-6  # own polynomials vs torch's log/sin/cos
    # N(0, 1): mean and variance within ~5 standard errors, and the CDF at a few points.
    assert abs(z.mean().item()) < 5 / n**0.5
    assert abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5
    for t, cdf in ((-1.0, 0.158655), (0.0, 0.5), (1.5, 0.933193)):
        assert abs((z < t).double().mean().item() - cdf) < 2e-3


def test_same_seed_offset_reproduces_and_offsets_are_independent():
    n = 1 << 18
    a, b = ops.random_words(n, 5, 10), ops.random_words(n, 5, 10)
    assert torch.equal(a, b)
    u = ops.normal(n, 5, 10)
    v = ops.normal(n, 5, 11)  # next offset
    w = ops.normal(n, 6, 10)  # next seed
    for other in (v, w):
        r = torch.corrcoef(torch.stack([u, other]))[0, 1].item()
        assert abs(r) < 5 / n**0.5
        assert not torch.equal(u, other)


def test_simd_paths_draw_identical_bits(simd_paths):
    C = native.extension()
    n = 10_000 + 17
    outs = {}
    for p in simd_paths:
        assert C.cpu.set_simd_path(p)
        outs[p] = (ops.random_words(n, 3, 4), ops.normal(n, 3, 4))
    first = outs[simd_paths[0]]
    for p in simd_paths[1:]:
        assert torch.equal(outs[p][0], first[0]), p
        assert torch.equal(outs[p][1], first[1]), p


def test_unknown_simd_path_is_refused():
    assert native.extension().cpu.set_simd_path("sse9") is False
