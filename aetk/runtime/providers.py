"""Which ONNX Runtime execution providers a ``device`` request maps to.

``onnxruntime.get_available_providers()`` lists what the wheel was *built* with: the
onnxruntime-gpu wheel reports CUDAExecutionProvider on machines without a GPU or without the
CUDA libraries, and asking ORT for it there prints a loud error before falling back. So CUDA
is chosen only after probing that (1) the CUDA driver loads and sees at least one device and
(2) onnxruntime's CUDA provider library loads with its dependencies (CUDA runtime, cuBLAS,
cuDNN). The probe runs once per process; onnxruntime is imported lazily.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ProviderUnavailableError, RuntimeModelError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")  # plus "cuda:N"


@dataclass(frozen=True)
class CudaProbe:
    ok: bool
    detail: str  # why CUDA cannot be used, or what was found
    device_count: int = 0


@dataclass(frozen=True)
class ProviderChoice:
    providers: list  # as InferenceSession(providers=...) takes them: names or (name, options)
    device: str  # "cpu" | "cuda"
    device_id: int
    note: str  # why "auto" chose what it chose

    @property
    def names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self.providers]


def parse_device(device: object) -> tuple[str, int]:
    """``"auto" | "cpu" | "cuda" | "cuda:N"`` -> (kind, index)."""
    if not isinstance(device, str):
        raise RuntimeModelError(f"device must be a string ('auto', 'cpu', 'cuda' or 'cuda:N'), "
                                f"got {type(device).__name__} {device!r}")
    d = device.strip().lower()
    if d in DEVICES:
        return d, 0
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    raise RuntimeModelError(f"device={device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")


def _library_names() -> tuple[str, str, str]:
    """(CUDA driver, ORT shared provider bridge, ORT CUDA provider) file names on this OS."""
    if sys.platform == "win32":
        return "nvcuda.dll", "onnxruntime_providers_shared.dll", "onnxruntime_providers_cuda.dll"
    return "libcuda.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"


def _cuda_device_count(driver_name: str) -> tuple[int, str]:
    try:
        cuda = ctypes.CDLL(driver_name)
    except OSError as exc:
        return 0, f"the CUDA driver library {driver_name} does not load ({exc})"
    rc = cuda.cuInit(0)
    if rc != 0:
        return 0, f"the CUDA driver does not initialise (cuInit returned CUDA error {rc})"
    count = ctypes.c_int(0)
    rc = cuda.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return 0, f"cuDeviceGetCount returned CUDA error {rc}"
    if count.value < 1:
        return 0, "the CUDA driver sees no GPU"
    return count.value, ""


def _load_ort_cuda_provider(shared_name: str, cuda_name: str) -> str:
    """Load onnxruntime's CUDA provider library; '' when it loads, else why not."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    capi = Path(ort.__file__).parent / "capi"
    lib = capi / cuda_name
    if not lib.is_file():
        return f"onnxruntime's CUDA provider library {lib} is missing"

    def attempt() -> str:
        try:
            if (capi / shared_name).is_file():  # ORT loads the provider bridge globally too
                ctypes.CDLL(str(capi / shared_name), mode=ctypes.RTLD_GLOBAL)
            ctypes.CDLL(str(lib))
            return ""
        except OSError as exc:
            return f"onnxruntime's CUDA provider library does not load: {exc}"

    why = attempt()
    # CUDA and cuDNN from pip (nvidia-* wheels) are not on the loader's path until
    # onnxruntime.preload_dlls() loads them; it prints its failures, so silence it.
    nvidia = Path(ort.__file__).parent.parent / "nvidia"
    if why and nvidia.is_dir() and hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            ort.preload_dlls()
        why = attempt()
    return why


@functools.lru_cache(maxsize=1)
def probe_cuda() -> CudaProbe:
    """Whether ORT's CUDA provider can really run here (cached; see the module doc)."""
    if sys.platform == "darwin":
        return CudaProbe(False, "there is no CUDA on macOS")
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return CudaProbe(False, f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU")
    driver, shared, provider = _library_names()
    count, why = _cuda_device_count(driver)
    if why:
        return CudaProbe(False, why)
    why = _load_ort_cuda_provider(shared, provider)
    if why:
        return CudaProbe(False, why, count)
    return CudaProbe(True, f"{count} CUDA device(s)", count)


def choose_providers(device: object = "auto", cuda_options: dict | None = None) -> ProviderChoice:
    """The providers for a device request; ProviderUnavailableError when "cuda" cannot run."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return ProviderChoice([CPU], "cpu", 0, "device='cpu' requested")
    probe = probe_cuda()
    if probe.ok and index >= probe.device_count:
        probe = CudaProbe(False, f"device {device!r} asked for GPU {index}, but only "
                                 f"{probe.device_count} CUDA device(s) exist", probe.device_count)
    if not probe.ok:
        if kind == "cuda":
            raise ProviderUnavailableError(f"device={device!r}: CUDA is not available: {probe.detail}. "
                                           f"Use device='cpu' (or 'auto' to fall back quietly).")
        return ProviderChoice([CPU], "cpu", 0, f"CPU, because {probe.detail}")
    options = {"device_id": str(index)} | {k: str(v) for k, v in (cuda_options or {}).items()}
    return ProviderChoice([(CUDA, options), CPU], "cuda", index, f"CUDA ({probe.detail})")


def available_providers(device: object = "auto") -> list[str]:
    """Provider names that ``load_model(..., device=device)`` would ask ORT for, best first."""
    return choose_providers(device).names


__all__ = ["CPU", "CUDA", "CudaProbe", "ProviderChoice", "available_providers", "choose_providers",
           "parse_device", "probe_cuda"]
