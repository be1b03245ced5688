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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetk.data.config import DataConfig
from aetk.settings import ConfigError, check_fields, check_value, setting


@dataclass
class TrainConfig:
    # Each field's type is its annotation and its allowed values sit beside it (aetk/settings.py);
    # load_config checks them all before any work.
    epochs: int = setting(10, min=1)
    batch_size: int = setting(128, min=1)
    lr: float = setting(1e-3, min=0)
    optimizer: str = setting("adam", choices=("adam", "adamw"))
    weight_decay: float = setting(0.0, min=0)
    schedule: str = setting("constant", choices=("constant", "cosine", "step"))
    step_size: int = setting(10, min=1)  # epochs between decays, for schedule = "step"
    gamma: float = setting(0.1, min=0)  # decay factor, for schedule = "step"
    warmup_steps: int = setting(0, min=0)
    seed: int = setting(0, min=0, max=2**32 - 1)
    deterministic: bool = False
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    device: str = setting("auto", pattern=r"auto|cpu|cuda(:[0-9]+)?", what="auto, cpu, cuda or cuda:N")
    val_fraction: float = setting(0.1, min=0, below=1)
    early_stopping: int = setting(0, min=0)  # patience in epochs; 0 disables
    checkpoint_every: int = setting(0, min=0)  # also checkpoint every N steps (0: at the end of each epoch only)
    num_workers: int = setting(0, min=0)
    grad_clip: float = setting(0.0, min=0)
    # Turn each training image by a random mirroring/rotation (8 symmetries of the square; input
    # and target together; layer-wise pretraining too): 8x the views of the data, for models
    # that should not care.
    flips: bool = False
    pretrain_epochs: int = setting(0, min=0)  # greedy layer-wise pretraining epochs per stage (stacked models)
    init_from: str = ""  # a run folder whose weights start this model (same names and shapes)
    log_every: int = setting(50, min=1)  # steps between TensorBoard scalars
    tensorboard: bool = True
    progress: bool = True


# What a resumed run may change: how long it goes on, where it runs, and what it reports.
# Anything else (the model, the data, their order, the optimizer, the noise) would make the
# resumed run differ from the one its checkpoint belongs to.
RESUME_SAFE = frozenset({"train.epochs", "train.early_stopping", "train.checkpoint_every", "train.log_every",
                         "train.tensorboard", "train.progress", "train.device"})


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

    def check(self) -> "RunConfig":
        """Check every value now (what load_config does; for configs built in Python)."""
        for name in SECTIONS:
            check_fields(name, getattr(self, name))
        self.model.params = check_model(self.model.kind, self.model.params)
        return self


SECTIONS = {"data": DataConfig, "train": TrainConfig}


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Build a RunConfig and check every value (types from the annotations, ranges from the
    fields); errors name the key, what it must be, and list valid keys for unknown ones."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config is a table of sections (data, model, train), got {type(d).__name__}")
    unknown = sorted(set(d) - {"data", "model", "train"})
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(unknown)}; valid: data, model, train")
    cfg = RunConfig()
    for name, cls in SECTIONS.items():
        if not isinstance(d.get(name, {}), dict):
            raise ConfigError(f"[{name}] must be a table of keys, got {d[name]!r}")
        values = dict(d.get(name, {}))
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(values) - valid)
        if bad:
            raise ConfigError(
                f"unknown key(s) {', '.join(name + '.' + b for b in bad)}; "
                f"valid [{name}] keys: {', '.join(sorted(valid))}"
            )
        section = cls(**values)
        check_fields(name, section)
        setattr(cfg, name, section)
    if not isinstance(d.get("model", {}), dict):
        raise ConfigError(f"[model] must be a table of keys, got {d['model']!r}")
    model = dict(d.get("model", {}))
    kind = model.pop("kind", "ae")
    cfg.model = ModelConfig(kind=kind, params=check_model(kind, model))
    return cfg


def check_model(kind: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The model's options checked now, not mid-run: the kind, unknown options, each option's
    type (from the kind's Config annotations), then the kind's own checks."""
    from aetk.models.registry import make_config, model_class, model_names

    if not isinstance(kind, str) or kind not in model_names():
        raise ConfigError(f"unknown model kind {kind!r}; valid kinds: {', '.join(model_names())}")
    config_cls = model_class(kind).Config
    try:
        hints = typing.get_type_hints(config_cls)
    except (NameError, TypeError):  # an annotation this module cannot resolve: the kind checks its own
        hints = {}
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    params = dict(params)
    for key, value in params.items():
        if key in fields:
            params[key] = check_value(f"model.{key}", value, hints.get(key, Any),
                                      fields[key].metadata.get("rules", {}))
    try:
        make_config(kind, params)
    except ValueError as exc:  # the kind's own checks (ranges, choices, unknown options)
        raise ConfigError(f"model ({kind}): {exc}") from exc
    return params


def check_resume(saved: dict[str, Any], new: dict[str, Any], run_dir: str | Path) -> None:
    """ConfigError unless ``new`` (a RunConfig.to_dict()) differs from the config a run was
    trained with only in RESUME_SAFE keys; the message names every other changed key."""
    before, after = _flat(saved), _flat(new)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    refused = [k for k in changed if k not in RESUME_SAFE]
    if refused:
        shown = "; ".join(f"{k} {_shown(before.get(k))} -> {_shown(after.get(k))}" for k in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise ConfigError(
            f"cannot resume {run_dir} with {shown}{more}: that would change the model or the data "
            f"it sees; a resumed run may change only {', '.join(sorted(RESUME_SAFE))} (or start "
            f"a new --run-dir, e.g. with train.init_from)")


def resume_from(saved_path: str | Path, run_dir: str | Path, config: str | Path | None = None,
                overrides: list[str] | None = None) -> RunConfig:
    """The config of a resumed run: its saved config (``saved_path``, in ``run_dir``), then
    the values of ``config`` (a TOML file, if given) and ``overrides`` on top; only
    RESUME_SAFE keys may change. From a run folder: ``aetk.artifacts.RunDir.resume_config``."""
    saved_path = Path(saved_path)
    if not saved_path.is_file():
        raise ConfigError(f"{saved_path} does not exist; there is no run to resume in {run_dir}")
    saved = _read_toml(saved_path)
    d = json.loads(json.dumps(saved))
    if config is not None:
        for section, values in _read_toml(Path(config)).items():
            if isinstance(values, dict) and isinstance(d.get(section, {}), dict):
                d.setdefault(section, {}).update(values)
            else:
                d[section] = values
    d = apply_overrides(d, overrides or [])
    check_resume(saved, d, run_dir)  # as written first: a changed kind is named, not its options
    cfg = from_dict(d)
    check_resume(from_dict(saved).to_dict(), cfg.to_dict(), run_dir)  # then resolved
    return cfg


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """{"section.key": value}, the model's options resolved with their kind's defaults (an
    option set to its default is no change)."""
    d = dict(d)
    model = dict(d.get("model", {}))
    kind = model.pop("kind", "ae")
    try:
        from aetk.models.registry import make_config

        d["model"] = {"kind": kind, **json.loads(json.dumps(dataclasses.asdict(make_config(kind, model))))}
    except (ValueError, TypeError):  # a config of an older aetk: compare it as written
        pass
    return {f"{section}.{k}": v for section, values in d.items() for k, v in values.items()}


def _shown(v: Any) -> str:
    return "(unset)" if v is None else json.dumps(v)


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
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.lr=3e-4")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override key {key!r} must be section.key, e.g. model.widths")
        out.setdefault(parts[0], {})[parts[1]] = parse_value(value.strip())
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    d = _read_toml(Path(path)) if path is not None else {}
    return from_dict(apply_overrides(d, overrides or []))


def _read_toml(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc


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
