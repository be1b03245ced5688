"""Checkpoints as safetensors plus JSON (no pickle anywhere), written atomically.

A run folder holds:
    config.toml                 the resolved run configuration
    model.safetensors/.json     the final (or best, with early stopping) model
    checkpoints/last.*          the full training state, for --resume
    metrics.csv, tb/            per-epoch metrics and TensorBoard logs
    eval/                       what `aetk eval` and `aetk sample` write

``model.json`` carries everything needed to rebuild the model without the config:
kind, hyperparameters, input shape, the data normalization, the aetk version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aetk.errors import IntegrityError
from aetk.atomic import atomic_path, atomic_write_bytes, atomic_write_text  # noqa: F401 (used here, re-exported)

MODEL_FILE = "model"
LAST = "checkpoints/last"


class CheckpointError(IntegrityError, RuntimeError):
    """A run folder or checkpoint that is missing, incomplete or corrupt."""


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)


def save_pair(stem: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """``stem.safetensors`` then ``stem.json``; the JSON, written last, marks it complete."""
    atomic_save_tensors(stem.with_suffix(".safetensors"), tensors)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(info, indent=2, sort_keys=True))


def load_pair(stem: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st, js):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} is missing")
    try:
        info = json.loads(js.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint metadata {js} is not valid JSON: {exc}") from exc
    try:
        tensors = load_file(st)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights {st} are unreadable or corrupt: {exc}") from exc
    return tensors, info


def flatten_state(prefix: str, obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Split a nested state (dicts, lists, tensors, scalars) into tensors and a JSON skeleton.

    Tensors go to ``tensors`` under a dotted key and are replaced by {"__tensor__": key}.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), flatten_state(f"{prefix}.{k}", v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unkey(k): unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [unflatten_state(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def _key(k: Any) -> Any:
    # JSON object keys must be strings; optimizer states are keyed by int parameter ids.
    return {"int": k} if isinstance(k, int) else k


def _unkey(k: Any) -> Any:
    return k["int"] if isinstance(k, dict) else k


def save_model(run_dir: Path, model, info: dict[str, Any]) -> None:
    """The deployable model: weights plus what is needed to rebuild it."""
    import aetk

    meta = {
        "kind": model.kind,
        "config": model.hyperparameters(),
        "input_shape": list(model.input_shape),
        "aetk_version": aetk.__version__,
        **info,
    }
    save_pair(Path(run_dir) / MODEL_FILE, model.state_dict(), meta)


def model_stem(path: Path) -> Path:
    """A run folder's model stem, or the stem of a model.safetensors/.json path itself."""
    return path / MODEL_FILE if path.is_dir() else path.with_suffix("")


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from a run folder (or a model.safetensors/.json stem).

    Returns (model in eval mode, metadata dict).
    """
    from aetk.models.registry import create_model

    run = Path(run_dir)
    if not run.exists():
        raise CheckpointError(f"run folder {run} does not exist")
    stem = model_stem(run)
    tensors, meta = load_pair(stem)
    for key in ("kind", "config", "input_shape"):
        if key not in meta:
            raise CheckpointError(f"{stem.with_suffix('.json')} lacks '{key}'; is it an aetk model?")
    model = create_model(meta["kind"], tuple(meta["input_shape"]), **meta["config"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {stem.with_suffix('.safetensors')} do not fit a "
                              f"{meta['kind']} model: {exc}") from exc
    return model.to(device).eval(), meta


def init_weights(model, source: str | Path) -> tuple[list[str], list[str]]:
    """Start ``model`` from a trained run's weights (``train.init_from``): every tensor of the
    source must exist in the model with the same shape, after ``model.grow_state`` (a kind that
    can grow, e.g. resconv to more features, adapts them); the model's other tensors (new layers)
    keep their fresh initialisation. Returns (copied names, new names)."""
    src = Path(source)
    stem = model_stem(src)
    if not stem.with_suffix(".safetensors").is_file():
        raise CheckpointError(f"train.init_from: {src} is not a run folder with {MODEL_FILE}.safetensors "
                              f"(or a .safetensors file)")
    tensors, _ = load_pair(stem)
    tensors = model.grow_state(tensors)  # e.g. a narrower resconv widened to this one's features
    own = model.state_dict()
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise CheckpointError(f"train.init_from: {len(unknown)} tensor(s) of {src} are not in this "
                              f"{model.kind} model, e.g. {unknown[0]!r}")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in tensors.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"train.init_from: shapes of {src} do not fit this model: {'; '.join(wrong[:3])}")
    model.load_state_dict(tensors, strict=False)
    return sorted(tensors), sorted(set(own) - set(tensors))
