"""How much denoising helped, where a clean reference exists: PSNR and SSIM of the noisy input
and of the denoised output against the reference, per image and on average.

    s = score_image(noisy, denoised, clean)      # (C, H, W) float planes in [0, 1]
    s.psnr_in, s.psnr_out, s.gain_db, s.ssim_in, s.ssim_out

``aetk denoise --report --reference DIR`` prints these as a table; benchmarks call
:func:`psnr` and :func:`ssim` (or :func:`score_image`) on their own arrays. PSNR is over all
channels with a peak of 1; SSIM is Wang et al. 2004 (11x11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03, "valid" borders), the mean over channels: the values of
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` up to the border handling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aetk.data.imageio import IMAGE_SUFFIXES


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gauss_filter(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes of x."""
    k = len(window)
    # rows then columns, as sums of shifted slices: exact, no FFT rounding
    h = sum(window[i] * x[..., i:x.shape[-2] - k + 1 + i, :] for i in range(k))
    return sum(window[i] * h[..., :, i:x.shape[-1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Mean structural similarity of two (C, H, W) or (H, W) images (see the module docstring)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    m = min(a.shape[-2:])
    k = 11 if m >= 11 else max(1, m if m % 2 else m - 1)  # small images: the largest odd window
    r = np.arange(k) - (k - 1) / 2
    w = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gauss_filter(a, w), _gauss_filter(b, w)
    saa = _gauss_filter(a * a, w) - mu_a ** 2
    sbb = _gauss_filter(b * b, w) - mu_b ** 2
    sab = _gauss_filter(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(s.mean())


@dataclass
class Score:
    label: str
    psnr_in: float
    psnr_out: float
    ssim_in: float
    ssim_out: float

    @property
    def gain_db(self) -> float:
        return self.psnr_out - self.psnr_in


@dataclass
class Report:
    scores: list[Score] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (image, why no score)

    def mean(self) -> Score | None:
        if not self.scores:
            return None
        finite = lambda v: [x for x in v if math.isfinite(x)]  # noqa: E731
        m = lambda v: float(np.mean(finite(v))) if finite(v) else math.inf  # noqa: E731
        return Score("mean", m([s.psnr_in for s in self.scores]), m([s.psnr_out for s in self.scores]),
                     m([s.ssim_in for s in self.scores]), m([s.ssim_out for s in self.scores]))


def quantize(planes: np.ndarray, bits: int) -> np.ndarray:
    """Planes as the written file holds them (rounded to the bit depth)."""
    top = 65535.0 if bits == 16 else 255.0
    return np.rint(np.clip(planes, 0.0, 1.0) * top) / top


def score_image(noisy: np.ndarray, denoised: np.ndarray, reference: np.ndarray, label: str = "") -> Score:
    """PSNR and SSIM of ``noisy`` and ``denoised`` against ``reference`` (same shapes)."""
    if noisy.shape != reference.shape or denoised.shape != reference.shape:
        raise ValueError(f"{label or 'image'}: reference is {reference.shape[2]}x{reference.shape[1]} with "
                         f"{reference.shape[0]} channel(s), the image {noisy.shape[2]}x{noisy.shape[1]} with "
                         f"{noisy.shape[0]}")
    return Score(label, psnr(noisy, reference), psnr(denoised, reference), ssim(noisy, reference),
                 ssim(denoised, reference))


def find_reference(src: Path, input_root: Path | None, reference: Path) -> Path | None:
    """The clean image for ``src``: the same path relative to its input folder under
    ``reference`` (or the same file name for an input named on its own), with any image
    suffix when the exact name is absent."""
    rel = src.relative_to(input_root) if input_root is not None else Path(src.name)
    exact = reference / rel
    if exact.is_file():
        return exact
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        other = exact.with_suffix(suffix)
        if other.is_file():
            return other
    return None


__all__ = ["Report", "Score", "find_reference", "psnr", "quantize", "score_image", "ssim"]
