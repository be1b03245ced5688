"""IDX files, the format of MNIST and Fashion-MNIST, gzipped or raw.

An IDX file is two zero bytes, a type code, the number of dimensions, each dimension as
a big-endian uint32, then the values in row-major big-endian order. Raw files are
memory-mapped; gzipped ones are decompressed into memory (Fashion-MNIST: 47 MB).

The labels of ``train-images-idx3-ubyte[.gz]`` are found next to it in
``train-labels-idx1-ubyte[.gz]``; a folder holding both ``train-*`` and ``t10k-*`` (or
``test-*``) files gives the test split too.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from aetk.data.arrays import array_source, stream_bounds
from aetk.data.source import DataError, Source
from aetk.data.config import DataConfig

# type code -> big-endian dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_VALID = ("an IDX file starts with two zero bytes, a type code (0x08 ubyte, 0x09 byte, "
          "0x0B short, 0x0C int, 0x0D float, 0x0E double) and the number of dimensions")
# train-images-idx3-ubyte, train-images.idx3-ubyte, digits.idx, each optionally .gz
IDX_NAME = re.compile(r"(ubyte|\.idx\d*)(\.gz)?$", re.IGNORECASE)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES or head[3] == 0:
        raise DataError(f"{path} is not an IDX file: it starts with bytes {head[:4].hex(' ') or '(none)'}; "
                        f"{_VALID}")
    ndim = head[3]
    need = 4 + 4 * ndim
    if len(head) < need:
        raise DataError(f"{path} is truncated: its IDX header announces {ndim} dimensions "
                        f"({need} header bytes) but the file holds {len(head)} bytes")
    dims = struct.unpack(f">{ndim}I", head[4:need])
    return np.dtype(IDX_TYPES[head[2]]), tuple(int(d) for d in dims), need


def idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, dimensions) of an IDX file, reading only its first bytes."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as f:
            head = f.read(4 + 4 * 255)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable IDX file: {exc}") from exc
    dtype, dims, _ = _parse_header(head, path)
    return dtype, dims


def read_idx(path: str | Path, stream: bool = False) -> np.ndarray:
    """The array in an IDX file (memory-mapped when raw), with sizes validated. With
    ``stream``, a gzipped file is read front to back instead of decompressed into memory
    (a ForwardArray: a truncated file shows when its end is read)."""
    path = Path(path)
    gz = is_gzip(path)
    if gz and stream:
        return _forward_idx(path)
    if gz:
        try:
            with gzip.open(path, "rb") as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a truncated or corrupt gzip file ({exc}); download or "
                            f"decompress it again") from exc
        size = len(data)
    else:
        with open(path, "rb") as f:
            data = f.read(4 + 4 * 255)  # the header only: the values are memory-mapped
        size = path.stat().st_size
    if size == 0:
        raise DataError(f"no examples found in {path} (the file is empty)")
    dtype, dims, offset = _parse_header(data[:4 + 4 * 255], path)
    if 0 in dims:
        raise DataError(f"no examples found in {path} (its IDX header announces shape {dims})")
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if size < expected:
        raise DataError(f"{path} is truncated: its header announces shape {dims} of {dtype.name} "
                        f"({expected} bytes with the header) but it holds {size} bytes")
    if size > expected:
        raise DataError(f"{path} has {size - expected} bytes after the {dims} {dtype.name} array "
                        f"its header announces; it is not a valid IDX file")
    if gz:
        return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)


def _forward_idx(path: Path):
    from aetk.data.forward import BinaryRows, ForwardArray

    dtype, dims = idx_header(path)
    if 0 in dims:
        raise DataError(f"no examples found in {path} (its IDX header announces shape {dims})")
    offset = 4 + 4 * len(dims)

    def open_rows() -> BinaryRows:
        f = gzip.open(path, "rb")
        f.read(offset)
        return BinaryRows(f, dtype, tuple(dims[1:]), str(path))

    return ForwardArray(open_rows, dims, dtype, str(path))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as an IDX file, gzipped when the name ends in .gz (tests, export)."""
    array = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store {array.dtype} values; use uint8, int8, int16, int32, "
                        f"float32 or float64")
    payload = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + array.astype(IDX_TYPES[code]).tobytes())
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(payload)


def labels_file(images: Path) -> Path | None:
    """The labels file belonging to an images file, if it exists."""
    name = images.name
    if "images" not in name and "idx3" not in name:
        return None
    base = name.replace("images", "labels").replace("idx3", "idx1")
    base = base[:-3] if base.endswith(".gz") else base
    for cand in (images.parent / base, images.parent / (base + ".gz")):
        if cand.is_file():
            return cand
    return None


def find_idx_images(folder: Path) -> tuple[Path | None, Path | None]:
    """(train images, test images) files in a folder."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and IDX_NAME.search(p.name))
    images = [p for p in files if "labels" not in p.name and "idx1" not in p.name]
    train = next((p for p in images if p.name.startswith("train")), None)
    test = next((p for p in images if p.name.startswith(("t10k", "test"))), None)
    if train is None and test is None and len(images) == 1:
        train = images[0]
    return train, test


def is_idx_folder(folder: Path) -> bool:
    return any(p.is_file() and IDX_NAME.search(p.name) for p in folder.iterdir())


def _source(images: Path, cfg: DataConfig, like: Source | None, stream: bool = False) -> Source:
    x = read_idx(images, stream=stream)
    if x.ndim == 1:
        raise DataError(f"{images} holds a 1-D array of {x.shape[0]} values, like a labels file; "
                        f"point data.path at the images file (e.g. train-images-idx3-ubyte.gz)")
    lab = labels_file(images)
    y = None
    if lab is not None:
        y = read_idx(lab)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"labels file {lab} holds shape {y.shape} but images file {images} "
                            f"holds {len(x)} examples; expected ({len(x)},)")
        y = np.asarray(y, dtype=np.int64)
    src = array_source(x, y, str(images), cfg, like, image=x.ndim == 3,
                       value_bounds=stream_bounds(x.dtype) if stream else None)
    src.origin = {"format": "idx", "file": images.name, "gzip": is_gzip(images)}
    return src


def read_idx_data(path: Path, cfg: DataConfig, like: Source | None, stream: bool = False
                  ) -> tuple[Source, Source | None]:
    if path.is_dir():
        train, test = find_idx_images(path)
        if train is None:
            raise DataError(f"no examples found in {path}: no IDX images file such as "
                            f"train-images-idx3-ubyte[.gz] there")
        src = _source(train, cfg, like, stream)
        return src, (_source(test, cfg, like or src, stream) if test is not None and test != train else None)
    return _source(path, cfg, like, stream), None
