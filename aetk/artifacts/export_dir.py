"""An ``aetk export`` folder: which file holds which graph, at which precision, and the
report; also the Triton model-repository layout ``aetk export --triton`` writes.

    OUT/encoder.onnx  decoder.onnx  autoencoder.onnx  [sample.onnx: VAEs]
    OUT/<graph>.fp16.onnx  <graph>.int8.onnx     precision variants (--fp16, --int8)
    OUT/<graph>.onnx.data                        weights of a graph over 1 GiB
    OUT/export.json                              what was validated and measured (written last)
    OUT/autoencoder-sigma.onnx                   a denoiser with the noise level as an input (--sigma)
    REPO/<name>_<graph>/config.pbtxt  REPO/<name>_<graph>/1/model.onnx[.data]   (--triton)

Standard library only, on purpose: ``aetk.runtime`` (torch-free, above this layer) takes its
file names from here, so this module must not import torch, onnx or onnxruntime, nor
``aetk.runtime`` itself (that would point upward). Opening the graphs is the runtime's job:
``aetk.runtime.load_export(ExportDir(...))`` (an ExportDir is a path-like object).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aetk.artifacts.folder import SavedFolder

GRAPH_NAMES = ("encoder", "decoder", "autoencoder", "sample")
PRECISION_SUFFIX = {"float32": "", "float16": ".fp16", "int8": ".int8"}
VARIANT_TAGS = {"float16": "fp16", "int8": "int8"}
REPORT_FILE = "export.json"
DATA_SUFFIX = ".data"  # a graph's external weights: <file>.data beside it
TRITON_VERSION = "1"
TRITON_MODEL_FILE = "model.onnx"
TRITON_CONFIG = "config.pbtxt"
SIGMA_SUFFIX = "-sigma"  # autoencoder.onnx -> autoencoder-sigma.onnx (sigma_graph_beside)
WEIGHTS_KEY = "aetk.weights_sha256"  # in the report's metadata (the encoder's metadata_props)


def graph_file_name(graph: str, precision: str = "float32") -> str:
    """``encoder.onnx``, ``encoder.fp16.onnx``, ``encoder.int8.onnx``, ..."""
    return f"{graph}{PRECISION_SUFFIX[precision]}.onnx"


def sigma_graph_beside(onnx: Path) -> Path:
    """Where a blind denoiser's graph ``X.onnx`` keeps its sibling with the noise level given
    as a second input, ``X-sigma.onnx`` (``aetk denoise --sigma`` runs it when present)."""
    return onnx.with_name(f"{onnx.stem}{SIGMA_SUFFIX}.onnx")


def data_file_name(onnx_name: str) -> str:
    """The side file holding a graph's large weights."""
    return onnx_name + DATA_SUFFIX


class ExportDir(SavedFolder):
    """The files of one export folder (nothing is read until asked)."""

    # -- files ------------------------------------------------------------------------------
    def graph(self, graph: str, precision: str = "float32") -> Path:
        return self.path / graph_file_name(graph, precision)

    def graph_data(self, graph: str, precision: str = "float32") -> Path:
        return self.path / data_file_name(graph_file_name(graph, precision))

    @property
    def sigma_graph(self) -> Path:
        """The autoencoder with the noise level as an input, written for denoisers that can
        take one (aetk.export.sigma_graph)."""
        return sigma_graph_beside(self.graph("autoencoder"))

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    def graphs(self, precision: str = "float32") -> dict[str, Path]:
        """The graphs present at ``precision``, by name."""
        return {g: p for g in GRAPH_NAMES if (p := self.graph(g, precision)).is_file()}

    def graph_files(self, *names: str, precision: str = "float32") -> list[Path]:
        """The files of these graphs: each .onnx and, when there is one, its .data."""
        out = []
        for g in names:
            out.append(self.graph(g, precision))
            if self.graph_data(g, precision).is_file():
                out.append(self.graph_data(g, precision))
        return out

    def available_precisions(self) -> list[str]:
        return [p for p in PRECISION_SUFFIX if self.graphs(p)]

    def is_export(self) -> bool:
        """A folder with at least one float32 graph (what ``aetk export`` always writes)."""
        return self.path.is_dir() and bool(self.graphs())

    def missing(self, *names: str) -> list[str]:
        """File names of the float32 graphs among ``names`` that are not there."""
        return [graph_file_name(g) for g in names if not self.graph(g).is_file()]

    # -- what the export recorded -------------------------------------------------------------
    def report(self) -> dict[str, Any] | None:
        """The parsed export.json, or None when it is missing or unreadable."""
        try:
            d = json.loads(self.report_file.read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def weights_sha256(self) -> str | None:
        """The weights hash the export recorded (None: no complete report)."""
        d = self.report() or {}
        meta = d.get("metadata")
        return meta.get(WEIGHTS_KEY) if isinstance(meta, dict) else None

    # -- the Triton repository ----------------------------------------------------------------
    @staticmethod
    def triton_model_dir(repo: Path, name: str, graph: str) -> Path:
        return Path(repo) / f"{name}_{graph}"

    @staticmethod
    def triton_files(repo: Path, name: str, graph: str) -> tuple[Path, Path]:
        """(config.pbtxt, version/model.onnx) of one graph's Triton model."""
        model = ExportDir.triton_model_dir(repo, name, graph)
        return model / TRITON_CONFIG, model / TRITON_VERSION / TRITON_MODEL_FILE


__all__ = ["DATA_SUFFIX", "ExportDir", "GRAPH_NAMES", "PRECISION_SUFFIX", "REPORT_FILE",
           "SIGMA_SUFFIX", "TRITON_CONFIG", "TRITON_MODEL_FILE", "VARIANT_TAGS", "data_file_name", "graph_file_name",
           "sigma_graph_beside"]
