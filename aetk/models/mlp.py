"""Fully connected autoencoders: ``ae`` (one hidden layer), ``deep`` (an MLP stack) and
``sparse`` (a code with a sparsity penalty). Any input shape is flattened; the output is
reshaped back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import (
    MLPNet,
    ReconstructionHead,
    check_activation,
    check_choice,
    check_dropout,
    check_loss,
    check_nonnegative,
    check_output,
    check_positive_int,
    check_widths,
    flat_dim,
)
from aetk.models.losses import per_example
from aetk.models.registry import register_model


class MLPAutoencoder(Autoencoder):
    """Shared machinery: ``self.net`` (:class:`MLPNet`) and ``self.head``
    (:class:`ReconstructionHead`); subclasses add penalty terms in :meth:`penalties`."""

    def _build(self, widths, activation, code_activation, *, tied, loss, output,
               batchnorm=False, dropout=0.0) -> None:
        self.in_dim = flat_dim(self.input_shape)
        self.net = MLPNet([self.in_dim, *widths], activation, code_activation, tied=tied,
                          batchnorm=batchnorm, dropout=dropout)
        self.head = ReconstructionHead(loss, output, self.input_shape)

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(layout="flat", output_activation=self.head.output_name)

    def encode(self, x: Tensor) -> Tensor:
        return self.net.encode(x.reshape(x.shape[0], -1))

    def decode_raw(self, z: Tensor) -> Tensor:
        return self.net.decode(z).reshape(z.shape[0], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        return self.head.data(self.decode_raw(z))

    def penalties(self, x: Tensor, z: Tensor, step: int) -> tuple[Tensor | None, dict[str, Tensor]]:
        """(weighted penalty to add to the loss or None, extra scalar terms)."""
        return None, {}

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        z = self.encode(x)
        raw = self.decode_raw(z)
        recon = self.head.loss(raw, target)
        out = {"x_hat": self.head.data(raw), "z": z, "recon": recon}
        penalty, terms = self.penalties(x, z, step)
        out.update(terms)
        out["loss"] = recon if penalty is None else recon + penalty
        return out


# -- ae ---------------------------------------------------------------------------------------
@register_model("ae")
class ShallowAutoencoder(MLPAutoencoder):
    """The classic autoencoder with one hidden layer (Rumelhart, Hinton & Williams, 1986;
    Bourlard & Kamp, 1988; Baldi & Hornik, 1989):

        z     = s(W x + b)                         (code_size units, s = ``activation``)
        x_hat = g(W' z + c),   W' = W^T if tied    (g = sigmoid for bce, else ``output``)

    Undercomplete when code_size < dim(x) (with a linear activation and MSE it spans the
    principal subspace, as PCA does), overcomplete otherwise (then regularise it: see
    ``sparse``, ``denoising``, ``contractive``).
    """

    @dataclass
    class Config:
        code_size: int = 32
        activation: str = "sigmoid"  # sigmoid | relu | tanh | linear (| leaky_relu | elu | gelu)
        loss: str = "mse"  # mse | bce | gaussian_nll
        output: str = "linear"  # linear | sigmoid: output of mse / gaussian_nll decoders
        tied: bool = False

        def __post_init__(self):
            check_positive_int("code_size", self.code_size)
            check_activation(self.activation)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self._build([c.code_size], c.activation, c.activation, tied=c.tied, loss=c.loss, output=c.output)


# -- deep -------------------------------------------------------------------------------------
@register_model("deep")
class DeepAutoencoder(MLPAutoencoder):
    """A deep fully connected autoencoder (Hinton & Salakhutdinov, "Reducing the
    dimensionality of data with neural networks", Science 2006), e.g. 784-1000-500-250-30:

        h_0 = x,  h_i = s(W_i h_{i-1} + b_i) for hidden layers,  z = s_code(W_k h_{k-1} + b_k)
        mirrored decoder: g_i = s(V_i g_{i+1} + c_i), x_hat = out(V_1 g_1 + c_1)

    with ``V_i = W_i^T`` when ``tied`` (one shared parameter, separate decoder biases).
    ``widths`` lists the encoder's layer sizes; the last one is the code. Optional
    BatchNorm (hidden layers, before the activation) and dropout (after it).
    """

    @dataclass
    class Config:
        widths: list[int] = field(default_factory=lambda: [1000, 500, 250, 30])
        activation: str = "relu"
        code_activation: str = "linear"
        loss: str = "mse"
        output: str = "linear"
        tied: bool = False
        batchnorm: bool = False
        dropout: float = 0.0

        def __post_init__(self):
            check_widths("widths", self.widths)
            check_activation(self.activation)
            check_activation(self.code_activation, "code_activation")
            check_loss(self.loss)
            check_output(self.output)
            check_dropout(self.dropout)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self._build(list(c.widths), c.activation, c.code_activation, tied=c.tied, loss=c.loss,
                    output=c.output, batchnorm=c.batchnorm, dropout=float(c.dropout))


# -- sparse -----------------------------------------------------------------------------------
SPARSITY_PENALTIES = ("kl", "l1")


def kl_sparsity(z: Tensor, rho: float, eps: float = 1e-6) -> Tensor:
    """sum_j KL(rho || rho_hat_j), rho_hat_j = mean activation of unit j over the batch."""
    rho_hat = z.float().mean(0).reshape(-1).clamp(eps, 1 - eps)
    r = torch.as_tensor(rho, dtype=rho_hat.dtype, device=rho_hat.device)
    return (r * torch.log(r / rho_hat) + (1 - r) * torch.log((1 - r) / (1 - rho_hat))).sum()


def l1_sparsity(z: Tensor) -> Tensor:
    """sum_j |z_j| per example, averaged over the batch."""
    return per_example(z.float().abs()).mean()


@register_model("sparse")
class SparseAutoencoder(MLPAutoencoder):
    """Sparse autoencoder: a (possibly overcomplete) code kept sparse by a penalty.

    - ``penalty = "kl"`` (Ng, "Sparse autoencoder", CS294A notes, 2011; Lee, Ekanadham & Ng,
      2008): sigmoid code units, rho_hat_j = mean_batch z_j, and
      ``loss = recon + beta * sum_j [rho log(rho/rho_hat_j) + (1-rho) log((1-rho)/(1-rho_hat_j))]``.
    - ``penalty = "l1"`` (Ranzato et al., 2007; Goodfellow et al., Deep Learning §14.2.1):
      ``loss = recon + l1 * sum_j |z_j|`` (per example, batch mean).

    Terms: "sparsity" (the unweighted penalty) and "mean_activation" (mean code activation,
    of |z| for l1). ``hidden`` adds encoder layers before the code (mirrored in the decoder).
    """

    @dataclass
    class Config:
        code_size: int = 128
        hidden: list[int] = field(default_factory=list)
        activation: str = "sigmoid"  # code (and hidden) activation; kl needs sigmoid
        penalty: str = "kl"  # kl | l1
        rho: float = 0.05  # target mean activation (kl)
        beta: float = 3.0  # weight of the KL penalty
        l1: float = 1e-3  # weight of the L1 penalty
        loss: str = "mse"
        output: str = "linear"
        tied: bool = False

        def __post_init__(self):
            check_positive_int("code_size", self.code_size)
            check_widths("hidden", self.hidden, allow_empty=True)
            check_activation(self.activation)
            check_choice("penalty", self.penalty, SPARSITY_PENALTIES)
            if self.penalty == "kl" and self.activation != "sigmoid":
                raise ValueError(
                    f"the kl sparsity penalty needs code activations in (0, 1): use "
                    f"activation=\"sigmoid\" (got {self.activation!r}) or penalty=\"l1\""
                )
            if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) \
                    or not 0.0 < self.rho < 1.0:
                raise ValueError(f"rho (the target mean activation) must be in (0, 1), got {self.rho!r}")
            check_nonnegative("beta", self.beta)
            check_nonnegative("l1", self.l1)
            check_loss(self.loss)
            check_output(self.output)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self._build([*c.hidden, c.code_size], c.activation, c.activation, tied=c.tied, loss=c.loss,
                    output=c.output)

    def sparsity_penalty(self, z: Tensor) -> Tensor:
        """The unweighted penalty of a batch of codes."""
        if self.config.penalty == "kl":
            return kl_sparsity(z, self.config.rho)
        return l1_sparsity(z)

    def penalties(self, x, z, step):
        s = self.sparsity_penalty(z)
        weight = self.config.beta if self.config.penalty == "kl" else self.config.l1
        act = z.float().abs() if self.config.penalty == "l1" else z.float()
        return weight * s, {"sparsity": s, "mean_activation": act.mean().detach()}


__all__ = ["DeepAutoencoder", "MLPAutoencoder", "ShallowAutoencoder", "SparseAutoencoder",
           "kl_sparsity", "l1_sparsity"]
