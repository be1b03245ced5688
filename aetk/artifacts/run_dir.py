"""An ``aetk train`` run folder: every file name in it, and reading and writing them.

    RUN/config.toml                     the resolved run configuration
    RUN/model.safetensors, model.json   the final (or best, with early stopping) model; the JSON
                                        records kind, hyperparameters, input shape, normalization
                                        and the weights' sha256, checked on every load
    RUN/checkpoints/last.safetensors    the full training state for --resume, one file (its JSON
                                        and weights hash ride in the safetensors header)
    RUN/.aetk-train.lock                flock held by the `aetk train` process working in RUN
    RUN/metrics.csv, RUN/tb/            per-epoch metrics, TensorBoard logs
    RUN/eval/                           what `aetk eval`, `aetk sample` and `aetk classify` write
    RUN/classifier.safetensors/.json    `aetk classify`'s fine-tuned classifier
    RUN/export-cache/                   the cached ONNX export (aetk.export.ensure_export), keyed
                                        by the model's weights_sha256

The file formats (safetensors pairs, single-file checkpoints, the lock) are the training
layer's (``aetk.train.checkpoint``); the names are only here. The trainer writes through a
RunDir it is handed, so it never needs a name either.

Paths, ``is_run``, ``model_info`` and ``weights_sha256`` read JSON only, so ``resolve`` and the
torch-free consumers (denoise and compress with an export folder) can use this class without
torch; the methods that build or save a model import the training layer when called.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetk.artifacts.folder import SavedFolder
from aetk.errors import UserInputError

CONFIG_FILE = "config.toml"
MODEL_STEM = "model"
WEIGHTS_SUFFIX = ".safetensors"
INFO_SUFFIX = ".json"
CHECKPOINTS_DIR = "checkpoints"
LAST_STEM = "last"
LOCK_FILE = ".aetk-train.lock"
METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tb"
EVAL_DIR = "eval"
CLASSIFIER_STEM = "classifier"
EXPORT_CACHE = "export-cache"


class RunDataError(UserInputError, RuntimeError):
    """A run whose config or data cannot be read (the model itself may be fine)."""


def _train_io():
    """The training layer's file formats (torch); imported only by the methods that need it."""
    from aetk.train import checkpoint

    return checkpoint


@dataclass
class LoadedRun:
    """A trained run ready to use: the model, its config, its data (normalized with the
    model's own Normalization)."""

    run_dir: Path
    model: Any  # an aetk.models.base.Autoencoder, in eval mode on `device`
    meta: dict[str, Any]
    config: Any  # aetk.config.RunConfig
    data: Any  # aetk.data.LoadedData
    normalization: Any  # aetk.normalization.Normalization
    device: Any  # torch.device
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
        return math.prod(int(s) for s in self.code_shape)


class RunDir(SavedFolder):
    """The files of one run folder (nothing is read until asked)."""

    # -- paths ------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def model_stem(self) -> Path:
        return self.path / MODEL_STEM

    @property
    def weights_file(self) -> Path:
        return self.path / (MODEL_STEM + WEIGHTS_SUFFIX)

    @property
    def info_file(self) -> Path:
        return self.path / (MODEL_STEM + INFO_SUFFIX)

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def checkpoint_stem(self) -> Path:
        return self.checkpoints_dir / LAST_STEM

    @property
    def checkpoint_file(self) -> Path:
        return self.checkpoints_dir / (LAST_STEM + WEIGHTS_SUFFIX)

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def classifier_stem(self) -> Path:
        return self.path / CLASSIFIER_STEM

    @property
    def export_cache(self) -> Path:
        return self.path / EXPORT_CACHE

    # -- what is there ------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A folder holding a saved model (weights and their JSON)."""
        return self.weights_file.is_file() and self.info_file.is_file()

    def has_checkpoint(self) -> bool:
        old_json = self.checkpoints_dir / (LAST_STEM + INFO_SUFFIX)  # the older two-file layout
        return self.checkpoint_file.exists() or old_json.exists()

    def model_info(self) -> dict[str, Any]:
        """model.json as a dict, without torch (UserInputError naming the file if unreadable)."""
        try:
            info = json.loads(self.info_file.read_text())
        except (OSError, ValueError) as exc:
            raise UserInputError(f"cannot read {self.info_file} ({exc})") from exc
        if not isinstance(info, dict):
            raise UserInputError(f"{self.info_file} is not a JSON object")
        return info

    def weights_sha256(self) -> str:
        """The hash of the saved weights: as model.json records it, else (folders from before
        the hash was recorded) computed from the weights."""
        recorded = self.model_info().get(_train_io().WEIGHTS_HASH) if self.info_file.is_file() else None
        if recorded:
            return str(recorded)
        tensors, _ = _train_io().load_pair(self.model_stem)
        return _train_io().tensors_sha256(tensors)

    # -- the model ----------------------------------------------------------------------------
    def load_model(self, device: Any = "cpu"):
        """(model in eval mode on ``device``, model.json as a dict); CheckpointError naming the
        file at fault, MissingRunError for a folder that is not there."""
        io = _train_io()
        if not self.path.exists():
            raise io.MissingRunError(f"run folder {self.path} does not exist")
        return io.build_model(self.model_stem, device)

    def save_model(self, model, info: dict[str, Any]) -> None:
        """The deployable model: weights plus what is needed to rebuild it."""
        io = _train_io()
        io.save_pair(self.model_stem, model.state_dict(), io.model_record(model, info))

    def load_weights(self):
        """(tensors, model.json) of the saved model, hash checked."""
        return _train_io().load_pair(self.model_stem)

    @staticmethod
    def weights_stem(source: str | os.PathLike) -> Path:
        """The model stem of ``train.init_from``: a run folder's model, or a .safetensors file."""
        src = Path(source)
        stem = RunDir(src).model_stem if src.is_dir() else src.with_suffix("")
        if not stem.with_suffix(WEIGHTS_SUFFIX).is_file():
            raise _train_io().MissingRunError(
                f"train.init_from: {src} is not a run folder with {MODEL_STEM}{WEIGHTS_SUFFIX} "
                f"(or a {WEIGHTS_SUFFIX} file)")
        return stem

    def save_classifier(self, model, info: dict[str, Any]) -> None:
        _train_io().save_pair(self.classifier_stem, model.state_dict(), info)

    # -- training state -------------------------------------------------------------------------
    def save_checkpoint(self, tensors, info: dict[str, Any]) -> None:
        _train_io().save_checkpoint(self.checkpoint_stem, tensors, info)

    def load_checkpoint(self):
        return _train_io().load_checkpoint(self.checkpoint_stem)

    def lock(self):
        """``with run.lock():`` one `aetk train` at a time in this folder (RunLockedError)."""
        return _train_io().RunLock(self.lock_file)

    def remove_temporaries(self) -> list[Path]:
        """Remove what killed atomic writes left in the folder and its checkpoints (call it
        holding the lock). Returns them."""
        from aetk.atomic import remove_stray_temporaries

        return [p for folder in (self.path, self.checkpoints_dir) for p in remove_stray_temporaries(folder)]

    def remove_if_unstarted(self) -> None:
        """A new run that failed before it trained leaves no folder behind: only when the
        folder holds nothing but its config and lock (best effort)."""
        try:
            entries = list(self.path.iterdir())
            if all(p.name in (CONFIG_FILE, LOCK_FILE) and p.is_file() for p in entries):
                for p in entries:
                    p.unlink()
                self.path.rmdir()
        except OSError:
            pass

    # -- config and data ------------------------------------------------------------------------
    def write_config(self, cfg) -> None:
        from aetk.atomic import atomic_write_text

        atomic_write_text(self.config_file, cfg.to_toml())

    def config(self):
        """The run's RunConfig (RunDataError when config.toml is missing or unreadable)."""
        from aetk.config import load_config

        if not self.config_file.is_file():
            raise RunDataError(f"{self.config_file} is missing: cannot tell which data the run was trained on")
        try:
            return load_config(self.config_file)
        except (ValueError, FileNotFoundError) as exc:
            raise RunDataError(f"cannot read {self.config_file}: {exc}") from exc

    def raw_config(self) -> dict[str, Any]:
        """config.toml as plain TOML tables ({} when there is none); no validation."""
        import tomllib

        if not self.config_file.is_file():
            return {}
        with open(self.config_file, "rb") as f:
            return tomllib.load(f)

    def resume_config(self, config: str | os.PathLike | None = None, overrides: list[str] | None = None):
        """The config of a resumed run: config.toml, then ``config`` and ``overrides`` on top
        (only RESUME_SAFE keys may change; aetk.config.resume_from)."""
        from aetk.config import resume_from

        return resume_from(self.config_file, self.path, config, overrides)

    def load(self, device: Any = "cpu") -> LoadedRun:
        """Model, config and data; errors name the file at fault (RunDataError for the config
        and data, CheckpointError for the model)."""
        from aetk.data import load_data
        from aetk.normalization import Normalization

        io = _train_io()
        if not self.path.exists():
            raise io.MissingRunError(f"run folder {self.path} does not exist")
        if not self.path.is_dir():
            raise io.MissingRunError(f"{self.path} is not a run folder (expected a folder holding "
                                     f"{self.weights_file.name}, {self.info_file.name} and {CONFIG_FILE})")
        try:
            model, meta = self.load_model(device)
        except io.CheckpointError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise io.CheckpointError(f"{self.info_file} does not describe a model aetk can build: {exc}") from exc
        cfg = self.config()
        try:
            data = load_data(cfg.data)
        except (ValueError, FileNotFoundError, OSError) as exc:  # DataError is a ValueError
            raise RunDataError(f"cannot load the run's data (data.path={cfg.data.path!r}): {exc}") from exc
        if tuple(data.input_shape) != tuple(model.input_shape):
            raise RunDataError(f"the model takes examples of shape {tuple(model.input_shape)} but "
                               f"the run's data ({data.source}) now has shape {tuple(data.input_shape)}")
        warnings: list[str] = []
        norm = data.normalization
        if meta.get("normalization") is not None:
            try:
                saved = Normalization.from_dict(meta["normalization"])
            except ValueError as exc:
                raise io.CheckpointError(f"{self.info_file} holds an invalid normalization: {exc}") from exc
            if saved != norm:
                warnings.append("the data's normalization refitted today differs from the one stored "
                                "with the model (has the data changed?); using the model's")
                norm = saved
                for ds in (data.train, data.test):
                    if ds is not None and hasattr(ds, "normalization"):
                        ds.normalization = saved
                data.normalization = saved
        return LoadedRun(self.path, model, meta, cfg, data, norm, device, warnings)

    # -- the export cache -----------------------------------------------------------------------
    def export_cache_candidates(self) -> list[Path]:
        """Where ensure_export may keep this run's export: in the run folder, else (a folder
        that cannot be written) a per-user temporary folder keyed by the weights hash."""
        key = self.weights_sha256()[:32]
        fallback = Path(tempfile.gettempdir()) / f"aetk-exports-{os.getuid() if hasattr(os, 'getuid') else 0}" / key
        return [self.export_cache, fallback]


def train_run(cfg, run_dir: str | os.PathLike | RunDir, *, resume: bool = False,
              stop_at_step: int | None = None):
    """``aetk.train.trainer.train`` into the run folder at ``run_dir`` (a path or a RunDir)."""
    from aetk.train.trainer import train

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return train(cfg, run, resume=resume, stop_at_step=stop_at_step)


__all__ = ["CHECKPOINTS_DIR", "CONFIG_FILE", "EVAL_DIR", "LOCK_FILE", "LoadedRun", "RunDataError", "RunDir", "train_run"]
