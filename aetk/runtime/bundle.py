"""An export folder (what ``aetk export`` writes) as one model: encode, decode, reconstruct.

    encoder.onnx  decoder.onnx  autoencoder.onnx  [sample.onnx: VAEs]
    encoder.fp16.onnx ...  encoder.int8.onnx ...  (optional precision variants)

All graphs of one precision are opened with the same device settings; their metadata must
describe the same trained weights. ``raw=True`` means "my data is in raw units": inputs go
through the metadata's normalization first, and decoder outputs are mapped back to raw units.
Results are float32 numpy arrays whatever the precision of the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from aetk.padding import pad_to_multiple

from ..artifacts.export_dir import GRAPH_NAMES, PRECISION_SUFFIX, ExportDir
from ..normalization import Normalization
from .errors import InputShapeError, ModelFileError, ModelNotFoundError, RuntimeModelError
from .metadata import MetadataError
from .session import OnnxModel, crop_to, load_model

_SHARED = ("kind", "base_kind", "weights_sha256", "variational", "input_shape", "layout",
           "code_shape", "normalization", "dynamic_spatial", "spatial_multiple")


def graph_file(folder: Path, graph: str, precision: str = "float32") -> Path:
    return ExportDir(folder).graph(graph, precision)


def available_precisions(folder: str | os.PathLike) -> list[str]:
    """Precisions for which ``folder`` holds at least one graph file."""
    return ExportDir(folder).available_precisions()


def _float32(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.float32 else a.astype(np.float32)


class ExportedModel:
    """The graphs of one export folder; build it with :func:`load_export`."""

    def __init__(self, folder: Path, models: dict[str, OnnxModel], precision: str) -> None:
        self.folder, self.models, self.precision = folder, models, precision
        first = next(iter(models.values()))
        self.metadata = first.metadata
        for name, m in models.items():
            for key in _SHARED:
                mine, theirs = getattr(m.metadata, key), getattr(first.metadata, key)
                if mine != theirs:
                    raise MetadataError(f"{m.path}: aetk metadata {key}={mine!r} disagrees with "
                                        f"{first.path.name}'s {theirs!r}; the folder mixes exports")
        try:
            self.normalization = Normalization.from_dict(self.metadata.normalization)
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{first.path}: aetk metadata normalization is invalid: {exc}") from exc

    # -- description ------------------------------------------------------------------
    @property
    def variational(self) -> bool:
        return self.metadata.variational

    @property
    def input_shape(self) -> list[int]:
        return list(self.metadata.input_shape)

    @property
    def code_shape(self) -> list[int]:
        return list(self.metadata.code_shape)

    @property
    def device(self) -> str:
        return next(iter(self.models.values())).device

    @property
    def providers(self) -> list[str]:
        return next(iter(self.models.values())).providers

    def has(self, graph: str) -> bool:
        return graph in self.models

    def graph(self, name: str) -> OnnxModel:
        if name not in self.models:
            raise RuntimeModelError(f"export folder {self.folder} has no "
                                    f"{graph_file(self.folder, name, self.precision).name} "
                                    f"(it has {', '.join(sorted(self.models))})")
        return self.models[name]

    def __repr__(self) -> str:
        return (f"ExportedModel({str(self.folder)!r}, kind={self.metadata.kind!r}, "
                f"precision={self.precision!r}, graphs={sorted(self.models)}, device={self.device!r})")

    # -- normalization ----------------------------------------------------------------
    def preprocess(self, raw: Any) -> np.ndarray:
        """Raw data -> model inputs (the metadata's normalization)."""
        return self.normalization.apply(np.asarray(raw))

    def postprocess(self, x: Any) -> np.ndarray:
        """Model-space values (inputs or reconstructions) -> raw data units."""
        return self.normalization.invert(np.asarray(x))

    def _data_in(self, x: Any, raw: bool) -> Any:
        if not raw:
            return x
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub":  # let the runtime's dtype check word the error
            return arr
        return self.preprocess(arr)

    # -- graphs -------------------------------------------------------------------------
    def encode_stats(self, x: Any, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """VAE only: (mean, logvar) of the codes of ``x``."""
        if not self.variational:
            raise RuntimeModelError(f"{self.folder}: encode_stats needs a variational model; "
                                    f"this {self.metadata.kind!r} model has plain codes (use encode)")
        enc = self.graph("encoder")
        out = enc.run(self._data_in(x, raw))
        names = enc.output_names
        mean = out["mean"] if "mean" in out else out[names[0]]
        logvar = out["logvar"] if "logvar" in out else out[names[1]]
        return _float32(mean), _float32(logvar)

    def encode(self, x: Any, raw: bool = False) -> np.ndarray:
        """Codes of ``x`` (VAE: the mean)."""
        if self.variational:
            return self.encode_stats(x, raw)[0]
        enc = self.graph("encoder")
        return _float32(enc.run(self._data_in(x, raw))[enc.output_names[0]])

    def decode(self, z: Any, raw: bool = False) -> np.ndarray:
        """Reconstructions from codes; ``raw=True`` returns them in raw data units."""
        dec = self.graph("decoder")
        y = _float32(dec.run(z)[dec.output_names[0]])
        return self.postprocess(y) if raw else y

    def reconstruct(self, x: Any, raw: bool = False) -> np.ndarray:
        """decode(encode(x)) (VAE: of the mean); ``raw=True`` takes and returns raw units.
        Uses autoencoder.onnx when present, else the encoder and decoder with the same
        reflect-pad-and-crop rule for sizes that are not multiples of spatial_multiple."""
        x = self._data_in(x, raw)
        if self.has("autoencoder"):
            ae = self.graph("autoencoder")
            y = _float32(ae.run(x)[ae.output_names[0]])
        else:
            enc = self.graph("encoder")
            name = enc.input_names[0]
            arr = enc.convert(name, x)  # the encoder's dtype rules
            axes = enc.spatial_axes(name)
            if axes:
                enc.check_shape(name, arr, multiples=False)
                sizes = tuple(arr.shape[a] for a in axes)
                arr = pad_to_multiple(arr, axes, self.metadata.spatial_multiple)
            y = self.decode(self.encode(arr))
            if axes:
                y = crop_to(y, axes, sizes)
        return self.postprocess(y) if raw else y

    def reparameterize(self, mean: Any, logvar: Any, eps: Any = None, seed: int | None = None) -> np.ndarray:
        """VAE only: z = mean + exp(logvar / 2) * eps through sample.onnx; eps ~ N(0, 1)
        from ``seed`` when not given."""
        sample = self.graph("sample")
        mean = np.asarray(mean, dtype=np.float32)
        if eps is None:
            eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
        given = {"mean": mean, "logvar": logvar, "eps": eps}
        names = sample.input_names
        feeds = ({k: given[k] for k in names} if set(names) == set(given)
                 else dict(zip(names, (mean, logvar, eps))))
        if len(names) != 3:
            raise InputShapeError(f"{sample.path.name} has inputs {names}, not (mean, logvar, eps)")
        return _float32(sample.run(feeds)[sample.output_names[0]])


def load_export(folder: str | os.PathLike, device: str = "auto", precision: str = "float32",
                threads: int | None = None, batch_size: int | None = 256, **options: Any) -> ExportedModel:
    """Open the graphs of an ``aetk export`` folder (a path or an ``aetk.artifacts.ExportDir``;
    see :func:`load_model` for the options)."""
    folder = Path(folder)
    if precision not in PRECISION_SUFFIX:
        raise RuntimeModelError(f"precision={precision!r} is not one of {', '.join(PRECISION_SUFFIX)}")
    if not folder.exists():
        raise ModelNotFoundError(f"export folder {folder} does not exist")
    if not folder.is_dir():
        raise ModelFileError(f"{folder} is a file, not an export folder (load_model() opens one .onnx)")
    files = {g: graph_file(folder, g, precision) for g in GRAPH_NAMES}
    files = {g: f for g, f in files.items() if f.is_file()}
    if not files:
        have = available_precisions(folder)
        raise ModelFileError(f"export folder {folder} has no {precision} graphs "
                             f"({', '.join(graph_file(folder, g, precision).name for g in GRAPH_NAMES[:3])}); "
                             + (f"it has precisions {', '.join(have)}" if have else "is it an `aetk export` folder?"))
    models = {}
    for graph, path in files.items():
        m = load_model(path, device=device, threads=threads, batch_size=batch_size, **options)
        if m.metadata.graph != graph:
            raise MetadataError(f"{path}: aetk metadata says graph={m.metadata.graph!r}, "
                                f"but the file name says {graph!r}")
        if m.metadata.precision != precision:
            raise MetadataError(f"{path}: aetk metadata says precision={m.metadata.precision!r}, "
                                f"but {precision!r} was asked for")
        models[graph] = m
    return ExportedModel(folder, models, precision)


__all__ = ["GRAPH_NAMES", "PRECISION_SUFFIX", "ExportedModel", "available_precisions", "graph_file",
           "load_export"]
