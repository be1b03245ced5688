"""ONNX export of trained models (``aetk export``), validated against PyTorch.

| module        | what                                                               |
|---------------|--------------------------------------------------------------------|
| options.py    | ExportOptions, TritonOptions: what an export is asked to do        |
| graphs.py     | the encoder / decoder / autoencoder (/ sample) graphs of a model   |
| exporter.py   | export_run / export_model: export, metadata, staging, report       |
| cache.py      | ensure_export: a run folder's export, made once, keyed by weights  |
| validate.py   | onnx.checker, shape inference, ONNX Runtime vs PyTorch             |
| variants.py   | float16 and int8 variants with their accuracy change               |
| float16_storage.py | float32 graphs with float16-stored weights (tools/float16_storage.py) |
| triton.py     | a Triton model repository from an export folder                    |
| errors.py     | ExportError and the typed validation errors                        |

The metadata written into every file is described in ``aetk/runtime/metadata.py``.
The exporter (and with it torch) is imported on first use, so ``aetk.export.options``
stays cheap for the CLI.
"""

from aetk.export.errors import (ExportError, ExportValidationError, OnnxCheckError, OutputNameMismatch,
                                OutputShapeMismatch, OutputValueMismatch)
from aetk.export.cache import ensure_export
from aetk.export.options import ExportOptions, TritonOptions

_EXPORTER = ("DEFAULT_OPSET", "ExportResult", "export_model", "export_run")


def __getattr__(name: str):
    if name in _EXPORTER:
        from aetk.export import exporter

        return vars(exporter)[name]  # a name listed above, looked up (not probed) in the module
    raise AttributeError(f"module 'aetk.export' has no attribute {name!r}")


__all__ = ["DEFAULT_OPSET", "ExportError", "ExportOptions", "ExportResult", "ExportValidationError", "OnnxCheckError",
           "OutputNameMismatch", "OutputShapeMismatch", "OutputValueMismatch", "TritonOptions", "ensure_export",
           "export_model", "export_run"]
