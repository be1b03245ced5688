"""What a MODEL_DIR offers: the models ``aetk serve`` serves, each loaded through ``aetk.runtime``.

Two layouts are understood:

* an ``aetk export`` folder (``encoder.onnx``, ``decoder.onnx``, ``autoencoder.onnx``,
  ``sample.onnx`` for VAEs, and their ``.fp16`` / ``.int8`` variants): one model per graph,
  named after the graph, version ``1``;
* a Triton model repository (``aetk export --triton``): ``REPO/<model>/config.pbtxt`` and
  ``REPO/<model>/<version>/model.onnx``; every numeric version is served, the highest is the
  default. The config's ``max_batch_size`` caps ``--max-batch`` for that model.

Loading needs onnxruntime and numpy only (no torch, no onnx). Errors are
``RepositoryError`` (a UserInputError, so the CLI prints one line and exits 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import aetk.runtime as rt
from aetk.artifacts.export_dir import TRITON_CONFIG, TRITON_MODEL_FILE
from aetk.errors import UserInputError
from aetk.options import flag
from aetk.runtime.bundle import GRAPH_NAMES, PRECISION_SUFFIX, graph_file
from aetk.runtime.session import SPATIAL_AXES

from .options import ServeOptions

# Open Inference Protocol datatypes of the ONNX element types aetk graphs use.
ORT_TO_V2 = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64",
             "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
             "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}
_ITEMSIZE = {"FP32": 4, "FP16": 2, "FP64": 8, "INT64": 8, "INT32": 4, "INT16": 2, "INT8": 1,
             "UINT8": 1, "BOOL": 1}


class RepositoryError(UserInputError):
    """A MODEL_DIR that cannot be served."""


@dataclass
class ServedModel:
    """One model version: its ONNX Runtime session and its batching limits."""

    name: str
    version: str
    model: rt.OnnxModel
    max_batch: int
    platform: str = "onnxruntime_onnx"

    @property
    def metadata(self) -> rt.ModelMetadata:
        return self.model.metadata

    @property
    def graph(self) -> str:
        return self.model.metadata.graph

    def tensor_shape(self, shape: tuple) -> list[int]:
        """An input or output shape for the protocol: -1 for every dynamic axis (batch included)."""
        return [d if isinstance(d, int) else -1 for d in shape]

    def describe(self) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata."""
        m = self.model
        return {
            "name": self.name, "versions": [self.version], "platform": self.platform,
            "inputs": [{"name": n, "datatype": ORT_TO_V2.get(m.input_types[n], m.input_types[n]),
                        "shape": self.tensor_shape(m.input_shapes[n])} for n in m.input_names],
            "outputs": [{"name": o.name, "datatype": ORT_TO_V2.get(o.type, o.type),
                         "shape": self.tensor_shape(m.output_shapes[o.name])}
                        for o in m.session.get_outputs()],
        }

    def output_types(self) -> dict[str, str]:
        return {o.name: ORT_TO_V2.get(o.type, o.type) for o in self.model.session.get_outputs()}

    def output_bytes(self, feeds: dict[str, np.ndarray]) -> int:
        """The size of the outputs ``feeds`` would produce, from the graph's shapes and the aetk
        metadata's spatial rule (encoders divide H and W by spatial_multiple, decoders multiply)."""
        m, meta = self.model, self.model.metadata
        first = feeds[m.input_names[0]]
        rows = first.shape[0]
        axes = SPATIAL_AXES.get(meta.layout, ()) if meta.dynamic_spatial else ()
        scale = {"encoder": 1 / max(meta.spatial_multiple, 1), "decoder": max(meta.spatial_multiple, 1)}.get(
            meta.graph, 1)
        if meta.graph == "decoder":  # codes are NCHW too: their H and W are axes 2 and 3
            axes = (2, 3) if first.ndim == 4 else axes
        total = 0
        types = self.output_types()
        for name, shape in m.output_shapes.items():
            n = rows
            for i, d in enumerate(shape[1:], start=1):
                if isinstance(d, int):
                    n *= d
                elif i < first.ndim:
                    n *= int(np.ceil(first.shape[i] * (scale if i in axes else 1)))
            total += n * _ITEMSIZE.get(types[name], 8)
        return total


@dataclass
class Repository:
    """The models of one MODEL_DIR, by name and version."""

    layout: str  # "export" or "triton"
    models: dict[str, dict[str, ServedModel]]  # name -> version -> model
    default_version: dict[str, str]
    device: str
    bundle: rt.ExportedModel | None = None  # export folders: normalization and the graphs
    notes: list[str] = field(default_factory=list)

    def get(self, name: str, version: str | None = None) -> ServedModel | None:
        versions = self.models.get(name)
        if versions is None:
            return None
        return versions.get(version or self.default_version[name])

    def graphs(self) -> dict[str, ServedModel]:
        """One model per aetk graph (for /encode, /decode, /reconstruct), when that is unambiguous."""
        by_graph: dict[str, list[ServedModel]] = {}
        for name, versions in self.models.items():
            m = versions[self.default_version[name]]
            by_graph.setdefault(m.graph, []).append(m)
        return {g: ms[0] for g, ms in by_graph.items() if len(ms) == 1}

    def close(self) -> None:
        self.models.clear()


def _is_export_folder(folder: Path) -> bool:
    return any(graph_file(folder, g, p).is_file() for g in GRAPH_NAMES for p in PRECISION_SUFFIX)


def _triton_models(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob(f"*/{TRITON_CONFIG}"))


def describe_folder(folder: Path) -> str:
    """Which layout ``folder`` has ("export" or "triton"), without loading anything."""
    if not folder.exists():
        raise RepositoryError(f"MODEL_DIR {folder} does not exist")
    if not folder.is_dir():
        raise RepositoryError(f"MODEL_DIR {folder} is a file; give the folder `aetk export` wrote")
    if _is_export_folder(folder):
        return "export"
    if _triton_models(folder):
        return "triton"
    raise RepositoryError(f"MODEL_DIR {folder} is neither an `aetk export` folder (encoder.onnx, ...) "
                          f"nor a Triton model repository (<model>/{TRITON_CONFIG})")


def _config_int(text: str, key: str) -> int | None:
    match = re.search(rf"\b{key}\s*:\s*(\d+)", text)
    return int(match.group(1)) if match else None


# ONNX Runtime's idle threads busy-wait for the next call by default; in a server they would
# take the CPU from the event loop that parses the next requests (bench_serve measures it).
SESSION = rt.SessionSettings(spinning=False)


def load_repository(options: ServeOptions) -> Repository:
    """Load every model MODEL_DIR offers, as ``options`` says (device, precision, threads)."""
    folder = options.folder
    layout = describe_folder(folder)
    try:
        if layout == "export":
            bundle = rt.load_export(folder, device=options.device, precision=options.precision,
                                    threads=options.threads, batch_size=options.max_batch, settings=SESSION)
            models = {g: {"1": ServedModel(g, "1", m, options.max_batch)} for g, m in bundle.models.items()}
            return Repository("export", models, {g: "1" for g in models}, bundle.device, bundle)
        if options.precision != "float32":
            raise RepositoryError(f"{flag(ServeOptions, 'precision')} {options.precision}: a Triton repository "
                                  f"holds float32 graphs only (serve the export folder for its variants)")
        models, default, device = {}, {}, "cpu"
        for model_dir in _triton_models(folder):
            name = model_dir.name
            config = (model_dir / TRITON_CONFIG).read_text(errors="replace")
            cap = _config_int(config, "max_batch_size") or options.max_batch
            max_batch = max(1, min(options.max_batch, cap))
            versions = {}
            for vdir in sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                               key=lambda p: int(p.name)):
                if (vdir / TRITON_MODEL_FILE).is_file():
                    m = rt.load_model(vdir / TRITON_MODEL_FILE, device=options.device, threads=options.threads,
                                      batch_size=max_batch, settings=SESSION)
                    versions[vdir.name] = ServedModel(name, vdir.name, m, max_batch)
                    device = m.device
            if not versions:
                raise RepositoryError(f"Triton model {name} in {folder} has no <version>/{TRITON_MODEL_FILE}")
            models[name] = versions
            default[name] = max(versions, key=int)
        return Repository("triton", models, default, device)
    except RepositoryError:
        raise
    except rt.RuntimeModelError as exc:
        raise RepositoryError(f"cannot serve {folder}: {exc}") from exc


__all__ = ["ORT_TO_V2", "Repository", "RepositoryError", "ServedModel", "describe_folder", "load_repository"]
