"""A trained run, ready to evaluate: the model, its config, its data (normalized with the
model's own Normalization), and how to turn model-space values back into pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aetk.artifacts.run_dir import LoadedRun, RunDataError, RunDir
from aetk.data.base import collect  # noqa: F401 (re-exported: evaluate and export both use it)
from aetk.errors import UserInputError


class EvaluationError(UserInputError, RuntimeError):
    """A run that cannot be evaluated as asked (no config, data unreadable, bad option)."""


def pick_device(name: str | torch.device) -> torch.device:
    from aetk.train.trainer import TrainingError, pick_device as _pick

    try:
        return _pick(str(name))
    except TrainingError as exc:
        raise EvaluationError(str(exc).replace("train.device", "device")) from exc


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Model, config and data of a run folder (RunDir.load); errors name the file at fault."""
    run = RunDir(run_dir)
    dev = pick_device(device)
    try:
        return run.load(dev)
    except RunDataError as exc:
        raise EvaluationError(str(exc)) from exc


def pixel_range(run: LoadedRun, x_train: torch.Tensor | None = None) -> tuple[float, float] | None:
    """The raw (de-normalized) value range that maps to [0, 1] pixels: from the normalization's
    known range, else the data's nominal range (bit depth), else the training data's measured
    range. None when it cannot be told."""
    norm = run.normalization
    if norm.kind != "standardize" and norm.value_range is not None:
        lo, hi = np.asarray(norm.invert(np.asarray(norm.value_range, np.float64)), np.float64)
        if hi > lo:
            return float(lo), float(hi)
    src = getattr(run.data.train, "source", None)
    if src is not None and getattr(src, "nominal_scale", False):
        lo = min(0.0, float(getattr(src, "raw_min", 0.0) or 0.0))
        hi = float(getattr(src, "unit_scale", 1.0))
        if hi > lo:
            return lo, hi
    if src is not None and getattr(src, "raw_max", None) is not None \
            and getattr(src, "raw_min", None) is not None:
        lo, hi = float(src.raw_min), float(src.raw_max)
        if hi > lo:
            return lo, hi
    if x_train is None:
        x_train, _ = collect(run.data.train, limit=10000)
    if x_train.numel() == 0:
        return None
    raw = norm.invert(x_train.double())
    lo, hi = float(raw.min()), float(raw.max())
    return (lo, hi) if hi > lo else None


def eval_dir(run: LoadedRun, out_dir: str | Path | None) -> Path:
    d = Path(out_dir) if out_dir is not None else RunDir(run.run_dir).eval_dir
    d.mkdir(parents=True, exist_ok=True)
    return d


@torch.no_grad()
def encode_all(model, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Codes of x (posterior means for a VAE), on the CPU."""
    out = [model.encode(x[s:s + batch_size].to(device)).float().cpu()
           for s in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, *model.code_shape))


__all__ = ["EvaluationError", "LoadedRun", "collect", "encode_all", "eval_dir",
           "load_run", "pick_device", "pixel_range"]
