"""The codes folder's layout, its shard plan, the job that makes shards valid, the
progress journal of a run in flight, and the manifest that marks a folder complete.

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
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from aetk.atomic import atomic_write_text, stray_temporaries
from aetk.compress.errors import CompressError, IncompleteCodesError, StaleCodesError, UnsafeManifestError
from aetk.compress.shards import NAME_PREFIX, is_shard_file, shard_name
from aetk.compress.options import CompressOptions
from aetk.options import flag

OVERWRITE = flag(CompressOptions, "overwrite")

MANIFEST = "manifest.json"
REPORT = "report.json"
PROGRESS = ".progress"
MODEL_DIR = "model"
FORMAT = "aetk-codes"
FORMAT_VERSION = 2  # 2: manifest_sha256, paths checked, each item's layout recorded
CHECKSUM = "manifest_sha256"
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
def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, so equal content means equal bytes."""
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_json(path: Path, what: str) -> Any:
    try:
        # parse_constant: NaN and Infinity are not JSON, and aetk never writes them
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompressError(f"{what} {path} is unreadable or not valid JSON ({exc}); it was damaged "
                            f"after being written atomically") from exc


def checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own checksum."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM}
    return hashlib.sha256(dumps(body).encode()).hexdigest()


def _unsafe(path: Path, what: str) -> UnsafeManifestError:
    return UnsafeManifestError(f"{path} {what}; refusing to use it (it was edited or made by something "
                               f"other than `aetk compress`; recompress from the data, with {OVERWRITE} "
                               f"to remake this folder)")


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
    from aetk.compress.shards import is_shard_file
    from aetk.data.images import IMAGE_SUFFIXES

    try:
        parts = m["job"]["source"]["parts"]
        for part in parts:
            if not plain_name(part["name"]):
                raise _unsafe(path, f"names a part {part['name']!r}, which is not a plain name")
            origin = part["origin"]
            if origin.get("file") is not None and not (relative_path(origin["file"]) and "/" not in origin["file"]):
                raise _unsafe(path, f"names the source file {origin['file']!r}, which is not a plain file "
                                    f"name: decompress would write outside its output folder")
            if origin.get("key") is not None and not plain_name(origin["key"]):
                raise _unsafe(path, f"names the .npz member {origin['key']!r}, which is not a plain name")
        names = {part["name"] for part in parts}
        seen_ids: set[tuple[str, str]] = set()
        for rec in m["shards"]:
            if not (plain_name(rec["file"]) and is_shard_file(rec["file"])):
                raise _unsafe(path, f"names the shard {rec['file']!r}, which is not a shard file name "
                                    f"(shard-NNNNN.npy, .npy.zst or .parquet)")
            if rec["part"] not in names:
                raise _unsafe(path, f"has shard {rec['file']} of part {rec['part']!r}, which it does not list")
            for rel in rec.get("ids") or []:
                if not relative_path(rel):
                    raise _unsafe(path, f"names the image {rel!r}, which is not a relative path inside "
                                        f"its folder (absolute, '..' or empty parts)")
                if PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES:
                    raise _unsafe(path, f"names the image {rel!r}, which is not an image file aetk "
                                        f"reads and writes ({', '.join(IMAGE_SUFFIXES)})")
                if (rec["part"], rel) in seen_ids:
                    raise _unsafe(path, f"names the image {rel!r} twice: decompress would write one over "
                                        f"the other")
                seen_ids.add((rec["part"], rel))
        for name in m["model_files"]:
            if not plain_name(name):
                raise _unsafe(path, f"names the model file {name!r}, which is not a plain file name")
    except (KeyError, TypeError, AttributeError) as exc:
        raise _unsafe(path, f"lacks or garbles an entry ({type(exc).__name__}: {exc})") from None


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
                raise _unsafe(path, f"gives part {part['name']!r} the value type {part['dtype']!r}; expected "
                                    f"one of {', '.join(DTYPE_NAMES)}")
            for key in ("shape", "item_shape", "file_shape"):
                if key in part and not _shape(part[key]):
                    raise _unsafe(path, f"gives part {part['name']!r} the {key} {part[key]!r}; expected up to 8 "
                                        f"positive integers, at most {MAX_ITEM_VALUES} values")
            w = part.get("windows")
            if w is not None and not (isinstance(w, dict) and all(_count(w.get(k)) for k in ("length", "rows", "features"))
                                      and w["rows"] * w["features"] <= MAX_ITEM_VALUES):
                raise _unsafe(path, f"gives part {part['name']!r} the windows {w!r}; expected positive integers")
            origin = part["origin"]
            if "columns" in origin and not (isinstance(origin["columns"], list)
                                            and all(isinstance(c, str) and "\n" not in c for c in origin["columns"])):
                raise _unsafe(path, f"gives part {part['name']!r} CSV columns that are not one line of text each")
            if "delimiter" in origin and not (isinstance(origin["delimiter"], str) and len(origin["delimiter"]) == 1
                                              and origin["delimiter"] not in "\r\n\"0123456789.-+eE"):
                raise _unsafe(path, f"gives part {part['name']!r} the CSV delimiter {origin['delimiter']!r}")
        for rec in m["shards"]:
            for lay in rec.get("layout") or []:
                if not (isinstance(lay, list) and len(lay) == 3 and _count(lay[0]) and _count(lay[1])
                        and lay[0] * lay[1] <= MAX_ITEM_VALUES // 3 and lay[2] in LAYOUT_MODES):
                    raise _unsafe(path, f"gives an image of shard {rec['file']} the layout {lay!r}; expected "
                                        f"[height, width, mode] with mode one of {', '.join(LAYOUT_MODES)}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise _unsafe(path, f"lacks or garbles an entry ({type(exc).__name__}: {exc})") from None


def load_manifest(codes: Path) -> dict[str, Any]:
    """The manifest of a complete codes folder; errors say what is missing and why."""
    codes = Path(codes)
    if not codes.is_dir():
        raise CompressError(f"codes folder {codes} does not exist (expected what `aetk compress` "
                            f"wrote with -o)")
    path = codes / MANIFEST
    if not path.is_file():
        more = (" A compress run is in flight or was interrupted (its progress is in "
                f"{PROGRESS}/); rerun the same `aetk compress` to finish it.") if (codes / PROGRESS).is_dir() else ""
        raise IncompleteCodesError(f"{codes} has no {MANIFEST}, so its codes are not complete.{more}")
    m = _read_json(path, "manifest")
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CompressError(f"{path} is not an aetk codes manifest (no \"format\": \"{FORMAT}\")")
    if m.get("format_version") != FORMAT_VERSION:
        raise CompressError(f"{path} has format_version {m.get('format_version')!r}; this aetk reads "
                            f"version {FORMAT_VERSION} (rerun `aetk compress ... {OVERWRITE}` to remake it)")
    for key in ("job", "shards", "totals", "model_files", "code_shape", CHECKSUM):
        if key not in m:
            raise CompressError(f"{path} lacks {key!r}; it is not a complete aetk codes manifest")
    if m[CHECKSUM] != checksum(m):
        raise _unsafe(path, f"does not match its own {CHECKSUM}: it was edited after `aetk compress` "
                            f"wrote it")
    check_paths(m, path)
    check_layouts(m, path)
    return m


def write_manifest(codes: Path, manifest: dict[str, Any]) -> Path:
    """Write the manifest with its checksum (``manifest[CHECKSUM]`` is set here)."""
    path = Path(codes) / MANIFEST
    manifest[CHECKSUM] = checksum(manifest)
    atomic_write_text(path, dumps(manifest))
    return path


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
        self.folder = Path(codes) / PROGRESS

    def exists(self) -> bool:
        return (self.folder / "job.json").is_file()

    def job(self) -> dict[str, Any]:
        return _read_json(self.folder / "job.json", "progress file")["job"]

    def start(self, job: dict[str, Any]) -> None:
        atomic_write_text(self.folder / "job.json", dumps({"job": job}))

    def add(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.folder / (record["file"] + ".json"), dumps(record))

    def records(self) -> dict[int, dict[str, Any]]:
        out = {}
        for p in sorted(self.folder.glob(f"{NAME_PREFIX}*.json")):
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
    codes = Path(codes)
    for name in (MANIFEST, REPORT):
        (codes / name).unlink(missing_ok=True)
    shutil.rmtree(codes / PROGRESS, ignore_errors=True)
    for p in codes.iterdir():
        if p.is_file() and is_shard_file(p.name):
            p.unlink()
    remove_temporaries(codes)


def remove_temporaries(codes: Path) -> None:
    """Temporary files a killed run left behind (atomic writes name them .NAME.*.tmp): in
    .progress/ all of them, elsewhere only those of the files compress writes there."""
    from aetk.compress.model import own_model_files

    if (codes / PROGRESS).is_dir():
        for p in stray_temporaries(codes / PROGRESS):
            p.unlink(missing_ok=True)
    for folder, ours in ((codes, lambda n: n in (MANIFEST, REPORT) or is_shard_file(n)),
                         (codes / MODEL_DIR, lambda n: n in own_model_files())):
        if folder.is_dir() and not folder.is_symlink():
            for p in stray_temporaries(folder):
                name = p.name[1:].rsplit(".", 2)[0]  # .NAME.<random>.tmp -> NAME
                if ours(name):
                    p.unlink(missing_ok=True)


__all__ = ["CHECKSUM", "FORMAT", "FORMAT_VERSION", "MANIFEST", "check_layouts", "check_paths", "checksum", "plain_name",
           "relative_path", "MODEL_DIR", "PROGRESS", "REPORT", "Journal", "Shard",
           "clear", "dumps", "job_differences", "load_manifest", "locked", "plan_shards", "refuse_stale",
           "remove_temporaries", "write_manifest"]
