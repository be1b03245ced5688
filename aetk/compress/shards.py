"""Shard files: the codes of one fixed range of items, as ``.npy`` (default) or Parquet,
optionally zstd-compressed, and how they are read back and checked.

    shard-00000.npy        (rows, *code_shape) codes, numpy's format 1.0
    shard-00000.npy.zst    the same bytes in one zstd frame
    shard-00000.parquet    columns index (int64, the item's number in the dataset) and
                           code (fixed_size_list<float | halffloat | int8>[code values]);
                           with zstd, Parquet compresses its column chunks itself

Bytes depend only on the codes and the settings (no timestamps), so a rerun writes
byte-identical shards. Which items a shard's rows are is in the manifest's record.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from aetk.artifacts.codes_dir import NAME_PREFIX, is_shard_file, sha256_file, shard_name  # noqa: F401 (re-exported)
from aetk.compress.errors import CompressError, CorruptShardError
from aetk.compress.options import CompressOptions
from aetk.compress.quantize import DTYPES
from aetk.options import flag

CONTAINERS = ("npy", "parquet")
COMPRESSIONS = ("none", "zstd")


def check_container(container: str, compression: str, level: int) -> None:
    if container not in CONTAINERS:
        raise CompressError(f"{flag(CompressOptions, 'shard_format')} {container!r} is not one of {', '.join(CONTAINERS)}")
    if compression not in COMPRESSIONS:
        raise CompressError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if not (isinstance(level, int) and 1 <= level <= 22):
        raise CompressError(f"{flag(CompressOptions, 'zstd_level')} must be an integer from 1 to 22, got {level!r}")
    if container == "parquet":
        _pyarrow()
    if compression == "zstd":
        _zstd()


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CompressError(f"{flag(CompressOptions, 'shard_format')} parquet needs pyarrow: pip install 'aetk[parquet]'") from exc
    return pa, pq


def _zstd():
    try:
        import zstandard
    except ImportError as exc:
        raise CompressError(f"{flag(CompressOptions, 'zstd')} needs the zstandard package: pip install zstandard") from exc
    return zstandard


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_bytes(codes: np.ndarray, index: np.ndarray, container: str, compression: str,
             level: int) -> bytes:
    """A shard's file content. codes: (rows, *code_shape) at their stored precision;
    index: (rows,) int64 item numbers (Parquet stores them, .npy leaves them to the manifest)."""
    if container == "npy":
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(codes), version=(1, 0), allow_pickle=False)
        data = buf.getvalue()
        if compression == "zstd":
            # One thread, content size in the header: the same bytes every time.
            data = _zstd().ZstdCompressor(level=level, write_content_size=True).compress(data)
        return data
    pa, pq = _pyarrow()
    flat = np.ascontiguousarray(codes).reshape(len(codes), -1)
    code = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    table = pa.table({"index": pa.array(np.asarray(index, np.int64)), "code": code})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd" if compression == "zstd" else "none",
                   compression_level=level if compression == "zstd" else None)
    return buf.getvalue()


def from_bytes(data: bytes, name: str, container: str, compression: str, precision: str,
               code_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes at their stored precision, item numbers or None for .npy) of a shard's bytes;
    CorruptShardError when they do not parse as what the manifest says."""
    want = np.dtype(DTYPES[precision])
    try:
        if container == "npy":
            if compression == "zstd":
                data = _zstd().ZstdDecompressor().decompress(data)
            codes = np.load(io.BytesIO(data), allow_pickle=False)
            index = None
        else:
            _, pq = _pyarrow()
            table = pq.read_table(io.BytesIO(data))
            index = table.column("index").to_numpy()
            flat = table.column("code").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            codes = flat.reshape(len(index), *code_shape) if len(index) else \
                np.zeros((0, *code_shape), flat.dtype)
    except CorruptShardError:
        raise
    except Exception as exc:  # numpy, zstd and pyarrow each raise their own kinds
        raise CorruptShardError(f"shard {name} cannot be read as {container}"
                                f"{'+zstd' if compression == 'zstd' else ''}: {exc}") from exc
    if codes.dtype != want or tuple(codes.shape[1:]) != tuple(code_shape):
        raise CorruptShardError(f"shard {name} holds {codes.dtype} codes of shape {codes.shape[1:]}, "
                                f"but the manifest says {want} of {tuple(code_shape)}")
    return codes, index


__all__ = ["COMPRESSIONS", "CONTAINERS", "check_container", "from_bytes", "is_shard_file",
           "sha256_bytes", "sha256_file", "shard_name", "to_bytes"]
