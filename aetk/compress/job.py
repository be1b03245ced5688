"""``compress``: a dataset to a folder of latent codes, crash-safe and resumable.

    result = compress("fashion-mnist", "exports/conv", "codes/")               # local engine
    result = compress("photos/", "runs/conv", "codes/",
                      CompressOptions(precision="int8", zstd=True, engine=Ray(workers=8),
                                      reader=ReaderOptions(image_size=(64, 64))))

Order of work, so that bad input fails before anything is written:

1. check the options, open the data (image folders: a header scan), open the model
   (a run folder is exported to ONNX first) and encode one zero example: a model whose
   input shape does not fit the data stops here;
2. compare the job (model, preprocessing, code settings, source) with what CODES holds:
   another job's shards are refused unless ``overwrite``; shards whose bytes match their
   record are kept, the rest are planned again;
3. record the job in CODES/.progress/, copy the model into CODES/model/, encode the
   planned shards (each written atomically, then its record);
4. once every shard is written, write manifest.json atomically (the folder is complete),
   drop .progress/, then measure sizes (and PSNR) into report.json.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aetk
from aetk.artifacts import RunDir
from aetk.atomic import atomic_write_text, fsync_folder
from aetk.compress.encode import Settings, ShardEncoder
from aetk.compress.errors import CompressError
from aetk.compress.manifest import (CHECKSUM, FORMAT, FORMAT_VERSION, MANIFEST, MODEL_DIR, PROGRESS, REPORT,
                                    Journal, checksum, clear, dumps, job_differences, load_manifest, locked, plan_shards, refuse_stale,
                                    remove_temporaries, write_manifest)
from aetk.compress.model import check_model_folder, check_shapes, install_model, model_identity, model_source
from aetk.compress.quantize import check_precision
from aetk.compress.options import ENGINES, CompressOptions, Local, Ray
from aetk.compress.shards import check_container, is_shard_file, sha256_file
from aetk.options import check, flag
from aetk.progress import Progress, or_null
from aetk.runtime import load_export

# Reader options of aetk.data.DataConfig that compress passes on (not path, split or limit).
READER_OPTIONS = ("format", "image_size", "resize", "channels", "label_column", "sequence_length", "extra")


@dataclass
class CompressResult:
    codes: Path
    manifest: dict[str, Any]
    report: dict[str, Any]
    shards_written: int = 0
    shards_kept: int = 0
    items_encoded: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    engine: str = "local"
    notes: list[str] = field(default_factory=list)

    @property
    def items_per_second(self) -> float | None:
        return self.items_encoded / self.encode_seconds if self.encode_seconds > 0 else None


def reader_options(data_options: dict[str, Any] | None, run: RunDir | None) -> dict[str, Any]:
    """Reader options: the run's own (when -m is a run folder), then those given."""
    from aetk.data import DataConfig

    base = DataConfig()
    opts = {k: getattr(base, k) for k in READER_OPTIONS}
    if run is not None:
        data = run.raw_config().get("data", {})
        # The training data's layout, not its file format: the data compressed may differ.
        for k in ("image_size", "resize", "channels", "label_column", "sequence_length"):
            if k in data:
                opts[k] = data[k]
    unknown = sorted(set(data_options or {}) - set(READER_OPTIONS))
    if unknown:
        raise CompressError(f"unknown data options {unknown}; valid: {', '.join(READER_OPTIONS)}")
    opts.update({k: v for k, v in (data_options or {}).items() if v is not None})
    return opts


def image_depths(parts: list, normalization: dict[str, Any] | None) -> tuple[float | None, float]:
    """(the model's raw maximum for images, the factor from the folder's raw values to it).

    An image folder is read in 0..its depth (255, or 65535 when any image is 16-bit). A
    model with unit scaling was trained on raw values 0..its scale (255 for 8-bit images),
    so 16-bit images are brought to that range before encoding (and each decoded image back
    to its own file's depth); a standardized model keeps the folder's values as they are.
    Not images: (None, 1.0)."""
    if not parts or not parts[0].is_images:
        return None, 1.0
    depth = float(parts[0].source.depth_max)
    norm = normalization or {}
    if norm.get("kind") == "unit" and float(norm.get("scale", 0)) > 0:
        model_max = float(norm["scale"])
        return model_max, model_max / depth
    return depth, 1.0


def _prepare_out(codes: Path) -> None:
    from aetk.atomic import NotAFolderError, check_writable_folder

    try:
        check_writable_folder(codes)
    except NotAFolderError as exc:
        raise CompressError(f"-o {codes} exists and is not a folder") from exc
    except OSError as exc:
        raise CompressError(f"-o {codes}: the codes folder cannot be written ({exc.strerror or exc})") from exc


def _record_ok(codes: Path, rec: dict[str, Any] | None, shard, part_start: int) -> bool:
    """Whether a shard's file exists and matches its record (and the plan)."""
    if not rec or rec.get("file") != shard.file:
        return False
    if (rec.get("start"), rec.get("stop")) != (part_start + shard.start, part_start + shard.stop):
        return False
    path = codes / shard.file
    try:
        return path.stat().st_size == rec["bytes"] and sha256_file(path) == rec["sha256"]
    except (OSError, KeyError):
        return False


def compress(data: str, model: str | os.PathLike, out: str | os.PathLike,
             options: CompressOptions = CompressOptions(), progress: Progress | None = None) -> CompressResult:
    """Encode `data` with `model` into the codes folder `out` (see the module doc)."""
    t0 = time.perf_counter()
    progress = or_null(progress)
    codes = Path(out).expanduser()
    try:
        # 1. options, data, model: everything that can be wrong with the input, before any work
        _check_options(options)
        inputs = _open_inputs(data, model, codes, options, progress)
        with contextlib.ExitStack() as stack:
            encoder = load_export(inputs.source.folder, device=options.device, batch_size=None,
                                  threads=options.threads)
            work = _plan(inputs, encoder, codes, options, stack)
            written, enc_seconds = _encode(work, encoder, options, progress)
            manifest = _write_manifest(work, written)
            report = _report(work, manifest, options, progress)
    finally:
        progress.finish()
    notes = []
    unread = manifest["totals"]["skipped"] + manifest["totals"]["unreadable_at_open"]
    if unread:
        notes.append(f"{unread} items could not be read and are listed in {MANIFEST}")
    return CompressResult(codes, manifest, report, shards_written=len(written), shards_kept=len(work.done),
                          items_encoded=work.items, seconds=time.perf_counter() - t0, encode_seconds=enc_seconds,
                          engine=options.engine.name, notes=notes)


def _check_options(options: CompressOptions) -> None:
    check_precision(options.precision)
    check_container(options.shard_format, options.compression, options.zstd_level)
    if not isinstance(options.engine, (Local, Ray)):
        raise CompressError(f"{flag(CompressOptions, 'engine')} {options.engine!r} is not one of "
                            f"{', '.join(ENGINES)}")
    check(options, CompressError)
    check(options.reader, CompressError)
    if isinstance(options.engine, Ray):
        check(options.engine, CompressError)


@dataclass
class _Inputs:
    """The opened data and model of a job."""

    data: str
    data_path: str
    reader: dict[str, Any]
    parts: list
    description: str
    source: Any  # aetk.compress.model.ModelSource


def _open_inputs(data: str, model: str | os.PathLike, codes: Path, options: CompressOptions,
                 progress: Progress) -> _Inputs:
    from aetk.data import DataConfig
    from aetk.data.loading import check_config
    from aetk.data.stream import open_parts

    src_path = Path(data).expanduser()
    data_path = str(src_path.resolve()) if src_path.exists() else str(data)
    model_path = Path(model).expanduser()
    run = RunDir(model_path) if RunDir(model_path).is_run() else None
    opts = reader_options(options.reader.given(), run)
    cfg = check_config(DataConfig(path=data_path, **opts))
    opts = {k: getattr(cfg, k) for k in READER_OPTIONS}
    progress.start(f"reading {data}")
    parts, description = open_parts(data_path, cfg)
    source = model_source(model, progress.start)
    return _Inputs(str(data), data_path, opts, parts, description, source)


@dataclass
class _Work:
    """What the codes folder holds, and what is left to encode."""

    inputs: _Inputs
    codes: Path
    job: dict[str, Any]
    journal: Journal
    plan: list
    done: dict[int, dict[str, Any]]
    pending: list
    code_shape: tuple
    input_scale: float
    model_files: Any = None

    @property
    def items(self) -> int:
        return sum(sh.stop - sh.start for sh in self.pending)


def _job(inputs: _Inputs, meta: Any, code_shape: tuple, model_max: float | None, options: CompressOptions
         ) -> dict[str, Any]:
    """The job a codes folder records: what a rerun must match to keep its shards."""
    parts = inputs.parts
    return {
        "model": model_identity(meta),
        "preprocessing": {"reader": inputs.reader, "normalization": meta.normalization,
                          "input_shape": list(parts[0].source.input_shape), "model_max": model_max},
        "codes": {"precision": options.precision, "shard_format": options.shard_format,
                  "compression": options.compression, "zstd_level": options.zstd_level if options.zstd else None,
                  "shard_size": options.shard_size, "code_shape": list(code_shape)},
        "source": {"data": inputs.data_path, "description": inputs.description,
                   "parts": [p.describe() for p in parts]},
    }


def _known_records(codes: Path, job: dict[str, Any], journal: Journal) -> dict[int, dict[str, Any]]:
    """The shard records of the same job already in the folder; another job's are refused."""
    if (codes / MANIFEST).is_file():
        m = load_manifest(codes)
        if m["job"] != job:
            raise refuse_stale(codes, MANIFEST, job_differences(m["job"], job))
        return {int(r["index"]): r for r in m["shards"]}
    if journal.exists():
        stored = journal.job()
        if stored != job:
            raise refuse_stale(codes, f"an unfinished run in {PROGRESS}/", job_differences(stored, job))
        return journal.records()
    if any(is_shard_file(p.name) for p in codes.iterdir()):
        raise CompressError(f"{codes} holds shard files but no {MANIFEST} or {PROGRESS}/ to say what they are; "
                            f"pass {flag(CompressOptions, 'overwrite')} to replace them, or write to another folder")
    return {}


def _plan(inputs: _Inputs, encoder: Any, codes: Path, options: CompressOptions,
          stack: contextlib.ExitStack) -> _Work:
    """2. what the folder holds: lock it, refuse another job's codes, keep the shards that check out."""
    parts = inputs.parts
    code_shape = check_shapes(encoder, tuple(parts[0].source.input_shape), inputs.data)
    meta = encoder.metadata
    model_max, input_scale = image_depths(parts, meta.normalization)
    _prepare_out(codes)
    stack.enter_context(locked(codes))
    job = _job(inputs, meta, code_shape, model_max, options)
    journal = Journal(codes)
    check_model_folder(codes, ours=options.overwrite or (codes / MANIFEST).is_file() or journal.exists())
    if options.overwrite:
        clear(codes)
    remove_temporaries(codes)
    known = _known_records(codes, job, journal)
    plan = plan_shards([len(p) for p in parts], options.shard_size, options.shard_format, options.compression)
    done, pending = {}, []
    for sh in plan:
        rec = known.get(sh.index)
        if _record_ok(codes, rec, sh, parts[sh.part].start):
            done[sh.index] = rec
        else:
            pending.append(sh)
    return _Work(inputs, codes, job, journal, plan, done, pending, code_shape, input_scale)


def _encode(work: _Work, encoder: Any, options: CompressOptions, progress: Progress
            ) -> tuple[list[dict[str, Any]], float]:
    """3. the work (nothing to do when every shard checks out): (new records, seconds)."""
    codes, journal = work.codes, work.journal
    if work.pending or not (codes / MANIFEST).is_file():
        journal.start(work.job)
        for rec in work.done.values():
            journal.add(rec)
        (codes / MANIFEST).unlink(missing_ok=True)  # in flight now: no manifest claims anything
    work.model_files = install_model(work.inputs.source, codes)  # also repairs a damaged copy
    if not work.pending:
        return [], 0.0
    settings = Settings(data=work.inputs.data_path, data_config={"path": work.inputs.data_path,
                                                                  **work.inputs.reader},
                        model_dir=str(codes / MODEL_DIR), out=str(codes), code_shape=list(work.code_shape),
                        options=options, input_scale=work.input_scale)
    progress.start(f"encoding {work.items} items into {len(work.pending)} shards", total=work.items)
    t1 = time.perf_counter()
    try:
        if isinstance(options.engine, Local):
            encoder_here = ShardEncoder(settings, parts=work.inputs.parts, model=encoder)
            written = encoder_here.run(work.pending, progress.advance)
        else:
            from aetk.compress.ray_engine import run_ray

            written = run_ray(settings, work.pending, progress.advance)
    except OSError as exc:
        raise OSError(exc.errno, f"writing codes to {codes} failed ({exc.strerror or exc}); "
                                 f"the {len(journal.records())} finished shards are kept and "
                                 f"a rerun resumes from them") from exc
    return written, time.perf_counter() - t1


def _write_manifest(work: _Work, written: list[dict[str, Any]]) -> dict[str, Any]:
    """4. the manifest, written atomically once every shard is: the folder is complete."""
    codes, parts = work.codes, work.inputs.parts
    records = sorted([*work.done.values(), *written], key=lambda r: r["index"])
    if [r["index"] for r in records] != [sh.index for sh in work.plan]:
        raise CompressError(f"internal error: {len(records)} shard records for a plan of {len(work.plan)}")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "aetk_version": aetk.__version__,
        "complete": True, "job": work.job, "code_shape": list(work.code_shape),
        "code_dtype": work.job["codes"]["precision"], "model_files": work.model_files,
        "totals": {"items": sum(len(p) for p in parts), "rows": sum(r["rows"] for r in records),
                   "skipped": sum(len(r["skipped"]) for r in records),
                   "unreadable_at_open": sum(len(p.source.skipped) for p in parts),
                   "shards": len(records), "bytes": sum(r["bytes"] for r in records)},
        "shards": records,
    }
    manifest[CHECKSUM] = checksum(manifest)
    if not (codes / MANIFEST).is_file() or load_manifest(codes) != manifest:
        write_manifest(codes, manifest)
        fsync_folder(codes)
    work.journal.remove()
    return manifest


def _report(work: _Work, manifest: dict[str, Any], options: CompressOptions, progress: Progress
            ) -> dict[str, Any]:
    """Sizes against raw data and PNG (and PSNR with ``evaluate``), into report.json."""
    from aetk.compress.report import size_report

    codes, parts = work.codes, work.inputs.parts
    progress.start("measuring sizes")
    report = size_report(manifest, parts, options.png_sample)
    if options.evaluate:
        from aetk.compress.codes import Codes
        from aetk.compress.decode import evaluate as evaluate_codes
        from aetk.compress.decode import open_decoder

        progress.start("decompressing to measure PSNR", total=manifest["totals"]["items"])
        cv = Codes(codes, manifest)
        report["eval"] = evaluate_codes(cv, parts, open_decoder(cv, options.device), options.batch_size,
                                        progress.advance)
    text = dumps(report)
    if not (codes / REPORT).is_file() or (codes / REPORT).read_text() != text:
        atomic_write_text(codes / REPORT, text)
    return report


__all__ = ["CompressResult", "compress", "image_depths", "reader_options"]
