"""The model behind a codes folder: found from ``-m`` (an export folder, or a run folder,
whose cached export ``aetk.export.ensure_export`` makes once), checked against the data
before any work, and copied into ``CODES/model/`` so that decompressing and searching need
nothing but the folder.

Only exporting a run folder needs torch; everything else runs on ``aetk.runtime``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aetk.artifacts import ArtifactError, CodesDir, ExportDir, RunDir, resolve
from aetk.artifacts.codes_dir import MODEL_GRAPHS, dumps, own_model_files, sha256_file
from aetk.atomic import atomic_open, atomic_write_text
from aetk.compress.errors import CompressError, ShapeMismatchError
from aetk.compress.options import CompressOptions, ReaderOptions
from aetk.options import flag


@dataclass
class ModelSource:
    folder: ExportDir  # an export folder holding the encoder and decoder
    run: dict[str, Any] | None = None  # {"run": path, "weights_sha256": ...} for run folders


def model_source(model: str | os.PathLike, progress: Callable[[str], None] | None = None) -> ModelSource:
    """The export folder to encode with: ``model`` itself (an export folder, or one of its
    .onnx files), or the cached export of a run folder (aetk.export.ensure_export)."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        path = path.parent
    try:
        found = resolve(path, ExportDir, RunDir, what="-m")
    except ArtifactError as exc:
        raise CompressError(str(exc)) from exc
    if isinstance(found, RunDir):
        from aetk.export import ensure_export  # torch: only for run folders

        return ModelSource(ensure_export(found, progress=progress),
                           run={"run": str(found.path.resolve()), "weights_sha256": found.weights_sha256()})
    missing = found.missing(*MODEL_GRAPHS)
    if missing:
        raise CompressError(f"export folder {path} lacks {', '.join(missing)}; `aetk export` "
                            f"writes both graphs")
    return ModelSource(found)


def check_model_folder(codes: Path, ours: bool) -> None:
    """Before any work: CODES/model/ must be a plain folder (not a link to someone's export)
    and, unless the folder is a codes folder already (`ours`: a manifest or a run in flight,
    or --overwrite), must not hold files with the names compress writes."""
    target = CodesDir(codes).model_dir
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise CompressError(f"{target} is {'a link' if target.is_symlink() else 'not a folder'}; "
                            f"compress keeps its own copy of the model there, so -o must not hold "
                            f"a {target.name} of another kind (move it, or write to another folder)")
    if ours or not target.is_dir():
        return
    theirs = sorted(p.name for p in target.iterdir() if p.name in own_model_files())
    if theirs:
        raise CompressError(f"{target} already holds {', '.join(theirs)}, but {codes} is not a codes "
                            f"folder (no {CodesDir(codes).manifest_file.name} or run in flight): compress would replace them. "
                            f"Move them, write to another folder, or pass {flag(CompressOptions, 'overwrite')} to replace them")


def install_model(source: ModelSource, codes: Path) -> dict[str, str]:
    """Copy the graphs into CODES/model/ (unless already there) -> {file: sha256}. Only the
    files compress writes (``own_model_files``) are replaced or removed; others stay."""
    folder = CodesDir(codes)
    target = folder.model_dir
    target.mkdir(parents=True, exist_ok=True)
    same = source.folder.path.resolve() == target.resolve()
    hashes = {}
    for f in source.folder.graph_files(*MODEL_GRAPHS):
        dest = target / f.name
        if not same:
            digest = sha256_file(f)
            if not dest.is_file() or sha256_file(dest) != digest:
                with open(f, "rb") as src, atomic_open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        hashes[f.name] = sha256_file(dest)
    if source.run is not None:
        atomic_write_text(folder.run_stamp, dumps(source.run))
    keep = set(hashes) | ({folder.run_stamp.name} if source.run is not None else set())
    for name in own_model_files() - keep:  # what an earlier model left (its run stamp, side files)
        if (target / name).is_file() and not same:
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


__all__ = ["ModelSource", "check_model_folder", "check_shapes", "install_model", "own_model_files", "model_identity", "model_source"]
