"""Reading a complete codes folder: its manifest, each shard checked against its sha256
before use, codes back as float32 with the item each row belongs to, and ``verify``.

    codes = Codes.open("codes/")
    for record in codes.records:
        z, items = codes.read(record)       # (rows, *code_shape) float32, (rows,) int64
    problems = codes.verify()               # [] when every shard and model file checks out

Opening a folder checks the manifest itself (its checksum, every path inside the folder);
reading a shard checks its sha256 and that every code is finite; ``verify`` also checks
that the model in CODES/model/ is the one the manifest says made the codes (its
weights_sha256), so a folder that mixes one model's codes with another's is caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aetk.artifacts.codes_dir import MODEL_DIR, CodesDir
from aetk.compress.errors import CorruptShardError
from aetk.compress.manifest import load_manifest
from aetk.compress.quantize import dequantize
from aetk.compress.shards import from_bytes, sha256_bytes


def shard_items(record: dict[str, Any]) -> np.ndarray:
    """The items (numbers in the whole dataset) a shard's rows hold, in row order."""
    skipped = {int(s[0]) for s in record["skipped"]}
    items = np.array([i for i in range(record["start"], record["stop"]) if i not in skipped], np.int64) \
        if skipped else np.arange(record["start"], record["stop"], dtype=np.int64)
    return items


@dataclass
class Codes:
    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path) -> Codes:
        folder = Path(folder)
        return cls(folder, load_manifest(folder))

    # -- what the manifest says -------------------------------------------------------------
    @property
    def job(self) -> dict[str, Any]:
        return self.manifest["job"]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.manifest["shards"]

    @property
    def code_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.manifest["code_shape"])

    @property
    def precision(self) -> str:
        return self.job["codes"]["precision"]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return self.job["source"]["parts"]

    @property
    def model_dir(self) -> Path:
        return CodesDir(self.folder).model_dir

    def part_of(self, record: dict[str, Any]) -> dict[str, Any]:
        return next(p for p in self.parts if p["name"] == record["part"])

    # -- shards -----------------------------------------------------------------------------
    def read_bytes(self, record: dict[str, Any]) -> bytes:
        """A shard's bytes, after checking them against the manifest (CorruptShardError)."""
        path = self.folder / record["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptShardError(f"shard {path} is missing", [f"{record['file']}: is missing"]) from None
        problem = _check(record, data)
        if problem:
            raise CorruptShardError(f"shard {path} {problem}; rerun `aetk compress` with the same "
                                    f"arguments to rewrite it", [f"{record['file']}: {problem}"])
        return data

    def read(self, record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(codes as float32, the items of its rows) of one shard, checked first."""
        data = self.read_bytes(record)
        c = self.job["codes"]
        q, index = from_bytes(data, record["file"], c["shard_format"], c["compression"],
                              self.precision, self.code_shape)
        items = shard_items(record)
        if len(q) != record["rows"] or (index is not None and not np.array_equal(index, items)):
            raise CorruptShardError(f"shard {record['file']} holds {len(q)} rows but its record "
                                    f"says {record['rows']}", [f"{record['file']}: holds {len(q)} rows, its record says {record['rows']}"])
        z = dequantize(q, self.precision, record.get("quantization"))
        bad = ~np.isfinite(z.reshape(len(z), -1)).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise CorruptShardError(f"shard {record['file']} holds NaN or infinite codes in {len(rows)} "
                                    f"row(s) (items {items[rows[:5]].tolist()}); they would decode to "
                                    f"garbage", [f"{record['file']}: holds NaN or infinite codes in {len(rows)} row(s)"])
        return z, items

    def verify(self, on_shard: Any = None) -> list[str]:
        """Every problem with the shards (bytes, parsing, finite codes) and the model files
        (bytes, weights), as 'file: what' lines; `on_shard()` is called after each shard."""
        problems = []
        for record in self.records:
            try:
                self.read(record)
            except CorruptShardError as exc:
                problems.append(exc.problems[0] if exc.problems else f"{record['file']}: {exc}")
            if on_shard:
                on_shard()
        return problems + self.verify_model()

    def check_model(self) -> None:
        bad = self.verify_model()
        if bad:
            raise CorruptShardError(f"the model in {self.model_dir} does not match the manifest: "
                                    f"{'; '.join(bad)}", bad)

    def verify_model(self) -> list[str]:
        """Problems with CODES/model/: each file against its sha256, then the graphs' own
        weights_sha256 against the one the codes were made with."""
        out = CodesDir(self.folder).verify_model_files(self.manifest)
        if not out:
            out += self._weights_problems()
        return out

    def _weights_problems(self) -> list[str]:
        from aetk.runtime import load_export
        from aetk.runtime.errors import RuntimeModelError

        want = self.job["model"]["weights_sha256"]
        try:
            have = load_export(self.model_dir, device="cpu", batch_size=None).metadata.weights_sha256
        except (RuntimeModelError, ValueError, OSError) as exc:
            return [f"{MODEL_DIR}: cannot be loaded ({exc})"]
        if have != want:
            return [f"{MODEL_DIR}: its weights_sha256 is {have[:12]}..., but the manifest says the codes "
                    f"were made by {str(want)[:12]}...; these codes and this model do not belong together"]
        return []


def _check(record: dict[str, Any], data: bytes) -> str:
    """Why a shard's bytes do not match its record ('' when they do)."""
    if len(data) != record["bytes"]:
        return (f"is {len(data)} bytes but was written with {record['bytes']} "
                f"({'truncated' if len(data) < record['bytes'] else 'grown'})")
    if sha256_bytes(data) != record["sha256"]:
        return "does not match its sha256 in the manifest (changed or damaged)"
    return ""


def verify(folder: str | Path) -> list[str]:
    """Problems with a codes folder ([] when it checks out); a missing or incomplete
    manifest raises (IncompleteCodesError)."""
    return Codes.open(folder).verify()


__all__ = ["Codes", "shard_items", "verify"]
