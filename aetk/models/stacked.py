"""Stacked denoising autoencoder (kind ``stacked``) with greedy layer-wise pretraining."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from aetk.models.base import Autoencoder, ModelTraits, PretrainingStage
from aetk.models.layers import (
    ReconstructionHead,
    check_activation,
    check_corruption,
    check_loss,
    check_output,
    check_widths,
)
from aetk.models.mlp import MLPAutoencoder
from aetk.models.registry import register_model
from aetk.ops import corrupt
from aetk.seeds import Stream, derive_seed, stacked_layer



@register_model("stacked")
class StackedDenoisingAutoencoder(MLPAutoencoder):
    """Stacked denoising autoencoder (Vincent, Larochelle, Lajoie, Bengio & Manzagol,
    "Stacked denoising autoencoders", JMLR 2010; greedy layer-wise training: Bengio,
    Lamblin, Popovici & Larochelle, NIPS 2007).

    Encoder layers h_i = s(W_i h_{i-1} + b_i), h_0 = x, widths ``widths``. Pretraining
    (:meth:`pretraining_stages`): layer i is trained alone as a denoising autoencoder on the
    codes h_{i-1} of the frozen layers below,

        min  L(h_{i-1}, r_i(W'_i s(W_i h~_{i-1} + b_i) + c_i)),   h~_{i-1} ~ q(. | h_{i-1})

    with W'_i = W_i^T when ``tied`` (as in the paper), r_1 / L the model's output and loss, and
    for i > 1 r_i = s (layers below are reconstructed in their own activation's range) with
    squared error, or cross-entropy when s is the sigmoid and loss = "bce". Fine-tuning
    (:meth:`forward`) unrolls the stack into a deep autoencoder whose decoder is the layers'
    decoders in reverse order, trained end to end on clean inputs (corrupted ones too when
    ``finetune_corruption``). The corruption q is the fused :func:`aetk.ops.corrupt`.
    """

    @dataclass
    class Config:
        widths: list[int] = field(default_factory=lambda: [500, 250, 30])
        activation: str = "sigmoid"
        corruption: str = "masking"
        level: float = 0.25
        lo: float = 0.0
        hi: float = 1.0
        loss: str = "mse"
        output: str = "linear"
        tied: bool = True
        finetune_corruption: bool = False

        def __post_init__(self):
            check_widths("widths", self.widths)
            check_activation(self.activation)
            check_corruption(self.corruption, self.level, self.lo, self.hi)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self._build(list(c.widths), c.activation, c.activation, tied=c.tied, loss=c.loss, output=c.output)
        # Layer i > 0 reconstructs the codes of layer i - 1 in the activation's range; the
        # unrolled decoder applies the same nonlinearity (MLPNet.dec_act).

    @property
    def traits(self) -> ModelTraits:
        return dataclasses.replace(super().traits, corruption=True, pretraining=True)

    def describe_corruption(self) -> str | None:
        return f"{self.config.corruption} {self.config.level:g}"

    def corrupt_input(self, x: Tensor, step: int = 0, layer: int | None = None) -> Tensor:
        """x corrupted as the fine-tuning (layer None) or layer ``layer``'s stage sees it."""
        c = self.config
        stream = Stream.STACKED_FINETUNE if layer is None else stacked_layer(layer)
        return corrupt(x.contiguous(), c.corruption, float(c.level), derive_seed(self.seed, stream),
                       int(step), lo=float(c.lo), hi=float(c.hi))

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        if self.training and self.config.finetune_corruption:
            x = self.corrupt_input(x, step)
        return super().forward(x, target=target, step=step)

    # -- greedy layer-wise pretraining -----------------------------------------------------------
    def layer_input(self, x: Tensor, layer: int) -> Tensor:
        """The codes h_{layer} of the first ``layer`` encoder layers (no gradient)."""
        with torch.no_grad():
            return self.net.encode(x.reshape(x.shape[0], -1), upto=layer).detach()

    def pretraining_stages(self) -> list[PretrainingStage]:
        """One (name, stage, input_fn) per layer, bottom up. ``stage(input_fn(x), step=s)``
        returns a dict with "loss"; the stage's parameters are exactly layer i's encoder
        weight/bias and its decoder (weight/)bias (plus the output log-variance for layer 1
        with gaussian_nll), shared with this model, so training a stage trains the stack."""
        stages = []
        for i in range(self.net.depth):
            stage = LayerDAE(self, i)
            stages.append(PretrainingStage(f"layer{i + 1}", stage, _InputFn(self, i)))
        return stages


class _InputFn:
    """input_fn of stage i: x -> codes of the frozen layers below i."""

    def __init__(self, model: StackedDenoisingAutoencoder, layer: int):
        self.model, self.layer = model, layer

    def __call__(self, x: Tensor) -> Tensor:
        return self.model.layer_input(x, self.layer)


@dataclass
class LayerDAEConfig:
    layer: int
    loss: str
    output: str
    corruption: str
    level: float
    lo: float
    hi: float


class LayerDAE(Autoencoder):
    """Pretraining stage: layer ``i`` of a stacked model as a one-layer denoising
    autoencoder on its own input h_{i-1} (an aetk-style model: forward(x, step=) -> dict)."""

    kind = "stacked_layer"
    Config = LayerDAEConfig

    def __init__(self, parent: StackedDenoisingAutoencoder, i: int):
        pc = parent.config
        if i == 0:
            loss, output = pc.loss, pc.output
        elif pc.activation == "sigmoid" and pc.loss == "bce":
            loss, output = "bce", "sigmoid"
        else:
            loss, output = "mse", pc.activation
        net = parent.net
        cfg = LayerDAEConfig(i, loss, output, pc.corruption, pc.level, pc.lo, pc.hi)
        super().__init__(cfg, parent.input_shape if i == 0 else (net.dims[i],))
        self._parent = [parent]  # a list: not registered as a submodule
        self.enc = net.enc[i]
        self.enc_act = net.enc_act[i]
        self.tied = net.tied
        if net.tied:
            self.dec_bias = net.dec_bias[i]
        else:
            self.dec = net.dec[i]
        self.head = parent.head if i == 0 else ReconstructionHead(loss, output, (net.dims[i],))

    @property
    def seed(self) -> int:
        return self._parent[0].seed

    @seed.setter
    def seed(self, value: int) -> None:  # follows the parent model's seed
        pass

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(output_activation=self.head.output_name)

    def encode(self, x: Tensor) -> Tensor:
        return self.enc_act(self.enc(x.reshape(x.shape[0], -1)))

    def decode_raw(self, z: Tensor) -> Tensor:
        if self.tied:
            raw = nn.functional.linear(z, self.enc.weight.t(), self.dec_bias)
        else:
            raw = self.dec(z)
        return raw.reshape(z.shape[0], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        return self.head.data(self.decode_raw(z))

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        x_in = self._parent[0].corrupt_input(x, step, self.config.layer) if self.training else x
        z = self.encode(x_in)
        raw = self.decode_raw(z)
        recon = self.head.loss(raw, target.reshape(raw.shape))
        return {"x_hat": self.head.data(raw), "z": z, "recon": recon, "loss": recon}
