"""Contractive penalty (Rifai et al., 2011) for a sigmoid encoder h = sigmoid(x W^T + b):
the squared Frobenius norm of the Jacobian dh/dx, in closed form,

    ||J(x)||_F^2 = sum_j (h_j (1 - h_j))^2 * sum_i W_ji^2,

per example, with its exact backward to h and W. The formula holds for sigmoid units
only, so the public function asks for the activation instead of assuming it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aetk.ops._common import DTYPE_CODES, backend, check_same, check_tensor, ptr

OP = "contractive_penalty"
_REDUCTIONS = ("none", "sum", "mean")


def _check(h, W) -> None:
    check_same(OP, "h", h, "W", W)
    check_tensor(OP, "h", h)
    check_tensor(OP, "W", W)
    if h.dim() != 2:
        raise ValueError(f"{OP}: h must be (batch, hidden), got shape {tuple(h.shape)}")
    if W.dim() != 2:
        raise ValueError(
            f"{OP}: W must be the encoder weight of shape (hidden, inputs) as in nn.Linear, "
            f"got shape {tuple(W.shape)}"
        )
    if h.shape[1] != W.shape[0]:
        raise ValueError(
            f"{OP}: h has {h.shape[1]} hidden units but W has {W.shape[0]} rows; W must be "
            f"(hidden, inputs) = ({h.shape[1]}, ...), the weight of the layer that produced h"
        )


@torch.library.custom_op("aetk::contractive_penalty", mutates_args=(), device_types=("cpu", "cuda"))
def _contractive_op(h: Tensor, W: Tensor) -> Tensor:
    _check(h, W)
    out = h.new_zeros((h.shape[0],))
    if h.numel() and W.numel():
        mod, extra = backend(h)
        mod.contractive_forward(ptr(h), ptr(W), ptr(out), h.shape[0], W.shape[0], W.shape[1],
                                DTYPE_CODES[h.dtype], *extra)
    return out


@_contractive_op.register_fake
def _(h, W):
    _check(h, W)
    return h.new_empty((h.shape[0],))


@torch.library.custom_op(
    "aetk::contractive_penalty_backward", mutates_args=(), device_types=("cpu", "cuda")
)
def _contractive_backward_op(
    h: Tensor, W: Tensor, grad: Tensor, need_h: bool, need_w: bool
) -> tuple[Tensor, Tensor]:
    grad_h = torch.zeros_like(h) if need_h else h.new_empty((0,))
    grad_w = torch.zeros_like(W) if need_w else W.new_empty((0,))
    if (need_h or need_w) and h.numel() and W.numel():
        mod, extra = backend(h)
        mod.contractive_backward(ptr(h), ptr(W), ptr(grad), ptr(grad_h) if need_h else 0,
                                 ptr(grad_w) if need_w else 0, h.shape[0], W.shape[0],
                                 W.shape[1], DTYPE_CODES[h.dtype], *extra)
    return grad_h, grad_w


@_contractive_backward_op.register_fake
def _(h, W, grad, need_h, need_w):
    return (torch.empty_like(h) if need_h else h.new_empty((0,)),
            torch.empty_like(W) if need_w else W.new_empty((0,)))


def _setup_context(ctx, inputs, output):
    h, W = inputs
    ctx.save_for_backward(h, W)


def _backward(ctx, grad):
    h, W = ctx.saved_tensors
    need_h, need_w = ctx.needs_input_grad
    grad_h, grad_w = torch.ops.aetk.contractive_penalty_backward(
        h, W, grad.contiguous(), need_h, need_w
    )
    return (grad_h if need_h else None), (grad_w if need_w else None)


torch.library.register_autograd("aetk::contractive_penalty", _backward, setup_context=_setup_context)


def contractive_penalty(
    h: Tensor, W: Tensor, *, activation: str = "sigmoid", reduction: str = "none"
) -> Tensor:
    """Squared Frobenius norm of the encoder Jacobian, per example (``reduction="none"``,
    shape (batch,)) or summed/averaged over the batch.

    Args:
        h: the encoder's output sigmoid(x W^T + b), shape (batch, hidden).
        W: the encoder's weight, shape (hidden, inputs) (``nn.Linear.weight``).
        activation: must be "sigmoid": the closed form is only valid for sigmoid units.
    """
    if activation != "sigmoid":
        raise ValueError(
            f"{OP}: the analytic Jacobian norm holds only for sigmoid encoders, got "
            f"activation={activation!r}; use a sigmoid encoder or compute the Jacobian with "
            "torch.func.jacrev"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{OP}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    _check(h, W)
    per_example = torch.ops.aetk.contractive_penalty(h, W)
    if reduction == "sum":
        return per_example.sum()
    if reduction == "mean":
        return per_example.mean()
    return per_example


def contractive_penalty_ref(h: Tensor, W: Tensor) -> Tensor:
    """Plain-PyTorch reference, per example."""
    _check(h, W)
    return ((h * (1 - h)) ** 2 * (W * W).sum(1)).sum(1)
