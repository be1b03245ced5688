"""Reflect-padding at the far end of image axes, the one rule shared by the runtime (graphs
that need sizes divisible by a multiple) and the denoiser's tiles. numpy only."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def reflect_pad(x: np.ndarray, axes: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    """Pad each of ``axes`` at its end (bottom, right) up to ``sizes`` by reflection
    (numpy's ``reflect``: the edge pixel is not repeated). Where a pad is not shorter than
    its axis, reflection cannot fill it in one bounce, and the array is mirrored with its
    edges repeated (``symmetric``) instead. ``x`` itself when nothing is padded."""
    pads = [(0, 0)] * x.ndim
    for ax, size in zip(axes, sizes):
        pads[ax] = (0, max(0, int(size) - x.shape[ax]))
    if all(p == (0, 0) for p in pads):
        return x
    short = any(after >= n for (_, after), n in zip(pads, x.shape) if after)
    return np.ascontiguousarray(np.pad(x, pads, mode="symmetric" if short else "reflect"))


def pad_to_multiple(x: np.ndarray, axes: Sequence[int], multiple: int) -> np.ndarray:
    """Reflect-pad ``axes`` at their end up to the next multiple of ``multiple``."""
    return reflect_pad(x, axes, [x.shape[ax] + (-x.shape[ax] % multiple) for ax in axes])


__all__ = ["pad_to_multiple", "reflect_pad"]
