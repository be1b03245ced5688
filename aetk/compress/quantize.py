"""Code precision: float32 as encoded, float16, or int8 with a per-dimension affine map.

int8 codes are quantized per shard and per code dimension d from the shard's own range,
so nothing is clipped and no calibration pass is needed:

    scale[d]  = (max_d - min_d) / 255          (1 when the dimension is constant)
    offset[d] = min_d + 128 * scale[d]
    q = clip(round((z - offset) / scale), -128, 127)   as int8
    z ~= q * scale + offset                             (error <= scale / 2)

scale and offset are float32, stored in the manifest's shard record (JSON numbers that
round-trip exactly), so a shard reads back the same on any machine.
"""

from __future__ import annotations

import numpy as np

from aetk.compress.errors import CompressError
from aetk.compress.options import CompressOptions
from aetk.options import flag

PRECISIONS = ("float32", "float16", "int8")
DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise CompressError(f"{flag(CompressOptions, 'precision')} {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def quantize(z: np.ndarray, precision: str) -> tuple[np.ndarray, dict | None]:
    """(codes stored at `precision`, the int8 parameters {"scale", "offset"} or None).
    z: (rows, *code_shape) float32; int8 parameters are per flattened code value."""
    z = np.asarray(z, dtype=np.float32)
    if precision == "float32":
        return z, None
    if precision == "float16":
        with np.errstate(over="ignore"):  # reported below, with the value
            q = z.astype(np.float16)
        if not np.all(np.isfinite(q)):
            big = float(np.abs(z).max())
            raise CompressError(f"codes reach {big:.3g}, beyond float16's range (65504); use "
                                f"{flag(CompressOptions, 'precision')} float32 or int8")
        return q, None
    flat = z.reshape(len(z), -1)
    if len(flat):
        lo, hi = flat.min(axis=0), flat.max(axis=0)
    else:
        lo = hi = np.zeros(flat.shape[1], np.float32)
    scale = ((hi.astype(np.float64) - lo) / 255.0).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    offset = (lo + np.float32(128.0) * scale).astype(np.float32)
    q = np.clip(np.rint((flat - offset) / scale), -128, 127).astype(np.int8)
    params = {"scale": [float(v) for v in scale], "offset": [float(v) for v in offset]}
    return q.reshape(z.shape), params


def dequantize(q: np.ndarray, precision: str, params: dict | None) -> np.ndarray:
    """Stored codes -> float32 codes."""
    if precision != "int8":
        return np.asarray(q, dtype=np.float32)
    if params is None:
        raise CompressError("int8 codes need their scale and offset, and the shard record has none")
    scale = np.asarray(params["scale"], np.float32)
    offset = np.asarray(params["offset"], np.float32)
    flat = np.asarray(q).reshape(len(q), -1).astype(np.float32)
    return (flat * scale + offset).reshape(q.shape)


__all__ = ["DTYPES", "PRECISIONS", "check_precision", "dequantize", "quantize"]
