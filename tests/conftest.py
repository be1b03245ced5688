"""Shared fixtures. CUDA tests carry the `cuda` marker and skip only where no GPU exists."""

from __future__ import annotations

import pytest
import torch

from aetk import native

HAS_CUDA = torch.cuda.is_available() and native.cuda_built()


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    why = ("no CUDA GPU on this machine" if not torch.cuda.is_available()
           else "aetk was built without CUDA kernels")
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def simd_paths():
    """Every CPU kernel build this CPU can run; restores the default afterwards."""
    C = native.extension()
    default = C.cpu.simd_path()
    paths = [p for p in ("baseline", "avx2", "avx512") if C.cpu.set_simd_path(p)]
    C.cpu.set_simd_path(default)
    yield paths
    C.cpu.set_simd_path(default)
