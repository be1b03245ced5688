"""How raw data values map to model inputs and back, stored with every model as JSON and
in every exported ONNX file's metadata. Needs only numpy: ``aetk.runtime`` uses it without torch.

    norm = Normalization.unit(255.0)                  # x / 255, values in [0, 1]
    norm = Normalization.standardize(mean, std, shape=(1, F))
    x_model = norm.apply(x_raw);  x_raw = norm.invert(x_model)
    Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm

Per-feature statistics have a ``shape`` that broadcasts against the trailing dimensions
of an example: (D,) for tabular rows, (1, F) for (T, F) sequences, (C, 1, 1) for images,
so ``apply`` works on one example or on a batch alike.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from aetk.errors import UserInputError

KINDS = ("unit", "standardize", "none")


class NormalizationError(UserInputError):
    """A normalization that cannot be used: a bad kind, scale or statistics (from a config,
    a model.json or an ONNX file's metadata)."""


@dataclass
class Normalization:
    kind: str = "none"  # unit | standardize | none
    scale: float = 1.0  # unit: the raw value that maps to 1.0
    mean: list[float] | None = None  # standardize: per feature, flattened from `shape`
    std: list[float] | None = None
    shape: list[int] | None = None  # standardize: shape of the statistics (see module doc)
    # The range of normalized values when known: (0, 1) for unit scaling of nonnegative
    # data, None for standardized data.
    value_range: tuple[float, float] | None = None
    _mean: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _std: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise NormalizationError(f"normalization kind {self.kind!r} is not one of {', '.join(KINDS)}")
        self.scale = float(self.scale)
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise NormalizationError(f"normalization scale must be a positive finite number, got {self.scale}")
        if self.value_range is not None:
            lo, hi = (float(v) for v in self.value_range)
            if not lo <= hi:
                raise NormalizationError(f"normalization value_range must be (low, high) with low <= high, got {self.value_range}")
            self.value_range = (lo, hi)
        if self.kind != "standardize":
            if self.mean is not None or self.std is not None:
                raise NormalizationError(f"normalization kind {self.kind!r} takes no mean/std (only 'standardize' does)")
            return
        if self.mean is None or self.std is None:
            raise NormalizationError("normalization kind 'standardize' needs both mean and std")
        mean = np.asarray(self.mean, dtype=np.float64).ravel()
        std = np.asarray(self.std, dtype=np.float64).ravel()
        shape = [int(s) for s in (self.shape if self.shape is not None else [mean.size])]
        if mean.size != std.size or mean.size != int(np.prod(shape)):
            raise NormalizationError(f"normalization mean ({mean.size} values), std ({std.size}) and "
                             f"shape {shape} (= {int(np.prod(shape))} values) must agree")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise NormalizationError("normalization mean must be finite and std finite and > 0")
        self.mean, self.std, self.shape = mean.tolist(), std.tolist(), shape
        self._mean, self._std = mean.reshape(shape), std.reshape(shape)

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def unit(cls, scale: float, value_range: tuple[float, float] | None = (0.0, 1.0)) -> Normalization:
        return cls(kind="unit", scale=scale, value_range=value_range)

    @classmethod
    def standardize(cls, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray,
                    shape: Sequence[int] | None = None) -> Normalization:
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        # A constant feature carries no information; dividing by 1 keeps it finite.
        std = np.where(std > 0, std, 1.0)
        return cls(kind="standardize", mean=mean.ravel().tolist(), std=std.ravel().tolist(),
                   shape=list(shape) if shape is not None else list(mean.shape) or [1])

    @classmethod
    def none(cls, value_range: tuple[float, float] | None = None) -> Normalization:
        return cls(kind="none", value_range=value_range)

    # -- use ---------------------------------------------------------------------------
    def apply(self, x: Any) -> Any:
        """Raw values -> model inputs; numpy arrays or torch tensors, one example or a batch."""
        x, back = _as_float(x)
        if self.kind == "unit":
            return back(x / self.scale) if self.scale != 1.0 else back(x)
        if self.kind == "standardize":
            return back((x - _stat(self._mean, x)) / _stat(self._std, x))
        return back(x)

    def invert(self, x: Any) -> Any:
        """Model inputs (or reconstructions) -> raw values."""
        x, back = _as_float(x)
        if self.kind == "unit":
            return back(x * self.scale) if self.scale != 1.0 else back(x)
        if self.kind == "standardize":
            return back(x * _stat(self._std, x) + _stat(self._mean, x))
        return back(x)

    def describe(self) -> str:
        rng = "" if self.value_range is None else f" -> [{self.value_range[0]:g}, {self.value_range[1]:g}]"
        if self.kind == "unit":
            return f"unit scaling (/{self.scale:g}){rng}"
        if self.kind == "standardize":
            return f"standardized ({len(self.mean)} feature statistics)"
        return f"no normalization{rng}"

    # -- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale, "mean": self.mean, "std": self.std,
                "shape": self.shape,
                "value_range": None if self.value_range is None else list(self.value_range)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        if not isinstance(d, dict):
            raise NormalizationError(f"normalization must be a dict (from to_dict()), got {type(d).__name__}")
        known = {"kind", "scale", "mean", "std", "shape", "value_range"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NormalizationError(f"unknown normalization keys {unknown}; valid: {sorted(known)}")
        if "kind" not in d:
            raise NormalizationError(f"normalization dict has no 'kind' (one of {', '.join(KINDS)})")
        vr = d.get("value_range")
        return cls(kind=d["kind"], scale=d.get("scale", 1.0), mean=d.get("mean"), std=d.get("std"),
                   shape=d.get("shape"), value_range=None if vr is None else tuple(vr))


def _as_float(x: Any):
    """x as a floating array/tensor, and a function returning results in that type."""
    # A tensor can only exist if torch was imported already: never import it here.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            x = x.float()
        return x, lambda r: r
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    dtype = x.dtype
    # numpy would promote float32 arrays to float64 against the float64 statistics.
    return x, lambda r: np.asarray(r, dtype=dtype)


def _stat(a: np.ndarray, like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return a.astype(like.dtype, copy=False)
    torch = sys.modules["torch"]
    return torch.as_tensor(a, dtype=like.dtype, device=like.device)


class Moments:
    """Per-feature count, mean and sum of squared deviations, merged chunk by chunk
    (Chan et al.), so statistics of data larger than memory are exact and stable."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, x: np.ndarray, axes: tuple[int, ...]) -> None:
        x = np.asarray(x, dtype=np.float64)
        n = int(np.prod([x.shape[a] for a in axes]))
        if n == 0:
            return
        mean = x.mean(axis=axes, keepdims=True)
        m2 = ((x - mean) ** 2).sum(axis=axes, keepdims=True)
        mean, m2 = mean.reshape(mean.shape[1:]), m2.reshape(m2.shape[1:])  # drop the batch axis
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * n / total)
        self.n = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None:
            raise NormalizationError("no data to compute statistics from")
        return self.mean, np.sqrt(self.m2 / self.n)
