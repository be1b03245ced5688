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

What a model *is* is declared, never probed: ``model.traits`` (:class:`ModelTraits`) says
whether it is variational, a generator, a denoiser with its own input corruption, which
layout it reads, its output activation; ``pretraining_stages()`` and ``training_steps()``
say how the trainer trains it. The base class gives a plain autoencoder's answers and each
kind overrides what it is (as optimum's per-model ``OnnxConfig`` tells its exporter what a
model type needs). The methods a trait promises (``encode_stats``, ``sample``,
``corrupt_input``, ``jacobian_norm``) exist on every model and raise ``NotImplementedError``
where the trait is False, so ``hasattr`` tells nothing and nobody asks it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, NamedTuple

import torch
from torch import Tensor, nn

LAYOUTS = ("flat", "image", "sequence")


@dataclass(frozen=True)
class ModelTraits:
    """What a model kind is, declared by the kind (``model.traits``) and read by the trainer,
    evaluation, sampling and export.

    variational        ``encode_stats(x) -> (mean, logvar)``: the encoder graph outputs mean and
                       logvar, and the export adds the ``sample`` graph (reparameterization).
    generator          ``sample(n, seed)`` draws examples from the model's prior (``aetk sample``).
    layout             ``flat``: any example shape, flattened (MLPs); ``image``: (H, W) or
                       (C, H, W) through convolutions; ``sequence``: (T, F) through a recurrence.
    output_activation  the decoder's last nonlinearity; ``sigmoid`` means data in [0, 1].
    corruption         ``corrupt_input(x, step)``: the model's own seeded input corruption (a
                       denoiser: evaluation scores noisy -> denoised).
    contractive        ``jacobian_norm(x)``: each example's squared Frobenius norm of the
                       encoder's Jacobian (evaluation reports it).
    pretraining        ``pretraining_stages()`` is not empty: greedy layer-wise stages run
                       before the main training.
    base_kind          the kind a wrapper kind (``denoising``) trains; "" otherwise.
    """

    variational: bool = False
    generator: bool = False
    layout: str = "flat"
    output_activation: str = "linear"
    corruption: bool = False
    contractive: bool = False
    pretraining: bool = False
    base_kind: str = ""

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"ModelTraits.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")


@dataclass(frozen=True)
class TrainingStep:
    """One optimizer and the loss it minimises. Every batch, the trainer runs the model's
    forward once, then each declared step in order: zero the step's gradients, back-propagate
    ``out[loss]``, clip, step its optimizer (and its learning-rate schedule). A plain model
    declares one step over all its parameters; an adversarial kind declares two."""

    name: str
    parameters: Callable[[], Iterable[nn.Parameter]]
    loss: str = "loss"  # the key of forward's output dict this step minimises


class PretrainingStage(NamedTuple):
    """A stage trained alone before the main training: ``model(inputs(x), step=s)`` returns a
    dict with "loss", and the trainer runs ``model.training_steps()`` on it."""

    name: str
    model: "Autoencoder"
    inputs: Callable[[Tensor], Tensor]  # x -> what the stage reads (no gradient)


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

    # -- what the kind is (override what differs from a plain autoencoder) -------------------
    @property
    def traits(self) -> ModelTraits:
        return ModelTraits()

    def training_steps(self) -> tuple[TrainingStep, ...]:
        """What one training step optimizes: by default one optimizer over every parameter,
        minimising ``out["loss"]``."""
        return (TrainingStep("model", self.parameters),)

    def pretraining_stages(self) -> list[PretrainingStage]:
        """Stages trained, in order, before the main training (none by default)."""
        return []

    # -- methods a trait promises (traits.variational, .generator, .corruption, .contractive) -
    def encode_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's (mean, logvar) of x: variational kinds only."""
        raise self._lacks("variational", "encode_stats")

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """n examples drawn from the model's prior: generator kinds only."""
        raise self._lacks("generator", "sample")

    def corrupt_input(self, x: Tensor, step: int = 0) -> Tensor:
        """x corrupted as the model trains on it at ``step``: kinds with traits.corruption only."""
        raise self._lacks("corruption", "corrupt_input")

    def describe_corruption(self) -> str | None:
        """The corruption q and its level in a few words ("masking 0.25") where the config
        names one; None otherwise (blind denoisers draw their own levels)."""
        return None

    def jacobian_norm(self, x: Tensor) -> Tensor:
        """Each example's ||J_f(x)||_F^2 (B,): contractive kinds only."""
        raise self._lacks("contractive", "jacobian_norm")

    def _lacks(self, trait: str, method: str) -> NotImplementedError:
        return NotImplementedError(f"model kind {self.kind!r} has no {method}(): its traits.{trait} is False")

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
        """True when the decoder models data in [0, 1] (sigmoid output: bce loss, a Bernoulli
        likelihood or output = "sigmoid")."""
        return self.traits.output_activation == "sigmoid"

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
