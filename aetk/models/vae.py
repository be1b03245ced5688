"""Variational autoencoder (kind ``vae``), MLP or convolutional."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import (
    ConvNet,
    ReconstructionHead,
    activation,
    check_activation,
    check_choice,
    check_nonnegative,
    check_output,
    check_positive_int,
    check_widths,
    flat_dim,
    image_shape,
)
from aetk.models.registry import register_model
from aetk.ops import normal, reparameterize

ARCHS = ("mlp", "conv")
LIKELIHOODS = {"bernoulli": "bce", "gaussian": "gaussian_nll"}
DEFAULT_HIDDEN = {"mlp": [400], "conv": [32, 64]}


@register_model("vae")
class VariationalAutoencoder(Autoencoder):
    """Variational autoencoder (Kingma & Welling, "Auto-encoding variational Bayes", ICLR
    2014; beta-VAE: Higgins et al., ICLR 2017). Encoder q(z|x) = N(mu(x), diag exp(logvar(x))),
    prior p(z) = N(0, I), decoder p(x|z) Bernoulli (logits) or Gaussian (mean, learned
    per-dimension log-variance). With one sample z = mu + exp(logvar/2) * eps (the fused
    :func:`aetk.ops.reparameterize`, eps drawn from (seed, step)):

        recon = -log p(x|z)                          (summed over dims, batch mean)
        kl    = KL(q(z|x) || p(z)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar))
        loss  = recon + beta * kl,     elbo = -(recon + kl)

    forward always samples z (in eval mode too, so the validation ELBO is an honest
    estimate; reproducible through (seed, step)). ``encode(x)`` returns the mean mu;
    ``decode(z)`` the mean of p(x|z) (probabilities for Bernoulli). ``hidden`` holds the
    MLP widths (default [400]) or the conv channels (default [32, 64]).
    """

    @dataclass
    class Config:
        arch: str = "mlp"  # mlp | conv
        latent_dim: int = 16
        hidden: list[int] | None = None  # mlp widths / conv channels; None: the arch's default
        activation: str = "relu"
        likelihood: str = "bernoulli"  # bernoulli | gaussian
        beta: float = 1.0
        output: str = "linear"  # linear | sigmoid: mean of the Gaussian likelihood
        kernel_size: int = 3  # conv
        batchnorm: bool = False  # conv

        def __post_init__(self):
            check_choice("arch", self.arch, ARCHS)
            check_positive_int("latent_dim", self.latent_dim)
            if self.hidden is not None:
                check_widths("hidden", self.hidden, allow_empty=self.arch == "mlp")
            check_activation(self.activation)
            check_choice("likelihood", self.likelihood, LIKELIHOODS)
            check_nonnegative("beta", self.beta)
            check_output(self.output)
            check_positive_int("kernel_size", self.kernel_size)

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        hidden = list(DEFAULT_HIDDEN[c.arch] if c.hidden is None else c.hidden)
        if c.arch == "mlp":
            dims = [flat_dim(self.input_shape), *hidden]
            enc: list[nn.Module] = [nn.Flatten()]
            for a, b in zip(dims[:-1], dims[1:]):
                enc += [nn.Linear(a, b), activation(c.activation)]
            dec: list[nn.Module] = []
            rdims = [c.latent_dim, *reversed(hidden)]
            for a, b in zip(rdims[:-1], rdims[1:]):
                dec += [nn.Linear(a, b), activation(c.activation)]
            dec += [nn.Linear(rdims[-1], dims[0])]
            self.encoder = nn.Sequential(*enc)
            self.decoder = nn.Sequential(*dec)
            feat_dim = dims[-1]
        else:
            self.image_shape = image_shape(self.input_shape, "vae")
            ch, h, w = self.image_shape
            net = ConvNet(ch, (h, w), hidden, c.kernel_size, c.activation, c.batchnorm)
            feat = net.feature_shape
            feat_dim = flat_dim(feat)
            self.encoder = nn.Sequential(nn.Unflatten(1, self.image_shape), *net.encoder, nn.Flatten())
            self.decoder = nn.Sequential(nn.Linear(c.latent_dim, feat_dim), activation(c.activation),
                                         nn.Unflatten(1, feat), *net.decoder)
        self.fc_mu = nn.Linear(feat_dim, c.latent_dim)
        self.fc_logvar = nn.Linear(feat_dim, c.latent_dim)
        self.head = ReconstructionHead(LIKELIHOODS[c.likelihood], c.output, self.input_shape)

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(variational=True, generator=True,
                           layout="image" if self.config.arch == "conv" else "flat",
                           output_activation=self.head.output_name)

    # -- interface ----------------------------------------------------------------------------
    def encode_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x), each (batch, latent_dim)."""
        h = self.encoder(x.reshape(x.shape[0], -1))
        return self.fc_mu(h), self.fc_logvar(h)

    def encode(self, x: Tensor, sample: bool = False, *, step: int = 0) -> Tensor:
        """The posterior mean; a sample from (seed, step) when ``sample=True`` (not exportable)."""
        mu, logvar = self.encode_stats(x)
        if not sample:
            return mu
        return reparameterize(mu.contiguous(), logvar.contiguous(), self.seed, int(step))[0]

    def decode_raw(self, z: Tensor) -> Tensor:
        return self.decoder(z).reshape(z.shape[0], *self.input_shape)

    def decode(self, z: Tensor) -> Tensor:
        return self.head.data(self.decode_raw(z))

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """n draws of the decoder mean at z ~ N(0, I) (z from :func:`aetk.ops.normal`)."""
        ref = self.fc_mu.weight
        z = normal(int(n) * self.config.latent_dim, int(seed), 0, ref.device)
        return self.decode(z.view(int(n), self.config.latent_dim).to(ref.dtype))

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        mu, logvar = self.encode_stats(x)
        z, kl = reparameterize(mu.contiguous(), logvar.contiguous(), self.seed, int(step))
        raw = self.decode_raw(z)
        recon = self.head.loss(raw, target)
        kl = kl.float().mean() if kl.dtype in (torch.float16, torch.bfloat16) else kl.mean()
        return {
            "x_hat": self.head.data(raw),
            "z": z,
            "recon": recon,
            "kl": kl,
            "elbo": -(recon + kl),
            "loss": recon + self.config.beta * kl,
        }
