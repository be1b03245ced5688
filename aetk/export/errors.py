"""Errors of ``aetk export``: each names the graph, the output and what did not match."""

from __future__ import annotations

from aetk.errors import AetkError, IntegrityError, UserInputError


class ExportError(AetkError, RuntimeError):
    """An export that cannot be done as asked (bad run, unwritable folder, bad option)."""


class ExportIntegrityError(IntegrityError, ExportError):
    """The run's weights do not match their recorded hash, or are corrupt (exit 3)."""


class ExportInputError(UserInputError, ExportError):
    """A run folder that is not there, or not a run folder (a bad path: exit 2)."""


class ExportValidationError(ExportError):
    """An exported graph that fails validation; ``graph`` and ``output`` say where."""

    def __init__(self, message: str, graph: str = "", output: str = ""):
        super().__init__(message)
        self.graph = graph
        self.output = output


class OnnxCheckError(ExportValidationError):
    """onnx.checker or strict shape inference rejected the graph."""


class OutputNameMismatch(ExportValidationError):
    """ONNX Runtime's outputs are not the ones PyTorch's graph has."""


class OutputShapeMismatch(ExportValidationError):
    """An output of ONNX Runtime has another shape than PyTorch's."""


class OutputValueMismatch(ExportValidationError):
    """An output differs from PyTorch's by more than the tolerance."""

    def __init__(self, message: str, graph: str = "", output: str = "", max_abs_diff: float = 0.0,
                 atol: float = 0.0):
        super().__init__(message, graph, output)
        self.max_abs_diff = max_abs_diff
        self.atol = atol


__all__ = ["ExportError", "ExportInputError", "ExportIntegrityError", "ExportValidationError", "OnnxCheckError", "OutputNameMismatch",
           "OutputShapeMismatch", "OutputValueMismatch"]
