"""Convolutional autoencoder (kind ``conv``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import (
    ConvNet,
    ReconstructionHead,
    activation,
    check_activation,
    check_loss,
    check_output,
    check_positive_int,
    check_widths,
    image_shape,
)
from aetk.models.registry import register_model


@register_model("conv")
class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder (Masci, Meier, Cireşan & Schmidhuber, "Stacked
    convolutional auto-encoders for hierarchical feature extraction", ICANN 2011), with
    strided convolutions in place of pooling:

        encoder  h_{i+1} = act(BN(conv_{3x3, stride 2}(h_i)))      C -> channels[0] -> ...
        code     z = W flatten(h_L) + b          (code_size > 0: a linear bottleneck)
                 z = h_L                         (code_size = 0: fully convolutional)
        decoder  mirror: act(W' z + b') reshaped, then transposed convs back to C x H x W

    Any H x W works: the transposed convs get the ``output_padding`` that restores the exact
    size each encoder stage saw (no padding or cropping). Inputs (C, H, W) or (H, W).
    With the defaults on 28x28 Fashion-MNIST (1->32->64->128, 30-d code, sigmoid output,
    MSE) the summed squared error per test image reaches about 5 in ~10 epochs.
    """

    @dataclass
    class Config:
        channels: list[int] = field(default_factory=lambda: [32, 64, 128])
        code_size: int = 30  # 0: fully convolutional, the code is the last feature map
        kernel_size: int = 3
        convs_per_stage: int = 1  # 1 strided conv per stage, plus this many - 1 stride-1 convs
        refine: bool = True  # output layer: a stride-1 conv at full resolution
        activation: str = "relu"
        batchnorm: bool = True
        loss: str = "mse"
        output: str = "sigmoid"  # linear | sigmoid: output of mse / gaussian_nll decoders

        def __post_init__(self):
            check_widths("channels", self.channels)
            check_positive_int("code_size", self.code_size, allow_zero=True)
            check_positive_int("kernel_size", self.kernel_size)
            check_positive_int("convs_per_stage", self.convs_per_stage)
            check_activation(self.activation)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self.image_shape = image_shape(self.input_shape, "conv")
        ch, h, w = self.image_shape
        self.net = ConvNet(ch, (h, w), list(c.channels), c.kernel_size, c.activation, c.batchnorm,
                           c.convs_per_stage, c.refine)
        feat = self.net.feature_shape
        if c.code_size > 0:
            n = feat[0] * feat[1] * feat[2]
            self.to_code = nn.Sequential(nn.Flatten(), nn.Linear(n, c.code_size))
            self.from_code = nn.Sequential(nn.Linear(c.code_size, n), activation(c.activation),
                                           nn.Unflatten(1, feat))
        else:
            self.to_code = nn.Identity()
            self.from_code = nn.Identity()
        self.head = ReconstructionHead(c.loss, c.output, self.input_shape)

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(layout="image", output_activation=self.head.output_name)

    @property
    def spatial_multiple(self) -> int | None:
        # Without a linear bottleneck only the output paddings tie the model to one size, and
        # they are the same for every size that halves evenly at each stage.
        m = 2 ** len(self.config.channels)
        _, h, w = self.image_shape
        return m if self.config.code_size == 0 and h % m == 0 and w % m == 0 else None

    def encode(self, x: Tensor) -> Tensor:
        if self.spatial_multiple is not None:  # any H x W: no reshape to the training size
            return self.net.encoder(x.unsqueeze(1) if len(self.input_shape) == 2 else x)
        x = x.reshape(x.shape[0], *self.image_shape)
        return self.to_code(self.net.encoder(x))

    def decode_raw(self, z: Tensor) -> Tensor:
        if self.spatial_multiple is not None:
            out = self.net.decoder(z)
            return out.squeeze(1) if len(self.input_shape) == 2 else out
        return self.net.decoder(self.from_code(z)).reshape(z.shape[0], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        return self.head.data(self.decode_raw(z))

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        z = self.encode(x)
        raw = self.decode_raw(z)
        recon = self.head.loss(raw, target)
        return {"x_hat": self.head.data(raw), "z": z, "recon": recon, "loss": recon}
