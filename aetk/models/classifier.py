"""Semi-supervised use of a trained autoencoder: a linear classifier on its codes.

    model = create_model("stacked", (64,), widths=[128, 32])   # pretrained, fine-tuned, ...
    clf = Classifier(model, num_classes=10)                   # fine-tunes the encoder too
    out = clf(x, labels)                                      # {"logits", "loss", "accuracy"}

With ``fine_tune=False`` the encoder is frozen (no gradients, kept in eval mode) and only
the head learns: the linear-probe evaluation of the representation. With fine-tuning this
is the supervised fine-tuning stage of Vincent et al. (2010) / Hinton & Salakhutdinov (2006).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Classifier(nn.Module):
    """``logits = W flatten(encoder_model.encode(x)) + b``."""

    def __init__(self, encoder_model: nn.Module, num_classes: int, *, fine_tune: bool = True):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.encoder_model = encoder_model
        self.num_classes = num_classes
        self.fine_tune = bool(fine_tune)
        code_dim = int(math.prod(encoder_model.code_shape))
        self.head = nn.Linear(code_dim, num_classes)
        if not self.fine_tune:
            for p in self.encoder_model.parameters():
                p.requires_grad_(False)
            self.encoder_model.eval()

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if not self.fine_tune:
            self.encoder_model.eval()  # a frozen encoder keeps its BatchNorm statistics
        return self

    def features(self, x: Tensor) -> Tensor:
        if self.fine_tune:
            z = self.encoder_model.encode(x)
        else:
            with torch.no_grad():
                z = self.encoder_model.encode(x)
        return z.reshape(z.shape[0], -1)

    def forward(self, x: Tensor, labels: Tensor | None = None, *, step: int = 0) -> dict[str, Tensor]:
        logits = self.head(self.features(x))
        out = {"logits": logits}
        if labels is not None:
            labels = labels.long()
            out["loss"] = F.cross_entropy(logits.float(), labels)
            out["accuracy"] = (logits.argmax(1) == labels).float().mean().detach()
        return out

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)).argmax(1)
