"""Access to the compiled extension ``aetk._C`` and what it was built with.

Kept in one place so that every caller gets the same clear error when the extension is
missing, instead of an ImportError from deep inside an op.
"""

from __future__ import annotations

from types import ModuleType

_C: ModuleType | None
try:
    from aetk import _C  # type: ignore[attr-defined]

    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _C = None
    _IMPORT_ERROR = exc


def extension() -> ModuleType:
    """The compiled module, or a RuntimeError saying how to build it."""
    if _C is None:
        raise RuntimeError(
            "aetk's native extension aetk._C is not available "
            f"({_IMPORT_ERROR}); reinstall aetk with `pip install .` or `make test` "
            "so that CMake builds it"
        )
    return _C


def is_built() -> bool:
    return _C is not None


def cuda_built() -> bool:
    """Whether the CUDA kernels were compiled into the extension."""
    return _C is not None and bool(_C.cuda_built)


def simd_path() -> str | None:
    """The CPU kernel build in use (avx512, avx2 or baseline)."""
    return None if _C is None else _C.cpu.simd_path()
