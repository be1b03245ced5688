"""What an exported aetk ONNX file says about itself, in its ``metadata_props``.

``aetk export`` writes these keys and ``aetk.runtime`` reads them, so a service can prepare
inputs and read outputs with nothing but the .onnx file. Values are strings; structured
values are JSON. This module needs only the standard library (no torch, no onnx, no onnxruntime).

    key                    example                     meaning
    aetk.version           "0.1.0"                     aetk that exported the file
    aetk.kind              "conv"                      registered model kind
    aetk.base_kind         "deep"                      the wrapped kind of a denoising model ("" otherwise)
    aetk.graph             "encoder"                   encoder | decoder | autoencoder | sample
    aetk.precision         "float32"                   float32 | float16 | int8
    aetk.input_shape       "[1, 28, 28]"               one example of the model's data, no batch axis
    aetk.layout            "NCHW"                      NF (vectors) | NHW | NCHW (images) | NTF (sequences)
    aetk.code_shape        "[30]"                      one code, no batch axis
    aetk.code_size         "30"                        number of values in a code
    aetk.dynamic_spatial   "true"                      graphs take any H x W that are multiples of ...
    aetk.spatial_multiple  "4"                         ... this (0 when not dynamic)
    aetk.value_range       "[0.0, 1.0]"                range of reconstructions in model space (null: unbounded)
    aetk.normalization     {"kind": "unit", ...}       raw data -> model inputs (aetk.normalization.Normalization)
    aetk.output_activation "sigmoid"                   of the decoder's output layer
    aetk.variational       "true"                      encoder outputs mean and logvar
    aetk.weights_sha256    "9f2c..."                   sha256 of the trained weights (names, dtypes, shapes, bytes)

Graph inputs and outputs (the batch axis is always dynamic, named "batch"):
    encoder      x -> z                 (VAE: x -> mean, logvar)
    decoder      z -> x_hat
    autoencoder  x -> x_hat             (VAE: decodes the mean)
    sample       mean, logvar, eps -> z (VAE only: z = mean + exp(logvar / 2) * eps)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import RuntimeModelError

PREFIX = "aetk."
GRAPHS = ("encoder", "decoder", "autoencoder", "sample")
PRECISIONS = ("float32", "float16", "int8")
LAYOUTS = ("NF", "NHW", "NCHW", "NTF")


class MetadataError(RuntimeModelError):
    """An ONNX file whose aetk metadata is missing or malformed (a ValueError, via RuntimeModelError)."""


@dataclass
class ModelMetadata:
    kind: str
    graph: str
    input_shape: list[int]
    layout: str
    code_shape: list[int]
    normalization: dict[str, Any]
    weights_sha256: str
    aetk_version: str = ""
    base_kind: str = ""
    precision: str = "float32"
    dynamic_spatial: bool = False
    spatial_multiple: int = 0
    value_range: list[float] | None = None
    output_activation: str = "linear"
    variational: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # aetk.* keys this version does not know

    @property
    def code_size(self) -> int:
        return math.prod(int(s) for s in self.code_shape)

    # -- to and from metadata_props --------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        props = {
            "version": self.aetk_version,
            "kind": self.kind,
            "base_kind": self.base_kind,
            "graph": self.graph,
            "precision": self.precision,
            "input_shape": json.dumps([int(s) for s in self.input_shape]),
            "layout": self.layout,
            "code_shape": json.dumps([int(s) for s in self.code_shape]),
            "code_size": str(self.code_size),
            "dynamic_spatial": json.dumps(bool(self.dynamic_spatial)),
            "spatial_multiple": str(int(self.spatial_multiple)),
            "value_range": json.dumps(self.value_range),
            "normalization": json.dumps(self.normalization, sort_keys=True),
            "output_activation": self.output_activation,
            "variational": json.dumps(bool(self.variational)),
            "weights_sha256": self.weights_sha256,
        }
        return {PREFIX + k: v for k, v in props.items()} | {PREFIX + k: v for k, v in self.extra.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the model") -> ModelMetadata:
        """Parse ``metadata_props`` (a mapping of key -> string); errors name ``source``."""
        own = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        required = ("kind", "graph", "input_shape", "layout", "code_shape", "normalization",
                    "weights_sha256")
        missing = [PREFIX + k for k in required if k not in own]
        if missing:
            raise MetadataError(f"{source} lacks aetk metadata {', '.join(missing)}; "
                                f"was it written by `aetk export`?")

        def js(key: str, default: Any = None) -> Any:
            if key not in own:
                return default
            try:
                return json.loads(own[key])
            except json.JSONDecodeError as exc:
                raise MetadataError(f"{source}: metadata {PREFIX}{key}={own[key]!r} is not valid JSON") from exc

        try:
            multiple = int(own.get("spatial_multiple", "0") or 0)
        except ValueError as exc:
            raise MetadataError(f"{source}: metadata {PREFIX}spatial_multiple="
                                f"{own['spatial_multiple']!r} is not an integer") from exc
        meta = cls(
            kind=own["kind"], graph=own["graph"], input_shape=js("input_shape"), layout=own["layout"],
            code_shape=js("code_shape"), normalization=js("normalization"),
            weights_sha256=own["weights_sha256"], aetk_version=own.get("version", ""),
            base_kind=own.get("base_kind", ""), precision=own.get("precision", "float32"),
            dynamic_spatial=bool(js("dynamic_spatial", False)),
            spatial_multiple=multiple,
            value_range=js("value_range"), output_activation=own.get("output_activation", "linear"),
            variational=bool(js("variational", False)),
        )
        known = set(required) | {"version", "base_kind", "precision", "code_size", "dynamic_spatial",
                                 "spatial_multiple", "value_range", "output_activation", "variational"}
        meta.extra = {k: v for k, v in own.items() if k not in known}
        meta.check(source)
        return meta

    def check(self, source: str = "the model") -> None:
        def bad(what: str) -> MetadataError:
            return MetadataError(f"{source}: aetk metadata {what}")

        if self.graph not in GRAPHS:
            raise bad(f"graph={self.graph!r} is not one of {', '.join(GRAPHS)}")
        if self.precision not in PRECISIONS:
            raise bad(f"precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.layout not in LAYOUTS:
            raise bad(f"layout={self.layout!r} is not one of {', '.join(LAYOUTS)}")
        for name in ("input_shape", "code_shape"):
            v = getattr(self, name)
            if not (isinstance(v, list) and v and all(isinstance(s, int) and s > 0 for s in v)):
                raise bad(f"{name}={v!r} is not a list of positive integers")
        if not isinstance(self.normalization, dict) or "kind" not in self.normalization:
            raise bad(f"normalization={self.normalization!r} is not a normalization table")
        if self.value_range is not None and not (isinstance(self.value_range, list)
                                                 and len(self.value_range) == 2):
            raise bad(f"value_range={self.value_range!r} is not [low, high] or null")
        if self.dynamic_spatial and self.spatial_multiple < 1:
            raise bad("dynamic_spatial=true needs spatial_multiple >= 1")


__all__ = ["GRAPHS", "LAYOUTS", "PRECISIONS", "PREFIX", "MetadataError", "ModelMetadata"]
