"""Shared fixtures. CUDA tests carry the `cuda` marker and skip only where no GPU exists."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


@pytest.fixture
def tool():
    """A script of tools/ loaded as a module: ``tool("onnx_to_run").main(argv)``."""
    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"aetk_tools_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
