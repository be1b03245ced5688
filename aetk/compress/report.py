"""What compressing bought: bytes per item, against the raw data and against PNG files of
the same images. Deterministic (no timings), so ``report.json`` is reproducible.

PNG sizes are measured on an evenly spaced sample of the items (Pillow, its default
compression level 6), each image saved in its source's value type; data that is not 8- or
16-bit images has no PNG figure.

All ratios compare like with like: raw and PNG bytes are of the items as the model saw
them (after --image-size and --channels). The ratio against the source files is given
only when the model saw the files at their own size; when images were resized before
encoding it is left out, with the reason (``ratio_vs_source_files_why_not``).
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


def source_bytes(parts: list, manifest: dict[str, Any] | None = None) -> int | None:
    """Bytes the source takes on disk: its files, or the image files of a folder that have
    a code (an unreadable image has none, so its bytes are not counted)."""
    coded = None
    if manifest is not None:
        coded = {(r["part"], i) for r in manifest["shards"] for i in r.get("ids") or []}
    total = 0
    seen = set()
    for p in parts:
        if p.is_images:
            for k, f in enumerate(p.source.paths):
                if coded is None or (p.name, p.ident(k)) in coded:
                    total += os.path.getsize(f)
            continue
        f = Path(p.source.name)
        if not f.is_file():
            return None
        if f not in seen:
            seen.add(f)
            total += f.stat().st_size
    return total


def resampled(manifest: dict[str, Any]) -> str | None:
    """Why the codes cannot stand for the source files, when they cannot: the images were
    resized (or converted) to the model's input before encoding. None when every image was
    encoded at its own size and channels."""
    shape = manifest["job"]["preprocessing"]["input_shape"]
    layouts = [lay for r in manifest["shards"] for lay in r.get("layout") or []]
    if not layouts or len(shape) != 3:
        return None
    other = [lay for lay in layouts if (lay[0], lay[1]) != (shape[1], shape[2])]
    if not other:
        return None
    h = float(np.mean([lay[0] for lay in layouts]))
    w = float(np.mean([lay[1] for lay in layouts]))
    return (f"{len(other)} of {len(layouts)} images were resized to the model's {shape[1]}x{shape[2]} "
            f"(from {h:.0f}x{w:.0f} on average, HxW) before encoding, so the codes describe those small "
            f"images, not the files: compare against raw or PNG at the model's size instead")


def size_report(manifest: dict[str, Any], parts: list, png_sample: int) -> dict[str, Any]:
    t = manifest["totals"]
    rows, code_bytes = t["rows"], t["bytes"]
    per_part_rows: dict[str, int] = {}
    for r in manifest["shards"]:
        per_part_rows[r["part"]] = per_part_rows.get(r["part"], 0) + r["rows"]
    raw = sum(per_part_rows.get(p.name, 0) * int(np.prod(p.source.input_shape)) * np.dtype(p.dtype).itemsize
              for p in parts)
    png_mean, png_n = png_bytes(parts, png_sample)
    on_disk = source_bytes(parts, manifest)
    why_not = resampled(manifest)
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
        # Only when the codes stand for the files themselves (see `resampled`): the ratio of
        # full-size photos to codes of 32x32 thumbnails (8e4x) measured the resizing, not the codes.
        "ratio_vs_source_files": round(on_disk / code_bytes, 3) if on_disk and code_bytes and not why_not
        else None,
    }
    if why_not:
        rep["ratio_vs_source_files_why_not"] = why_not
    return rep


__all__ = ["png_bytes", "resampled", "size_report", "source_bytes"]
