"""The graphs a model is exported as, each a small nn.Module over the model's plain-torch
``encode``/``decode`` (the fused custom ops and random draws never enter a graph):

    encoder      x -> z                   (VAE: x -> mean, logvar)
    decoder      z -> x_hat
    autoencoder  x -> x_hat               (VAE: the decoder's mean at the posterior mean)
    sample       mean, logvar, eps -> z   (VAE only: z = mean + exp(logvar / 2) * eps)

Which graphs a kind gets, with which input and output names and dynamic axes, comes from its
declared traits (:func:`export_spec`, as optimum's per-model ``OnnxConfig``): nothing here
asks a model what methods it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from aetk.models.base import ModelTraits


@dataclass(frozen=True)
class GraphIO:
    """One graph of a kind's export: its input and output names; which inputs take a dynamic
    height and width (fully convolutional models); whether it holds weights (the ``sample``
    graph does not, so it gets no float16/int8 variants)."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    spatial_inputs: tuple[str, ...] = ()
    has_weights: bool = True


@dataclass(frozen=True)
class ExportSpec:
    """What the exporter makes of a model kind, from its traits."""

    graphs: tuple[GraphIO, ...]
    variational: bool
    output_activation: str
    base_kind: str
    static_int8: bool  # convolutional (image) models quantize with calibration data
    float16: bool  # ONNX Runtime (1.31) crashes creating sessions for some float16 LSTM graphs

    def graph(self, name: str) -> GraphIO:
        return next(g for g in self.graphs if g.name == name)


def export_spec(traits: ModelTraits) -> ExportSpec:
    """The graphs and export facts of a model with these traits."""
    enc_out = ("mean", "logvar") if traits.variational else ("z",)
    graphs = [
        GraphIO("encoder", ("x",), enc_out, ("x",)),
        GraphIO("decoder", ("z",), ("x_hat",), ("z",)),
        GraphIO("autoencoder", ("x",), ("x_hat",), ("x",)),
    ]
    if traits.variational:
        graphs.append(GraphIO("sample", ("mean", "logvar", "eps"), ("z",), has_weights=False))
    return ExportSpec(tuple(graphs), variational=traits.variational,
                      output_activation=traits.output_activation, base_kind=traits.base_kind,
                      static_int8=traits.layout == "image", float16=traits.layout != "sequence")


def data_layout(traits: ModelTraits, input_shape: tuple[int, ...]) -> str:
    """The runtime's name for the layout of one batch: NTF for a (T, F) sequence; otherwise by
    the example's rank (a flat model keeps its data's shape: it flattens inside)."""
    if traits.layout == "sequence":
        return "NTF" if len(input_shape) == 2 else "NF"
    return {1: "NF", 2: "NHW", 3: "NCHW"}.get(len(input_shape), "NF")


class EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        if self.model.traits.variational:
            mean, logvar = self.model.encode_stats(x)
            return mean, logvar
        return self.model.encode(x)


class DecoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: Tensor) -> Tensor:
        return self.model.decode(z)


class AutoencoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        z = self.model.encode_stats(x)[0] if self.model.traits.variational else self.model.encode(x)
        return self.model.decode(z)


class SampleGraph(nn.Module):
    """The reparameterization with the noise as an input, so no RandomNormal node is needed."""

    def forward(self, mean: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
        return mean + torch.exp(0.5 * logvar) * eps


@dataclass
class GraphSpec:
    name: str
    module: nn.Module
    inputs: dict[str, Tensor]  # name -> example (batch 2)
    outputs: list[str]
    # per input: axis -> "batch" | "height" | "width" (dynamic axes)
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)


def graph_specs(model: Any, spatial_multiple: int | None) -> list[GraphSpec]:
    """The graphs of ``model`` (in eval mode) with example inputs and dynamic axes, as its
    :func:`export_spec` declares them."""
    batch = 2  # torch.export specializes sizes 0 and 1, so the example batch is 2
    x = torch.rand((batch, *model.input_shape))
    with torch.no_grad():
        z = EncoderGraph(model)(x)
    z = z[0] if isinstance(z, tuple) else z
    code = torch.randn_like(z)
    examples = {"x": x, "z": code}
    if model.traits.variational:
        examples.update(mean=code, logvar=torch.randn_like(code) * 0.1, eps=torch.randn_like(code))
    modules = {"encoder": EncoderGraph, "decoder": DecoderGraph, "autoencoder": AutoencoderGraph}

    def axes(name: str, io: GraphIO) -> dict[int, str]:
        a = {0: "batch"}
        t = examples[name]
        if spatial_multiple is not None and name in io.spatial_inputs:
            a.update({t.dim() - 2: "height", t.dim() - 1: "width"})
        return a

    specs = []
    for io in export_spec(model.traits).graphs:
        module = SampleGraph() if io.name == "sample" else modules[io.name](model)
        specs.append(GraphSpec(io.name, module, {k: examples[k] for k in io.inputs}, list(io.outputs),
                               {k: axes(k, io) for k in io.inputs}))
    return specs


__all__ = ["AutoencoderGraph", "DecoderGraph", "EncoderGraph", "ExportSpec", "GraphIO", "GraphSpec",
           "SampleGraph", "data_layout", "export_spec", "graph_specs"]
