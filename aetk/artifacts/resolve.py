"""``resolve(spec)``: a path (or an artifact) -> the RunDir, ExportDir or CodesDir it is.

    resolve("runs/conv")                       # RunDir
    resolve("out/", ExportDir)                 # ExportDir, or ArtifactError if it is not one
    resolve(m, RunDir, ExportDir, what="-m")   # either; the error names the option

Standard library only (RunDir's paths need no torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from aetk.artifacts.codes_dir import CodesDir
from aetk.artifacts.errors import ArtifactError
from aetk.artifacts.export_dir import ExportDir, graph_file_name
from aetk.artifacts.run_dir import RunDir

Artifact = Union[RunDir, ExportDir, CodesDir]
KINDS = (RunDir, ExportDir, CodesDir)
DESCRIBE = {
    RunDir: "a run folder from `aetk train` (model.safetensors and model.json)",
    ExportDir: f"an export folder from `aetk export` ({graph_file_name('encoder')}, ...)",
    CodesDir: "a codes folder from `aetk compress` (manifest.json)",
}


def _expected(kinds: tuple[type, ...]) -> str:
    return " or ".join(DESCRIBE[k] for k in kinds)


def _why_not(path: Path, kinds: tuple[type, ...]) -> str:
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is a file, not a folder"
    entries = list(path.iterdir())
    if not entries:
        return "is an empty folder"
    run = RunDir(path)
    if RunDir in kinds and (run.config_file.is_file() or run.has_checkpoint()):
        return (f"is a run folder without a saved model ({run.weights_file.name} and "
                f"{run.info_file.name} are written at the end of the first epoch; a run that "
                f"stopped earlier has none: resume it or train it again)")
    if len(kinds) == 1:
        return f"is not {DESCRIBE[kinds[0]]}"
    return "is neither " + " nor ".join(DESCRIBE[k] for k in kinds)


def resolve(spec: Union[str, os.PathLike, Artifact], *kinds: type, what: str = "") -> Artifact:
    """The saved folder at ``spec``, of one of ``kinds`` (default: any). ArtifactError (a
    UserInputError, exit 2) naming the path and what was expected otherwise. ``what`` names
    the argument in the message (e.g. "--model")."""
    kinds = kinds or KINDS
    if isinstance(spec, KINDS):
        if isinstance(spec, kinds):
            return spec
        spec = spec.path
    path = Path(spec).expanduser()
    found: Artifact | None = None
    if path.is_dir():
        if RunDir(path).is_run():
            found = RunDir(path)
        elif ExportDir(path).is_export():
            found = ExportDir(path)
        elif CodesDir(path).is_codes():
            found = CodesDir(path)
    if found is not None and isinstance(found, kinds):
        return found
    label = f"{what} {path}" if what else str(path)
    why = f"is {DESCRIBE[type(found)]}" if found is not None else _why_not(path, kinds)
    if why.startswith(("is neither", "is not")):  # it names what was expected already
        raise ArtifactError(f"{label} {why}")
    raise ArtifactError(f"{label} {why}; expected {_expected(kinds)}")


__all__ = ["Artifact", "resolve"]
