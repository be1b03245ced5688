"""The VAE reparameterization trick (Kingma & Welling, 2014) with its KL term, fused:

    z  = mu + exp(logvar / 2) * eps,          eps ~ N(0, I) drawn from (seed, offset)
    kl = -1/2 * sum(1 + logvar - mu^2 - exp(logvar))   per example, to N(0, I)

The backward pass regenerates eps: nothing but mu and logvar is saved.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aetk.ops._common import DTYPE_CODES, backend, check_same, check_seed, check_tensor, ptr, rows_cols
from aetk.ops.random import normal_ref

OP = "reparameterize"


def _check(mu, logvar) -> None:
    check_same(OP, "mu", mu, "logvar", logvar)
    check_tensor(OP, "mu", mu, min_dim=1)
    check_tensor(OP, "logvar", logvar, min_dim=1)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"{OP}: mu and logvar must have the same shape, "
            f"got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )


@torch.library.custom_op("aetk::reparameterize", mutates_args=(), device_types=("cpu", "cuda"))
def _reparameterize_op(mu: Tensor, logvar: Tensor, seed: int, offset: int) -> tuple[Tensor, Tensor]:
    _check(mu, logvar)
    check_seed(OP, seed, offset)
    rows, cols = rows_cols(mu)
    z = torch.empty_like(mu)
    kl = mu.new_zeros((rows,))
    if mu.numel():
        mod, extra = backend(mu)
        mod.reparameterize_forward(ptr(mu), ptr(logvar), ptr(z), ptr(kl), rows, cols,
                                   DTYPE_CODES[mu.dtype], seed, offset, *extra)
    return z, kl


@_reparameterize_op.register_fake
def _(mu, logvar, seed, offset):
    _check(mu, logvar)
    return torch.empty_like(mu), mu.new_empty((mu.shape[0],))


@torch.library.custom_op(
    "aetk::reparameterize_backward", mutates_args=(), device_types=("cpu", "cuda")
)
def _reparameterize_backward_op(
    mu: Tensor, logvar: Tensor, grad_z: Tensor, grad_kl: Tensor, seed: int, offset: int
) -> tuple[Tensor, Tensor]:
    rows, cols = rows_cols(mu)
    grad_mu, grad_logvar = torch.empty_like(mu), torch.empty_like(logvar)
    if mu.numel():
        mod, extra = backend(mu)
        mod.reparameterize_backward(ptr(mu), ptr(logvar), ptr(grad_z), ptr(grad_kl), ptr(grad_mu),
                                    ptr(grad_logvar), rows, cols, DTYPE_CODES[mu.dtype], seed,
                                    offset, *extra)
    return grad_mu, grad_logvar


@_reparameterize_backward_op.register_fake
def _(mu, logvar, grad_z, grad_kl, seed, offset):
    return torch.empty_like(mu), torch.empty_like(logvar)


def _setup_context(ctx, inputs, output):
    mu, logvar, seed, offset = inputs
    ctx.save_for_backward(mu, logvar)
    ctx.rng = (seed, offset)


def _backward(ctx, grad_z, grad_kl):
    mu, logvar = ctx.saved_tensors
    grad_mu, grad_logvar = torch.ops.aetk.reparameterize_backward(
        mu, logvar, grad_z.contiguous(), grad_kl.contiguous(), *ctx.rng
    )
    return grad_mu, grad_logvar, None, None


torch.library.register_autograd("aetk::reparameterize", _backward, setup_context=_setup_context)


def reparameterize(mu: Tensor, logvar: Tensor, seed: int = 0, offset: int = 0) -> tuple[Tensor, Tensor]:
    """Sample ``z ~ N(mu, exp(logvar))`` and return ``(z, kl)``, kl of shape (batch,).

    mu and logvar: same shape, batch first, float32/float64 on CPU or
    float32/float16/bfloat16 on CUDA. eps is drawn from (seed, offset) exactly as
    :func:`aetk.ops.normal` draws it.
    """
    _check(mu, logvar)
    check_seed(OP, seed, offset)
    return torch.ops.aetk.reparameterize(mu, logvar, seed, offset)


def reparameterize_ref(mu: Tensor, logvar: Tensor, seed: int = 0, offset: int = 0) -> tuple[Tensor, Tensor]:
    """Plain-PyTorch reference of :func:`reparameterize` (differentiable by autograd)."""
    _check(mu, logvar)
    eps = normal_ref(mu.numel(), seed, offset, mu.device).view(mu.shape).to(mu.dtype)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    kl = -0.5 * (1 + logvar - mu * mu - std * std).reshape(mu.shape[0], -1).sum(1)
    return z, kl
