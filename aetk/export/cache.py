"""``ensure_export(run)``: a run folder's ONNX export, made once and reused.

    export = ensure_export("runs/conv")     # ExportDir; RUN/export-cache/ on the first call
    rt.load_export(export)                   # any later call returns it at once

The cache is keyed by the run's weights: an export is reused only when its export.json
(written last, so its presence means the export is whole) records the same weights_sha256
as the run's model.json, so a retrained (or resumed) run is exported again. Where it lives is
``RunDir``'s to say (``export_cache_candidates``): the run folder, else, when that cannot be
written, a per-user temporary folder named by the hash. The export is made in a staging
folder beside the target and renamed into place, so a killed export leaves no half-written
cache; two processes exporting the same run at once each finish, and the one that renames
second uses the first one's (identical) export.

It lives in ``aetk.export``, not ``aetk.artifacts``: it runs the exporter, one layer up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from aetk.artifacts import ExportDir, RunDir, resolve


def cached_export(run: RunDir) -> ExportDir | None:
    """The run's cached export when it is current (same weights), else None."""
    key = run.weights_sha256()
    for target in run.export_cache_candidates():
        cached = ExportDir(target)
        if cached.is_export() and cached.weights_sha256() == key:
            return cached
    return None


def _publish(stage: Path, target: Path) -> None:
    """Rename the staged export over ``target`` (an older export is moved aside first)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    try:
        os.rename(stage, target)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def ensure_export(run: str | os.PathLike | RunDir, *,
                  progress: Callable[[str], None] | None = None) -> ExportDir:
    """The current ONNX export of the run folder ``run`` (see the module docstring)."""
    from aetk.export.exporter import export_run

    run = resolve(run, RunDir)
    current = cached_export(run)
    if current is not None:
        return current
    errors: list[str] = []
    for target in run.export_cache_candidates():
        if target.exists() and not ExportDir(target).is_export():
            errors.append(f"{target} exists and is not an export (left alone)")
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
        except OSError as exc:  # a read-only run folder: try the next place
            errors.append(f"{target.parent}: {exc.strerror or exc}")
            continue
        try:
            if progress:
                progress(f"exporting {run.path} to ONNX")
            export_run(run, stage)  # its stages are not reported: `progress` takes one line of text
            try:
                _publish(stage, target)
            except OSError:
                current = cached_export(run)  # another process published the same export first
                if current is None:
                    raise
                return current
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return ExportDir(target)
    raise OSError(f"cannot write an export of {run.path} anywhere ({'; '.join(errors)})")


__all__ = ["cached_export", "ensure_export"]
