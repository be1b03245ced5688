"""A trained run, ready to evaluate: the model, its config, its data (normalized with the
model's own Normalization), and how to turn model-space values back into pixels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from aetk.normalization import Normalization
from aetk.errors import UserInputError
from aetk.train.checkpoint import MODEL_FILE, CheckpointError

EVAL_DIR = "eval"


class EvaluationError(UserInputError, RuntimeError):
    """A run that cannot be evaluated as asked (no config, data unreadable, bad option)."""


@dataclass
class LoadedRun:
    run_dir: Path
    model: Any  # an aetk.models.base.Autoencoder, in eval mode on `device`
    meta: dict[str, Any]
    config: Any  # aetk.config.RunConfig
    data: Any  # aetk.data.LoadedData
    normalization: Normalization
    device: torch.device
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", self.model.kind))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.model.input_shape)

    @property
    def code_shape(self) -> tuple[int, ...]:
        return tuple(self.model.code_shape)

    @property
    def code_dim(self) -> int:
        return int(np.prod(self.code_shape))


def pick_device(name: str | torch.device) -> torch.device:
    from aetk.train.trainer import TrainingError, pick_device as _pick

    try:
        return _pick(str(name))
    except TrainingError as exc:
        raise EvaluationError(str(exc).replace("train.device", "device")) from exc


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Model, config and data of a run folder; errors name the file at fault."""
    from aetk.config import load_config
    from aetk.data import load_data
    from aetk.train.checkpoint import MissingRunError, load_model

    run = Path(run_dir)
    if not run.exists():
        raise MissingRunError(f"run folder {run} does not exist")
    if not run.is_dir():
        raise MissingRunError(f"{run} is not a run folder (expected a folder holding "
                              f"{MODEL_FILE}.safetensors, {MODEL_FILE}.json and config.toml)")
    dev = pick_device(device)
    try:
        model, meta = load_model(run, dev)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{run / (MODEL_FILE + '.json')} does not describe a model aetk "
                              f"can build: {exc}") from exc
    cfg_path = run / "config.toml"
    if not cfg_path.is_file():
        raise EvaluationError(f"{cfg_path} is missing: cannot tell which data the run was trained on")
    try:
        cfg = load_config(cfg_path)
    except (ValueError, FileNotFoundError) as exc:
        raise EvaluationError(f"cannot read {cfg_path}: {exc}") from exc
    try:
        data = load_data(cfg.data)
    except (ValueError, FileNotFoundError, OSError) as exc:  # DataError is a ValueError
        raise EvaluationError(f"cannot load the run's data (data.path={cfg.data.path!r}): {exc}") from exc

    warnings: list[str] = []
    if tuple(data.input_shape) != tuple(model.input_shape):
        raise EvaluationError(f"the model takes examples of shape {tuple(model.input_shape)} but "
                              f"the run's data ({data.source}) now has shape {tuple(data.input_shape)}")
    norm = data.normalization
    if meta.get("normalization") is not None:
        try:
            saved = Normalization.from_dict(meta["normalization"])
        except ValueError as exc:
            raise CheckpointError(f"{run / (MODEL_FILE + '.json')} holds an invalid normalization: "
                                  f"{exc}") from exc
        if saved != norm:
            warnings.append("the data's normalization refitted today differs from the one stored "
                            "with the model (has the data changed?); using the model's")
            norm = saved
            for ds in (data.train, data.test):
                if ds is not None and hasattr(ds, "normalization"):
                    ds.normalization = saved
            data.normalization = saved
    return LoadedRun(run, model, meta, cfg, data, norm, dev, warnings)


def collect(ds: Dataset, limit: int | None = None, batch_size: int = 1024
            ) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``limit`` (default all) examples of a dataset: (x float32 CPU, labels int64)."""
    n = len(ds) if limit is None else min(int(limit), len(ds))
    sub = ds if n == len(ds) else Subset(ds, range(n))
    xs, ys = [], []
    for x, y in DataLoader(sub, batch_size=batch_size, shuffle=False):
        xs.append(x.float())
        ys.append(y.reshape(-1).long())
    if not xs:
        return torch.zeros((0, *ds[0][0].shape) if len(ds) else (0,)), np.zeros(0, np.int64)
    return torch.cat(xs), torch.cat(ys).numpy()


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
    d = Path(out_dir) if out_dir is not None else run.run_dir / EVAL_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


@torch.no_grad()
def encode_all(model, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Codes of x (posterior means for a VAE), on the CPU."""
    out = [model.encode(x[s:s + batch_size].to(device)).float().cpu()
           for s in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, *model.code_shape))


__all__ = ["EVAL_DIR", "EvaluationError", "LoadedRun", "collect", "encode_all", "eval_dir",
           "load_run", "pick_device", "pixel_range"]
