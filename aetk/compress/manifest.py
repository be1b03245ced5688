"""A codes folder's shard plan, the job that makes shards valid, the progress journal of a
run in flight, and what the manifest that marks a folder complete may say. The folder's file
names, the manifest's checksum and reading are ``aetk.artifacts.CodesDir``'s:

    CODES/
      manifest.json          written once every shard is, atomically: the folder is complete;
                             carries manifest_sha256, the sha256 of its own canonical JSON
      report.json            sizes, ratios (and PSNR with --eval); no timings
      model/                 encoder.onnx, decoder.onnx: what encoded the codes, to decode them
      shard-00000.npy ...    the codes, one file per fixed range of items
      .progress/             while a run is in flight: job.json, then one record per shard written

Shard boundaries depend only on the dataset and ``shard_size``: part by part, items
[0, S), [S, 2S), ... of each part. A shard's record (in .progress/, later in the manifest):

    index, file, part, start, stop    the items it covers (numbers in the whole dataset)
    rows, bytes, sha256               what was written
    skipped                           [[item, id, why], ...] items that could not be read
    ids                               image folders: each row's path, relative to the folder
    quantization                      int8: {"scale": [...], "offset": [...]} per code value

The *job* is everything that decides the bytes of a shard: the model's weights hash, the
preprocessing (reader options and normalization), the code settings (precision, shard
format, compression, shard size) and the source (path and item counts). A rerun whose job
differs from the folder's refuses to mix shards (``StaleCodesError``) unless told to start
over. No timestamps anywhere, so an interrupted and resumed run ends byte-identical to an
uninterrupted one.

A manifest is input like any other: a folder may come from someone else. Every reader
(``Codes.open``) checks its checksum (an edit is an ``UnsafeManifestError``, an
IntegrityError) and that every path it names stays inside its folder: shard and model
file names are plain names, image paths are relative without ``..``, source file names
are plain names. ``check_paths`` is that check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from aetk.artifacts.codes_dir import (CHECKSUM, FORMAT, FORMAT_VERSION, MANIFEST, MODEL_DIR, PROGRESS,  # noqa: F401
                                      REPORT, CodesDir, checksum, dumps, is_shard_file, own_model_files,
                                      read_json, shard_name, unsafe)
from aetk.atomic import atomic_write_text, remove_stray_temporaries
from aetk.compress.errors import CompressError, StaleCodesError
from aetk.compress.options import CompressOptions
from aetk.options import flag

OVERWRITE = flag(CompressOptions, "overwrite")

# Names of parts, npz members and model files: one plain path component.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")


@dataclass(frozen=True)
class Shard:
    """One shard of the plan: items start..stop-1 of part `part` (numbered in the part)."""

    index: int
    part: int
    start: int
    stop: int
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "part": self.part, "start": self.start, "stop": self.stop,
                "file": self.file}


def plan_shards(part_sizes: list[int], shard_size: int, container: str, compression: str) -> list[Shard]:
    """Fixed ranges of `shard_size` items, part by part: the same data and shard size always
    give the same shards."""
    shards: list[Shard] = []
    for p, n in enumerate(part_sizes):
        for a in range(0, n, shard_size):
            k = len(shards)
            shards.append(Shard(k, p, a, min(a + shard_size, n), shard_name(k, container, compression)))
    return shards


# -- reading and writing -------------------------------------------------------------------------


def plain_name(name: Any) -> bool:
    """One path component with no way out of its folder."""
    return isinstance(name, str) and bool(PLAIN_NAME.fullmatch(name)) and name not in (".", "..")


def relative_path(rel: Any) -> bool:
    """A relative POSIX path that stays inside its folder: no absolute path, no '..', no
    empty or '.' component, no NUL."""
    if not isinstance(rel, str) or not rel or "\0" in rel or len(rel) > 4096:
        return False
    p = PurePosixPath(rel)
    return (not p.is_absolute() and rel == p.as_posix()
            and all(c not in ("", ".", "..") for c in rel.split("/")))


def check_paths(m: dict[str, Any], path: Path) -> None:
    """Every path the manifest names stays inside its folder (UnsafeManifestError)."""
    from aetk.data.imageio import IMAGE_SUFFIXES

    try:
        parts = m["job"]["source"]["parts"]
        for part in parts:
            if not plain_name(part["name"]):
                raise unsafe(path, f"names a part {part['name']!r}, which is not a plain name")
            origin = part["origin"]
            if origin.get("file") is not None and not (relative_path(origin["file"]) and "/" not in origin["file"]):
                raise unsafe(path, f"names the source file {origin['file']!r}, which is not a plain file "
                                    f"name: decompress would write outside its output folder")
            if origin.get("key") is not None and not plain_name(origin["key"]):
                raise unsafe(path, f"names the .npz member {origin['key']!r}, which is not a plain name")
        names = {part["name"] for part in parts}
        seen_ids: set[tuple[str, str]] = set()
        for rec in m["shards"]:
            if not (plain_name(rec["file"]) and is_shard_file(rec["file"])):
                raise unsafe(path, f"names the shard {rec['file']!r}, which is not a shard file name "
                                    f"(shard-NNNNN.npy, .npy.zst or .parquet)")
            if rec["part"] not in names:
                raise unsafe(path, f"has shard {rec['file']} of part {rec['part']!r}, which it does not list")
            for rel in rec.get("ids") or []:
                if not relative_path(rel):
                    raise unsafe(path, f"names the image {rel!r}, which is not a relative path inside "
                                        f"its folder (absolute, '..' or empty parts)")
                if PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES:
                    raise unsafe(path, f"names the image {rel!r}, which is not an image file aetk "
                                        f"reads and writes ({', '.join(IMAGE_SUFFIXES)})")
                if (rec["part"], rel) in seen_ids:
                    raise unsafe(path, f"names the image {rel!r} twice: decompress would write one over "
                                        f"the other")
                seen_ids.add((rec["part"], rel))
        for name in m["model_files"]:
            if not plain_name(name):
                raise unsafe(path, f"names the model file {name!r}, which is not a plain file name")
    except (KeyError, TypeError, AttributeError) as exc:
        raise unsafe(path, f"lacks or garbles an entry ({type(exc).__name__}: {exc})") from None


MAX_ITEM_VALUES = 1 << 28  # values in one restored item: the most a manifest may ask decompress to make
LAYOUT_MODES = ("L", "I;16", "RGB", "RGB;16")
DTYPE_NAMES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
               "float16", "float32", "float64")


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _shape(v: Any) -> bool:
    return (isinstance(v, list) and 0 < len(v) <= 8 and all(_count(s) for s in v)
            and int(np.prod(v, dtype=np.float64)) <= MAX_ITEM_VALUES)


def check_layouts(m: dict[str, Any], path: Path) -> None:
    """What decompress would make from the manifest is sane: value types it can write,
    shapes and image sizes of positive integers and bounded size (a manifest asking for a
    10^10-pixel image would exhaust memory), CSV columns as text (UnsafeManifestError)."""
    try:
        for part in m["job"]["source"]["parts"]:
            if part["dtype"] not in DTYPE_NAMES:
                raise unsafe(path, f"gives part {part['name']!r} the value type {part['dtype']!r}; expected "
                                    f"one of {', '.join(DTYPE_NAMES)}")
            for key in ("shape", "item_shape", "file_shape"):
                if key in part and not _shape(part[key]):
                    raise unsafe(path, f"gives part {part['name']!r} the {key} {part[key]!r}; expected up to 8 "
                                        f"positive integers, at most {MAX_ITEM_VALUES} values")
            w = part.get("windows")
            if w is not None and not (isinstance(w, dict) and all(_count(w.get(k)) for k in ("length", "rows", "features"))
                                      and w["rows"] * w["features"] <= MAX_ITEM_VALUES):
                raise unsafe(path, f"gives part {part['name']!r} the windows {w!r}; expected positive integers")
            origin = part["origin"]
            if "columns" in origin and not (isinstance(origin["columns"], list)
                                            and all(isinstance(c, str) and "\n" not in c for c in origin["columns"])):
                raise unsafe(path, f"gives part {part['name']!r} CSV columns that are not one line of text each")
            if "delimiter" in origin and not (isinstance(origin["delimiter"], str) and len(origin["delimiter"]) == 1
                                              and origin["delimiter"] not in "\r\n\"0123456789.-+eE"):
                raise unsafe(path, f"gives part {part['name']!r} the CSV delimiter {origin['delimiter']!r}")
        for rec in m["shards"]:
            for lay in rec.get("layout") or []:
                if not (isinstance(lay, list) and len(lay) == 3 and _count(lay[0]) and _count(lay[1])
                        and lay[0] * lay[1] <= MAX_ITEM_VALUES // 3 and lay[2] in LAYOUT_MODES):
                    raise unsafe(path, f"gives an image of shard {rec['file']} the layout {lay!r}; expected "
                                        f"[height, width, mode] with mode one of {', '.join(LAYOUT_MODES)}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise unsafe(path, f"lacks or garbles an entry ({type(exc).__name__}: {exc})") from None


def load_manifest(codes: Path) -> dict[str, Any]:
    """The manifest of a complete codes folder (its format and checksum checked by CodesDir),
    and every path and layout it names checked; errors say what is missing and why."""
    folder = CodesDir(codes)
    m = folder.read_manifest()
    check_paths(m, folder.manifest_file)
    check_layouts(m, folder.manifest_file)
    return m


def write_manifest(codes: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest with its checksum (``manifest[CHECKSUM]`` is set here)."""
    return CodesDir(codes).write_manifest(manifest)


@contextlib.contextmanager
def locked(codes: Path) -> Iterator[None]:
    """Hold an exclusive lock on the codes folder for one run: two runs writing the same
    shards and journal would corrupt each other's work. The lock is on the folder itself
    (flock), so it leaves no file behind and dies with the process."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(codes, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CompressError(f"another `aetk compress` is writing to {codes}; wait for it to finish "
                                f"(or stop it) first") from None
        yield
    finally:
        os.close(fd)  # releases the lock


class Journal:
    """``.progress/``: the job of the run in flight, and a record per shard written."""

    def __init__(self, codes: Path):
        self.codes = CodesDir(codes)
        self.folder = self.codes.progress_dir

    def exists(self) -> bool:
        return self.codes.in_flight()

    def job(self) -> dict[str, Any]:
        return read_json(self.codes.job_file, "progress file")["job"]

    def start(self, job: dict[str, Any]) -> None:
        atomic_write_text(self.codes.job_file, dumps({"job": job}))

    def add(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.codes.record_file(record["file"]), dumps(record))

    def records(self) -> dict[int, dict[str, Any]]:
        out = {}
        for p in self.codes.record_files():
            try:
                r = json.loads(p.read_text())
                out[int(r["index"])] = r
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged record: its shard is redone
        return out

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the job ---------------------------------------------------------------------------------------
def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def job_differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: stored -> now' for each setting that differs."""
    a, b = _flatten(stored), _flatten(now)
    return [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def refuse_stale(codes: Path, where: str, diffs: list[str]) -> StaleCodesError:
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    return StaleCodesError(f"{codes} holds codes of another job ({where}): {shown}. Its shards are "
                           f"stale for this model and preprocessing; pass {OVERWRITE} to replace "
                           f"them, or write to another folder")


def clear(codes: Path) -> None:
    """Remove the codes aetk compress wrote in `codes` (only its own files; model/ is
    brought up to date by the next run, which may be reading it)."""
    folder = CodesDir(codes)
    for path in (folder.manifest_file, folder.report_file):
        path.unlink(missing_ok=True)
    shutil.rmtree(folder.progress_dir, ignore_errors=True)
    for p in folder.shard_files():
        p.unlink()
    remove_temporaries(folder.path)


def remove_temporaries(codes: Path) -> None:
    """Temporary files a killed run left behind (atomic writes name them .NAME.*.tmp): in
    .progress/ all of them, elsewhere only those of the files compress writes there."""
    folder = CodesDir(codes)
    top = (folder.manifest_file.name, folder.report_file.name)
    remove_stray_temporaries(folder.progress_dir)
    remove_stray_temporaries(folder.path, of=lambda n: n in top or is_shard_file(n))
    remove_stray_temporaries(folder.model_dir, of=lambda n: n in own_model_files())


__all__ = ["CHECKSUM", "FORMAT", "FORMAT_VERSION", "MANIFEST", "check_layouts", "check_paths", "checksum", "plain_name",
           "relative_path", "MODEL_DIR", "PROGRESS", "REPORT", "Journal", "Shard",
           "clear", "dumps", "job_differences", "load_manifest", "locked", "plan_shards", "refuse_stale",
           "remove_temporaries", "write_manifest"]
