"""What compressing bought: bytes per item, against the raw data and against PNG files of
the same images. Deterministic (no timings), so ``report.json`` is reproducible.

PNG sizes are measured on an evenly spaced sample of the items (Pillow, its default
compression level 6), each image saved in its source's value type; data that is not 8- or
16-bit images has no PNG figure.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from aetk.compress.decode import to_pil


def _image_like(shape: list[int], dtype: str) -> bool:
    image = (len(shape) == 3 and shape[0] in (1, 3)) or len(shape) == 2
    return image and dtype in ("uint8", "uint16")


def png_bytes(parts: list, n: int) -> tuple[float | None, int]:
    """(mean PNG bytes per image over an evenly spaced sample of n items, images measured)."""
    from aetk.data.source import evenly_spaced
    from aetk.data.stream import read_range

    total = sum(len(p) for p in parts)
    if n <= 0 or total == 0 or not all(_image_like(list(p.source.input_shape), p.dtype) for p in parts):
        return None, 0
    picks = evenly_spaced(total, n)
    sizes = []
    for p in parts:
        vmax = float(getattr(p.source, "depth_max", np.iinfo(np.dtype(p.dtype)).max))
        for g in picks[(picks >= p.start) & (picks < p.stop)]:
            rows = read_range(p, int(g - p.start), int(g - p.start) + 1)
            if len(rows.x):
                buf = io.BytesIO()
                to_pil(rows.x[0], p.dtype, vmax).save(buf, format="PNG")
                sizes.append(buf.tell())
    return (float(np.mean(sizes)) if sizes else None), len(sizes)


def source_bytes(parts: list) -> int | None:
    """Bytes the source takes on disk: its files, or each image file of a folder."""
    total = 0
    seen = set()
    for p in parts:
        if p.is_images:
            total += sum(os.path.getsize(f) for f in p.source.paths)
            continue
        f = Path(p.source.name)
        if not f.is_file():
            return None
        if f not in seen:
            seen.add(f)
            total += f.stat().st_size
    return total


def size_report(manifest: dict[str, Any], parts: list, png_sample: int) -> dict[str, Any]:
    t = manifest["totals"]
    rows, code_bytes = t["rows"], t["bytes"]
    per_part_rows: dict[str, int] = {}
    for r in manifest["shards"]:
        per_part_rows[r["part"]] = per_part_rows.get(r["part"], 0) + r["rows"]
    raw = sum(per_part_rows.get(p.name, 0) * int(np.prod(p.source.input_shape)) * np.dtype(p.dtype).itemsize
              for p in parts)
    png_mean, png_n = png_bytes(parts, png_sample)
    on_disk = source_bytes(parts)
    rep: dict[str, Any] = {
        "items": t["items"], "rows": rows, "skipped": t["skipped"], "shards": t["shards"],
        "code_bytes": code_bytes,
        "bytes_per_sample": round(code_bytes / rows, 3) if rows else None,
        "raw_bytes_per_sample": round(raw / rows, 3) if rows else None,
        "ratio_vs_raw": round(raw / code_bytes, 3) if code_bytes else None,
        "png_bytes_per_sample": round(png_mean, 3) if png_mean is not None else None,
        "png_sample": png_n,
        "ratio_vs_png": round(png_mean * rows / code_bytes, 3) if png_mean and code_bytes else None,
        "source_bytes_on_disk": on_disk,
        "ratio_vs_source_files": round(on_disk / code_bytes, 3) if on_disk and code_bytes else None,
    }
    return rep


__all__ = ["png_bytes", "size_report", "source_bytes"]
