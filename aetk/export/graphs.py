"""The graphs a model is exported as, each a small nn.Module over the model's plain-torch
``encode``/``decode`` (the fused custom ops and random draws never enter a graph):

    encoder      x -> z                   (VAE: x -> mean, logvar)
    decoder      z -> x_hat
    autoencoder  x -> x_hat               (VAE: the decoder's mean at the posterior mean)
    sample       mean, logvar, eps -> z   (VAE only: z = mean + exp(logvar / 2) * eps)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


def is_variational(model: Any) -> bool:
    return hasattr(model, "encode_stats")


class EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        if is_variational(self.model):
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
        z = self.model.encode_stats(x)[0] if is_variational(self.model) else self.model.encode(x)
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
    """The graphs of ``model`` (in eval mode) with example inputs and dynamic axes."""
    batch = 2  # torch.export specializes sizes 0 and 1, so the example batch is 2
    x = torch.rand((batch, *model.input_shape))
    with torch.no_grad():
        z = EncoderGraph(model)(x)
    z = z[0] if isinstance(z, tuple) else z
    code = torch.randn_like(z)

    def axes(t: Tensor) -> dict[int, str]:
        a = {0: "batch"}
        if spatial_multiple is not None:
            a.update({t.dim() - 2: "height", t.dim() - 1: "width"})
        return a

    enc_out = ["mean", "logvar"] if is_variational(model) else ["z"]
    specs = [
        GraphSpec("encoder", EncoderGraph(model), {"x": x}, enc_out, {"x": axes(x)}),
        GraphSpec("decoder", DecoderGraph(model), {"z": code}, ["x_hat"], {"z": axes(code)}),
        GraphSpec("autoencoder", AutoencoderGraph(model), {"x": x}, ["x_hat"], {"x": axes(x)}),
    ]
    if is_variational(model):
        stats = {"mean": code, "logvar": torch.randn_like(code) * 0.1, "eps": torch.randn_like(code)}
        specs.append(GraphSpec("sample", SampleGraph(), stats, ["z"],
                               {k: {0: "batch"} for k in stats}))
    return specs


__all__ = ["AutoencoderGraph", "DecoderGraph", "EncoderGraph", "GraphSpec", "SampleGraph",
           "graph_specs", "is_variational"]
