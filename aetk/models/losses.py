"""Reconstruction losses, summed over an example's dimensions and averaged over the batch.

- ``mse``          squared error (Gaussian likelihood with unit variance, up to constants)
- ``bce``          Bernoulli cross-entropy; takes the decoder's logits for stability
- ``gaussian_nll`` Gaussian negative log-likelihood with a learned per-dimension log-variance
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

RECONSTRUCTION_LOSSES = ("mse", "bce", "gaussian_nll")


def per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the batch: (B, ...) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(1)


def mse(x_hat: Tensor, x: Tensor) -> Tensor:
    return per_example((x_hat - x) ** 2).mean()


def bce_with_logits(logits: Tensor, x: Tensor) -> Tensor:
    return per_example(F.binary_cross_entropy_with_logits(logits, x, reduction="none")).mean()


def gaussian_nll(mean: Tensor, logvar: Tensor, x: Tensor) -> Tensor:
    nll = 0.5 * (logvar + (x - mean) ** 2 * torch.exp(-logvar) + math.log(2 * math.pi))
    return per_example(nll).mean()


def check_loss_name(name: str) -> None:
    if name not in RECONSTRUCTION_LOSSES:
        raise ValueError(
            f"unknown loss {name!r}; valid losses: {', '.join(RECONSTRUCTION_LOSSES)}"
        )
