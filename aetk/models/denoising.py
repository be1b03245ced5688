"""Denoising autoencoder (kind ``denoising``): any other kind trained on corrupted inputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import check_corruption
from aetk.models.registry import create_model, make_config, register_model
from aetk.ops import corrupt
from aetk.seeds import Stream, derive_seed


@register_model("denoising")
class DenoisingAutoencoder(Autoencoder):
    """Denoising autoencoder (Vincent, Larochelle, Bengio & Manzagol, "Extracting and
    composing robust features with denoising autoencoders", ICML 2008): corrupt the input
    with q(x~ | x), reconstruct the clean x,

        loss = L(x, g(f(x~))),   x~ ~ q(. | x)

    where f, g and L are those of the wrapped ``base`` model (built with ``base_params``).
    q is the fused :func:`aetk.ops.corrupt` (``corruption``: gaussian | masking |
    masking_exact | salt_pepper | uniform, ``level``, and ``lo``/``hi`` for salt_pepper),
    drawn from (derived seed, step); it is applied in training mode only, so evaluation
    scores the clean reconstruction. ``encode``/``decode`` are the base model's.
    """

    @dataclass
    class Config:
        base: str = "ae"
        base_params: dict[str, Any] = field(default_factory=dict)
        corruption: str = "masking"  # gaussian | masking | masking_exact | salt_pepper | uniform
        level: float = 0.25  # sigma (gaussian), half-width (uniform), or the corrupted fraction
        lo: float = 0.0  # salt_pepper "pepper" value
        hi: float = 1.0  # salt_pepper "salt" value

        def __post_init__(self):
            if self.base == "denoising":
                raise ValueError("denoising: base must be another kind, not 'denoising' itself")
            if not isinstance(self.base_params, dict):
                raise ValueError(f"denoising: base_params must be a table of the base model's "
                                 f"options, got {self.base_params!r}")
            make_config(self.base, dict(self.base_params))  # unknown kind/options: listed now
            check_corruption(self.corruption, self.level, self.lo, self.hi)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        self.base_model = create_model(config.base, self.input_shape, **config.base_params)
        self.seed = self._seed

    # The trainer sets model.seed: hand it on to the wrapped model.
    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = int(value)
        base = self._modules.get("base_model")
        if base is not None:
            base.seed = self._seed

    @property
    def traits(self) -> ModelTraits:
        """The base model's traits, with this kind's corruption. Its pretraining stages are not
        run: the wrapper trains the whole base model on corrupted inputs."""
        return dataclasses.replace(self.base_model.traits, corruption=True, pretraining=False,
                                   base_kind=self.base_model.kind)

    @property
    def spatial_multiple(self) -> int | None:
        return self.base_model.spatial_multiple

    def describe_corruption(self) -> str | None:
        return f"{self.config.corruption} {self.config.level:g}"

    def corrupt_input(self, x: Tensor, step: int = 0) -> Tensor:
        """The corrupted input x~ the model trains on at ``step`` (in any mode)."""
        c = self.config
        return corrupt(x.contiguous(), c.corruption, float(c.level),
                       derive_seed(self.seed, Stream.CORRUPTION), int(step), lo=float(c.lo), hi=float(c.hi))

    def encode(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.base_model.encode(x, *args, **kwargs)

    def decode(self, z: Tensor) -> Tensor:
        return self.base_model.decode(z)

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        x_in = self.corrupt_input(x, step) if self.training else x
        return self.base_model(x_in, target=target, step=step)

    # What the base model's traits promise, answered by the base model.
    def encode_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base_model.encode_stats(x)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        return self.base_model.sample(n, seed)

    def jacobian_norm(self, x: Tensor) -> Tensor:
        return self.base_model.jacobian_norm(x)
