"""Run exported aetk models with ONNX Runtime alone: no torch, no aetk training code.

    import aetk.runtime as rt
    m = rt.load_model("out/encoder.onnx", device="auto", threads=None, batch_size=256)
    m.run(x)                                   # {output name: array}
    b = rt.load_export("out/", device="auto")  # encoder/decoder/autoencoder[/sample].onnx
    b.encode(x), b.decode(z), b.reconstruct(x, raw=True), b.encode_stats(x)  # VAE: (mean, logvar)

Importing this package loads numpy and the standard library only; onnxruntime is imported
when a model is loaded, so ``aetk.runtime.metadata`` is cheap for the exporter to use.
Module map: ``errors`` (exception classes), ``metadata`` (the aetk.* metadata contract),
``providers`` (device -> execution providers, CUDA probing), ``modelfile`` (file and
external-data checks), ``session`` (one graph: validation, batching, IOBinding), ``bundle``
(an export folder). Input rules are in ``aetk.runtime.session``'s docstring.
"""

from .bundle import ExportedModel, available_precisions, load_export
from .errors import (ExternalDataError, InputDTypeError, InputShapeError, ModelFileError,
                     ModelNotFoundError, ProviderUnavailableError, RuntimeModelError)
from .metadata import MetadataError, ModelMetadata
from .providers import available_providers, probe_cuda
from .session import OnnxModel, SessionSettings, load_model

__all__ = [
    "ExportedModel", "ExternalDataError", "InputDTypeError", "InputShapeError", "MetadataError",
    "ModelFileError", "ModelMetadata", "ModelNotFoundError", "OnnxModel", "ProviderUnavailableError",
    "RuntimeModelError", "SessionSettings", "available_precisions", "available_providers", "load_export", "load_model",
    "probe_cuda",
]
