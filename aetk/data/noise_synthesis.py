"""Realistic noise for training denoisers of real photographs: a data transform seeded from
(seed, step), like ``train.flips``, so a resumed run draws exactly what an uninterrupted one
would (and the ``resunet`` model's validation loss measures denoising reproducibly).

    noisy = synthesize(clean, seed, step)              # (B, C, H, W) in [0, 1] -> same shape
    noisy = synthesize(clean, seed, step, SynthesisConfig(awgn=1, camera=0, correlated=0))

Each example gets ONE of three degradations, drawn with probabilities ``awgn``, ``camera`` and
``correlated`` (normalised to sum to 1), and its parameters, from the Philox stream
(seed, step); then every example is rounded to 8 bits and clipped to [0, 1], as the noisy
files users (and the benchmarks) hold:

1. **AWGN** (the Gaussian benchmarks): y = x + sigma * n, sigma uniform in [0, sigma_max]
   (0-255 scale; 55 by default), n ~ N(0, 1) i.i.d. per pixel and channel.
2. **Camera** (real photographs): a simplified camera pipeline run backwards and forwards
   (after Brooks et al., "Unprocessing images for learned raw denoising", 2019):
   - linearise: l = srgb_to_linear(x) (the inverse sRGB gamma);
   - to camera space: c = M^-1 l, with M a colour-correction matrix (rows sum to 1,
     M = I + s (I - J/3), s uniform in [0, ccm_max]: cameras' matrices amplify differences
     between channels, so noise comes out correlated, negatively, across channels);
   - Poisson-Gaussian sensor noise, signal-dependent: std = sqrt(gain * max(c, 0) + read^2),
     gain and read log-uniform in their ranges, noise i.i.d. per camera channel;
   - demosaicing's spatial correlation: the noise blurred by the separable kernel
     [w, 1, w] / (1 + 2w), w uniform in [0, demosaic_max] (interpolation of a mosaic mixes
     each pixel's noise with its neighbours');
   - back: y = linear_to_srgb(clip(l + M (blurred noise), 0, 1));
   - with probability ``jpeg``, JPEG re-compression at a quality uniform in jpeg_quality.
3. **Correlated** (what processing leaves: denoised-then-sharpened, resampled, compressed):
   Gaussian noise blurred by a Gaussian kernel of std r uniform in corr_radius pixels,
   rescaled to unit variance, mixed across channels (a shared part of weight rho uniform in
   [0, corr_rho_max]), times sigma uniform in [0, corr_sigma_max]; then JPEG with
   probability ``jpeg`` as above.

Grayscale examples (all channels equal: grayscale photographs in a colour batch) get gray
noise, the same on every channel, so a gray image replicated to 3 channels is in the
model's distribution; no colour matrix for them.

Random numbers: per-example parameters come from ``aetk.ops.random_words`` and the noise
from the fused native Philox normal generator ``aetk.ops.random.normal`` (C++/CUDA kernels,
the same numbers on CPU and CUDA), each component on its own seed sub-stream, all at
offset = step. ``reference=True`` draws through the plain-PyTorch ``normal_ref`` /
``random_words_ref`` instead (the tests check both agree). JPEG goes through Pillow on the
CPU (deterministic for a given input and quality). Nothing here needs gradients.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aetk.errors import UserInputError
from aetk.ops.random import normal, normal_ref, random_words, random_words_ref
from aetk.seeds import Stream, derive_seed

PARAMS_PER_EXAMPLE = 12  # uniform draws per example (see _params)
COMPONENTS = ("awgn", "camera", "correlated")


class SynthesisError(UserInputError):
    """A noise-synthesis option out of range."""


@dataclass
class SynthesisConfig:
    awgn: float = 0.4  # share of examples with plain Gaussian noise
    camera: float = 0.45  # share with the camera pipeline
    correlated: float = 0.15  # share with spatially correlated noise
    sigma_max: float = 55.0  # AWGN sigma, uniform in [0, sigma_max] (0-255 scale)
    gain: list[float] = field(default_factory=lambda: [2e-4, 2e-2])  # Poisson scale (linear units), log-uniform
    read: list[float] = field(default_factory=lambda: [5e-4, 1.2e-2])  # read-noise std (linear units), log-uniform
    ccm_max: float = 0.8  # colour-matrix strength s
    demosaic_max: float = 0.5  # demosaicing blur weight w
    corr_sigma_max: float = 35.0  # correlated noise sigma (0-255 scale)
    corr_radius: list[float] = field(default_factory=lambda: [0.5, 2.0])  # its blur std, pixels
    corr_rho_max: float = 0.8  # its share common to all channels
    jpeg: float = 0.5  # probability of JPEG re-compression (camera and correlated examples)
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])
    quantize: bool = True  # round to 8 bits, as saved files are

    def __post_init__(self):
        shares = (self.awgn, self.camera, self.correlated)
        if any(not isinstance(s, (int, float)) or s < 0 for s in shares) or sum(shares) <= 0:
            raise SynthesisError(f"synthesis shares awgn, camera, correlated must be >= 0 with a positive "
                                 f"sum, got {shares}")
        for name in ("sigma_max", "ccm_max", "demosaic_max", "corr_sigma_max"):
            if not 0 <= getattr(self, name) < 1e4:
                raise SynthesisError(f"synthesis.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("corr_rho_max", "jpeg"):
            if not 0 <= getattr(self, name) <= 1:
                raise SynthesisError(f"synthesis.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("gain", "read", "corr_radius", "jpeg_quality"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise SynthesisError(f"synthesis.{name} must be [low, high] with 0 < low <= high, got {lo_hi}")
        if self.jpeg_quality[1] > 100:
            raise SynthesisError(f"synthesis.jpeg_quality must lie in 1-100, got {self.jpeg_quality}")


def srgb_to_linear(x: Tensor) -> Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def _uniforms(n: int, seed: int, step: int, device, reference: bool) -> Tensor:
    words = (random_words_ref if reference else random_words)(n, seed, int(step), device)
    return (words >> 8).to(torch.float64) * 2.0 ** -24  # [0, 1)


def _normals(shape, seed: int, step: int, device, reference: bool) -> Tensor:
    n = math.prod(shape)
    return (normal_ref if reference else normal)(n, seed, int(step), device).to(torch.float32).view(shape)


def _log_uniform(u: Tensor, lo_hi) -> Tensor:
    lo, hi = math.log(lo_hi[0]), math.log(lo_hi[1])
    return torch.exp(lo + u * (hi - lo))


def _params(b: int, seed: int, step: int, cfg: SynthesisConfig, device, reference: bool) -> dict[str, Tensor]:
    """Each example's component (0 awgn, 1 camera, 2 correlated) and parameters, float64 (B,)."""
    u = _uniforms(b * PARAMS_PER_EXAMPLE, derive_seed(seed, Stream.SYNTH_PARAMS), step, device, reference)
    u = u.view(b, PARAMS_PER_EXAMPLE)
    total = cfg.awgn + cfg.camera + cfg.correlated
    component = (u[:, 0] >= cfg.awgn / total).long() + (u[:, 0] >= (cfg.awgn + cfg.camera) / total).long()
    q_lo, q_hi = cfg.jpeg_quality
    return {
        "component": component,
        "sigma": u[:, 1] * cfg.sigma_max / 255,
        "gain": _log_uniform(u[:, 2], cfg.gain),
        "read": _log_uniform(u[:, 3], cfg.read),
        "ccm": u[:, 4] * cfg.ccm_max,
        "demosaic": u[:, 5] * cfg.demosaic_max,
        "corr_sigma": u[:, 6] * cfg.corr_sigma_max / 255,
        "corr_radius": cfg.corr_radius[0] + u[:, 7] * (cfg.corr_radius[1] - cfg.corr_radius[0]),
        "corr_rho": u[:, 8] * cfg.corr_rho_max,
        "jpeg": u[:, 9] < cfg.jpeg,
        "quality": torch.floor(q_lo + u[:, 10] * (q_hi - q_lo + 1)).clamp(max=q_hi),
    }


def is_gray(x: Tensor) -> Tensor:
    """(B,) True where every channel of the example equals the first."""
    if x.shape[1] == 1:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return (x == x[:, :1]).flatten(1).all(dim=1)


def _gray_where(noise: Tensor, gray: Tensor) -> Tensor:
    """Noise with gray examples' channels all set to their first channel's."""
    return torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)


def colour_matrix(s: Tensor, channels: int) -> Tensor:
    """(B, C, C): I + s (I - J/C), rows summing to 1 (s = 0: the identity)."""
    eye = torch.eye(channels, dtype=s.dtype, device=s.device)
    return eye + s.view(-1, 1, 1) * (eye - torch.full_like(eye, 1 / channels))


def _blur_separable(noise: Tensor, kernels: Tensor) -> Tensor:
    """Each example's noise (B, C, H, W) blurred by its own 1-D kernel (B, K), rows then
    columns, reflect-padded."""
    b, c, h, w = noise.shape
    k = kernels.shape[1]
    weight = kernels.to(noise.dtype).repeat_interleave(c, dim=0)  # (B*C, K)
    x = F.pad(noise.reshape(1, b * c, h, w), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    x = F.conv2d(x, weight.view(b * c, 1, 1, k), groups=b * c)
    x = F.conv2d(x, weight.view(b * c, 1, k, 1), groups=b * c)
    return x.view(b, c, h, w)


def camera_noise(x: Tensor, p: dict[str, Tensor], n: Tensor, gray: Tensor) -> Tensor:
    """The camera pipeline of the module docstring applied to x (B, C, H, W) with standard
    normals n (same shape): returns the noisy image, before JPEG and quantisation."""
    b, c = x.shape[:2]
    lin = srgb_to_linear(x)
    s = torch.where(gray, torch.zeros_like(p["ccm"]), p["ccm"]).to(x.dtype)
    m = colour_matrix(s, c)  # (B, C, C)
    cam = torch.einsum("bij,bjhw->bihw", torch.linalg.inv(m), lin)
    std = torch.sqrt(p["gain"].to(x.dtype).view(b, 1, 1, 1) * cam.clamp_min(0)
                     + p["read"].to(x.dtype).view(b, 1, 1, 1) ** 2)
    if c > 1:  # gray examples: one sensor reading, the same on all channels
        std = torch.where(gray.view(-1, 1, 1, 1), std[:, :1].expand_as(std), std)
    w = p["demosaic"].to(x.dtype).view(b, 1)
    kernel = torch.cat([w, torch.ones_like(w), w], dim=1) / (1 + 2 * w)
    noise = _gray_where(_blur_separable(std * n, kernel), gray)
    noisy_lin = lin + torch.einsum("bij,bjhw->bihw", m, noise)
    return linear_to_srgb(noisy_lin.clamp(0, 1))


def correlated_noise(x: Tensor, p: dict[str, Tensor], n: Tensor, shared: Tensor, gray: Tensor) -> Tensor:
    """x plus Gaussian-blurred, channel-mixed noise of std corr_sigma (module docstring)."""
    b = x.shape[0]
    radius = 3 * math.ceil(float(p["corr_radius"].max())) if b else 1
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (taps / p["corr_radius"].view(b, 1)) ** 2)
    kernel = kernel / kernel.pow(2).sum(dim=1, keepdim=True).sqrt()  # unit L2 norm: unit variance after both passes
    rho = p["corr_rho"].to(x.dtype).view(b, 1, 1, 1)
    mixed = torch.sqrt(1 - rho) * n + torch.sqrt(rho) * shared  # shared: (B, 1, H, W)
    noise = _gray_where(_blur_separable(mixed, kernel), gray)
    return x + p["corr_sigma"].to(x.dtype).view(b, 1, 1, 1) * noise


def jpeg_roundtrip(image: Tensor, quality: int) -> Tensor:
    """One example (C, H, W) in [0, 1] through 8-bit JPEG at ``quality`` (Pillow, 4:2:0 chroma)."""
    from PIL import Image

    a = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    gray = a.shape[0] == 1 or bool((a == a[:1]).all())
    im = Image.fromarray(a[0]) if gray else Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        b = np.asarray(out.convert("L" if gray else "RGB"))
    b = np.repeat(b[None], a.shape[0], axis=0) if gray else b.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(b)).to(image.device, image.dtype) / 255


def synthesize(x: Tensor, seed: int, step: int, cfg: SynthesisConfig | None = None, *,
               reference: bool = False) -> Tensor:
    """Clean images x (B, C, H, W) in [0, 1] -> noisy images (module docstring), drawn from
    (seed, step). ``reference``: draw through the plain-PyTorch Philox (same numbers)."""
    if x.dim() != 4:
        raise SynthesisError(f"noise synthesis needs image batches (B, C, H, W), got shape {tuple(x.shape)}")
    cfg = cfg or SynthesisConfig()
    b, c, h, w = x.shape
    with torch.no_grad():
        p = _params(b, seed, step, cfg, x.device, reference)
        gray = is_gray(x)
        comp = p["component"]
        out = x.clone()
        for k, stream in enumerate((Stream.SYNTH_AWGN, Stream.SYNTH_CAMERA, Stream.SYNTH_CORRELATED)):
            idx = torch.nonzero(comp == k).flatten()
            if not len(idx):
                continue
            # Drawn for the whole batch: each example's numbers do not depend on the others' components.
            n = _normals(x.shape, derive_seed(seed, stream), step, x.device, reference)[idx]
            xs, ps, gs = x[idx], {key: v[idx] for key, v in p.items()}, gray[idx]
            if k == 0:
                out[idx] = xs + ps["sigma"].to(x.dtype).view(-1, 1, 1, 1) * _gray_where(n, gs)
            elif k == 1:
                out[idx] = camera_noise(xs, ps, n, gs)
            else:
                shared = _normals((b, 1, h, w), derive_seed(seed, Stream.SYNTH_SHARED), step, x.device, reference)[idx]
                out[idx] = correlated_noise(xs, ps, n, shared, gs)
        out = out.clamp(0, 1)
        if cfg.quantize:
            out = torch.round(out * 255) / 255
        for i in torch.nonzero((p["component"] > 0) & p["jpeg"]).flatten().tolist():
            out[i] = jpeg_roundtrip(out[i], int(p["quality"][i]))
    return out.to(x.dtype)
