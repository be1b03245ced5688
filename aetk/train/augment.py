"""Training-time augmentation of image examples (``train.flips``).

Each example of a batch is mirrored and, when square, transposed by one of the 8 symmetries
of the square (4 mirrorings otherwise), drawn from (seed, step) so a resumed run draws what
an uninterrupted one would. An autoencoder's target is its input, so both turn together; a
model that corrupts its input (denoising) corrupts the turned example.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aetk.dihedral import symmetry
from aetk.seeds import Stream, derive_seed
from aetk.ops.random import random_words


def random_flips(x: Tensor, seed: int, step: int) -> Tensor:
    """A copy of the batch x (B, [C,] H, W) with each example turned by a random symmetry."""
    if x.dim() not in (3, 4):
        raise ValueError(f"train.flips needs image batches (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    choices = 8 if x.shape[-1] == x.shape[-2] else 4
    k = random_words(x.shape[0], derive_seed(seed, Stream.FLIPS), int(step)) % choices
    return torch.stack([symmetry(example, int(t)) for example, t in zip(x, k)])
