"""Run configuration: dataclasses read from TOML, overridable with dotted flags, saved
with every run.

    [data]
    path = "fashion-mnist"
    [model]
    kind = "deep"
    widths = [1000, 500, 250, 30]
    [train]
    epochs = 12

    cfg = load_config("run.toml", overrides=["train.lr=3e-4", "model.tied=true"])
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetk.data.config import DataConfig


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | step
    step_size: int = 10  # epochs between decays, for schedule = "step"
    gamma: float = 0.1  # decay factor, for schedule = "step"
    warmup_steps: int = 0
    seed: int = 0
    deterministic: bool = False
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_fraction: float = 0.1
    early_stopping: int = 0  # patience in epochs; 0 disables
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch only)
    num_workers: int = 0
    grad_clip: float = 0.0
    # Turn each training image by a random mirroring/rotation (8 symmetries of the square; input
    # and target together; layer-wise pretraining too): 8x the views of the data, for models
    # that should not care.
    flips: bool = False
    pretrain_epochs: int = 0  # greedy layer-wise pretraining epochs per stage (stacked models)
    init_from: str = ""  # a run folder whose weights start this model (same names and shapes)
    log_every: int = 50  # steps between TensorBoard scalars
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ModelConfig:
    kind: str = "ae"
    params: dict[str, Any] = field(default_factory=dict)  # the kind's own options


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        d = {"data": _clean(dataclasses.asdict(self.data)),
             "model": {"kind": self.model.kind, **self.model.params},
             "train": dataclasses.asdict(self.train)}
        return d

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


SECTIONS = {"data": DataConfig, "train": TrainConfig}


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Build a RunConfig, with errors naming unknown sections and keys and listing valid ones."""
    unknown = sorted(set(d) - {"data", "model", "train"})
    if unknown:
        raise ValueError(f"unknown config section(s) {', '.join(unknown)}; valid: data, model, train")
    cfg = RunConfig()
    for name, cls in SECTIONS.items():
        values = dict(d.get(name, {}))
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - valid)
        if bad:
            raise ValueError(
                f"unknown key(s) {', '.join(name + '.' + b for b in bad)}; "
                f"valid [{name}] keys: {', '.join(sorted(valid))}"
            )
        setattr(cfg, name, cls(**values))
    model = dict(d.get("model", {}))
    kind = model.pop("kind", "ae")
    from aetk.models.registry import make_config

    make_config(kind, model)  # validates the kind and its options now, not mid-run
    cfg.model = ModelConfig(kind=kind, params=model)
    return cfg


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it: numbers, booleans, lists, else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a config dict (returns a new dict)."""
    out = json.loads(json.dumps(d))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. train.lr=3e-4")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"override key {key!r} must be section.key, e.g. model.widths")
        out.setdefault(parts[0], {})[parts[1]] = parse_value(value.strip())
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
        try:
            d = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {p} is not valid TOML: {exc}") from exc
    return from_dict(apply_overrides(d, overrides or []))


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {}}


def dumps_toml(d: dict[str, Any]) -> str:
    """A small TOML writer for our flat sections of scalars and lists."""
    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is None:
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
