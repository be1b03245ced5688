"""ONNX export of trained models (``aetk export``), validated against PyTorch.

| module        | what                                                               |
|---------------|--------------------------------------------------------------------|
| graphs.py     | the encoder / decoder / autoencoder (/ sample) graphs of a model   |
| exporter.py   | export_run / export_model: export, metadata, staging, report       |
| cache.py      | ensure_export: a run folder's export, made once, keyed by weights  |
| validate.py   | onnx.checker, shape inference, ONNX Runtime vs PyTorch             |
| variants.py   | float16 and int8 variants with their accuracy change               |
| float16_storage.py | float32 graphs with float16-stored weights (python -m)        |
| triton.py     | a Triton model repository from an export folder                    |
| errors.py     | ExportError and the typed validation errors                        |

The metadata written into every file is described in ``aetk/runtime/metadata.py``.
"""

from aetk.export.errors import (ExportError, ExportValidationError, OnnxCheckError, OutputNameMismatch,
                                OutputShapeMismatch, OutputValueMismatch)
from aetk.export.cache import ensure_export
from aetk.export.exporter import DEFAULT_OPSET, ExportResult, export_model, export_run

__all__ = ["DEFAULT_OPSET", "ExportError", "ExportResult", "ExportValidationError", "OnnxCheckError",
           "OutputNameMismatch", "OutputShapeMismatch", "OutputValueMismatch", "ensure_export", "export_model",
           "export_run"]
