"""Fused ops of the native core, each registered with ``torch.library`` and paired with
a plain-PyTorch ``*_ref`` reference in the same module.

- :func:`corrupt` — input corruption for denoising autoencoders.
- :func:`reparameterize` — VAE sampling ``z = mu + sigma * eps`` with the KL term.
- :func:`contractive_penalty` — analytic Jacobian norm of a sigmoid encoder.

Random ops take ``(seed, offset)``: the same pair gives the same draws on CPU and CUDA;
a different offset gives an independent stream (use the training step, for example).
"""

from aetk.ops.contractive import contractive_penalty, contractive_penalty_ref
from aetk.ops.corrupt import CORRUPTION_KINDS, corrupt, corrupt_ref
from aetk.ops.random import normal, normal_ref, random_words, random_words_ref
from aetk.ops.reparameterize import reparameterize, reparameterize_ref

__all__ = [
    "CORRUPTION_KINDS",
    "contractive_penalty",
    "contractive_penalty_ref",
    "corrupt",
    "corrupt_ref",
    "normal",
    "normal_ref",
    "random_words",
    "random_words_ref",
    "reparameterize",
    "reparameterize_ref",
]
