"""``aetk decompress``: codes back to data, in the sources' own formats and layout, and the
reconstruction PSNR that ``aetk compress --eval`` reports.

Nothing is written until everything checks out: the manifest (its own checksum, every path
inside its folder), every shard (sha256, finite codes), the model (file hashes and its
weights_sha256), and the outputs: each lies inside OUT, none is one of the source files
the codes were made from (OUT may not be the source folder or lie inside it), and none
exists already unless ``overwrite``. Then, part by part, codes are decoded in batches and
written as the source was, in its value type (integers rounded and clipped to their range):

    image folder      OUT/<each image's path relative to the folder>, same file type; each
                      image at its own size (the reconstruction resized back), in its own
                      mode (gray "L", 16-bit gray "I;16", or "RGB") and bit depth
    IDX               OUT/<file name>, gzipped when the source was, (N, H, W) as the source
    .npy / .npz       OUT/<file name> in the file's own example shape (an .npz keeps its
                      member names)
    CSV               OUT/<file name> with the feature columns (the label column is not
                      stored); a time series read as windows comes back as its rows, each
                      row the mean of the windows that cover it
    built-ins, or --arrays    OUT/<part>.npy ("data", or "train" and "test") in the model's
                      example shape

Items that were skipped when compressing have no codes, so they are absent here too
(array outputs hold one row per code, in order; the manifest lists the skipped items).

Decoding (ONNX Runtime) and writing overlap: a writer thread converts and writes what the
decoder produced while it decodes the next shard. Each output appears whole (written to a
temporary name, then renamed); image files are made durable by one sync at the end rather
than an fsync each (5 ms per file on a plain disk, ten times the write itself).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aetk.atomic import atomic_open, atomic_write_bytes
from aetk.data.imageio import (DEFAULT_QUALITY, SIXTEEN_BIT_FORMATS, ImageWriteError, encode_image, pil_format,
                               pil_image)
from aetk.compress.codes import Codes
from aetk.compress.errors import CompressError, CorruptShardError, OutputExistsError, UnsafeManifestError
from aetk.compress.options import DecompressOptions
from aetk.options import check, flag
from aetk.pipeline import Pipeline
from aetk.progress import Progress, or_null

# Pillow's save options per output format: reconstructions are lossy already, so WebP is lossless.
SAVE_OPTIONS = {"JPEG": {"quality": DEFAULT_QUALITY}, "WEBP": {"lossless": True}}
MODE_MAX = {"L": 255.0, "RGB": 255.0, "I;16": 65535.0, "RGB;16": 65535.0}


def to_dtype(x: np.ndarray, dtype: str, value_max: float | None = None) -> np.ndarray:
    """Raw float values -> the source's value type: integers rounded and clipped."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        hi = min(float(info.max), value_max) if value_max is not None else float(info.max)
        return np.clip(np.rint(x), info.min, hi).astype(dt)
    if dt.kind == "b":
        return x >= 0.5
    return np.asarray(x, dtype=dt)


def decode_codes(model: Any, z: np.ndarray, batch_size: int) -> np.ndarray:
    """Codes -> reconstructions in raw units (the inverse of the model's normalization)."""
    outs = [model.decode(z[i:i + batch_size], raw=True) for i in range(0, len(z), batch_size)]
    if not outs:
        return np.zeros((0, *model.input_shape), np.float32)
    return np.concatenate(outs)


def source_scale(codes: Codes) -> float:
    """Decoded images are in the model's raw units; this factor brings them to the folder's
    (see aetk.compress.job.image_depths). 1 for everything else."""
    model_max = codes.job["preprocessing"].get("model_max")
    vmax = codes.parts[0].get("value_max") if codes.parts else None
    return float(vmax) / float(model_max) if model_max and vmax else 1.0


def open_decoder(codes: Codes, device: str = "auto", model: str | Path | None = None) -> Any:
    """The decoder stored with the codes (checked against the manifest), or `model`."""
    from aetk.runtime import load_export

    if model is None:
        codes.check_model()
        folder = codes.model_dir
    else:
        folder = Path(model)
    m = load_export(folder, device=device, batch_size=None)
    want = codes.job["model"]["weights_sha256"]
    if m.metadata.weights_sha256 != want:
        raise CompressError(f"the model in {folder} has weights_sha256 {m.metadata.weights_sha256[:12]}..., "
                            f"but the codes were made by {want[:12]}...; decode with the model that "
                            f"encoded them")
    return m


# -- restoring each item's own layout ------------------------------------------------------------
def restore_image(a: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A (C, H, W) reconstruction -> (channels, *size): gray <-> RGB, then resized back."""
    from aetk.data.images import LUMA, resize_or_crop

    if a.shape[0] == 3 and channels == 1:
        a = np.tensordot(LUMA, a, axes=1)[None]
    elif a.shape[0] == 1 and channels == 3:
        a = np.repeat(a, 3, axis=0)
    if tuple(a.shape[1:]) != tuple(size):
        a = resize_or_crop(np.ascontiguousarray(a, dtype=np.float32), size, "resize")
    return a


def image_file(a: np.ndarray, layout: list | None, dtype: str, value_max: float, suffix: str) -> bytes:
    """One image file's bytes: a (C, H, W) reconstruction in the folder's raw units (0..
    value_max), written at the file's own [H, W, mode] (`layout`) in the format of `suffix`."""
    fmt = _pil_format(suffix)
    if layout is None:  # no layout recorded: the model's size, the folder's depth
        hwc = _to_hwc(a, dtype, value_max)
    else:
        h, w, mode = int(layout[0]), int(layout[1]), str(layout[2])
        if mode in ("I;16", "RGB;16") and fmt not in SIXTEEN_BIT_FORMATS:
            mode = "L" if mode == "I;16" else "RGB"
        a = restore_image(np.asarray(a, np.float32), 3 if mode.startswith("RGB") else 1, (h, w))
        a = a * np.float32(MODE_MAX.get(mode, 255.0) / value_max)
        hwc = to_dtype(a, "uint16" if mode in ("I;16", "RGB;16") else "uint8").transpose(1, 2, 0)
    try:
        return encode_image(hwc, fmt, **SAVE_OPTIONS.get(fmt, {}))
    except ImageWriteError as exc:
        raise CompressError(str(exc)) from exc


def _pil_format(suffix: str) -> str:
    try:
        return pil_format(suffix)
    except ImageWriteError as exc:
        raise CompressError(str(exc)) from exc


def _to_hwc(a: np.ndarray, dtype: str, value_max: float | None) -> np.ndarray:
    """A (C, H, W) or (H, W) raw image as (H, W, C) of the source's depth: colour keeps 8 bits."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    v = to_dtype(a, dtype, value_max)
    if a.ndim == 3:  # colour without a layout: 8 bits per channel
        if v.dtype != np.uint8:
            v = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return v.transpose(1, 2, 0)
    return v if v.dtype == np.uint16 else v.astype(np.uint8)


def to_pil(a: np.ndarray, dtype: str, value_max: float | None = None):
    """A (C, H, W) or (H, W) raw image as a Pillow image of the source's depth."""
    return pil_image(_to_hwc(a, dtype, value_max))


# -- writers: one per output format --------------------------------------------------------------
class _Writer:
    def write(self, x: np.ndarray, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _npy_header(f, dtype: str, shape: tuple[int, ...]) -> None:
    """The .npy header of an array whose rows are then written raw, block by block."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)


class _Rows:
    """Reconstructions (rows, *model shape) -> the file's own example shape: channels and
    size restored when the reader changed them, then reshaped (e.g. (1, 28, 28) -> (28, 28))."""

    def __init__(self, part: dict, restore: bool, cropped: bool = False):
        model = tuple(part["shape"])
        self.cropped = cropped
        self.item = tuple(part.get("item_shape") or model) if restore else model
        if cropped and len(self.item) == 3 and len(model) == 3:  # the margins are not in the codes
            self.item = (self.item[0], *model[1:])
            part = {**part, "file_shape": None}
        self.file = tuple(part.get("file_shape") or self.item) if restore else model
        self.model = model
        if int(np.prod(self.item)) != int(np.prod(self.file)):
            self.file = self.item
        self.image = restore and self.item != model and len(self.item) == 3 and len(model) == 3

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.image:
            x = np.stack([restore_image(a, self.item[0], self.item[1:]) for a in x]) if len(x) else \
                np.zeros((0, *self.item), np.float32)
        return x.reshape(len(x), *self.file)


class _NpyWriter(_Writer):
    """An .npy file written row block by row block (the row count is known up front)."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, dtype: str, shape: tuple[int, ...], rows: _Rows):
        self.f = stack.enter_context(atomic_open(path, "wb"))
        _npy_header(self.f, dtype, shape)
        self.dtype, self.rows = dtype, rows

    def write(self, x: np.ndarray, record: dict) -> None:
        self.f.write(np.ascontiguousarray(to_dtype(self.rows(x), self.dtype)).tobytes())


class _NpzMember(_Writer):
    def __init__(self, zf: zipfile.ZipFile, key: str, dtype: str, shape: tuple[int, ...], rows: _Rows):
        self.f = zf.open(f"{key}.npy", "w", force_zip64=True)
        _npy_header(self.f, dtype, shape)
        self.dtype, self.rows = dtype, rows

    def write(self, x: np.ndarray, record: dict) -> None:
        self.f.write(np.ascontiguousarray(to_dtype(self.rows(x), self.dtype)).tobytes())

    def close(self) -> None:
        self.f.close()


class _IdxWriter(_Writer):
    def __init__(self, stack: contextlib.ExitStack, path: Path, dtype: str, shape: tuple[int, ...],
                 gz: bool, rows: _Rows):
        from aetk.data.idx import IDX_TYPES

        raw = stack.enter_context(atomic_open(path, "wb"))
        # mtime=0: the same codes give the same bytes; level 6 (zlib's default) is 3x faster
        # than GzipFile's default 9 for files a few percent larger
        self.f = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6)) \
            if gz else raw
        codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
        self.code = codes[np.dtype(dtype).newbyteorder("=")]
        self.big = IDX_TYPES[self.code]
        self.dtype, self.rows = dtype, rows
        self.f.write(bytes([0, 0, self.code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape))

    def write(self, x: np.ndarray, record: dict) -> None:
        self.f.write(to_dtype(self.rows(x), self.dtype).astype(self.big).tobytes())


def _csv_text(x: np.ndarray, fmt: str, delimiter: str) -> str:
    buf = io.StringIO()
    np.savetxt(buf, x.reshape(len(x), -1), fmt=fmt, delimiter=delimiter)
    return buf.getvalue()


class _CsvWriter(_Writer):
    def __init__(self, stack: contextlib.ExitStack, path: Path, columns: list[str], delimiter: str,
                 dtype: str):
        self.f = stack.enter_context(atomic_open(path, "w"))
        self.delimiter = delimiter
        self.fmt = "%.9g" if np.dtype(dtype).itemsize <= 4 else "%.17g"
        self.f.write(delimiter.join(columns) + "\n")

    def write(self, x: np.ndarray, record: dict) -> None:
        self.f.write(_csv_text(x, self.fmt, self.delimiter))


class _Windows(_Writer):
    """A time series read as windows of T rows (stride 1) back to its rows: each row the
    mean of the reconstructions of the windows that cover it. Holds the series in memory,
    as compressing did."""

    def __init__(self, part: dict, write_rows: Callable[[np.ndarray], None]):
        w = part["windows"]
        self.length, n, f = int(w["length"]), int(w["rows"]), int(w["features"])
        self.sum = np.zeros((n, f), np.float64)
        self.count = np.zeros(n, np.int64)
        self.start = int(part["start"])
        self.write_rows = write_rows

    def write(self, x: np.ndarray, record: dict) -> None:
        first = record["items"] - self.start  # window i covers rows i .. i+T-1
        x = x.reshape(len(x), self.length, -1)
        for t in range(self.length):
            np.add.at(self.sum, first + t, x[:, t])
            np.add.at(self.count, first + t, 1)

    def close(self) -> None:
        covered = self.count > 0
        self.write_rows((self.sum[covered] / self.count[covered, None]))


class _ImageWriter(_Writer):
    def __init__(self, out: Path, dtype: str, value_max: float, written: list[Path], cropped: bool = False):
        self.out, self.dtype, self.value_max, self.written = out, dtype, value_max, written
        self.cropped = cropped  # center crops: the margins are not in the codes, so no resize back

    def write(self, x: np.ndarray, record: dict) -> None:
        layouts = record.get("layout") or [None] * len(x)
        if self.cropped:
            layouts = [None if lay is None else [x.shape[2], x.shape[3], lay[2]] for lay in layouts]
        for a, rel, layout in zip(x, record["ids"], layouts):
            path = self.out / rel
            atomic_write_bytes(path, image_file(a, layout, self.dtype, self.value_max, path.suffix), sync=False)
            self.written.append(path)


# -- decompress ---------------------------------------------------------------------------------------
@dataclass
class DecompressResult:
    out: Path
    files: list[str] = field(default_factory=list)
    rows: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Output:
    part: dict
    kind: str  # images | idx | npy | npz | csv | arrays
    path: Path  # the file (OUT itself for images)
    files: list[Path]  # every file it writes


def _source_files(codes: Codes, part: dict) -> tuple[Path | None, list[Path]]:
    """(the source folder, or None for a file source; the source files of a part)."""
    data = Path(codes.job["source"]["data"])
    origin = part["origin"]
    if origin.get("format") == "images":
        root = Path(part["source"])
        return root, [root / i for r in codes.records if r["part"] == part["name"] for i in r.get("ids") or []]
    if origin.get("file") is None:
        return None, []
    if data.is_dir():
        return data, [data / origin["file"]]
    return None, [data]


def _plan(codes: Codes, out: Path, as_arrays: bool) -> list[_Output]:
    plan = []
    for part in codes.parts:
        origin = part["origin"]
        fmt = "arrays" if as_arrays else origin.get("format", "arrays")
        if fmt == "images":
            ids = [out / i for r in codes.records if r["part"] == part["name"] for i in r.get("ids") or []]
            for r in codes.records:
                if r["part"] == part["name"] and len(r.get("ids") or []) != r["rows"]:
                    raise UnsafeManifestError(f"{codes.folder}/manifest.json: shard {r['file']} names "
                                              f"{len(r.get('ids') or [])} images for {r['rows']} codes")
                if r.get("layout") is not None and len(r["layout"]) != r["rows"]:
                    raise UnsafeManifestError(f"{codes.folder}/manifest.json: shard {r['file']} has "
                                              f"{len(r['layout'])} layouts for {r['rows']} codes")
            for p in ids:
                _pil_format(p.suffix)
            plan.append(_Output(part, "images", out, ids))
        elif fmt in ("idx", "npy", "npz", "csv"):
            plan.append(_Output(part, fmt, out / origin["file"], [out / origin["file"]]))
        else:
            plan.append(_Output(part, "arrays", out / f"{part['name']}.npy", [out / f"{part['name']}.npy"]))
    return plan


def _same(a: Path, b: Path) -> bool:
    """The same file (a hard link, a bind mount): what a path comparison misses."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(codes: Codes, out: Path, plan: list[_Output], overwrite: bool) -> None:
    """Before anything is written: every output inside OUT, none a source file, none
    existing (unless `overwrite`), no two the same."""
    out_r = out.resolve()
    files = [f for o in plan for f in o.files]
    seen: set[Path] = set()
    for f in files:
        if f in seen and not any(o.kind == "npz" for o in plan if f in o.files):
            raise UnsafeManifestError(f"{codes.folder}/manifest.json names the output {f} twice")
        seen.add(f)
    folders = {q for f in seen for q in f.relative_to(out).parents if q != Path(".")}
    clash = sorted(str(f.relative_to(out)) for f in seen if f.relative_to(out) in folders)
    if clash:
        raise UnsafeManifestError(f"{codes.folder}/manifest.json names {clash[0]!r} both as a file and "
                                  f"as a folder")
    resolved = {f: f.resolve() for f in seen}
    for f in seen:
        if out_r not in resolved[f].parents:
            raise UnsafeManifestError(f"the output {f} lies outside -o {out} (through a link); nothing "
                                      f"was decoded")
    for part in codes.parts:
        folder, sources = _source_files(codes, part)
        if folder is not None and folder.exists() and (out_r == folder.resolve() or folder.resolve() in out_r.parents):
            raise OutputExistsError(f"-o {out} is {'the' if out_r == folder.resolve() else 'inside the'} "
                                    f"folder the codes were made from ({folder}); decompressing there would "
                                    f"replace or mix in with the originals. Choose another folder")
        source_paths = {q.resolve() for q in sources}
        by_name: dict[str, list[Path]] = {}
        for q in sources:
            by_name.setdefault(q.name, []).append(q)
        hit = [f for f in seen if resolved[f] in source_paths
               or (f.exists() and any(_same(f, q) for q in by_name.get(f.name, [])))]
        if hit:
            raise OutputExistsError(f"-o {out} would overwrite {hit[0]}, the source the codes were made from, "
                                    f"with its lossy reconstruction. Choose another folder")
    existing = sorted(str(f) for f in seen if os.path.lexists(f))
    if existing and not overwrite:
        raise OutputExistsError(f"{len(existing)} output file(s) exist already in {out} (first: "
                                f"{existing[0]}); pass {flag(DecompressOptions, 'overwrite')} to replace them, or choose another folder")
    dirs = [f for f in existing if Path(f).is_dir() and not Path(f).is_symlink()]
    if dirs:
        raise OutputExistsError(f"the output {dirs[0]} is a folder; it would be replaced by a file")


def _open_writer(o: _Output, dtype: str, shape: tuple[int, ...], shaper: _Rows, stack: contextlib.ExitStack,
                 zips: dict[Path, zipfile.ZipFile], images_written: list[Path]) -> _Writer:
    """The writer of one output (called in the writer thread, after the previous one closed)."""
    part, kind, path = o.part, o.kind, o.path
    origin = part["origin"]
    if kind == "images":
        return _ImageWriter(path, dtype, float(part.get("value_max", 255.0)), images_written, shaper.cropped)
    if kind != "arrays" and part.get("windows"):
        cols = origin.get("columns") or [str(k) for k in range(int(part["windows"]["features"]))]

        def write_rows(x: np.ndarray) -> None:
            if kind == "csv":
                fmt = "%.9g" if np.dtype(dtype).itemsize <= 4 else "%.17g"
                with atomic_open(path, "w") as f:
                    f.write(origin["delimiter"].join(cols) + "\n")
                    f.write(_csv_text(x, fmt, origin["delimiter"]))
            else:
                with atomic_open(path, "wb") as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(to_dtype(x, dtype)), allow_pickle=False)

        return _Windows(part, write_rows)
    if kind == "idx":
        return _IdxWriter(stack, path, dtype, shape, bool(origin.get("gzip")), shaper)
    if kind == "npz":
        if path not in zips:
            raw = stack.enter_context(atomic_open(path, "wb"))
            zips[path] = stack.enter_context(zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED))
        return _NpzMember(zips[path], origin["key"], dtype, shape, shaper)
    if kind == "csv":
        return _CsvWriter(stack, path, origin["columns"], origin["delimiter"], dtype)
    return _NpyWriter(stack, path, dtype, shape, shaper)


def _notes(codes: Codes, plan: list[_Output]) -> list[str]:
    """What the outputs cannot hold: labels of CSV rows, detail lost to resizing or cropping."""
    notes = []
    reader = codes.job["preprocessing"]["reader"]
    if any(o.kind == "csv" for o in plan) and reader.get("label_column"):
        notes.append("CSV outputs hold the feature columns only: labels are not stored with codes")
    size = codes.job["preprocessing"]["input_shape"][1:]
    resized = sum(1 for r in codes.records for lay in (r.get("layout") or []) if list(lay[:2]) != list(size))
    if resized and reader.get("resize") == "crop":
        notes.append(f"{resized} images were center-cropped to the model's size {'x'.join(map(str, size))} "
                     f"before encoding; they come back at that size (the margins are not in the codes)")
    elif resized:
        notes.append(f"{resized} images were encoded at the model's size {'x'.join(map(str, size))} and are "
                     f"resized back to their own sizes: detail finer than that is not in the codes")
    return notes


def decompress(folder: str | Path, out: str | Path, options: DecompressOptions = DecompressOptions(),
               progress: Progress | None = None, model: str | Path | None = None) -> DecompressResult:
    """Decode a codes folder into `out` (see the module doc). Checks everything first.
    ``model``: decode with this export folder instead of CODES/model (checked against the manifest)."""
    check(options, CompressError)
    bar = or_null(progress)
    try:
        return _decompress(folder, out, options, bar, model)
    finally:
        bar.finish()


def _decompress(folder: str | Path, out: str | Path, options: DecompressOptions, bar: Progress,
                model: str | Path | None) -> DecompressResult:
    as_arrays, batch_size = options.arrays, options.batch_size
    codes = Codes.open(folder)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CompressError(f"-o {out} exists and is not a folder")
    bar.start(f"checking {len(codes.records)} shards and the model", total=len(codes.records), unit="shards")
    problems = codes.verify(on_shard=lambda: bar.advance(1))
    if problems:
        raise CorruptShardError(f"{len(problems)} problem(s) in {codes.folder}, nothing decoded: "
                                + "; ".join(problems[:5]), problems)
    plan = _plan(codes, out, as_arrays)
    check_outputs(codes, out, plan, options.overwrite)
    decoder = open_decoder(codes, options.device, model)
    out.mkdir(parents=True, exist_ok=True)
    result = DecompressResult(out)
    by_part: dict[str, list[dict]] = {}
    for r in codes.records:
        by_part.setdefault(r["part"], []).append(r)
    result.notes += _notes(codes, plan)
    reader = codes.job["preprocessing"]["reader"]
    cropped = reader.get("resize") == "crop" and reader.get("image_size") is not None
    scale = source_scale(codes)
    total = codes.manifest["totals"]["rows"]
    bar.start(f"decoding {total} codes into {out}", total=total)
    images_written: list[Path] = []
    # Output files are kept when all went well, else discarded; the pipeline is left first,
    # so no write runs while they are discarded.
    with contextlib.ExitStack() as files, Pipeline(writers=1, behind=2, name="aetk-decompress") as pipe:
        zips: dict[Path, zipfile.ZipFile] = {}
        for o in plan:
            part, kind, path = o.part, o.kind, o.path
            records = by_part.get(part["name"], [])
            rows = sum(r["rows"] for r in records)
            shaper = _Rows(part, restore=kind != "arrays", cropped=cropped)
            dtype = part["dtype"]
            shape = (rows, *shaper.file)
            make = functools.partial(_open_writer, o, dtype, shape, shaper, files, zips, images_written)
            state: dict[str, _Writer] = {}
            pipe.write(lambda make=make, state=state: state.__setitem__("w", make()))
            for r in records:
                z, items = codes.read(r)
                for a in range(0, len(z), batch_size):
                    x = decode_codes(decoder, z[a:a + batch_size], batch_size)
                    if scale != 1.0 and kind == "images":
                        x *= np.float32(scale)
                    piece = {"items": items[a:a + batch_size], "ids": (r.get("ids") or [])[a:a + batch_size],
                             "layout": (r.get("layout") or [])[a:a + batch_size] or None}
                    pipe.write(lambda state=state, x=x, piece=piece: state["w"].write(x, piece))
                    result.rows += len(x)
                    bar.advance(len(x))
            pipe.write(lambda state=state: state["w"].close())
            label = f"{rows} images in {out}" if kind == "images" else str(path.relative_to(out))
            if label not in result.files:
                result.files.append(label)
    if images_written:
        os.sync()  # one flush for every image file (see the module doc)
    return result


# -- reconstruction quality -------------------------------------------------------------------------
def evaluate(codes: Codes, parts: list, decoder: Any, batch_size: int = 512,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """PSNR of what decompress writes (reconstructions in the source's value type) against
    the source items, over every row. The peak is the value type's nominal maximum for
    integer data, else the range of the data seen."""
    from aetk.data.stream import read_range

    by_name = {p.name: p for p in parts}
    scale = source_scale(codes)
    sse, count = 0.0, 0
    lo, hi = np.inf, -np.inf
    nominal = None
    for r in codes.records:
        part = by_name[r["part"]]
        meta = codes.part_of(r)
        z, items = codes.read(r)
        rows = read_range(part, r["start"] - part.start, r["stop"] - part.start)
        if not np.array_equal(rows.index + part.start, items):
            raise CompressError(f"the data no longer matches shard {r['file']}: other items are "
                                f"readable now; recompress before evaluating")
        y = decode_codes(decoder, z, batch_size)
        if part.is_images:
            y = y * np.float32(scale)
        y = to_dtype(y, meta["dtype"], meta.get("value_max"))
        x = rows.x.reshape(y.shape).astype(np.float64)
        sse += float(((y.astype(np.float64) - x) ** 2).sum())
        count += x.size
        if x.size:
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        dt = np.dtype(meta["dtype"])
        if dt.kind in "iu":
            nominal = meta.get("value_max") or float(np.iinfo(dt).max)
        if progress:
            progress(r["stop"] - r["start"])
    if count == 0:
        return {"psnr_db": None, "mse": None, "peak": None}
    mse = sse / count
    peak = nominal if nominal is not None else (hi - lo if hi > lo else 1.0)
    # An exact reconstruction has no finite PSNR (and JSON has no infinity): None, mse 0.
    psnr = None if mse == 0 else round(float(10 * np.log10(peak ** 2 / mse)), 4)
    return {"psnr_db": psnr, "mse": float(f"{mse:.6g}"), "peak": float(peak),
            "peak_from": "value type" if nominal is not None else "data range"}


__all__ = ["DecompressResult", "check_outputs", "decode_codes", "decompress", "evaluate", "image_file",
           "open_decoder", "restore_image", "source_scale", "to_dtype", "to_pil"]
