"""Contractive autoencoder (kind ``contractive``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor

from aetk.models.base import ModelTraits
from aetk.models.layers import check_loss, check_nonnegative, check_output, check_positive_int
from aetk.models.mlp import MLPAutoencoder
from aetk.models.registry import register_model
from aetk.ops import contractive_penalty


@register_model("contractive")
class ContractiveAutoencoder(MLPAutoencoder):
    """Contractive autoencoder (Rifai, Vincent, Muller, Glorot & Bengio, "Contractive
    auto-encoders: explicit invariance during feature extraction", ICML 2011):

        h = sigmoid(W x + b),   x_hat = out(W' h + c)    (W' = W^T when tied, as in the paper)
        loss = recon + lam * mean_batch ||J_f(x)||_F^2,
        ||J_f(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2

    The penalty is the fused :func:`aetk.ops.contractive_penalty` (closed form, exact
    backward). Term "contractive" is the unweighted batch mean of ||J||_F^2.
    """

    @dataclass
    class Config:
        code_size: int = 64
        lam: float = 0.1  # weight of the contractive penalty
        loss: str = "mse"
        output: str = "linear"
        tied: bool = True

        def __post_init__(self):
            check_positive_int("code_size", self.code_size)
            check_nonnegative("lam", self.lam)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self._build([c.code_size], "sigmoid", "sigmoid", tied=c.tied, loss=c.loss, output=c.output)

    @property
    def weight(self) -> Tensor:
        """The encoder weight W, (code_size, inputs)."""
        return self.net.enc[0].weight

    def _penalty(self, h: Tensor) -> Tensor:
        W = self.weight
        return contractive_penalty(h.to(W.dtype).contiguous(), W)

    @property
    def traits(self) -> ModelTraits:
        return dataclasses.replace(super().traits, contractive=True)

    def jacobian_norm(self, x: Tensor) -> Tensor:
        """||J_f(x)||_F^2 per example, shape (batch,)."""
        return self._penalty(self.encode(x))

    def penalties(self, x, z, step):
        c = self._penalty(z).mean()
        return self.config.lam * c, {"contractive": c}
