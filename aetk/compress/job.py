"""``compress``: a dataset to a folder of latent codes, crash-safe and resumable.

    result = compress("fashion-mnist", "exports/conv", "codes/")               # local engine
    result = compress("photos/", "runs/conv", "codes/", precision="int8", zstd=True,
                      data_options={"image_size": [64, 64]}, engine="ray")

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
from aetk.compress.shards import check_container, is_shard_file, sha256_file

ENGINES = ("local", "ray")
# Reader options of aetk.data.DataConfig that compress passes on (not path, split or limit).
READER_OPTIONS = ("format", "image_size", "resize", "channels", "label_column", "sequence_length", "extra")


class Progress:
    """What a long run reports; the CLI draws it with Rich. Methods may be left as they are."""

    def stage(self, text: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


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


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompressError(f"{name} must be a positive integer, got {value!r}")
    return value


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


def compress(data: str, model: str | os.PathLike, out: str | os.PathLike, *,
             data_options: dict[str, Any] | None = None, precision: str = "float32",
             shard_format: str = "npy", zstd: bool = False, zstd_level: int = 3,
             shard_size: int = 16384, batch_size: int = 512, engine: str = "local",
             device: str = "auto", threads: int | None = None, overwrite: bool = False,
             evaluate: bool = False, png_sample: int = 256, ray_address: str | None = None,
             workers: int | None = None, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0,
             progress: Progress | None = None) -> CompressResult:
    """Encode `data` with `model` into the codes folder `out` (see the module doc)."""
    t0 = time.perf_counter()
    progress = progress or Progress()
    codes = Path(out).expanduser()
    # 1. options, data, model: everything that can be wrong with the input, before any work
    check_precision(precision)
    compression = "zstd" if zstd else "none"
    check_container(shard_format, compression, zstd_level)
    _positive("--shard-size", shard_size)
    _positive("--batch-size", batch_size)
    if engine not in ENGINES:
        raise CompressError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if isinstance(png_sample, bool) or not isinstance(png_sample, int) or png_sample < 0:
        raise CompressError(f"--png-sample must be a non-negative integer, got {png_sample!r}")

    from aetk.data import DataConfig
    from aetk.data.loading import check_config
    from aetk.data.stream import open_parts
    from aetk.runtime import load_export

    src_path = Path(data).expanduser()
    data_path = str(src_path.resolve()) if src_path.exists() else str(data)
    model_path = Path(model).expanduser()
    run = RunDir(model_path) if RunDir(model_path).is_run() else None
    opts = reader_options(data_options, run)
    cfg = check_config(DataConfig(path=data_path, **opts))
    opts = {k: getattr(cfg, k) for k in READER_OPTIONS}
    progress.stage(f"reading {data}")
    parts, description = open_parts(data_path, cfg)
    source = model_source(model, progress.stage)
    with contextlib.ExitStack() as stack:
        encoder = load_export(source.folder, device=device, batch_size=None, threads=threads)
        data_shape = tuple(parts[0].source.input_shape)
        code_shape = check_shapes(encoder, data_shape, data)
        meta = encoder.metadata
        model_max, input_scale = image_depths(parts, meta.normalization)

        # 2. what the folder holds
        _prepare_out(codes)
        stack.enter_context(locked(codes))
        job = {
            "model": model_identity(meta),
            "preprocessing": {"reader": opts, "normalization": meta.normalization,
                              "input_shape": list(data_shape), "model_max": model_max},
            "codes": {"precision": precision, "shard_format": shard_format, "compression": compression,
                      "zstd_level": zstd_level if zstd else None, "shard_size": shard_size,
                      "code_shape": list(code_shape)},
            "source": {"data": data_path, "description": description,
                       "parts": [p.describe() for p in parts]},
        }
        journal = Journal(codes)
        check_model_folder(codes, ours=overwrite or (codes / MANIFEST).is_file() or journal.exists())
        if overwrite:
            clear(codes)
        remove_temporaries(codes)
        known: dict[int, dict[str, Any]] = {}
        if (codes / MANIFEST).is_file():
            m = load_manifest(codes)
            if m["job"] != job:
                raise refuse_stale(codes, MANIFEST, job_differences(m["job"], job))
            known = {int(r["index"]): r for r in m["shards"]}
        elif journal.exists():
            stored = journal.job()
            if stored != job:
                raise refuse_stale(codes, f"an unfinished run in {PROGRESS}/", job_differences(stored, job))
            known = journal.records()
        elif any(is_shard_file(p.name) for p in codes.iterdir()):
            raise CompressError(f"{codes} holds shard files but no {MANIFEST} or {PROGRESS}/ to say what "
                                f"they are; pass --overwrite to replace them, or write to another folder")
        plan = plan_shards([len(p) for p in parts], shard_size, shard_format, compression)
        done, pending = {}, []
        for sh in plan:
            rec = known.get(sh.index)
            if _record_ok(codes, rec, sh, parts[sh.part].start):
                done[sh.index] = rec
            else:
                pending.append(sh)

        # 3. the work (nothing to do when every shard checks out)
        written: list[dict[str, Any]] = []
        enc_seconds = 0.0
        items = sum(sh.stop - sh.start for sh in pending)
        if pending or not (codes / MANIFEST).is_file():
            journal.start(job)
            for rec in done.values():
                journal.add(rec)
            (codes / MANIFEST).unlink(missing_ok=True)  # in flight now: no manifest claims anything
        model_files = install_model(source, codes)  # also repairs a damaged copy
        if pending:
            settings = Settings(data=data_path, data_config={"path": data_path, **opts},
                                model_dir=str(codes / MODEL_DIR), out=str(codes), precision=precision,
                                container=shard_format, compression=compression, zstd_level=zstd_level,
                                batch_size=batch_size, code_shape=list(code_shape), device=device,
                                threads=threads, input_scale=input_scale)
            progress.stage(f"encoding {items} items into {len(pending)} shards", total=items)
            t1 = time.perf_counter()
            try:
                if engine == "local":
                    written = ShardEncoder(settings, parts=parts, model=encoder).run(pending, progress.advance)
                else:
                    from aetk.compress.ray_engine import run_ray

                    written = run_ray(settings, pending, address=ray_address, workers=workers,
                                      cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                                      on_items=progress.advance)
            except OSError as exc:
                raise OSError(exc.errno, f"writing codes to {codes} failed ({exc.strerror or exc}); "
                                         f"the {len(journal.records())} finished shards are kept and "
                                         f"a rerun resumes from them") from exc
            enc_seconds = time.perf_counter() - t1

        # 4. report and manifest
        records = sorted([*done.values(), *written], key=lambda r: r["index"])
        if [r["index"] for r in records] != [sh.index for sh in plan]:
            raise CompressError(f"internal error: {len(records)} shard records for a plan of {len(plan)}")
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "aetk_version": aetk.__version__,
            "complete": True, "job": job, "code_shape": list(code_shape), "code_dtype": precision,
            "model_files": model_files,
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
        journal.remove()

        from aetk.compress.report import size_report

        progress.stage("measuring sizes")
        report = size_report(manifest, parts, png_sample)
        if evaluate:
            from aetk.compress.codes import Codes
            from aetk.compress.decode import evaluate as evaluate_codes
            from aetk.compress.decode import open_decoder

            progress.stage("decompressing to measure PSNR", total=manifest["totals"]["items"])
            cv = Codes(codes, manifest)
            report["eval"] = evaluate_codes(cv, parts, open_decoder(cv, device), batch_size, progress.advance)
        text = dumps(report)
        if not (codes / REPORT).is_file() or (codes / REPORT).read_text() != text:
            atomic_write_text(codes / REPORT, text)
        notes = []
        if manifest["totals"]["skipped"] or manifest["totals"]["unreadable_at_open"]:
            notes.append(f"{manifest['totals']['skipped'] + manifest['totals']['unreadable_at_open']} items "
                         f"could not be read and are listed in {MANIFEST}")
        return CompressResult(codes, manifest, report, shards_written=len(written), shards_kept=len(done),
                              items_encoded=items, seconds=time.perf_counter() - t0, encode_seconds=enc_seconds,
                              engine=engine, notes=notes)


__all__ = ["ENGINES", "CompressResult", "Progress", "compress", "image_depths", "reader_options"]
