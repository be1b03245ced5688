"""Encoding shards: read items, encode them with ONNX Runtime, write each shard and its
record. The local engine runs one ``ShardEncoder`` over every shard to do; the Ray engine
runs one per actor, a shard per call, so both write the same bytes.

Three stages overlap (aetk.pipeline: bounded, so memory stays flat):

    reader thread   read + decode + normalize batches of items  --(prefetch batches)-->
    this thread     encode each batch with ONNX Runtime          --(2 shards)-->
    writer thread   quantize, serialize, compress, sha256, write the shard, then its record

Decoding images and inflating gzip release the GIL, as does ONNX Runtime, so the stages
really run side by side. Batches never cross a shard boundary: a shard's codes depend only
on its own items, whichever run or worker encodes it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from aetk.atomic import atomic_write_bytes
from aetk.compress.manifest import Journal, Shard
from aetk.compress.options import CompressOptions
from aetk.compress.quantize import quantize
from aetk.compress.shards import sha256_bytes, to_bytes
from aetk.pipeline import Pipeline

# Seconds to sleep after each shard is written: lets tests interrupt a run part-way.
SLOW_ENV = "AETK_COMPRESS_SHARD_DELAY"


@dataclass(frozen=True)
class Settings:
    """What a worker needs to encode shards: where things are, and the job's options whole
    (the Ray engine ships this object to its actors)."""

    data: str
    data_config: dict[str, Any]
    model_dir: str
    out: str
    code_shape: list[int]
    options: CompressOptions
    # Image folders: raw values (0..the folder's depth) times this are the model's raw units
    # (e.g. 255/65535 for 16-bit images into a model trained on 8-bit ones).
    input_scale: float = 1.0
    prefetch: int = 4  # batches read ahead


class ShardEncoder:
    """Holds the opened data and one ONNX Runtime session; ``run(shards)`` -> records."""

    def __init__(self, settings: Settings, parts: list | None = None, model: Any = None):
        from aetk.data import DataConfig
        from aetk.data.stream import open_parts
        from aetk.runtime import load_export

        self.s = settings
        self.out = Path(settings.out)
        self.parts = parts if parts is not None else \
            open_parts(settings.data, DataConfig(**settings.data_config))[0]
        self.model = model if model is not None else load_export(
            settings.model_dir, device=settings.options.device, batch_size=None, threads=settings.options.threads)
        self.journal = Journal(self.out)
        self.delay = float(os.environ.get(SLOW_ENV, "0") or 0)

    # -- the three stages ----------------------------------------------------------------------
    def _batches(self, sh: Shard) -> list[tuple[Shard, int, int]]:
        """The batches of one shard: (shard, start, stop), never across its boundary."""
        bs = self.s.options.batch_size
        return [(sh, a, min(a + bs, sh.stop)) for a in range(sh.start, sh.stop, bs)]

    def _read(self, batch: tuple[Shard, int, int]) -> tuple[np.ndarray, np.ndarray, list, int]:
        """Read, decode and normalize one batch (in the reader thread)."""
        from aetk.data.stream import read_range

        sh, a, b = batch
        part = self.parts[sh.part]
        rows = read_range(part, a, b)
        x = rows.x
        if part.is_images and self.s.input_scale != 1.0:  # the folder's depth -> the model's
            x = x * np.float32(self.s.input_scale)
        x = self.model.preprocess(x) if len(x) else x
        return np.ascontiguousarray(x, dtype=np.float32), rows.index, rows.skipped, b - a

    def write(self, sh: Shard, codes: list[np.ndarray], index: list[np.ndarray],
              skipped: list[tuple[int, str]]) -> dict[str, Any]:
        """Quantize, serialize and write one shard, then its journal record."""
        part = self.parts[sh.part]
        shape = tuple(self.s.code_shape)
        z = np.concatenate(codes) if codes else np.zeros((0, *shape), np.float32)
        local = np.concatenate(index) if index else np.zeros(0, np.int64)
        bad = ~np.isfinite(z.reshape(len(z), -1)).all(axis=1)
        if bad.any():  # a code that is NaN or infinite decodes to garbage: no code, say why
            skipped = sorted([*skipped, *((int(i), "the encoder gave NaN or infinite codes for it")
                                          for i in local[bad])])
            z, local = z[~bad], local[~bad]
        o = self.s.options
        q, params = quantize(z, o.precision)
        data = to_bytes(q, part.start + local, o.shard_format, o.compression, o.zstd_level)
        atomic_write_bytes(self.out / sh.file, data)
        record: dict[str, Any] = {
            "index": sh.index, "file": sh.file, "part": part.name,
            "start": part.start + sh.start, "stop": part.start + sh.stop,
            "rows": int(len(local)), "bytes": len(data), "sha256": sha256_bytes(data),
            "skipped": [[part.start + i, part.ident(i), why] for i, why in skipped],
        }
        if part.is_images:
            record["ids"] = [part.ident(int(i)) for i in local]
            layouts = [part.item_layout(int(i)) for i in local]
            if all(x is not None for x in layouts):
                record["layout"] = layouts  # per row: [H, W, mode] of the file it came from
        if params is not None:
            record["quantization"] = params
        self.journal.add(record)
        if self.delay:
            time.sleep(self.delay)
        return record

    def run(self, shards: Iterable[Shard], on_items: Callable[[int], None] | None = None
            ) -> list[dict[str, Any]]:
        """Encode and write `shards` (in order); returns their records."""
        shards = list(shards)
        records: list[dict[str, Any]] = []
        with Pipeline(ahead=self.s.prefetch, behind=2, name="aetk-compress") as pipe:
            reads = pipe.read([b for sh in shards for b in self._batches(sh)], self._read)
            for sh in shards:
                codes: list[np.ndarray] = []
                index: list[np.ndarray] = []
                skipped: list[tuple[int, str]] = []
                for _ in self._batches(sh):
                    _, batch = next(reads)
                    x, idx, skip, n = batch.result()
                    if len(x):
                        codes.append(self.model.encode(x))
                        index.append(idx)
                    skipped.extend(skip)
                    if on_items:
                        on_items(n)
                pipe.write(lambda *shard: records.append(self.write(*shard)), sh, codes, index, skipped)
        return records


__all__ = ["SLOW_ENV", "Settings", "ShardEncoder"]
