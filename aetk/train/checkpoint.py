"""The file formats of training, as safetensors plus JSON (no pickle anywhere), written atomically.

    save_pair / load_pair            STEM.safetensors + STEM.json (the JSON records the tensors'
                                     weights_sha256, checked on every load)
    save_checkpoint / load_checkpoint  one STEM.safetensors holding the full training state, its
                                     JSON in the safetensors header: one rename makes it whole
    build_model                      rebuild a model from a pair (kind, hyperparameters, shape)
    RunLock                          an flock on a lock file, dropped when its process dies

Every function takes the stem or file it works on: which names a run folder uses is
``aetk.artifacts.RunDir``'s business, one layer up. A flipped byte, an edited file or weights
from another save are an IntegrityError naming the file; pairs written before the hash was
recorded still load.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aetk.errors import AetkError, IntegrityError, UserInputError
from aetk.atomic import (  # noqa: F401 (used here, re-exported)
    atomic_path,
    atomic_write_text,
    stray_temporaries,
)

WEIGHTS_HASH = "weights_sha256"  # the key, in a pair's JSON, of its tensors' hash
CHECKPOINT_KEY = "aetk.checkpoint"  # the safetensors header entry holding a checkpoint's JSON


class CheckpointError(IntegrityError, RuntimeError):
    """A run folder or checkpoint that is missing, incomplete or corrupt."""


class MissingRunError(UserInputError, CheckpointError):
    """A run folder or one of its files that is not there: a bad path (exit 2), not a torn file."""


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """One safetensors file, whole or not at all (a temporary renamed over ``path``)."""
    with atomic_path(path) as tmp:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        except SafetensorError as exc:  # its I/O errors (a full disk) are the disk's, not a bug
            code = re.search(r"\(os error (\d+)\)", str(exc))
            if code is None:
                raise
            errno_ = int(code.group(1))
            raise OSError(errno_, os.strerror(errno_), str(path)) from exc


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of a set of tensors: each one's name, dtype, shape and bytes, in name order (what
    `aetk export` records as the ONNX metadata's weights_sha256)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_pair(stem: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """``stem.safetensors`` then ``stem.json``, which records the tensors' hash: a JSON that
    does not name the weights beside it (a kill between the two renames, an edit, a flipped
    byte) fails to load."""
    info = {**info, WEIGHTS_HASH: tensors_sha256(tensors)}
    atomic_save_tensors(stem.with_suffix(".safetensors"), tensors)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(info, indent=2, sort_keys=True))


def load_pair(stem: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st, js):
        if not p.is_file():
            raise MissingRunError(f"checkpoint file {p} is missing")
    try:
        info = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {js} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise CheckpointError(f"checkpoint metadata {js} is not a JSON object")
    tensors = _read_tensors(st)
    verify_weights(tensors, info.get(WEIGHTS_HASH), st, js)
    return tensors, info


def verify_weights(tensors: dict[str, torch.Tensor], recorded: Any, st: Path, where: Path) -> None:
    """IntegrityError unless the tensors read from ``st`` have the hash recorded in ``where``
    (nothing recorded: a folder from before the hash, accepted)."""
    if recorded is None:
        return
    actual = tensors_sha256(tensors)
    if actual != recorded:
        against = ("its own header: its weights hash to {}..., its header records " if Path(st) == Path(where)
                   else f"{where}: its weights hash to {{}}..., {where.name} records ").format(actual[:12])
        raise CheckpointError(
            f"{st} does not match {against}{str(recorded)[:12]}... (the file was changed or "
            f"corrupted, or comes from another save); refusing to use it")


def _read_tensors(st: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(st)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights {st} are unreadable or corrupt: {exc}") from exc


def save_checkpoint(stem: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """The training state as ONE file, ``stem.safetensors``, its JSON (with the tensors' hash)
    in the safetensors header: one rename makes it whole, so no kill can pair the weights of
    one step with the state of another. A ``stem.json`` of the older two-file layout is
    removed once the new file is in place."""
    info = {**info, WEIGHTS_HASH: tensors_sha256(tensors)}
    atomic_save_tensors(stem.with_suffix(".safetensors"), tensors,
                        metadata={CHECKPOINT_KEY: json.dumps(info, sort_keys=True)})
    stem.with_suffix(".json").unlink(missing_ok=True)


def load_checkpoint(stem: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_checkpoint` wrote (or an older two-file pair), hash checked."""
    st = stem.with_suffix(".safetensors")
    if not st.is_file():
        raise CheckpointError(f"checkpoint file {st} is missing")
    try:
        with safe_open(st, framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {st} is unreadable or corrupt: {exc}") from exc
    if CHECKPOINT_KEY not in header:
        return load_pair(stem)  # the older layout: last.safetensors + last.json
    try:
        info = json.loads(header[CHECKPOINT_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {st} holds invalid JSON in its header: {exc}") from exc
    if not isinstance(info, dict) or WEIGHTS_HASH not in info:
        raise CheckpointError(f"checkpoint {st} lacks its {WEIGHTS_HASH}; is it an aetk checkpoint?")
    tensors = _read_tensors(st)
    verify_weights(tensors, info[WEIGHTS_HASH], st, st)
    return tensors, info


class RunLockedError(AetkError, RuntimeError):
    """Another process is training in this run folder."""


class RunLock:
    """``with RunLock(lock_file):`` holds an exclusive flock on ``lock_file`` while one
    `aetk train` works in its folder; a second is refused at once. The kernel drops the lock
    when its process dies, however it dies, so a killed run never leaves a folder locked."""

    def __init__(self, lock_file: Path):
        self.path = Path(lock_file)
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"another `aetk train` is working in {self.path.parent} (it holds "
                                 f"{self.path}); wait for it to finish or stop it") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a curious user
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


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


def model_record(model, info: dict[str, Any]) -> dict[str, Any]:
    """What a saved model's JSON holds besides its weights' hash: what rebuilds it."""
    import aetk

    return {
        "kind": model.kind,
        "config": model.hyperparameters(),
        "input_shape": list(model.input_shape),
        "aetk_version": aetk.__version__,
        **info,
    }


def build_model(stem: Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from the pair at ``stem`` (see save_pair).

    Returns (model in eval mode, metadata dict).
    """
    from aetk.models.registry import create_model

    stem = Path(stem)
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


def init_weights(model, stem: Path, source: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Start ``model`` from the trained weights of the pair at ``stem`` (``train.init_from``,
    named ``source`` in messages): every tensor of the source must exist in the model with the
    same shape, after ``model.grow_state`` (a kind that can grow, e.g. resconv to more features,
    adapts them); the model's other tensors (new layers) keep their fresh initialisation.
    Returns (copied names, new names)."""
    src = source if source is not None else stem
    tensors, _ = load_pair(Path(stem))
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
