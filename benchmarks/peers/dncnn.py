"""DnCNN-S (Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image
Denoising", IEEE TIP 2017), the authors' PyTorch layout, to load their published weights.

17 conv layers of 64 channels: conv 1->64 with bias and ReLU; 15 x (conv 64->64 without bias,
BatchNorm with eps 1e-4, ReLU); conv 64->1 without bias. The network predicts the noise, so the
output is x - net(x), x gray in [0, 1]. Keys are ``dncnn.<index>.*`` (an nn.Sequential named dncnn).

    net = load_dncnn("../shared/data/denoise/peers/dncnn-s-sigma25.safetensors")
    clean = net(noisy)      # (N, 1, H, W) float32 in [0, 1] -> same shape
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aetk.errors import UserInputError

DEPTH, CHANNELS, BN_EPS = 17, 64, 1e-4


class DnCNN(nn.Module):
    def __init__(self, depth: int = DEPTH, channels: int = CHANNELS, image_channels: int = 1):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, image_channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C, H, W)
        return x - self.dncnn(x)


def load_dncnn(path: str | Path) -> DnCNN:
    """DnCNN-S in eval mode with the weights of a safetensors file; a file whose keys or shapes
    do not fit is refused, naming the file and what is missing, extra or mismatched."""
    from safetensors.torch import load_file

    net = DnCNN()
    state = {k: v for k, v in load_file(str(path)).items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise UserInputError(f"{path} is not a DnCNN-S state ({DEPTH} layers, {CHANNELS} channels): "
                         f"missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]}")
    net.load_state_dict(state, strict=False)  # strict but for BatchNorm's step counters
    return net.eval()
