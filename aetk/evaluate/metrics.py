"""Reconstruction metrics on flattened float64 arrays (n examples x d values).

Conventions (the same for the model and for PCA):

- ``sse_per_example``  sum of squared errors over an example's values, mean over examples
                       (Hinton & Salakhutdinov's figure of merit)
- ``mse_per_element``  mean squared error over every value of every example
- ``psnr_db``          10 log10(R^2 / mse_per_element), R the data range (1 for data in
                       [0, 1]); +inf for a perfect reconstruction
- ``bce_per_example``  Bernoulli cross-entropy sum_i -[x log p + (1-x) log(1-p)] per example,
                       mean over examples, with p clipped to [BCE_EPS, 1 - BCE_EPS]
                       (only meaningful for data in [0, 1])
"""

from __future__ import annotations

import math

import numpy as np

BCE_EPS = 1e-7


def flat64(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:
        pass
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def sse_per_example(x_hat, x) -> np.ndarray:
    """(n,) sums of squared errors."""
    return ((flat64(x_hat) - flat64(x)) ** 2).sum(axis=1)


def psnr(mse: float, data_range: float) -> float:
    if mse <= 0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def array_psnr(x, ref, data_range: float = 1.0) -> float:
    """PSNR (dB) of array ``x`` against ``ref`` (any shapes that broadcast), in float64."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return psnr(float(np.mean((x - ref) ** 2)), data_range)


def bce_per_example(p, x, eps: float = BCE_EPS) -> np.ndarray:
    """(n,) Bernoulli cross-entropies of targets x in [0, 1] under probabilities p."""
    p = np.clip(flat64(p), eps, 1.0 - eps)
    x = flat64(x)
    return -(x * np.log(p) + (1.0 - x) * np.log1p(-p)).sum(axis=1)


def reconstruction_metrics(x_hat, x, data_range: float, *, bce: bool = False,
                           suffix: str = "") -> dict[str, float]:
    """SSE per example, MSE per element, PSNR (and BCE per example when ``bce``), each key
    ending in ``suffix``."""
    sse = sse_per_example(x_hat, x)
    d = flat64(x).shape[1]
    mse = float(sse.mean()) / d if sse.size else math.nan
    out = {f"sse_per_example{suffix}": float(sse.mean()) if sse.size else math.nan,
           f"mse_per_element{suffix}": mse,
           f"psnr_db{suffix}": psnr(mse, data_range)}
    if bce:
        b = bce_per_example(x_hat, x)
        out[f"bce_per_example{suffix}"] = float(b.mean()) if b.size else math.nan
    return out


__all__ = ["BCE_EPS", "bce_per_example", "psnr", "reconstruction_metrics", "sse_per_example"]
