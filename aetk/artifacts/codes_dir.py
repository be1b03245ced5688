"""An ``aetk compress`` codes folder: its file names, its manifest (with ``manifest_sha256``,
the sha256 of the manifest's own canonical JSON) and the byte-level check of its files.

    CODES/manifest.json        written once every shard is: the folder is complete
    CODES/report.json          sizes, ratios (and PSNR with --eval)
    CODES/model/               encoder.onnx, decoder.onnx (and their .data), run.json when the
                               model came from a run folder: what decodes the codes
    CODES/shard-00000.npy ...  the codes (.npy, .npy.zst or .parquet)
    CODES/.progress/           while a run is in flight: job.json, one <shard>.json per shard

What the manifest means (the job, the shard plan, which paths it may name) is
``aetk.compress.manifest``'s; reading the codes is ``aetk.compress.codes``'. Standard library
only (no numpy, no torch).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from aetk.artifacts.errors import CompressError, IncompleteCodesError, UnsafeManifestError
from aetk.artifacts.export_dir import ExportDir, data_file_name, graph_file_name
from aetk.artifacts.folder import SavedFolder

MANIFEST = "manifest.json"
REPORT = "report.json"
PROGRESS = ".progress"
JOB_FILE = "job.json"
MODEL_DIR = "model"
RUN_STAMP = "run.json"  # in CODES/model/ when the model came from a run folder
MODEL_GRAPHS = ("encoder", "decoder")  # what decompress and neighbors need
NAME_PREFIX = "shard-"
SHARD_SUFFIXES = (".npy", ".npy.zst", ".parquet")
FORMAT = "aetk-codes"
FORMAT_VERSION = 2  # 2: manifest_sha256, paths checked, each item's layout recorded
CHECKSUM = "manifest_sha256"


def shard_name(k: int, container: str, compression: str) -> str:
    suffix = ".npy.zst" if (container, compression) == ("npy", "zstd") else f".{container}"
    return f"{NAME_PREFIX}{k:05d}{suffix}"


def is_shard_file(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(SHARD_SUFFIXES)


def model_graph_files() -> tuple[str, ...]:
    """encoder.onnx, decoder.onnx: the graphs copied into CODES/model/."""
    return tuple(graph_file_name(g) for g in MODEL_GRAPHS)


def own_model_files() -> set[str]:
    """The only names compress writes in CODES/model/: the graphs, their weight side files
    and the run stamp. Anything else there is the user's and is never touched."""
    return {*model_graph_files(), *(data_file_name(g) for g in model_graph_files()), RUN_STAMP}


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, so equal content means equal bytes."""
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own checksum."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM}
    return hashlib.sha256(dumps(body).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path, what: str) -> Any:
    try:
        # parse_constant: NaN and Infinity are not JSON, and aetk never writes them
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompressError(f"{what} {path} is unreadable or not valid JSON ({exc}); it was damaged "
                            f"after being written atomically") from exc


def unsafe(path: Path, what: str) -> UnsafeManifestError:
    return UnsafeManifestError(f"{path} {what}; refusing to use it (it was edited or made by something "
                               f"other than `aetk compress`; recompress from the data, with --overwrite "
                               f"to remake this folder)")


class CodesDir(SavedFolder):
    """The files of one codes folder (nothing is read until asked)."""

    # -- paths ------------------------------------------------------------------------------
    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST

    @property
    def report_file(self) -> Path:
        return self.path / REPORT

    @property
    def progress_dir(self) -> Path:
        return self.path / PROGRESS

    @property
    def job_file(self) -> Path:
        return self.progress_dir / JOB_FILE

    def record_file(self, shard_file: str) -> Path:
        return self.progress_dir / (shard_file + ".json")

    def record_files(self) -> list[Path]:
        return sorted(self.progress_dir.glob(f"{NAME_PREFIX}*.json"))

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def model(self) -> ExportDir:
        """CODES/model/ as an export folder (its encoder and decoder)."""
        return ExportDir(self.model_dir)

    @property
    def run_stamp(self) -> Path:
        return self.model_dir / RUN_STAMP

    def shard_files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_file() and is_shard_file(p.name)) \
            if self.path.is_dir() else []

    # -- what is there --------------------------------------------------------------------------
    def is_complete(self) -> bool:
        return self.manifest_file.is_file()

    def in_flight(self) -> bool:
        return self.job_file.is_file()

    def is_codes(self) -> bool:
        """A codes folder, complete or in flight."""
        return self.is_complete() or self.progress_dir.is_dir()

    # -- the manifest ---------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The manifest of a complete codes folder, its format and own checksum checked (what
        the manifest may name is checked by aetk.compress.manifest.load_manifest)."""
        if not self.path.is_dir():
            raise CompressError(f"codes folder {self.path} does not exist (expected what `aetk compress` "
                                f"wrote with -o)")
        path = self.manifest_file
        if not path.is_file():
            more = (" A compress run is in flight or was interrupted (its progress is in "
                    f"{PROGRESS}/); rerun the same `aetk compress` to finish it.") if self.progress_dir.is_dir() else ""
            raise IncompleteCodesError(f"{self.path} has no {MANIFEST}, so its codes are not complete.{more}")
        m = read_json(path, "manifest")
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise CompressError(f"{path} is not an aetk codes manifest (no \"format\": \"{FORMAT}\")")
        if m.get("format_version") != FORMAT_VERSION:
            raise CompressError(f"{path} has format_version {m.get('format_version')!r}; this aetk reads "
                                f"version {FORMAT_VERSION} (rerun `aetk compress ... --overwrite` to remake it)")
        for key in ("job", "shards", "totals", "model_files", "code_shape", CHECKSUM):
            if key not in m:
                raise CompressError(f"{path} lacks {key!r}; it is not a complete aetk codes manifest")
        if m[CHECKSUM] != checksum(m):
            raise unsafe(path, f"does not match its own {CHECKSUM}: it was edited after `aetk compress` "
                               f"wrote it")
        return m

    def write_manifest(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest with its checksum (``manifest[CHECKSUM]`` is set here)."""
        from aetk.atomic import atomic_write_text

        manifest[CHECKSUM] = checksum(manifest)
        atomic_write_text(self.manifest_file, dumps(manifest))
        return self.manifest_file

    def verify_model_files(self, manifest: dict[str, Any]) -> list[str]:
        """'model/<file>: what' for each model file that is missing or differs from its sha256."""
        out = []
        for name, digest in manifest["model_files"].items():
            path = self.model_dir / name
            if not path.is_file() or path.is_symlink():
                out.append(f"{MODEL_DIR}/{name}: is missing")
            elif sha256_file(path) != digest:
                out.append(f"{MODEL_DIR}/{name}: does not match its sha256 in the manifest (changed or damaged)")
        return out

    def verify(self) -> list[str]:
        """Every file the manifest names, against its recorded size and sha256: 'file: what'
        lines ([] when all check out). The full check (codes parse, are finite, the model's
        weights) is aetk.compress.codes.verify."""
        m = self.read_manifest()
        out = []
        for rec in m["shards"]:
            path = self.path / rec["file"]
            if not path.is_file():
                out.append(f"{rec['file']}: is missing")
            elif path.stat().st_size != rec["bytes"] or sha256_file(path) != rec["sha256"]:
                out.append(f"{rec['file']}: does not match its sha256 in the manifest (changed or damaged)")
        return out + self.verify_model_files(m)


__all__ = ["CHECKSUM", "CodesDir", "FORMAT", "FORMAT_VERSION", "JOB_FILE", "MANIFEST", "MODEL_DIR", "NAME_PREFIX",
           "PROGRESS", "REPORT", "RUN_STAMP", "checksum", "dumps", "is_shard_file", "model_graph_files",
           "own_model_files", "read_json", "sha256_file", "shard_name", "unsafe"]
