"""Checks and plumbing shared by the fused ops: validate tensors, then hand raw data
pointers (and the CUDA stream) to ``aetk._C``.

Checks run on real and fake tensors alike, so torch.compile traces see the same errors.
"""

from __future__ import annotations

from types import ModuleType

import torch

from aetk.native import cuda_built, extension
from aetk.seeds import MAX_SEED

# Codes of aetk::DType in csrc/include/aetk/kernels.h.
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
CPU_DTYPES = (torch.float32, torch.float64)
CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _names(dtypes) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in dtypes)


def check_tensor(op: str, name: str, t, *, min_dim: int = 0) -> None:
    """A floating tensor of a dtype the kernels support on its device, contiguous."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    dev = t.device.type
    if dev not in ("cpu", "cuda"):
        raise ValueError(f"{op}: {name} is on device '{t.device}'; only cpu and cuda are supported")
    allowed = CPU_DTYPES if dev == "cpu" else CUDA_DTYPES
    if t.dtype not in allowed:
        raise TypeError(
            f"{op}: {name} must have dtype {_names(allowed)} on {dev}, got {_names([t.dtype])}"
        )
    if t.dim() < min_dim:
        raise ValueError(
            f"{op}: {name} must have at least {min_dim} dimension(s) (batch first), "
            f"got shape {tuple(t.shape)}"
        )
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous; call .contiguous() on it first")


def check_same(op: str, a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    """Two operands on the same device with the same dtype (checked before either one's
    own checks, so a mismatch is reported as such)."""
    for name, t in ((a_name, a), (b_name, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if a.device != b.device:
        raise ValueError(
            f"{op}: {a_name} and {b_name} must be on the same device, "
            f"got {a.device} and {b.device}"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: {a_name} and {b_name} must have the same dtype, "
            f"got {_names([a.dtype])} and {_names([b.dtype])}"
        )


def check_seed(op: str, seed, offset) -> None:
    for name, v in (("seed", seed), ("offset", offset)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
        if not 0 <= v <= MAX_SEED:
            raise ValueError(f"{op}: {name} must be in [0, 2**63 - 1], got {v}")


def rows_cols(t: torch.Tensor) -> tuple[int, int]:
    """Dimension 0 is the batch; the rest is one example."""
    if t.dim() == 0:
        return 1, 1
    rows = t.shape[0]
    cols = t.numel() // rows if rows else int(torch.Size(t.shape[1:]).numel())
    return rows, cols


def backend(t: torch.Tensor) -> tuple[ModuleType, tuple]:
    """The kernel module for t's device and the trailing arguments it needs.

    CPU kernels take none; CUDA kernels take the current stream of t's device.
    """
    C = extension()
    if t.device.type == "cpu":
        return C.cpu, ()
    if not cuda_built():
        raise RuntimeError(
            "aetk was built without its CUDA kernels (no nvcc at build time); "
            "rebuild with nvcc on PATH and AETK_CUDA=ON to run the fused ops on GPU tensors"
        )
    return C.cuda, (torch.cuda.current_stream(t.device).cuda_stream,)


def ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()
