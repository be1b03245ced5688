"""Blind colour denoiser for real photographs: a residual U-Net with an estimated noise-level
map (kind ``resunet``), the default model of ``aetk denoise`` to be.

Design (issue 20). After DRUNet (Zhang et al., "Plug-and-play image restoration with deep
denoiser prior", 2021: a U-Net of residual blocks at 4 scales, no batch norm, skips added,
a noise-level map as an input channel) made blind as CBDNet does (Guo et al., "Toward
convolutional blind denoising of real photographs", 2019: a small subnetwork estimates the
noise-level map from the image, supervised by the true map with an asymmetric loss that
punishes under-estimation more), and cheap as FFDNet (Zhang, Zuo & Zhang, 2018): the whole
network works on the pixel-unshuffled image, so its finest scale is H/2 x W/2.

    u     = unshuffle_2(x)                                 (B, 4C, H/2, W/2)
    m     = estimator(u), upsampled to H x W              (B, C, H, W)   noise std per channel
    z     = [x, m]                                         the code: the image and its noise map
    x_hat = x + shuffle_2(unet([u, unshuffle_2(m)]))       residual learning (DnCNN)

    unet: head conv -> at scales 1/2, 1/4, 1/8 (widths w, 2w, 4w): `blocks` residual blocks,
          then a 2x2 stride-2 conv down; `blocks` residual blocks at 1/16 (width 4w);
          back up with 2x2 transposed convs, each scale's encoder output added (not
          concatenated: DRUNet), `blocks` residual blocks; tail conv to 4C channels.
    residual block: h + conv3x3(relu(conv3x3(h)))

Why this shape: real camera noise is spatially correlated after demosaicing and JPEG, and
its level varies with brightness and channel; the coarse scales see 16x16-pixel-wide
blotches with a receptive field of ~300 pixels for the cost of a few full-resolution
layers (a 3x3 conv of width 4w at 1/8 costs what one of width w costs at 1/2). The map
makes the network blind (estimated from the image) yet steerable: ``--sigma`` replaces it
with a constant (the exported decoder graph takes z = [x, map], so an override is the
decoder run on [x, sigma/255]). Per channel, because Poisson noise is signal- and
channel-dependent. Colour: RGB in, RGB out, channels denoised jointly, so noise correlated
across channels (demosaicing, colour matrix) is seen as such. Grayscale images go through
the same model with the gray plane replicated to 3 channels (the denoiser does this, and
averages the output back); training shows it such images with the same noise on all three
channels (grayscale training photographs, gray noise), so they are in its distribution.

Cost (the defaults: width 32, 2 blocks per scale, 4 scales, 3 channels): 2.38 M parameters,
64 kMAC per pixel (every conv, the estimator's included), ~0.7 s per megapixel through ONNX
Runtime on 2 idle CPU cores; one pass for every noise level (no routing, no ensemble).
recipes/README.md has the measurements and the sizes tried.

Training: ``forward`` corrupts the clean batch with :func:`aetk.data.noise_synthesis.synthesize`
(seeded from (seed, step), like ``train.flips``, so a resumed run draws the same noise and the
validation loss measures denoising reproducibly). The loss (``loss = "psnr"``) is the mean over
examples of 10 log10(MSE + 1e-5), i.e. minus their mean PSNR capped at 50 dB, so light noise
counts as much as heavy (``"mse"``: the plain squared error); plus ``level_weight`` times the
estimator's asymmetric squared error against the true local noise std (the rms of noisy -
clean over 8x8 blocks, per channel). Examples whose channels are equal (grayscale
photographs) get gray noise.
Fully convolutional: the model takes any H x W that are multiples of 2 ** scales (16; at
least 8); the decoder alone takes any size (it pads and crops).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aetk.models import losses
from aetk.models.base import Autoencoder, ModelTraits
from aetk.models.layers import check_nonnegative, check_positive_int, image_shape
from aetk.models.registry import register_model

LEVEL_SCALE = 255 / 25  # the map is 1 at sigma 25 on the 0-255 scale
LEVEL_BLOCK = 8  # the true local noise level: rms of noisy - clean over blocks this wide
PSNR_EPS = 1e-5  # the "psnr" loss's MSE floor: 50 dB
LEVEL_DB = 200.0  # the level term's scale in the "psnr" loss
UNDER_WEIGHT = 0.3  # CBDNet's asymmetric level loss: |alpha - 1(err < 0)|, under-estimates cost 1-0.3


@register_model("resunet")
class ResidualUNetDenoiser(Autoencoder):
    @dataclass
    class Config:
        width: int = 32  # channels at the finest scale (1/2); 2x, 4x, 4x below
        blocks: int = 2  # residual blocks per scale, encoder and decoder each
        scales: int = 4  # 1/2, 1/4, 1/8, 1/16
        estimator_width: int = 16
        # Weight of the noise-map loss (per pixel, in units of sigma 25) beside the image's squared
        # error (per pixel): 0.005 makes it a tenth of the total at the start, less later.
        level_weight: float = 0.005
        # "psnr": minimise the mean over examples of 10 log10(MSE + 1e-5), i.e. maximise their
        # mean PSNR (capped at 50 dB): every noise level gets an equal say, where plain "mse"
        # heeds mostly the heaviest noise and neglects light real noise (PolyU: ~37 dB noisy).
        loss: str = "psnr"
        # Noise synthesis (aetk.data.noise_synthesis.SynthesisConfig fields, as a table).
        synthesis: dict | None = None

        def __post_init__(self):
            check_positive_int("width", self.width)
            check_positive_int("blocks", self.blocks, allow_zero=True)
            check_positive_int("scales", self.scales)
            check_positive_int("estimator_width", self.estimator_width)
            check_nonnegative("level_weight", self.level_weight)
            if self.loss not in ("mse", "psnr"):
                raise ValueError(f"model.loss must be 'mse' or 'psnr', got {self.loss!r}")
            if self.scales > 5:
                raise ValueError(f"model.scales must be 1 to 5, got {self.scales}")
            from aetk.data.noise_synthesis import SynthesisConfig

            SynthesisConfig(**(self.synthesis or {}))  # checked now, not mid-run

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        from aetk.data.noise_synthesis import SynthesisConfig

        c = config
        self.synthesis = SynthesisConfig(**(c.synthesis or {}))
        ch, h, w = image_shape(self.input_shape, "resunet")
        m = self.spatial_multiple
        if h % m or w % m:
            raise ValueError(f"model 'resunet' needs height and width that are multiples of {m}, got {h}x{w}")
        self.channels = ch
        widths = [c.width * min(2 ** i, 4) for i in range(c.scales)]
        self.estimator = LevelEstimator(4 * ch, ch, c.estimator_width)
        self.head = nn.Conv2d(8 * ch, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(blocks(wd, c.blocks) for wd in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths, widths[1:]))
        self.body = blocks(widths[-1], c.blocks)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths, widths[1:]))
        self.decoders = nn.ModuleList(blocks(wd, c.blocks) for wd in widths[:-1])
        self.tail = nn.Conv2d(widths[0], 4 * ch, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as the identity: x_hat = x
        nn.init.zeros_(self.tail.bias)

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(layout="image", corruption=True)  # the image plus a learned residual: no activation

    @property
    def spatial_multiple(self) -> int:
        return max(2 ** self.config.scales, 8)  # the unshuffle and scales - 1 halvings; the estimator's 1/8

    def level_map(self, x: Tensor) -> Tensor:
        """The estimated noise std per channel and pixel (B, C, H, W), on the 0-1 scale."""
        m = self.estimator(F.pixel_unshuffle(x, 2))  # (B, C, H/8, W/8)
        return F.interpolate(m, scale_factor=8, mode="nearest")

    def corrupt_input(self, x: Tensor, step: int = 0) -> Tensor:
        """x degraded by the training noise synthesis, seeded from (seed, step): what forward
        denoises (``aetk eval`` reports noisy -> denoised with it)."""
        from aetk.data.noise_synthesis import synthesize

        return synthesize(x, self.seed, step, self.synthesis)

    def encode(self, x: Tensor) -> Tensor:
        """The image and its estimated noise map: (B, 2C, H, W)."""
        return torch.cat([x, self.level_map(x)], dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """z = [x, noise std map] (B, 2C, H, W) -> x_hat (B, C, H, W). Give a constant map
        (sigma / 255) to override the estimate."""
        ch = self.channels
        h, w = z.shape[-2:]
        m = 2 ** self.config.scales
        # Any size works (the exported decoder's, e.g.): padded to the U-Net's multiple, cropped after.
        z = F.pad(z, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
        x, level = z[:, :ch], z[:, ch:]
        u = F.pixel_unshuffle(x, 2)
        feat = self.head(torch.cat([u, F.pixel_unshuffle(level * LEVEL_SCALE, 2)], dim=1))
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            feat = enc(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.body(feat)
        for up, dec, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            feat = dec(up(feat) + skip)
        return (x + F.pixel_shuffle(self.tail(feat), 2))[..., :h, :w]

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        target = x if target is None else target
        noisy = self.corrupt_input(x, step)
        z = self.encode(noisy)
        x_hat = self.decode(z)
        errors = losses.per_example((x_hat - target) ** 2)  # (B,) sums of squared errors
        recon = errors.mean()
        true = true_level(noisy, x)
        est = F.avg_pool2d(z[:, self.channels:], LEVEL_BLOCK)
        err = (est - true) * LEVEL_SCALE
        weight = torch.where(err < 0, 1 - UNDER_WEIGHT, UNDER_WEIGHT)
        level = (weight * err ** 2).mean()
        n = x[0].numel()
        if self.config.loss == "psnr":
            # the mean -PSNR (dB); the level term in the units that make level_weight 0.005 weigh
            # like it does beside the MSE at ~30 dB
            loss = (10 * torch.log10(errors / n + PSNR_EPS)).mean() + self.config.level_weight * LEVEL_DB * level
        else:
            loss = recon + self.config.level_weight * level * n
        return {"x_hat": x_hat, "z": z, "recon": recon, "level": level,
                "psnr": (-10 * torch.log10((errors.detach() / n).clamp_min(1e-10))).mean(), "loss": loss}


class SigmaGraph(nn.Module):
    """The model with the noise level given, not estimated (``--sigma``): (x (B, C, H, W),
    sigma (B, 1) on the 0-1 scale) -> x_hat, the decoder run on [x, sigma everywhere]. Exported
    as a graph with a second input named ``sigma``, which aetk's Denoiser feeds --sigma / 255."""

    def __init__(self, model: ResidualUNetDenoiser):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        level = sigma.view(-1, 1, 1, 1) * torch.ones_like(x)
        return self.model.decode(torch.cat([x, level], dim=1))


def true_level(noisy: Tensor, clean: Tensor) -> Tensor:
    """The local noise std: rms of noisy - clean over LEVEL_BLOCK x LEVEL_BLOCK blocks, per
    channel (B, C, H/8, W/8)."""
    return F.avg_pool2d((noisy - clean) ** 2, LEVEL_BLOCK).sqrt()


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(F.relu(self.conv1(h)))


def blocks(width: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(width) for _ in range(n)))


class LevelEstimator(nn.Module):
    """The noise std of each channel from the half-resolution image (4C channels), at 1/8 of
    full resolution: two convs at 1/2, a 2x2 stride-2 conv, two at 1/4, another stride-2
    conv and a 1x1 to C non-negative levels (softplus)."""

    def __init__(self, cin: int, channels: int, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 2, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 2, stride=2), nn.ReLU(),
            nn.Conv2d(width, channels, 1))

    def forward(self, u: Tensor) -> Tensor:
        return F.softplus(self.layers(u)) / LEVEL_SCALE
