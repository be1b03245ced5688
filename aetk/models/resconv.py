"""Residual convolutional denoising autoencoder for blind Gaussian noise (kind ``resconv``).

After FFDNet (Zhang, Zuo & Zhang, "FFDNet: toward a fast and flexible solution for CNN
based image denoising", 2018) without the noise-level map, and DnCNN's residual learning
(Zhang et al., 2017): the network works at half resolution on the four pixel-unshuffled
sub-images, so a conv layer costs a quarter of its full-resolution price, and it estimates
the noise, which is subtracted:

    u = unshuffle_2(x)                                   (B, 4C, H/2, W/2)
    h = relu(conv(u)), then `depth` x relu(BN(conv(h)))  (B, F, H/2, W/2)
    z = [u, h]                                           the code: the image and its features
    x_hat = shuffle_2(u - conv(h))

With ``context = K > 0`` the middle of the stack also sees two coarser scales, as in a
U-Net (Ronneberger et al., 2015): h is downsampled twice (strided 2x2 convs, K channels),
processed, upsampled back (transposed 2x2 convs) and added to h. That about doubles the
receptive field (~50 to ~100 pixels across for depth 10) for little compute: the coarse
levels have 1/4 and 1/16 of the trunk's pixels. The last upsampling starts at zero, so a trunk trained without
the branch (``train.init_from``) starts exactly where it was and only gains. Likewise a trained
model grows wider (more ``features``, ``train.init_from``) computing the same function (``grow_state``).

With ``refine = R > 0`` a second stage refines the first's estimate e = u - conv(h), seeing
the noisy image beside it (a cascade):

    x_hat = shuffle_2(e + refiner([u, e]))               refiner: R features, refine_depth layers

With ``refine_level`` the refiner also sees how much noise the first stage removed from the
whole image: the rms of u - e, as a constant channel (FFDNet's noise-level map, estimated). A
blind network judges the level from its receptive field, where fine texture passes for light
noise; the refiner gets it from every pixel, which pays most at light noise.

It starts at zero too; with ``freeze_base`` only the refiner trains, on top of a trained model
(``train.init_from``), which costs a forward pass of the first stage and no backward one.

Training corrupts each clean example with Gaussian noise of its own sigma, drawn uniformly
from [0, sigma_max] (blind: one model for every level), clipped to the data range as a
saved 8-bit image would be; the loss is the squared error against the clean example
(with ``balance_levels``, weighted by (30 / (sigma + 5)) ** balance_power on the 0-255 scale).
Fully convolutional: any H x W that are multiples of 2 (of 8 with ``context``).
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
from aetk.ops.random import normal, random_words
from aetk.seeds import Stream, derive_seed

GROW_JITTER = 0.01  # noise on widened channels' incoming weights, in units of the layer's weight std


@register_model("resconv")
class ResidualConvDenoiser(Autoencoder):
    @dataclass
    class Config:
        features: int = 32
        depth: int = 8  # hidden conv layers after the first
        batchnorm: bool = True  # in the hidden layers: trains several times faster (as in DnCNN)
        sigma_max: float = 55 / 255  # in model units (data scaled to [0, 1])
        clip: bool = True  # clip noisy inputs to [0, 1], as saved images are
        context: int = 0  # channels of the coarser-scale branch (0: none)
        # Weight each example's loss by 30 / (sigma + 5) (0-255 scale; 1 at sigma 25): a good
        # denoiser's error grows about like sigma, so this gives light noise as much say as
        # heavy noise in the training signal (PSNR-like), where plain MSE heeds mostly the heavy.
        balance_levels: bool = False
        # The weight's exponent: above 1 tilts training further towards light noise (a blind
        # model's weakest range against classical denoisers), at some cost on heavy noise.
        balance_power: float = 1.0
        # A second stage (0: none) that refines the first stage's estimate from the noisy image
        # and that estimate, `refine` features and `refine_depth` hidden layers at half
        # resolution: a cascade, as a trained model given more depth. Its last layer starts at
        # zero, so a trained model given a refiner (train.init_from) starts where it was.
        refine: int = 0
        refine_depth: int = 6
        # Give the refiner the image-wide rms of what the first stage removed (u - e) as one
        # more input channel, scaled to 1 at sigma 25 (0-255): an estimated noise-level map.
        refine_level: bool = False
        # Train the refiner alone: the first stage (trunk, context branch, noise layer) keeps
        # the weights init_from gave it, and its batch norms their running statistics.
        freeze_base: bool = False
        # Batch norms keep their running statistics in training (eval mode; their scale and
        # shift still learn): fine-tuning a trained model with small batches starts exactly
        # where it was, where batch statistics would first knock it off (the shipped cascade,
        # lr 1e-4, batch 16: validation loss 10.6% worse after a first epoch).
        freeze_norms: bool = False

        def __post_init__(self):
            check_positive_int("features", self.features)
            check_positive_int("depth", self.depth, allow_zero=True)
            check_nonnegative("sigma_max", self.sigma_max)
            check_nonnegative("balance_power", self.balance_power)
            if self.balance_power != 1.0 and not self.balance_levels:
                raise ValueError(f"model.balance_power={self.balance_power} has no effect without "
                                 f"model.balance_levels=true (it is the exponent of that weight)")
            check_positive_int("context", self.context, allow_zero=True)
            check_positive_int("refine", self.refine, allow_zero=True)
            check_positive_int("refine_depth", self.refine_depth, allow_zero=True)
            if self.refine_level and not self.refine:
                raise ValueError("model.refine_level=true needs a refiner to feed (model.refine > 0)")
            if self.freeze_base and not self.refine:
                raise ValueError("model.freeze_base=true needs a refiner to train (model.refine > 0)")
            if self.context and self.depth < 2:
                raise ValueError(f"model.context needs model.depth >= 2 (the branch sits mid-stack), "
                                 f"got depth={self.depth}")

    def __init__(self, config: Config, input_shape):
        super().__init__(config, input_shape)
        c = config
        self.image_shape = image_shape(self.input_shape, "resconv")
        ch, h, w = self.image_shape
        m = self.spatial_multiple
        if h % m or w % m:
            raise ValueError(f"model 'resconv' needs height and width that are multiples of {m}, got {h}x{w}")
        layers: list[nn.Module] = [nn.Conv2d(4 * ch, c.features, 3, padding=1), nn.ReLU()]
        for i in range(c.depth):
            if i == c.depth // 2:
                self.split = len(layers)  # where the context branch adds in: mid-stack
            layers += conv_block(c.features, c.features, c.batchnorm)  # its modules, flat: stable weight names
        self.body = nn.Sequential(*layers)
        self.context = ContextBranch(c.features, c.context, c.batchnorm) if c.context else None
        self.noise = nn.Conv2d(c.features, 4 * ch, 3, padding=1)
        self.refiner = Refiner(4 * ch, c.refine, c.refine_depth, c.batchnorm, c.refine_level) if c.refine else None
        self.channels = ch
        if c.freeze_base:
            for module in self.base_modules():
                module.requires_grad_(False)

    def base_modules(self) -> list[nn.Module]:
        """The first stage: everything but the refiner."""
        return [m for m in (self.body, self.context, self.noise) if m is not None]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_base:  # a frozen first stage normalises with its running statistics
            for module in self.base_modules():
                module.eval()
        if self.config.freeze_norms:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    @property
    def traits(self) -> ModelTraits:
        return ModelTraits(layout="image", corruption=True)  # the image plus a learned residual: no activation

    @property
    def spatial_multiple(self) -> int:
        return 8 if self.config.context else 2

    def encode(self, x: Tensor) -> Tensor:
        if len(self.input_shape) == 2:
            x = x.unsqueeze(1)
        u = F.pixel_unshuffle(x, 2)
        if self.context is None:
            return torch.cat([u, self.body(u)], dim=1)
        h = self.body[:self.split](u)
        h = self.body[self.split:](h + self.context(h))
        return torch.cat([u, h], dim=1)

    def decode(self, z: Tensor) -> Tensor:
        u, h = z[:, :4 * self.channels], z[:, 4 * self.channels:]
        estimate = u - self.noise(h)
        if self.refiner is not None:
            inputs = [u, estimate]
            if self.config.refine_level:
                inputs.append(removed_level(u, estimate) * torch.ones_like(u[:, :1]))
            estimate = estimate + self.refiner(torch.cat(inputs, dim=1))
        out = F.pixel_shuffle(estimate, 2)
        return out.squeeze(1) if len(self.input_shape) == 2 else out

    def grow_state(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """A trained resconv with fewer ``features`` made into this wider one, computing the same
        function (Net2WiderNet: Chen, Goodfellow & Shlens, 2016). Each new feature channel copies
        a randomly chosen old one (its incoming weights and batch-norm parameters: copies see the
        same batch statistics, so they stay equal in training too), and every weight reading a
        copied channel is split evenly among its copies. Copies would also get equal gradients,
        so their incoming weights get a little noise (GROW_JITTER): on the shipped model grown
        from 48 to 64 features that moved a photo's output by 8e-4 rms (a fifth of an 8-bit step).
        A trained refiner also gains the noise-level input here (``refine_level``, starting at zero)."""
        if "body.0.weight" not in tensors:
            return tensors  # not a resconv: refused by the name check
        tensors = self._add_level_input(tensors)
        old, new = tensors["body.0.weight"].shape[0], self.config.features
        if old >= new:
            return tensors  # same width (or narrower: refused by the shape check)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.RESCONV_GROW))
        source = torch.cat([torch.arange(old), torch.randint(old, (new - old,), generator=gen)])
        copies = torch.bincount(source, minlength=old)[source].to(torch.float32)
        grown = dict(tensors)
        for name, module in self.named_modules():
            if f"{name}.weight" not in tensors:
                continue  # a layer the source lacks (a new branch or refiner): nothing to grow
            # Both sizes checked: a context branch as wide as the new trunk must be left alone.
            if isinstance(module, nn.BatchNorm2d) and module.num_features == new \
                    and tensors[f"{name}.weight"].shape[0] == old:
                for key in ("weight", "bias", "running_mean", "running_var"):
                    grown[f"{name}.{key}"] = tensors[f"{name}.{key}"][source].clone()
            elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                w = tensors[f"{name}.weight"]
                out_dim, in_dim = (1, 0) if isinstance(module, nn.ConvTranspose2d) else (0, 1)
                if module.weight.shape[in_dim] == new and w.shape[in_dim] == old:
                    w = w.index_select(in_dim, source) / copies.view(-1, *[1] * (w.dim() - in_dim - 1))
                if module.weight.shape[out_dim] == new and w.shape[out_dim] == old:
                    w = w.index_select(out_dim, source)
                    added = w.narrow(out_dim, old, new - old)
                    added += GROW_JITTER * w.std() * torch.randn(added.shape, generator=gen)
                    if module.bias is not None:
                        grown[f"{name}.bias"] = tensors[f"{name}.bias"][source].clone()
                grown[f"{name}.weight"] = w.contiguous()
        return grown

    def _add_level_input(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """A trained refiner given the noise-level input (``refine_level``): its first layer
        gets the new channel with zero weights, so it computes what it did."""
        key = "refiner.layers.0.weight"
        if not self.config.refine_level or key not in tensors:
            return tensors
        w = tensors[key]
        if w.shape[1] != self.refiner.layers[0].in_channels - 1:
            return tensors  # already has it (or another shape: refused by the shape check)
        return {**tensors, key: torch.cat([w, w.new_zeros(w.shape[0], 1, *w.shape[2:])], dim=1)}

    def noise_levels(self, x: Tensor, step: int) -> Tensor:
        """Each example's sigma, uniform in [0, sigma_max], from (seed, step): shape (B,)."""
        words = random_words(x.shape[0], derive_seed(self.seed, Stream.RESCONV_SIGMA), int(step), x.device)
        return (words >> 8).to(x.dtype) * (2.0 ** -24) * self.config.sigma_max

    def add_noise(self, x: Tensor, step: int, sigma: Tensor | None = None) -> Tensor:
        """x plus Gaussian noise of a per-example sigma in [0, sigma_max], from (seed, step)."""
        b = x.shape[0]
        sigma = self.noise_levels(x, step) if sigma is None else sigma
        n = normal(x.numel(), derive_seed(self.seed, Stream.RESCONV_NOISE), int(step), x.device).to(x.dtype)
        noisy = x + sigma.view(b, *([1] * (x.dim() - 1))) * n.view_as(x)
        return noisy.clamp(0.0, 1.0) if self.config.clip else noisy

    def corrupt_input(self, x: Tensor, step: int = 0) -> Tensor:
        """The noisy input forward denoises at ``step``: :meth:`add_noise` at that step's levels."""
        return self.add_noise(x, step)

    def forward(self, x: Tensor, *, target: Tensor | None = None, step: int = 0) -> dict[str, Tensor]:
        # Like a VAE's sampling, the corruption is part of the model in both modes, so the
        # validation loss measures denoising, reproducibly through (seed, step).
        target = x if target is None else target
        sigma = self.noise_levels(x, step)
        z = self.encode(self.add_noise(x, step, sigma))
        x_hat = self.decode(z)
        errors = losses.per_example((x_hat - target) ** 2)
        recon = errors.mean()
        loss = recon
        if self.config.balance_levels:
            loss = (errors * ((30 / 255) / (sigma + 5 / 255)) ** self.config.balance_power).mean()
        return {"x_hat": x_hat, "z": z, "recon": recon, "loss": loss}


def conv_block(cin: int, cout: int, batchnorm: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm),
                         *([nn.BatchNorm2d(cout)] if batchnorm else []), nn.ReLU())


LEVEL_SCALE = 255 / 25  # the noise-level channel is 1 at sigma 25 on the 0-255 scale


def removed_level(u: Tensor, estimate: Tensor) -> Tensor:
    """Each example's rms of what the first stage removed, over all its pixels and channels,
    scaled by LEVEL_SCALE: shape (B, 1, 1, 1). About sigma for Gaussian noise (less where the
    noisy image was clipped, more where texture went with the noise)."""
    return (u - estimate).pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() * LEVEL_SCALE


class Refiner(nn.Module):
    """The second stage: from the (half-resolution) noisy image and the first stage's estimate
    (and, with ``level``, the removed noise level as one more channel), a correction to add to
    the estimate. Starts as zero (its last layer is zeroed)."""

    def __init__(self, channels: int, width: int, depth: int, batchnorm: bool, level: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(2 * channels + int(level), width, 3, padding=1), nn.ReLU()]
        for _ in range(depth):
            layers += conv_block(width, width, batchnorm)
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ContextBranch(nn.Module):
    """Two coarser scales of the trunk's features (1/2 and 1/4 of its resolution), returned at
    the trunk's resolution to be added in. Starts as zero (the last upsampling is zeroed)."""

    def __init__(self, features: int, width: int, batchnorm: bool):
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(features, width, 2, stride=2), nn.ReLU())
        self.enc1 = conv_block(width, width, batchnorm)
        self.down2 = nn.Sequential(nn.Conv2d(width, width, 2, stride=2), nn.ReLU())
        self.mid = nn.Sequential(conv_block(width, width, batchnorm), conv_block(width, width, batchnorm))
        self.up2 = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.dec1 = conv_block(width, width, batchnorm)
        self.up1 = nn.ConvTranspose2d(width, features, 2, stride=2)
        nn.init.zeros_(self.up1.weight)
        nn.init.zeros_(self.up1.bias)

    def forward(self, h: Tensor) -> Tensor:
        e1 = self.enc1(self.down1(h))
        return self.up1(self.dec1(e1 + self.up2(self.mid(self.down2(e1)))))
