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


UNIT = {"kind": "unit", "scale": 255.0, "mean": None, "std": None, "shape": None, "value_range": [0.0, 1.0]}


def _export_resconv(folder, *, identity: bool, channels: int = 1, depth: int = 1):
    """Export a tiny resconv denoiser for (channels, 16, 16) images. ``identity``: its noise
    estimate is zero, so output == input and any tiling or I/O error shows exactly."""
    from aetk.export import export_model
    from aetk.models import create_model

    torch.manual_seed(0)
    model = create_model("resconv", (channels, 16, 16), features=4, depth=depth).eval()
    if identity:
        torch.nn.init.zeros_(model.noise.weight)
        torch.nn.init.zeros_(model.noise.bias)
    export_model(model, folder, normalization=UNIT)
    return folder


@pytest.fixture(scope="session")
def export_resconv():
    """The exporter of tiny resconv denoisers, for tests that need one with other settings."""
    return _export_resconv


@pytest.fixture(scope="session")
def identity_denoiser(tmp_path_factory):
    """An exported 1-channel resconv whose output equals its input."""
    return _export_resconv(tmp_path_factory.mktemp("identity"), identity=True)
