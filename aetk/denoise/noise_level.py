"""How noisy an image is: a fast estimate of the standard deviation of its Gaussian noise.

Donoho's robust estimator on the finest diagonal Haar detail: over 2x2 blocks,
d = (a - b - c + e) / 2 is the noise's own scale for white noise (an orthonormal transform)
and close to zero on most natural image content, so median(|d|) / 0.6745 reads sigma where
the median is taken. Blocks touching the ends of the range are left out: clipping there
shrinks the noise. Measured on the held-out test photographs (8-bit, clipped): sigma 0 reads
0.7-2.2, 15 reads 14.8-16.3, 25 reads 23.0-25.2, 50 reads 41.5-47.4 (clipping bites more);
strongly textured images read a little high at light noise (scikit-image's grass: 11.9 at 0,
20.0 at 15).

    sigma = estimate_sigma(plane)   # (H, W) float in [0, 1] -> sigma on the 0-255 scale
"""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1 / 0.6745  # a normal variable's median absolute value is 0.6745 sigma
MIN_UNCLIPPED = 0.1  # below this share of unclipped blocks, use them all (a near-binary image)


def estimate_sigma(plane: np.ndarray) -> float:
    """The noise level of one image plane, (H, W) in [0, 1], on the 0-255 scale."""
    if plane.ndim != 2:
        raise ValueError(f"estimate_sigma takes one (H, W) plane, got shape {plane.shape}")
    h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    if h == 0 or w == 0:
        return 0.0
    x = np.asarray(plane[:h, :w], np.float32)
    a, b, c, e = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    detail = (a - b - c + e) / 2
    low = np.minimum(np.minimum(a, b), np.minimum(c, e))
    high = np.maximum(np.maximum(a, b), np.maximum(c, e))
    unclipped = (low > 0) & (high < 1)
    d = detail[unclipped] if unclipped.mean() >= MIN_UNCLIPPED else detail.ravel()
    return float(np.median(np.abs(d)) * MAD_TO_SIGMA * 255)


def image_sigma(planes: np.ndarray) -> float:
    """The noise level of a (C, H, W) image: its noisiest channel's."""
    return max(estimate_sigma(p) for p in planes)
