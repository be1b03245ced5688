"""The model behind a codes folder: found from ``-m`` (an export folder, or a run folder
that is exported first), checked against the data before any work, and copied into
``CODES/model/`` so that decompressing and searching need nothing but the folder.

Only exporting a run folder needs torch; everything else runs on ``aetk.runtime``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aetk.atomic import atomic_open, atomic_write_text
from aetk.compress.errors import CompressError, ShapeMismatchError
from aetk.compress.manifest import MODEL_DIR, dumps
from aetk.compress.shards import sha256_file
from aetk.compress.options import CompressOptions, ReaderOptions
from aetk.options import flag

GRAPHS = ("encoder.onnx", "decoder.onnx")
RUN_STAMP = "run.json"  # in CODES/model/ when the model came from a run folder


@dataclass
class ModelSource:
    folder: Path  # an export folder holding encoder.onnx and decoder.onnx
    temporary: bool = False  # a fresh export of a run, to be removed after installing
    run: dict[str, Any] | None = None  # {"run": path, "model_sha256": ...} for run folders

    def cleanup(self) -> None:
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def _run_fingerprint(run: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.json", "model.safetensors"):
        h.update(name.encode())
        h.update(sha256_file(run / name).encode())
    return h.hexdigest()


def resolve_model(model: str | os.PathLike, codes: Path,
                  progress: Callable[[str], None] | None = None) -> ModelSource:
    """The export folder to encode with: `model` itself, the copy already in CODES/model
    (same run), or a fresh export of the run into a temporary folder."""
    path = Path(model).expanduser()
    if not path.exists():
        raise CompressError(f"-m {str(model)!r} does not exist; expected an export folder (from "
                            f"`aetk export`) or a run folder (from `aetk train`)")
    if path.is_file() and path.suffix == ".onnx":
        path = path.parent
    if path.is_dir() and (path / "encoder.onnx").is_file():
        missing = [g for g in GRAPHS if not (path / g).is_file()]
        if missing:
            raise CompressError(f"export folder {path} lacks {', '.join(missing)}; `aetk export` "
                                f"writes both graphs")
        return ModelSource(path)
    if path.is_dir() and (path / "model.json").is_file() and (path / "model.safetensors").is_file():
        stamp = {"run": str(path.resolve()), "model_sha256": _run_fingerprint(path)}
        installed = codes / MODEL_DIR
        try:
            same = json.loads((installed / RUN_STAMP).read_text()) == stamp
        except (OSError, ValueError):
            same = False
        if same and all((installed / g).is_file() for g in GRAPHS):
            return ModelSource(installed, run=stamp)
        if progress:
            progress(f"exporting {path} to ONNX")
        from aetk.export import export_run  # torch: only for run folders

        tmp = Path(tempfile.mkdtemp(prefix="aetk-compress-export-"))
        try:
            export_run(path, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ModelSource(tmp, temporary=True, run=stamp)
    raise CompressError(f"-m {str(model)!r} is neither an export folder (encoder.onnx and "
                        f"decoder.onnx, from `aetk export`) nor a run folder (model.json and "
                        f"model.safetensors, from `aetk train`)")


def _external_files(onnx_path: Path) -> list[Path]:
    """Side files holding a graph's large weights (`aetk export` names them <file>.data)."""
    side = onnx_path.with_name(onnx_path.name + ".data")
    return [side] if side.is_file() else []


def own_model_files() -> set[str]:
    """The only names compress writes in CODES/model/: the graphs, their weight side files
    and the run stamp. Anything else there is the user's and is never touched."""
    return {*GRAPHS, *(g + ".data" for g in GRAPHS), RUN_STAMP}


def check_model_folder(codes: Path, ours: bool) -> None:
    """Before any work: CODES/model/ must be a plain folder (not a link to someone's export)
    and, unless the folder is a codes folder already (`ours`: a manifest or a run in flight,
    or --overwrite), must not hold files with the names compress writes."""
    target = codes / MODEL_DIR
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise CompressError(f"{target} is {'a link' if target.is_symlink() else 'not a folder'}; "
                            f"compress keeps its own copy of the model there, so -o must not hold "
                            f"a {MODEL_DIR} of another kind (move it, or write to another folder)")
    if ours or not target.is_dir():
        return
    theirs = sorted(p.name for p in target.iterdir() if p.name in own_model_files())
    if theirs:
        raise CompressError(f"{target} already holds {', '.join(theirs)}, but {codes} is not a codes "
                            f"folder (no manifest.json or run in flight): compress would replace them. "
                            f"Move them, write to another folder, or pass {flag(CompressOptions, 'overwrite')} to replace them")


def install_model(source: ModelSource, codes: Path) -> dict[str, str]:
    """Copy the graphs into CODES/model/ (unless already there) -> {file: sha256}. Only the
    files compress writes (``own_model_files``) are replaced or removed; others stay."""
    target = codes / MODEL_DIR
    target.mkdir(parents=True, exist_ok=True)
    files = [source.folder / g for g in GRAPHS]
    files += [f for g in GRAPHS for f in _external_files(source.folder / g)]
    hashes = {}
    for f in files:
        dest = target / f.name
        if source.folder.resolve() != target.resolve():
            digest = sha256_file(f)
            if not dest.is_file() or sha256_file(dest) != digest:
                with open(f, "rb") as src, atomic_open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        hashes[f.name] = sha256_file(dest)
    if source.run is not None:
        atomic_write_text(target / RUN_STAMP, dumps(source.run))
    keep = set(hashes) | ({RUN_STAMP} if source.run is not None else set())
    for name in own_model_files() - keep:  # what an earlier model left (its run stamp, side files)
        if (target / name).is_file() and source.folder.resolve() != target.resolve():
            (target / name).unlink()
    return hashes


def model_identity(meta: Any) -> dict[str, Any]:
    """What names the model in a job: its weights, and what the codes mean."""
    return {"weights_sha256": meta.weights_sha256, "kind": meta.kind, "base_kind": meta.base_kind,
            "input_shape": list(meta.input_shape), "code_shape": list(meta.code_shape),
            "variational": bool(meta.variational), "layout": meta.layout}


def check_shapes(model: Any, data_shape: tuple[int, ...], data: str) -> tuple[int, ...]:
    """The code shape for examples of `data_shape`, or ShapeMismatchError naming both shapes.
    Runs the encoder on one zero example: this is the check, before any real work."""
    meta = model.metadata
    want = tuple(int(s) for s in meta.input_shape)
    have = tuple(int(s) for s in data_shape)
    layout = meta.layout
    ok = have == want
    if not ok and meta.dynamic_spatial and len(have) == len(want):
        spatial = {"NCHW": (1, 2), "NHW": (0, 1)}.get(layout, ())
        fixed_ok = all(h == w for k, (h, w) in enumerate(zip(have, want)) if k not in spatial)
        ok = fixed_ok and all(have[k] % meta.spatial_multiple == 0 for k in spatial)
    if not ok:
        hint, size = "", flag(ReaderOptions, "image_size")
        if len(want) == 3 and len(have) == 3:
            if have[0] != want[0]:
                hint += f" {flag(ReaderOptions, 'channels')} {want[0]} converts the images to {want[0]} channel(s)."
            if have[1:] != want[1:]:
                hint += (f" {size} {want[1]}x{want[2]} resizes them ({flag(ReaderOptions, 'resize')} crop to "
                         f"center-crop)." if not meta.dynamic_spatial else
                         f" This model takes any height and width that are multiples of "
                         f"{meta.spatial_multiple}; {size} resizes to such a size.")
        elif len(want) == 3 and len(have) == 2 and layout == "NCHW":  # (N, H, W) arrays: no channel axis
            hint = (f" {flag(ReaderOptions, 'channels')} {want[0]} reads them as {want[0]}-channel images"
                    + (f" ({size} {want[1]}x{want[2]} resizes them)." if have != want[1:] else "."))
        elif layout == "NTF":
            hint = f" {flag(ReaderOptions, 'sequence_length')} {want[0]} cuts rows into windows of {want[0]}."
        raise ShapeMismatchError(
            f"the model's encoder takes examples of shape {list(want)} ({layout}), but {data} "
            f"has examples of shape {list(have)}; nothing was encoded.{hint}")
    x = np.zeros((1, *have), np.float32)
    try:
        z = model.encode(x)
    except Exception as exc:  # the runtime's own shape errors, worded for this command
        raise ShapeMismatchError(f"the model's encoder cannot encode examples of shape {list(have)} "
                                 f"from {data}: {exc}") from exc
    return tuple(int(s) for s in z.shape[1:])


__all__ = ["GRAPHS", "ModelSource", "check_model_folder", "check_shapes", "install_model", "own_model_files", "model_identity", "resolve_model"]
