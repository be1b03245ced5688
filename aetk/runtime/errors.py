"""The errors ``aetk.runtime`` raises. All derive from :class:`RuntimeModelError` (a
``ValueError``), so a service can catch that one class and answer "bad model or bad input";
some also derive from the builtin a caller would naturally catch (FileNotFoundError,
RuntimeError, TypeError). Standard library only: ``metadata`` imports this module too."""

from __future__ import annotations

from aetk.errors import UserInputError


class RuntimeModelError(UserInputError):
    """Base class: a model file, a device request or an input the runtime cannot use."""


class ModelFileError(RuntimeModelError):
    """A path that is not a readable ONNX model (missing, a folder, not protobuf)."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """A model file or export folder that does not exist."""


class ExternalDataError(ModelFileError):
    """An ONNX file whose external tensor data lies outside the file's own folder (or is missing)."""


class ProviderUnavailableError(RuntimeModelError, RuntimeError):
    """The requested device (execution provider) cannot run on this machine."""


class InputShapeError(RuntimeModelError):
    """An input whose rank, shape or batch size does not fit the graph."""


class InputDTypeError(RuntimeModelError, TypeError):
    """An input whose element type cannot be converted to the graph's (strings, objects, complex)."""


__all__ = ["ExternalDataError", "InputDTypeError", "InputShapeError", "ModelFileError",
           "ModelNotFoundError", "ProviderUnavailableError", "RuntimeModelError"]
