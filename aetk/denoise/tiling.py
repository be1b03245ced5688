"""Overlapping tiles of a large image and their seamless, weighted reassembly.

A model sees fixed-size tiles (batched, so the model's memory is bounded by the batch, not
the image); neighbouring tiles overlap and each tile's output is weighted by a window that
ramps down smoothly (raised cosine) across the overlap, so the blend has no seams. Along
the image's own borders the window stays 1: there is nothing to blend with there.
"""

from __future__ import annotations

import math

import numpy as np

from aetk.padding import reflect_pad


def starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis covering [0, size); the last tile ends at ``size``."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    out = list(range(0, size - tile, step))
    out.append(size - tile)
    return out


def ramp(n: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1-D window of length n: a raised-cosine rise over ``overlap`` samples at inner edges
    (strictly positive, so every pixel keeps some weight)."""
    w = np.ones(n, np.float32)
    overlap = min(overlap, n // 2)
    if overlap > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap, dtype=np.float32) + 0.5) / overlap)
        if not first:
            w[:overlap] = r
        if not last:
            w[n - overlap:] = np.minimum(w[n - overlap:], r[::-1])
    return w


def tile_count(size: int, tile: int, overlap: int) -> int:
    """The fewest tiles of at most ``tile`` pixels, overlapping by ``overlap``, that cover ``size``."""
    if size <= tile:
        return 1
    return math.ceil((size - overlap) / max(1, tile - overlap))


def tile_shape(shape: tuple[int, int], tile: int, multiple: int, overlap: int = 0) -> tuple[int, int]:
    """The tile for an image: per axis, the fewest tiles of at most ``tile`` pixels that cover
    it with ``overlap``, made as small as they can be while still covering it (rounded up to
    ``multiple``). Equal tiles waste far less than full-size ones whose last tile is pushed
    back to the border: a 512-pixel side in 256-pixel tiles, overlap 32, is 3 tiles of 192
    (576 pixels computed), not 3 of 256 (768)."""
    out = []
    for size in shape:
        n = tile_count(size, tile, overlap)
        even = math.ceil((size + (n - 1) * overlap) / n)
        out.append(min(max(tile, multiple), math.ceil(even / multiple) * multiple))
    return tuple(out)  # type: ignore[return-value]


def pad_to(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reflect-pad the last two axes of ``plane`` up to at least ``shape`` (bottom/right)."""
    return reflect_pad(plane, (-2, -1), shape)


class Blender:
    """Tiles of K planes of one H x W image and the weighted sum of the model's outputs."""

    def __init__(self, planes: int, shape: tuple[int, int], tile: tuple[int, int], overlap: int):
        self.h, self.w = shape
        self.th, self.tw = tile
        self.ys, self.xs = starts(self.h, self.th, overlap), starts(self.w, self.tw, overlap)
        self.overlap = overlap
        self.acc = np.zeros((planes, self.h, self.w), np.float32)
        self.weight = np.zeros((self.h, self.w), np.float32)
        for y, x in self.positions():  # the same for every plane: summed once
            self.weight[y:y + self.th, x:x + self.tw] += self.window(y, x)

    def positions(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def window(self, y: int, x: int) -> np.ndarray:
        wy = ramp(self.th, self.overlap, y == self.ys[0], y == self.ys[-1])
        wx = ramp(self.tw, self.overlap, x == self.xs[0], x == self.xs[-1])
        return wy[:, None] * wx[None, :]

    def add(self, planes: slice | int, y: int, x: int, out: np.ndarray) -> None:
        """Add a tile output (for the planes ``planes``) at (y, x)."""
        self.acc[planes, y:y + self.th, x:x + self.tw] += out * self.window(y, x)

    def result(self) -> np.ndarray:
        return self.acc / np.maximum(self.weight, 1e-12)


__all__ = ["Blender", "pad_to", "ramp", "starts", "tile_count", "tile_shape"]
