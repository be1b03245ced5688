"""Which files to denoise and where each result goes, safely.

- Folders are walked recursively; symbolic links are not followed out of the input tree
  (a linked file whose target lies outside is skipped with a message; linked folders are
  not entered).
- ``-o OUT``: one input folder maps onto OUT; with several inputs each folder goes to
  OUT/<folder name> and each file to OUT/<file name>. Without ``-o``: a folder X goes to the
  sibling folder X_denoised, a file a/b.png to a/b_denoised.png.
- Every output path is checked to lie inside its output root, and never to be an input.
- Only regular files are read: a FIFO, socket or device in a folder is skipped with a
  message (it could block the run forever); one named on the command line is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aetk.data.imageguard import regular_file_problem
from aetk.data.imageio import EXTENSIONS, FORMATS
from aetk.errors import UserInputError
from aetk.denoise.options import DenoiseOptions
from aetk.options import flag


class DenoiseInputError(UserInputError):
    """Inputs or output folder that cannot be used as given."""


@dataclass
class Job:
    src: Path
    dst: Path
    label: str  # the path shown to the user
    root: Path  # the output folder dst must stay inside
    source_root: Path | None = None  # the input folder src was found in (None: named on its own)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _out_name(rel: Path, fmt: str | None) -> Path:
    return rel.with_suffix(FORMATS[fmt]) if fmt else rel


def plan(inputs: list[Path], out: Path | None, fmt: str | None = None) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs (input -> output) and the items skipped with a reason."""
    if not inputs:
        raise DenoiseInputError("no input given: name image files or folders")
    if fmt is not None and fmt not in FORMATS:
        raise DenoiseInputError(f"{flag(DenoiseOptions, 'format')} must be one of {', '.join(sorted(set(FORMATS)))}, got {fmt!r}")
    jobs: list[Job] = []
    skipped: list[tuple[str, str]] = []
    for inp in inputs:
        if not inp.exists():
            raise DenoiseInputError(f"input {inp} does not exist")
        if not os.access(inp, os.R_OK):
            raise DenoiseInputError(f"input {inp} is not readable")
        if not inp.is_dir() and (problem := regular_file_problem(inp)):
            raise DenoiseInputError(f"input {inp} is {problem.removesuffix(': skipped')}; "
                                    f"name image files or folders")
    single = len(inputs) == 1
    for inp in inputs:
        if inp.is_dir():
            root = out if (out is not None and single) else (out / inp.resolve().name if out is not None
                                                           else inp.resolve().with_name(inp.resolve().name + "_denoised"))
            if _inside(root, inp):
                raise DenoiseInputError(f"output folder {root} lies inside the input folder {inp}; "
                                        f"choose an output outside it (-o)")
            for dirpath, dirnames, filenames in os.walk(inp, followlinks=False):
                dirnames.sort()
                for d in dirnames:
                    if (Path(dirpath) / d).is_symlink():
                        skipped.append((str(Path(dirpath) / d), "symbolic link to a folder: not followed"))
                for name in sorted(filenames):
                    src = Path(dirpath) / name
                    if src.suffix.lower() not in EXTENSIONS:
                        continue
                    if src.is_symlink() and not _inside(src, inp):
                        skipped.append((str(src), "symbolic link leading out of the input tree: not followed"))
                        continue
                    if problem := regular_file_problem(src):
                        skipped.append((str(src), problem))
                        continue
                    rel = src.relative_to(inp)
                    jobs.append(Job(src, root / _out_name(rel, fmt), str(src), root, inp))
        else:
            if out is not None:
                dst = out / _out_name(Path(inp.name), fmt)
                root = out
            else:
                dst = inp.with_name(inp.stem + "_denoised" + (FORMATS[fmt] if fmt else inp.suffix))
                root = inp.parent
            jobs.append(Job(inp, dst, str(inp), root))
    sources = {j.src.resolve() for j in jobs}
    seen: dict[Path, str] = {}
    for job in jobs:
        if not _inside(job.dst, job.root):
            raise DenoiseInputError(f"output {job.dst} would lie outside the output folder {job.root}")
        if job.dst.resolve() in sources or (job.dst.exists() and os.path.samefile(job.dst, job.src)):
            raise DenoiseInputError(f"output {job.dst} would overwrite an input; choose another -o or {flag(DenoiseOptions, 'format')}")
        key = job.dst.resolve()
        if key in seen:
            raise DenoiseInputError(f"{seen[key]} and {job.label} would both be written to {job.dst}")
        seen[key] = job.label
    return jobs, skipped


__all__ = ["DenoiseInputError", "Job", "plan"]
