"""Input corruption for denoising autoencoders (Vincent et al., 2008), fused into one
pass over memory.

Kinds (``level`` is the one parameter of each):

- ``gaussian``       y = x + level * N(0, 1)
- ``masking``        each element zeroed with probability ``level``
- ``masking_exact``  exactly round(level * d) of the d components of each example zeroed
- ``salt_pepper``    a fraction ``level`` set to ``lo`` or ``hi`` on a fair coin
- ``uniform``        y = x + U(-level, level)

The backward pass regenerates the mask from (seed, offset) instead of saving it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aetk.ops._common import DTYPE_CODES, backend, check_seed, check_tensor, ptr, rows_cols
from aetk.ops.random import normal_ref, random_words_ref, uniform_ref

CORRUPTION_KINDS = ("gaussian", "masking", "masking_exact", "salt_pepper", "uniform")
_KIND_CODES = {k: i for i, k in enumerate(CORRUPTION_KINDS)}  # aetk::CorruptKind
_ADDITIVE = ("gaussian", "uniform")
_LEVEL_MEANING = {
    "gaussian": "the noise standard deviation sigma",
    "masking": "the probability v of zeroing an element",
    "masking_exact": "the fraction v of components zeroed per example",
    "salt_pepper": "the fraction v of elements set to lo or hi",
    "uniform": "the half-width a of the noise U(-a, a)",
}


def _check(x, kind, level, lo, hi) -> None:
    check_tensor("corrupt", "x", x)
    if kind not in _KIND_CODES:
        raise ValueError(
            f"corrupt: unknown kind {kind!r}; expected one of {', '.join(CORRUPTION_KINDS)}"
        )
    meaning = _LEVEL_MEANING[kind]
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ValueError(f"corrupt: level ({meaning}) must be a finite number, got {level!r}")
    if kind in _ADDITIVE:
        if level < 0:
            raise ValueError(f"corrupt: level ({meaning}) must be >= 0, got {level}")
    elif not 0.0 <= level <= 1.0:
        raise ValueError(f"corrupt: level ({meaning}) must be in [0, 1], got {level}")
    if kind == "masking_exact" and x.dim() < 1:
        raise ValueError("corrupt: masking_exact needs x with a batch dimension, got a scalar")
    if kind == "salt_pepper":
        for name, v in (("lo", lo), ("hi", hi)):
            if not math.isfinite(v):
                raise ValueError(f"corrupt: {name} must be finite, got {v}")
        if lo > hi:
            raise ValueError(f"corrupt: salt_pepper needs lo <= hi, got lo={lo}, hi={hi}")


@torch.library.custom_op("aetk::corrupt", mutates_args=(), device_types=("cpu", "cuda"))
def _corrupt_op(
    x: Tensor, kind: str, level: float, lo: float, hi: float, seed: int, offset: int,
    return_mask: bool,
) -> tuple[Tensor, Tensor]:
    _check(x, kind, level, lo, hi)
    check_seed("corrupt", seed, offset)
    y = torch.empty_like(x)
    mask = torch.empty(x.shape if return_mask else (0,), dtype=torch.bool, device=x.device)
    if x.numel():
        mod, extra = backend(x)
        rows, cols = rows_cols(x)
        mod.corrupt(ptr(x), ptr(y), ptr(mask) if return_mask else 0, DTYPE_CODES[x.dtype],
                    _KIND_CODES[kind], level, lo, hi, seed, offset, rows, cols, *extra)
    return y, mask


@_corrupt_op.register_fake
def _(x, kind, level, lo, hi, seed, offset, return_mask):
    _check(x, kind, level, lo, hi)
    return torch.empty_like(x), x.new_empty(x.shape if return_mask else (0,), dtype=torch.bool)


@torch.library.custom_op("aetk::corrupt_backward", mutates_args=(), device_types=("cpu", "cuda"))
def _corrupt_backward_op(
    grad: Tensor, kind: str, level: float, lo: float, hi: float, seed: int, offset: int
) -> Tensor:
    """grad where the element was kept, 0 where it was replaced (mask regenerated)."""
    _check(grad, kind, level, lo, hi)
    out = torch.empty_like(grad)
    if grad.numel():
        mod, extra = backend(grad)
        rows, cols = rows_cols(grad)
        mod.corrupt_backward(ptr(grad), ptr(out), DTYPE_CODES[grad.dtype], _KIND_CODES[kind],
                             level, lo, hi, seed, offset, rows, cols, *extra)
    return out


@_corrupt_backward_op.register_fake
def _(grad, kind, level, lo, hi, seed, offset):
    return torch.empty_like(grad)


def _setup_context(ctx, inputs, output):
    _x, kind, level, lo, hi, seed, offset, _return_mask = inputs
    ctx.args = (kind, level, lo, hi, seed, offset)


def _backward(ctx, grad_y, _grad_mask):
    kind = ctx.args[0]
    if kind in _ADDITIVE:  # d(x + noise)/dx = 1
        grad_x = grad_y
    else:
        grad_x = torch.ops.aetk.corrupt_backward(grad_y.contiguous(), *ctx.args)
    return grad_x, None, None, None, None, None, None, None


torch.library.register_autograd("aetk::corrupt", _backward, setup_context=_setup_context)


def corrupt(
    x: Tensor,
    kind: str,
    level: float,
    seed: int = 0,
    offset: int = 0,
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Corrupt ``x`` (batch first) for denoising-autoencoder training.

    Args:
        x: float tensor; dimension 0 indexes examples (used by ``masking_exact``).
        kind: one of :data:`CORRUPTION_KINDS`.
        level: sigma (gaussian), half-width (uniform) or corrupted fraction (the others).
        seed, offset: the random stream; equal pairs give equal draws on CPU and CUDA.
        lo, hi: the "pepper" and "salt" values of ``salt_pepper``.
        return_mask: also return a bool tensor, True where an element was corrupted
            (all True for the additive kinds), e.g. to weight a loss.
    """
    _check(x, kind, level, lo, hi)
    check_seed("corrupt", seed, offset)
    y, mask = torch.ops.aetk.corrupt(x, kind, float(level), float(lo), float(hi), seed, offset,
                                     return_mask)
    return (y, mask) if return_mask else y


def corrupt_ref(
    x: Tensor,
    kind: str,
    level: float,
    seed: int = 0,
    offset: int = 0,
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Plain-PyTorch reference of :func:`corrupt`, drawing the same Philox bits.

    Masks and uniform noise match the kernels exactly; Gaussian noise comes from torch's
    own log/sin/cos and agrees to float rounding.
    """
    _check(x, kind, level, lo, hi)
    n, dev = x.numel(), x.device
    level32 = torch.tensor(level, dtype=torch.float32, device=dev)
    corrupted = torch.ones(x.shape, dtype=torch.bool, device=dev)
    if kind == "gaussian":
        noise = normal_ref(n, seed, offset, dev) * level32
        y = x + noise.view(x.shape).to(x.dtype)
    elif kind == "uniform":
        noise = (uniform_ref(random_words_ref(n, seed, offset, dev)) * 2.0 - 1.0) * level32
        y = x + noise.view(x.shape).to(x.dtype)
    elif kind in ("masking", "salt_pepper"):
        words = random_words_ref(n, seed, offset, dev).view(x.shape)
        corrupted = uniform_ref(words) < level32
        if kind == "masking":
            repl = torch.zeros((), dtype=x.dtype, device=dev)
        else:
            repl = torch.where((words & 1).bool(), torch.tensor(hi, dtype=torch.float32),
                               torch.tensor(lo, dtype=torch.float32)).to(x.dtype)
        y = torch.where(corrupted, repl, x)
    else:  # masking_exact: drop the k smallest (word, column) keys of each row
        rows, cols = rows_cols(x)
        words = random_words_ref(n, seed, offset, dev).view(rows, cols)
        k = math.floor(float(level32) * cols + 0.5)
        order = torch.argsort(words, dim=1, stable=True)
        drop = torch.zeros(rows, cols, dtype=torch.bool, device=dev)
        drop.scatter_(1, order[:, :k], True)
        corrupted = drop.view(x.shape)
        y = torch.where(corrupted, torch.zeros((), dtype=x.dtype, device=dev), x)
    return (y, corrupted) if return_mask else y
