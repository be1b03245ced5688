"""What ``aetk export`` is asked to do: one frozen dataclass (and the Triton repository's).

    export_run("runs/conv", "out/", ExportOptions(int8=True, triton=TritonOptions("repo/")))

Torch-free, so the CLI reads the defaults without importing the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from aetk.options import option

TRITON_KINDS = ("auto", "gpu", "cpu")


@dataclass(frozen=True)
class TritonOptions:
    """A Triton model repository written beside the export (aetk/export/triton.py)."""

    repository: Optional[Path] = option(None, "--triton", "Also write a Triton model repository here.")
    name: Optional[str] = option(None, "--triton-name", "Model name prefix in the repository (default: the run "
                                 "folder's name).")
    max_batch: int = option(1024, "--triton-max-batch", "Triton max_batch_size.", min=1)
    kind: str = option("auto", "--triton-kind", "Triton instance group: auto, gpu or cpu.", choices=TRITON_KINDS)


@dataclass(frozen=True)
class ExportOptions:
    opset: int = option(18, "--opset", "ONNX opset (18 or newer; older ones get a warning).")
    fp16: bool = option(False, "--fp16", "Also write float16 variants (for GPUs).")
    int8: bool = option(False, "--int8", "Also write int8 variants (ONNX Runtime quantization: static with "
                        "calibration for conv models, dynamic for MLPs).")
    atol: float = option(1e-5, "--atol", "Validation: absolute tolerance, ONNX Runtime vs PyTorch (deep conv nets "
                         "may need 1e-4: float32 rounding adds up over layers).", min=0.0)
    rtol: float = option(1e-5, "--rtol", "Validation: relative tolerance.", min=0.0)
    # Larger models keep their weights in a side file (protobuf cannot hold 2 GiB); no flag.
    external_data_threshold: int = 1 << 30
    triton: Optional[TritonOptions] = field(default=None)


__all__ = ["ExportOptions", "TRITON_KINDS", "TritonOptions"]
