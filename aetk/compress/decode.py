"""``aetk decompress``: codes back to data, in the sources' own formats and layout, and the
reconstruction PSNR that ``aetk compress --eval`` reports.

Every shard is checked against its sha256 before anything is written. Then, part by part,
codes are decoded in batches and written out as the source was, in its value type
(integers rounded and clipped to their range):

    image folder      OUT/<each image's path relative to the folder>, same file type
    IDX               OUT/<file name>, gzipped when the source was
    .npy / .npz       OUT/<file name> (an .npz keeps its member names)
    CSV               OUT/<file name> with the feature columns (the label column is not stored)
    built-ins, or --arrays    OUT/<part>.npy ("data", or "train" and "test")

Items that were skipped when compressing have no codes, so they are absent here too
(array outputs hold one row per code, in order; the manifest lists the skipped items).
Each output file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from aetk.atomic import atomic_open, atomic_write_bytes
from aetk.compress.codes import Codes
from aetk.compress.errors import CompressError, CorruptShardError

IMAGE_SAVE = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"lossless": True}}


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


# -- writers: one per output format --------------------------------------------------------------
class _Writer:
    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _npy_header(f, dtype: str, shape: tuple[int, ...]) -> None:
    """The .npy header of an array whose rows are then written raw, block by block."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(f, header)


class _NpyWriter(_Writer):
    """An .npy file written row block by row block (the row count is known up front)."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, dtype: str, shape: tuple[int, ...]):
        self.f = stack.enter_context(atomic_open(path, "wb"))
        _npy_header(self.f, dtype, shape)
        self.dtype = dtype

    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(to_dtype(x, self.dtype)).tobytes())


class _NpzMember(_Writer):
    def __init__(self, zf: zipfile.ZipFile, key: str, dtype: str, shape: tuple[int, ...]):
        self.f = zf.open(f"{key}.npy", "w", force_zip64=True)
        _npy_header(self.f, dtype, shape)
        self.dtype = dtype

    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(to_dtype(x, self.dtype)).tobytes())

    def close(self) -> None:
        self.f.close()


class _IdxWriter(_Writer):
    def __init__(self, stack: contextlib.ExitStack, path: Path, dtype: str, shape: tuple[int, ...],
                 gz: bool):
        from aetk.data.idx import IDX_TYPES

        raw = stack.enter_context(atomic_open(path, "wb"))
        # mtime=0: the same codes give the same bytes
        self.f = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)) if gz else raw
        codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
        self.code = codes[np.dtype(dtype).newbyteorder("=")]
        self.big = IDX_TYPES[self.code]
        self.dtype = dtype
        self.f.write(bytes([0, 0, self.code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape))

    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        self.f.write(to_dtype(x, self.dtype).astype(self.big).tobytes())


class _CsvWriter(_Writer):
    def __init__(self, stack: contextlib.ExitStack, path: Path, columns: list[str], delimiter: str,
                 dtype: str):
        self.f = stack.enter_context(atomic_open(path, "w"))
        self.delimiter = delimiter
        self.fmt = "%.9g" if np.dtype(dtype).itemsize <= 4 else "%.17g"
        self.f.write(delimiter.join(columns) + "\n")

    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        np.savetxt(self.f, x.reshape(len(x), -1), fmt=self.fmt, delimiter=self.delimiter)


class _ImageWriter(_Writer):
    def __init__(self, out: Path, ids: Iterator[str], dtype: str, value_max: float):
        self.out, self.ids, self.dtype, self.value_max = out, ids, dtype, value_max

    def write(self, x: np.ndarray, items: np.ndarray) -> None:
        import io

        for a in x:
            rel = next(self.ids)
            path = self.out / rel
            if self.out.resolve() not in path.resolve().parents:
                raise CompressError(f"the manifest names image {rel!r}, which lies outside {self.out}")
            img = to_pil(a, self.dtype, self.value_max)
            buf = io.BytesIO()
            img.save(buf, format=_pil_format(path.suffix), **IMAGE_SAVE.get(path.suffix.lower(), {}))
            atomic_write_bytes(path, buf.getvalue())


def _pil_format(suffix: str) -> str:
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(suffix.lower())
    if fmt is None:
        raise CompressError(f"cannot write images of type {suffix!r}")
    return fmt


def to_pil(a: np.ndarray, dtype: str, value_max: float | None = None):
    """A (C, H, W) or (H, W) raw image as a Pillow image of the source's depth."""
    from PIL import Image

    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    v = to_dtype(a, dtype, value_max)
    if a.ndim == 3:  # colour: Pillow keeps 8 bits per channel
        if v.dtype != np.uint8:
            v = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(v.transpose(1, 2, 0)), "RGB")
    if v.dtype == np.uint16:
        return Image.fromarray(v)  # mode I;16
    return Image.fromarray(v.astype(np.uint8), "L")


# -- decompress ---------------------------------------------------------------------------------------
@dataclass
class DecompressResult:
    out: Path
    files: list[str] = field(default_factory=list)
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def _layout(codes: Codes, out: Path, as_arrays: bool) -> list[tuple[dict, str, Path]]:
    """(part, kind of writer, output path) per part."""
    plan = []
    for part in codes.parts:
        origin = part["origin"]
        fmt = "arrays" if as_arrays else origin.get("format", "arrays")
        if fmt == "images":
            plan.append((part, "images", out))
        elif fmt in ("idx", "npy", "npz", "csv"):
            plan.append((part, fmt, out / origin["file"]))
        else:
            plan.append((part, "arrays", out / f"{part['name']}.npy"))
    return plan


def decompress(folder: str | Path, out: str | Path, *, as_arrays: bool = False, device: str = "auto",
               model: str | Path | None = None, batch_size: int = 512,
               progress: Callable[[int], None] | None = None) -> DecompressResult:
    """Decode a codes folder into `out` (see the module doc). Checks every shard first."""
    codes = Codes.open(folder)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompressError(f"-o {out} exists and is not a folder")
    problems = codes.verify()
    if problems:
        raise CorruptShardError(f"{len(problems)} problem(s) in {codes.folder}, nothing decoded: "
                                + "; ".join(problems[:5]), problems)
    decoder = open_decoder(codes, device, model)
    out.mkdir(parents=True, exist_ok=True)
    result = DecompressResult(out)
    by_part: dict[str, list[dict]] = {}
    for r in codes.records:
        by_part.setdefault(r["part"], []).append(r)
    layout = _layout(codes, out, as_arrays)
    if any(kind == "csv" for _, kind, _ in layout) and codes.job["preprocessing"]["reader"].get("label_column"):
        result.notes.append("CSV outputs hold the feature columns only: labels are not stored with codes")
    with contextlib.ExitStack() as stack:
        zips: dict[Path, zipfile.ZipFile] = {}
        for part, kind, path in layout:
            records = by_part.get(part["name"], [])
            rows = sum(r["rows"] for r in records)
            shape = (rows, *part["shape"]) if kind != "idx" else (rows, *_idx_shape(part))
            dtype = part["dtype"]
            if kind == "images":
                ids = (i for r in records for i in r["ids"])
                writer: _Writer = _ImageWriter(out, ids, dtype, part.get("value_max", 255.0))
            elif kind == "idx":
                writer = _IdxWriter(stack, path, dtype, shape, bool(part["origin"].get("gzip")))
            elif kind == "npz":
                if path not in zips:
                    raw = stack.enter_context(atomic_open(path, "wb"))
                    zips[path] = stack.enter_context(zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED))
                writer = _NpzMember(zips[path], part["origin"]["key"], dtype, shape)
            elif kind == "csv":
                writer = _CsvWriter(stack, path, part["origin"]["columns"], part["origin"]["delimiter"], dtype)
            else:
                writer = _NpyWriter(stack, path, dtype, shape)
            for r in records:
                z, items = codes.read(r)
                x = decode_codes(decoder, z, batch_size)
                if kind == "idx":
                    x = x.reshape(len(x), *shape[1:])
                writer.write(x, items)
                result.rows += len(x)
                if progress:
                    progress(r["stop"] - r["start"])
            writer.close()
            label = f"{rows} images in {out}" if kind == "images" else str(path.relative_to(out))
            if label not in result.files:
                result.files.append(label)
    return result


def _idx_shape(part: dict) -> tuple[int, ...]:
    """IDX images are (N, H, W) for one channel: the source's own layout."""
    shape = tuple(part["shape"])
    return shape[1:] if len(shape) == 3 and shape[0] == 1 else shape


# -- reconstruction quality -------------------------------------------------------------------------
def evaluate(codes: Codes, parts: list, decoder: Any, batch_size: int = 512,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """PSNR of what decompress writes (reconstructions in the source's value type) against
    the source items, over every row. The peak is the value type's nominal maximum for
    integer data, else the range of the data seen."""
    from aetk.data.stream import read_range

    by_name = {p.name: p for p in parts}
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
        y = to_dtype(decode_codes(decoder, z, batch_size), meta["dtype"], meta.get("value_max"))
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


__all__ = ["DecompressResult", "decode_codes", "decompress", "evaluate", "open_decoder", "to_dtype", "to_pil"]
