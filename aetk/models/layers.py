"""Building blocks shared by the model kinds: activations, the reconstruction head (output
nonlinearity + loss), MLP encoder/decoder pairs with optional tied weights, strided conv
encoder/decoder pairs for any H x W, option checks, and seed streams.

Everything here that ``encode``/``decode`` use is plain PyTorch (exportable to ONNX); the
fused random/penalty ops of :mod:`aetk.ops` are called by the models' ``forward`` only.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aetk.checks import positive_int
from aetk.models import losses
from aetk.models.registry import ModelConfigError
from aetk.ops import CORRUPTION_KINDS
from aetk.seeds import derive_seed  # noqa: F401  (models and tests import it from here)

ACTIVATIONS: dict[str, Any] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "gelu": nn.GELU,
}
OUTPUTS = ("linear", "sigmoid")  # output nonlinearity of mse / gaussian_nll decoders
MIN_LOGVAR = -9.0  # floor of the learned Gaussian log-variance (sigma >= 0.011)


# -- option checks (called from the Config dataclasses' __post_init__) ----------------------
def check_choice(what: str, value: Any, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ModelConfigError(f"unknown {what} {value!r}; valid: {', '.join(choices)}")


def check_activation(value: str, what: str = "activation") -> None:
    check_choice(what, value, ACTIVATIONS)


def check_loss(value: str) -> None:
    losses.check_loss_name(value)


def check_output(value: str) -> None:
    check_choice("output", value, OUTPUTS)


def check_widths(what: str, widths: Sequence[int], *, allow_empty: bool = False) -> None:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)):
        raise ModelConfigError(f"{what} must be a list of positive integers, got {widths!r}")
    if not widths and not allow_empty:
        raise ModelConfigError(f"{what} must list at least one width, got []")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int) or w <= 0:
            raise ModelConfigError(f"{what} must be a list of positive integers, got {list(widths)!r}")


def check_positive_int(what: str, value: Any, *, allow_zero: bool = False) -> None:
    positive_int(what, value, error=ModelConfigError, allow_zero=allow_zero,
                 what="an integer >= 0" if allow_zero else "an integer > 0")


def check_nonnegative(what: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ModelConfigError(f"{what} must be a finite number >= 0, got {value!r}")


def check_dropout(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ModelConfigError(f"dropout must be a probability in [0, 1), got {value!r}")


def check_corruption(kind: str, level: float, lo: float, hi: float) -> None:
    """The same rules as :func:`aetk.ops.corrupt`, checked when the config is built."""
    check_choice("corruption", kind, CORRUPTION_KINDS)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level):
        raise ModelConfigError(f"corruption level must be a finite number, got {level!r}")
    if kind in ("gaussian", "uniform"):
        if level < 0:
            raise ModelConfigError(f"level of {kind} corruption (the noise scale) must be >= 0, got {level}")
    elif not 0.0 <= level <= 1.0:
        raise ModelConfigError(f"level of {kind} corruption (a fraction) must be in [0, 1], got {level}")
    if kind == "salt_pepper" and not lo <= hi:
        raise ModelConfigError(f"salt_pepper corruption needs lo <= hi, got lo={lo}, hi={hi}")


def activation(name: str) -> nn.Module:
    check_activation(name)
    return ACTIVATIONS[name]()


def flat_dim(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


# -- reconstruction head ----------------------------------------------------------------------
class ReconstructionHead(nn.Module):
    """Maps the decoder's raw output to data space and scores it against the target.

    - ``bce``: raw output = logits; x_hat = sigmoid(logits); Bernoulli cross-entropy.
    - ``mse``: x_hat = output(raw) (``linear`` or ``sigmoid``); squared error.
    - ``gaussian_nll``: mean = output(raw) and a learned log-variance per data dimension
      (parameter ``logvar`` of the example's shape, floored at MIN_LOGVAR); Gaussian NLL.

    ``output`` may be any activation name internally (stacked layers reconstruct the codes of
    the layer below with that layer's activation).
    """

    def __init__(self, loss: str, output: str, shape: Sequence[int]):
        super().__init__()
        check_loss(loss)
        check_activation(output, "output")
        self.loss_name = loss
        self.output_name = "sigmoid" if loss == "bce" else output
        self.out = activation(self.output_name)
        if loss == "gaussian_nll":
            self.logvar = nn.Parameter(torch.zeros(tuple(shape)))

    def data(self, raw: Tensor) -> Tensor:
        return self.out(raw)

    def loss(self, raw: Tensor, target: Tensor) -> Tensor:
        """Summed over an example's dimensions, averaged over the batch (float32 under AMP)."""
        raw = raw.to(torch.promote_types(raw.dtype, target.dtype))
        target = target.to(raw.dtype)
        if self.loss_name == "bce":
            return losses.bce_with_logits(raw, target)
        mean = self.data(raw)
        if self.loss_name == "mse":
            return losses.mse(mean, target)
        logvar = self.logvar.to(raw.dtype).clamp(min=MIN_LOGVAR)
        return losses.gaussian_nll(mean, logvar, target)


# -- MLP encoder / decoder ----------------------------------------------------------------------
class MLPNet(nn.Module):
    """Encoder ``dims[0] -> dims[1] -> ... -> dims[-1]`` (the code) and its mirror decoder.

    Encoder layer i: ``enc[i] = Linear(dims[i], dims[i+1])``, then the hidden activation
    (optionally BatchNorm before it, dropout after it), or ``code_activation`` for the last.
    Decoder layer i maps dims[i+1] back to dims[i] and runs in reverse order; with tied
    weights it is ``F.linear(h, enc[i].weight.t(), dec_bias[i])`` (the encoder's weight, its
    own bias), else an independent ``dec[i] = Linear(dims[i+1], dims[i])``. The decoder's
    last layer (i = 0) has no activation: it returns the head's raw output.
    """

    def __init__(self, dims: Sequence[int], activation_name: str, code_activation: str, *,
                 tied: bool = False, batchnorm: bool = False, dropout: float = 0.0):
        super().__init__()
        self.dims = list(dims)
        self.tied = bool(tied)
        k = len(dims) - 1
        self.enc = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(k))
        if self.tied:
            self.dec_bias = nn.ParameterList(nn.Parameter(torch.zeros(dims[i])) for i in range(k))
        else:
            self.dec = nn.ModuleList(nn.Linear(dims[i + 1], dims[i]) for i in range(k))
        self.enc_act = nn.ModuleList(
            activation(activation_name if i < k - 1 else code_activation) for i in range(k)
        )
        self.dec_act = nn.ModuleList(activation(activation_name) for _ in range(k))
        self.enc_bn = nn.ModuleList(
            nn.BatchNorm1d(dims[i + 1]) if batchnorm and i < k - 1 else nn.Identity() for i in range(k)
        )
        self.dec_bn = nn.ModuleList(
            nn.BatchNorm1d(dims[i]) if batchnorm and i > 0 else nn.Identity() for i in range(k)
        )
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def depth(self) -> int:
        return len(self.enc)

    def encode_layer(self, i: int, h: Tensor) -> Tensor:
        h = self.enc_bn[i](self.enc[i](h))
        h = self.enc_act[i](h)
        return self.drop(h) if i < self.depth - 1 else h

    def decode_layer(self, i: int, h: Tensor) -> Tensor:
        """Layer i of the decoder (dims[i+1] -> dims[i]), without activation when i == 0."""
        if self.tied:
            h = F.linear(h, self.enc[i].weight.t(), self.dec_bias[i])
        else:
            h = self.dec[i](h)
        if i == 0:
            return h
        return self.drop(self.dec_act[i](self.dec_bn[i](h)))

    def decoder_parameters(self, i: int) -> list[nn.Parameter]:
        return [self.dec_bias[i]] if self.tied else list(self.dec[i].parameters())

    def encode(self, h: Tensor, upto: int | None = None) -> Tensor:
        for i in range(self.depth if upto is None else upto):
            h = self.encode_layer(i, h)
        return h

    def decode(self, z: Tensor) -> Tensor:
        h = z
        for i in reversed(range(self.depth)):
            h = self.decode_layer(i, h)
        return h


# -- conv encoder / decoder -----------------------------------------------------------------
def conv_sizes(size: tuple[int, int], depth: int, kernel: int) -> list[tuple[int, int]]:
    """Spatial size before each stride-2 conv and after the last: [(H, W), ..., (h, w)]."""
    pad = (kernel - 1) // 2
    sizes = [tuple(size)]
    for _ in range(depth):
        h, w = sizes[-1]
        nxt = ((h + 2 * pad - kernel) // 2 + 1, (w + 2 * pad - kernel) // 2 + 1)
        if min(nxt) < 1:
            raise ModelConfigError(
                f"input of {size[0]}x{size[1]} is too small for {depth} stride-2 convolutions "
                f"with kernel_size={kernel}; use fewer channels entries or a smaller kernel"
            )
        sizes.append(nxt)
    return sizes  # type: ignore[return-value]


class ConvNet(nn.Module):
    """Stride-2 conv encoder and transposed-conv mirror decoder for any H x W.

    Encoder stage i: Conv2d(c_i, c_{i+1}, k, stride 2, padding (k-1)//2) [+ BatchNorm] + act,
    then ``convs_per_stage - 1`` stride-1 convs of c_{i+1} channels (same padding).
    Decoder stage i mirrors it: the stride-1 convs, then ConvTranspose2d back to the exact
    size the encoder saw, with ``output_padding`` (0 or 1) computed from the input size, so
    odd sizes need no padding or cropping. The output layer (raw head output, no BatchNorm or
    activation) is the last transposed conv itself, or with ``refine`` a stride-1 conv at full
    resolution after a last transposed conv that keeps c_1 channels (+ BatchNorm + act).
    """

    def __init__(self, in_channels: int, size: tuple[int, int], channels: Sequence[int], kernel: int,
                 activation_name: str, batchnorm: bool, convs_per_stage: int = 1, refine: bool = False):
        super().__init__()
        self.sizes = conv_sizes(size, len(channels), kernel)
        pad = (kernel - 1) // 2
        chans = [in_channels, *channels]

        def block(conv: nn.Module, c: int) -> list[nn.Module]:
            return [conv, *([nn.BatchNorm2d(c)] if batchnorm else []), activation(activation_name)]

        def same(c_in: int, c_out: int, bias: bool) -> nn.Module:  # stride 1, "same" padding
            if kernel % 2:
                return nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=bias)
            return nn.Sequential(nn.ZeroPad2d((pad, pad + 1, pad, pad + 1)),
                                 nn.Conv2d(c_in, c_out, kernel, bias=bias))

        enc: list[nn.Module] = []
        for i in range(len(channels)):
            enc += block(nn.Conv2d(chans[i], chans[i + 1], kernel, stride=2, padding=pad,
                                   bias=not batchnorm), chans[i + 1])
            for _ in range(convs_per_stage - 1):
                enc += block(same(chans[i + 1], chans[i + 1], not batchnorm), chans[i + 1])
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for i in reversed(range(len(channels))):
            for _ in range(convs_per_stage - 1):
                dec += block(same(chans[i + 1], chans[i + 1], not batchnorm), chans[i + 1])
            (th, tw), (ih, iw) = self.sizes[i], self.sizes[i + 1]
            op = (th - ((ih - 1) * 2 - 2 * pad + kernel), tw - ((iw - 1) * 2 - 2 * pad + kernel))
            assert all(0 <= o < 2 for o in op), (self.sizes, op)
            if i > 0:
                dec += block(nn.ConvTranspose2d(chans[i + 1], chans[i], kernel, stride=2, padding=pad,
                                                output_padding=op, bias=not batchnorm), chans[i])
            elif refine:
                dec += block(nn.ConvTranspose2d(chans[1], chans[1], kernel, stride=2, padding=pad,
                                                output_padding=op, bias=not batchnorm), chans[1])
                dec += [same(chans[1], in_channels, True)]
            else:
                dec += [nn.ConvTranspose2d(chans[1], in_channels, kernel, stride=2, padding=pad,
                                           output_padding=op)]
        self.decoder = nn.Sequential(*dec)
        self.feature_shape = (chans[-1], *self.sizes[-1])


def image_shape(input_shape: Sequence[int], kind: str) -> tuple[int, int, int]:
    """(C, H, W) from an example shape (C, H, W) or (H, W)."""
    if len(input_shape) == 2:
        return (1, int(input_shape[0]), int(input_shape[1]))
    if len(input_shape) == 3:
        return tuple(int(s) for s in input_shape)  # type: ignore[return-value]
    raise ModelConfigError(
        f"model {kind!r} needs images of shape (C, H, W) or (H, W), got input shape {tuple(input_shape)}"
    )
