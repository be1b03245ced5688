"""``aetk compress``, ``aetk decompress`` and ``aetk neighbors``: datasets to latent codes,
back, and nearest neighbours in code space.

    aetk compress fashion-mnist -m exports/conv -o codes/            # .npy shards + manifest.json
    aetk compress photos/ -m runs/conv -o codes/ --precision int8 --zstd --eval
    aetk compress data.npy -m exports/conv -o codes/ --engine ray --ray-address auto
    aetk compress --verify codes/                                     # every checksum
    aetk decompress codes/ -o restored/                               # the sources' formats
    aetk neighbors codes/ query.png 1234 -k 5 --sheet sheet.png

The work is done by ``aetk.compress.compress``, ``decompress`` and ``neighbors``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, List, Optional

import typer


def _image_size(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    size = [int(p) for p in parts] if all(p.strip().isdigit() for p in parts) else []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise typer.BadParameter(f"{text!r} is not HxW (e.g. 64x64) or one size for a square",
                                 param_hint="--image-size")
    return size


class _Bar:
    """aetk.compress.Progress drawn with Rich on stderr."""

    def __init__(self, enabled: bool = True):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True, disable=not enabled)
        self.task = None

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def stage(self, text: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(text, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return ("inf" if math.isinf(v) else f"{v:,.4g}") + unit
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def print_report(result, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    r = result.report
    table = Table(title=escape(f"codes in {result.codes}"), show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("items", _fmt(r["items"])), ("codes (rows)", _fmt(r["rows"])),
        ("skipped (unreadable)", _fmt(r["skipped"] + result.manifest["totals"]["unreadable_at_open"])),
        ("shards (written / kept)", f"{r['shards']} ({result.shards_written} / {result.shards_kept})"),
        ("bytes per sample", _fmt(r["bytes_per_sample"], " B")),
        ("raw bytes per sample", _fmt(r["raw_bytes_per_sample"], " B")),
        ("ratio vs raw", _fmt(r["ratio_vs_raw"], "x")),
        (f"PNG bytes per sample ({r['png_sample']} measured)", _fmt(r["png_bytes_per_sample"], " B")),
        ("ratio vs PNG", _fmt(r["ratio_vs_png"], "x")),
        ("ratio vs source files", _fmt(r["ratio_vs_source_files"], "x")),
    ]
    if "eval" in r:
        e = r["eval"]
        psnr = "exact (MSE 0)" if e["mse"] == 0 else _fmt(e["psnr_db"], " dB")
        rows.append((f"PSNR after decompressing (peak {_fmt(e['peak'])}, {e.get('peak_from', '')})", psnr))
    if result.items_encoded:
        rows.append(("encoded", f"{result.items_encoded:,} items, "
                                f"{_fmt(result.items_per_second)} items/s ({result.engine})"))
    rows.append(("total time", f"{result.seconds:.2f} s"))
    for k, v in rows:
        table.add_row(escape(k), escape(v))
    console.print(table)
    if r.get("ratio_vs_source_files_why_not"):
        console.print(f"ratio vs source files: not given, {escape(r['ratio_vs_source_files_why_not'])}")
    for note in result.notes:
        console.print(f"note: {escape(note)}")


def compress_cli(
    data: str = typer.Argument(..., help="A file, folder or built-in dataset (the readers of `aetk "
                               "train`); with --verify, the codes folder."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="An export folder (`aetk export`) "
                                         "or a run folder (`aetk train`, exported first)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The codes folder (made if missing)."),
    verify: bool = typer.Option(False, "--verify", help="Check the codes folder DATA: its manifest "
                                "(checksum, paths), every shard (sha256, finite codes) and the model "
                                "(files, weights hash); exit 3 on a problem."),
    precision: str = typer.Option("float32", "--precision", help="float32, float16, or int8 "
                                  "(per-dimension scale and offset)."),
    shard_format: str = typer.Option("npy", "--shard-format", help="npy or parquet."),
    zstd: bool = typer.Option(False, "--zstd", help="zstd-compress the shards."),
    zstd_level: int = typer.Option(3, "--zstd-level", min=1, max=22, help="zstd level."),
    shard_size: int = typer.Option(16384, "--shard-size", min=1, help="Items per shard."),
    batch_size: int = typer.Option(512, "--batch-size", min=1, help="Items per encoder call."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data actor pool)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="A running Ray cluster "
                                              "(auto, ray://host:10001); default: a local one."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray actors (default: one "
                                          "per --cpus-per-worker CPUs)."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", help="CPUs per Ray actor."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="GPUs per Ray actor."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace codes of another job (changed "
                                   "model, preprocessing or settings) instead of refusing."),
    evaluate: bool = typer.Option(False, "--eval", help="Decompress again and report reconstruction PSNR."),
    png_sample: int = typer.Option(256, "--png-sample", min=0, help="Images saved as PNG to compare "
                                   "sizes against (0: none)."),
    data_format: Optional[str] = typer.Option(None, "--data-format", help="auto, idx, images, npy, csv, builtin."),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="Resize (or crop) images to HxW."),
    resize: Optional[str] = typer.Option(None, "--resize", help="resize or crop, with --image-size."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 (gray) or 3 (RGB)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="CSV: the label column "
                                               "(not a feature)."),
    sequence_length: Optional[int] = typer.Option(None, "--sequence-length", min=1,
                                                  help="CSV/npy time series: window length."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="CSV delimiter."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Encode a dataset into latent codes: shards, a manifest with checksums, resumable."""
    if verify:
        _verify(Path(data), as_json)
        return
    from aetk.compress import CompressError, compress

    if model is None or out is None:
        raise CompressError("compressing needs -m MODEL and -o CODES (or --verify CODES to check a folder)")

    options = {"format": data_format, "image_size": _image_size(image_size), "resize": resize,
               "channels": channels, "label_column": label_column, "sequence_length": sequence_length,
               "extra": {"delimiter": delimiter} if delimiter else None}
    with _Bar(not quiet and not as_json) as bar:
        result = compress(data, model, out, data_options=options, precision=precision,
                          shard_format=shard_format, zstd=zstd, zstd_level=zstd_level,
                          shard_size=shard_size, batch_size=batch_size, engine=engine, device=device,
                          threads=threads, overwrite=overwrite, evaluate=evaluate,
                          png_sample=png_sample, ray_address=ray_address, workers=workers,
                          cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                          progress=bar)
    if as_json:
        typer.echo(json.dumps({"codes": str(result.codes), "report": result.report,
                               "shards_written": result.shards_written, "shards_kept": result.shards_kept,
                               "items_encoded": result.items_encoded, "seconds": result.seconds,
                               "encode_seconds": result.encode_seconds,
                               "items_per_second": result.items_per_second, "notes": result.notes},
                              indent=2))
        return
    print_report(result)


def _verify(codes: Path, as_json: bool) -> None:
    """Every shard, the model files and the model's weights against the manifest (which is
    itself checked when opened); problems are listed, then exit 3 (an IntegrityError)."""
    from aetk.compress import Codes, CorruptShardError

    c = Codes.open(codes)
    problems = c.verify()
    if as_json:
        typer.echo(json.dumps({"codes": str(codes), "shards": len(c.records), "problems": problems}, indent=2))
    elif problems:
        for p in problems:
            typer.secho(f"{codes}/{p}", fg="red", err=True)
    else:
        t = c.manifest["totals"]
        typer.echo(f"{codes}: {t['shards']} shards, {t['rows']:,} codes and the model files match the manifest")
    if problems:
        from aetk.compress.manifest import MODEL_DIR

        if any(p.startswith(MODEL_DIR) for p in problems):  # rerunning compress keeps a model it did not write
            advice = (f"its {MODEL_DIR}/ does not match the codes: recompress from the data into a new "
                      f"folder, or with --overwrite")
        elif any("NaN or infinite" in p for p in problems):  # bytes that match their record: a rerun keeps them
            advice = "recompress from the data with --overwrite (a rerun keeps shards whose bytes match the manifest)"
        else:
            advice = "rerun the same `aetk compress` to rewrite damaged shards"
        raise CorruptShardError(f"{len(problems)} problem(s) in {codes} (first: {problems[0]}); {advice}",
                                problems)


def decompress_cli(
    codes: Path = typer.Argument(..., help="A codes folder written by `aetk compress`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (made if missing)."),
    arrays: bool = typer.Option(False, "--arrays", help="Write OUT/<part>.npy arrays instead of the "
                                "sources' formats."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Decode with this export folder "
                                         "(default: CODES/model, checked against the manifest)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(512, "--batch-size", min=1, help="Codes per decoder call."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files that exist in OUT (never "
                                   "the source the codes were made from)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Decode codes back to data in the sources' formats (or arrays); checksums are checked first."""
    from aetk.compress import decompress

    with _Bar(not quiet) as bar:
        result = decompress(codes, out, as_arrays=arrays, device=device, model=model,
                            batch_size=batch_size, overwrite=overwrite, progress=bar)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"decoded {result.rows:,} codes into {out}: {', '.join(result.files)}")


def neighbors_cli(
    codes: Path = typer.Argument(..., help="A codes folder written by `aetk compress`."),
    queries: List[str] = typer.Argument(..., help="Image or data files, item numbers, or stored image "
                                        "paths (relative to the compressed folder)."),
    k: int = typer.Option(5, "-k", "--k", min=1, help="Neighbours per query."),
    metric: str = typer.Option("cosine", "--metric", help="cosine or euclidean."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a contact sheet PNG: each query, "
                                         "then its neighbours."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    as_json: bool = typer.Option(False, "--json", help="Print the neighbours as JSON."),
) -> None:
    """The stored items nearest to each query in code space (exact search)."""
    from aetk.compress import neighbors

    results = neighbors(codes, queries, k=k, metric=metric, device=device, sheet=sheet)
    if as_json:
        typer.echo(json.dumps([{"query": r.query, "item": r.item,
                                "neighbors": [{"item": m.item, "id": m.id, "part": m.part, "distance": m.distance}
                                              for m in r.matches]} for r in results], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{k} nearest in {codes} ({metric})"))
    for col in ("query", "rank", "item", "id", "part", "distance"):
        table.add_column(col, justify="right" if col in ("rank", "item", "distance") else "left")
    for r in results:
        for rank, m in enumerate(r.matches, 1):
            table.add_row(escape(r.query) if rank == 1 else "", str(rank), str(m.item), escape(str(m.id)),
                          m.part, f"{m.distance:.4g}")
    Console().print(table)
    if sheet is not None:
        typer.echo(f"contact sheet: {sheet}")
