"""One pass in order over a dataset of any size, with memory that does not grow with it:
the training readers opened with ``stream=True``, read in ranges of items.

    parts, description = open_parts("fashion-mnist", DataConfig())
    for part in parts:                       # train, then the source's own test split
        rows = read_range(part, 0, 1024)     # raw float32 values of items 0..1023
        rows.x, rows.index, rows.skipped

Items are numbered per part from 0, in the reader's order; ``Part.start`` places a part in
the whole dataset. An item that cannot be read (an image that no longer decodes, a CSV row
with a bad cell, values that are NaN or infinite) is skipped and reported with the reason,
never fatal: one bad file must not stop a pass over millions. Needs numpy only (no torch).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aetk.data.config import DataConfig
from aetk.data.loading import check_config, read_source
from aetk.data.source import DataError, Source


FAULT_AROUND = 2 << 20  # bytes before a range that _release also hands back


@dataclass
class Part:
    """One array or folder of a dataset: "data", or "train" and "test"."""

    name: str
    source: Source
    start: int  # index of the part's first item in the whole dataset

    def __len__(self) -> int:
        return len(self.source)

    @property
    def stop(self) -> int:
        return self.start + len(self)

    @property
    def is_images(self) -> bool:
        return hasattr(self.source, "paths")

    @property
    def origin(self) -> dict[str, Any]:
        return dict(self.source.origin or {"format": "arrays"})

    @property
    def dtype(self) -> str:
        """The raw values' type, in which `aetk decompress` writes them back."""
        if self.is_images:
            return "uint16" if self.source.depth_max > 255 else "uint8"
        x = getattr(getattr(self.source, "rows", self.source), "x", None)
        return np.dtype(x.dtype).name if x is not None else "float32"

    def ident(self, i: int) -> str | int:
        """What names item i in its source: a path relative to the folder, else the row."""
        if self.is_images:
            return Path(os.path.relpath(self.source.paths[i], self.source.name)).as_posix()
        return int(i)

    def item_layout(self, i: int) -> list | None:
        """Image folders: item i's own [H, W, mode] in its file (mode "L", "I;16", "RGB" or "RGB;16":
        how `aetk decompress` writes it back); None for other sources."""
        layouts = getattr(self.source, "layouts", None) if self.is_images else None
        if not layouts:
            return None
        h, w, mode = layouts[i]
        from aetk.data.images import GRAY_MODES, SIXTEEN_BIT_COLOUR, SIXTEEN_BIT_MODES

        if mode == SIXTEEN_BIT_COLOUR:
            return [int(h), int(w), SIXTEEN_BIT_COLOUR]
        return [int(h), int(w), "I;16" if mode in SIXTEEN_BIT_MODES else "L" if mode in GRAY_MODES else "RGB"]

    def describe(self) -> dict[str, Any]:
        """The facts about this part that a manifest records: enough for `aetk decompress`
        to write the items back in the source's own layout."""
        d = {"name": self.name, "start": self.start, "stop": self.stop, "items": len(self),
             "source": self.source.name, "origin": self.origin, "dtype": self.dtype,
             "shape": [int(s) for s in self.source.input_shape]}
        if self.is_images:
            d["value_max"] = float(self.source.depth_max)
        src = self.source
        rows = getattr(src, "rows", None)
        if rows is not None and hasattr(src, "length"):  # windows over a (rows, F) series
            d["windows"] = {"length": int(src.length), "rows": int(len(rows)),
                            "features": int(rows.example_shape[0])}
        elif hasattr(src, "example_shape"):
            d["item_shape"] = [int(s) for s in src.example_shape]  # before any resize or channel change
            d["file_shape"] = [int(s) for s in getattr(src.x, "shape", (0, *src.example_shape))[1:]]
        d["skipped_at_open"] = [[str(f), why] for f, why in self.source.skipped]
        return d


@dataclass
class Rows:
    x: np.ndarray  # (k, *input_shape) float32 raw values of the items read
    index: np.ndarray  # (k,) int64: their item numbers in the part
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (item number, why)


def open_parts(path: str, cfg: DataConfig) -> tuple[list[Part], str]:
    """The parts of the dataset at `path` (the source's own test split, if any, is a second
    part) and a description of where it came from."""
    cfg = check_config(cfg)
    train, test, description = read_source(path, cfg, stream=True)
    if test is None:
        return [Part("data", train, 0)], description
    if tuple(test.input_shape) != tuple(train.input_shape):
        raise DataError(f"the test examples in {test.name} have shape {test.input_shape} but the "
                        f"training examples in {train.name} have {train.input_shape}")
    return [Part("train", train, 0), Part("test", test, len(train))], description


def read_range(part: Part, start: int, stop: int) -> Rows:
    """Items start..stop-1 of a part, read in order; unreadable ones are skipped."""
    src = part.source
    if part.is_images:
        xs, kept, skipped = [], [], []
        for i in range(start, stop):
            try:
                xs.append(src.get(i))
                kept.append(i)
            except DataError as exc:
                skipped.append((i, str(exc)))
        x = np.stack(xs) if xs else np.zeros((0, *src.input_shape), np.float32)
        return Rows(x, np.asarray(kept, np.int64), skipped)
    idx = np.arange(start, stop, dtype=np.int64)
    x = np.asarray(src.get_many(idx), dtype=np.float32)
    _release(getattr(getattr(src, "rows", src), "x", None), start, stop)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not bad.any():
        return Rows(x, idx)
    problems = getattr(getattr(src, "x", None), "problems", {})
    skipped = [(int(i), problems.pop(int(i), f"{src.name}: example {int(i)} holds a NaN or "
                                              f"infinite value")) for i in idx[bad]]
    return Rows(np.ascontiguousarray(x[~bad]), idx[~bad], skipped)


def _release(x: Any, start: int, stop: int) -> None:
    """Hand back the pages of rows start..stop-1 of a memory-mapped array.

    Pages of a file mapping that were read stay in the process's resident set until the
    mapping goes away, so one pass over a large .npy would grow the memory in use to the
    file's size. MADV_DONTNEED drops them from this process (the page cache keeps them).
    The range starts 2 MiB early: a page fault also maps its cached neighbours (the
    kernel's fault-around window, 64 KiB by default), which reaches back into rows
    already handed back.
    """
    mm = getattr(x, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED") or stop <= start:
        return
    try:
        base = np.frombuffer(mm, np.uint8).ctypes.data  # where the mapping begins
        first = max(0, x.ctypes.data + start * x.strides[0] - base - FAULT_AROUND)
        last = min(len(mm), x.ctypes.data + stop * x.strides[0] - base)
        first -= first % mmap.PAGESIZE
        if 0 <= first < last:
            mm.madvise(mmap.MADV_DONTNEED, first, last - first)
    except (ValueError, OSError):  # a closed or unusual mapping: keep the pages
        pass


__all__ = ["Part", "Rows", "open_parts", "read_range"]
