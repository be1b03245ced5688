"""The 8 symmetries of the square (the dihedral group D4) on the last two axes of an image
array, numpy or torch alike: the one helper behind ``train.flips``, the denoiser's
self-ensemble, EXIF orientation and the denoising patches' spread of views.

Symmetry ``k`` (0-7): bit 2 transposes H and W first, then bit 0 mirrors left-right (W) and
bit 1 top-bottom (H); k = 0 is the identity. So 0-3 are the mirrorings and 4-7 the same on
the transposed image (the quarter turns are among them: ``ROTATIONS``).

    y = symmetry(x, k)              # (..., H, W) -> (..., W, H) when k & 4
    x == symmetry(y, inverse(k))    # and back
"""

from __future__ import annotations

from typing import Any, Sequence

COUNT = 8
MIRRORINGS = (0, 1, 2, 3)  # no transposition: they keep a non-square image's shape
# np.rot90(x, q) (counter-clockwise quarter turns q = 0..3) as a symmetry.
ROTATIONS = (0, 6, 3, 5)


def _check(k: int) -> int:
    if not 0 <= int(k) < COUNT:
        raise ValueError(f"a symmetry of the square is 0 to 7, got {k!r}")
    return int(k)


def symmetry(x: Any, k: int, axes: Sequence[int] = (-2, -1)) -> Any:
    """Symmetry ``k`` of ``x`` (a numpy array or a torch tensor) on ``axes`` (H, W): a view
    where the array type allows it."""
    k = _check(k)
    h, w = axes
    if k & 4:
        x = x.swapaxes(h, w)
    dims = [d for bit, d in ((1, w), (2, h)) if k & bit]
    if not dims:
        return x
    if hasattr(x, "flip"):  # torch
        return x.flip(dims)
    import numpy as np

    return np.flip(x, dims)


def inverse(k: int) -> int:
    """The symmetry that undoes ``k``: a mirroring is its own inverse; after a transposition
    the mirrorings swap axes (k = 5 and 6 undo each other)."""
    k = _check(k)
    if k & 4 and (k & 3) in (1, 2):
        return k ^ 3
    return k


def compose(first: int, then: int) -> int:
    """The symmetry that applies ``first``, then ``then``."""
    first, then = _check(first), _check(then)
    if then & 4:
        # (mirror m1 after transposing t1) then transpose: the transposition moves m1's axes.
        m1 = first & 3
        m1 = ((m1 & 1) << 1) | ((m1 & 2) >> 1)
        return ((first & 4) ^ 4) | (m1 ^ (then & 3))
    return (first & 4) | ((first & 3) ^ (then & 3))


def patch_view(k: int) -> int:
    """The view the k-th denoising training patch gets: quarter turns k % 4, mirrored
    left-right after them on every other round of four, so the 8 symmetries cycle."""
    return compose(ROTATIONS[k % 4], (k // 4) % 2)


# EXIF orientation (tag 0x0112, 1-8) -> the symmetry that stores the image upright.
EXIF_ORIENTATION = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 5, 7: 7, 8: 6}

__all__ = ["COUNT", "EXIF_ORIENTATION", "MIRRORINGS", "ROTATIONS", "compose", "inverse", "patch_view", "symmetry"]
