"""The base class every autoencoder shares.

A model is built from its kind's ``Config`` dataclass and the shape of one example
(no batch dimension), offers ``encode``/``decode``, and its ``forward`` returns a dict:

    out = model(x, step=step)         # x: clean batch
    out["x_hat"]   reconstruction, in data space (B, *input_shape)
    out["z"]       code (B, *code_shape)
    out["loss"]    scalar to minimise: reconstruction + weighted penalties
    out[...]       each term of the loss as a scalar ("recon", "kl", "sparsity", ...)

Terms are summed over an example's dimensions and averaged over the batch, so "recon"
of an MSE model is the sum of squared errors per example (Hinton & Salakhutdinov's
figure of merit).

``step`` is the global training step: stochastic models pass it as the ``offset`` of the
fused random ops, so a run is reproducible and a resumed run draws the same noise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class Autoencoder(nn.Module):
    kind: ClassVar[str] = "?"
    Config: ClassVar[type]

    def __init__(self, config: Any, input_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.input_shape = tuple(int(s) for s in input_shape)
        self.seed = 0  # the trainer sets it from the run's seed

    # -- the interface ---------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction in data space (probabilities for a Bernoulli likelihood)."""
        raise NotImplementedError

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        raise NotImplementedError

    # -- facts the trainer, evaluation and export need ----------------------------------
    @property
    def code_shape(self) -> tuple[int, ...]:
        with torch.no_grad():
            was = self.training
            self.eval()
            z = self.encode(torch.zeros((1, *self.input_shape), device=self.device_of()))
            self.train(was)
        return tuple(z.shape[1:])

    @property
    def spatial_multiple(self) -> int | None:
        """For fully convolutional image models, m such that any input whose height and width
        are multiples of m gives an output of the same size (exported graphs then take any
        such H x W); None for models tied to one input size."""
        return None

    @property
    def needs_unit_range(self) -> bool:
        """True when the decoder models data in [0, 1] (sigmoid output / Bernoulli)."""
        c = self.config
        return (getattr(c, "loss", "mse") == "bce"
                or getattr(c, "likelihood", "gaussian") == "bernoulli"
                or getattr(c, "output", "linear") == "sigmoid")

    def device_of(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def hyperparameters(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def grow_state(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weights of a trained, smaller model of this kind made to fit this one
        (``train.init_from``); the tensors of the shapes kept pass through. Kinds that can grow
        override it; by default nothing changes, and tensors of other shapes are refused."""
        return tensors
