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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, List, Optional

import typer

from aetk.compress.options import (ENGINES, CompressOptions, DecompressOptions, Local, NeighborsOptions, Ray,
                                   ReaderOptions)
from aetk.options import option

from ._options import Given, with_options
from ._progress import RichProgress


@dataclass(frozen=True)
class Output:
    """How the command prints its result (not an option of the job)."""

    as_json: bool = option(False, "--json", "Print the result as JSON.")
    quiet: bool = option(False, "--quiet", "No progress bar.", short="-q")


def _image_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    size = [int(p) for p in parts] if all(p.strip().isdigit() for p in parts) else []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise typer.BadParameter(f"{text!r} is not HxW (e.g. 64x64) or one size for a square",
                                 param_hint="--image-size")
    return size[0], size[1]


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


@with_options(CompressOptions, Ray, ReaderOptions, Output, skip=("image_size",))
def compress_cli(
    data: str = typer.Argument(..., help="A file, folder or built-in dataset (the readers of `aetk "
                               "train`); with --verify, the codes folder."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="An export folder (`aetk export`) "
                                         "or a run folder (`aetk train`, exported first)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The codes folder (made if missing)."),
    verify: bool = typer.Option(False, "--verify", help="Check the codes folder DATA: its manifest "
                                "(checksum, paths), every shard (sha256, finite codes) and the model "
                                "(files, weights hash); exit 3 on a problem."),
    engine: str = typer.Option("local", "--engine", help="local, or ray (Ray Data actor pool)."),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="Resize (or crop) images to HxW."),
    given: Given = None,
) -> None:
    """Encode a dataset into latent codes: shards, a manifest with checksums, resumable."""
    output = given[Output]
    if verify:
        _verify(Path(data), output.as_json)
        return
    from aetk.compress import CompressError, compress

    if model is None or out is None:
        raise CompressError("compressing needs -m MODEL and -o CODES (or --verify CODES to check a folder)")
    if engine not in ENGINES:
        raise CompressError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    reader = replace(given[ReaderOptions], image_size=_image_size(image_size))
    options = replace(given[CompressOptions], engine=given[Ray] if engine == "ray" else Local(), reader=reader)
    with RichProgress(not output.quiet and not output.as_json) as bar:
        result = compress(data, model, out, options, bar)
    if output.as_json:
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


@with_options(DecompressOptions)
def decompress_cli(
    codes: Path = typer.Argument(..., help="A codes folder written by `aetk compress`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (made if missing)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Decode with this export folder "
                                         "(default: CODES/model, checked against the manifest)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    given: Given = None,
) -> None:
    """Decode codes back to data in the sources' formats (or arrays); checksums are checked first."""
    from aetk.compress import decompress

    with RichProgress(not quiet) as bar:
        result = decompress(codes, out, given[DecompressOptions], bar, model=model)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"decoded {result.rows:,} codes into {out}: {', '.join(result.files)}")


@with_options(NeighborsOptions)
def neighbors_cli(
    codes: Path = typer.Argument(..., help="A codes folder written by `aetk compress`."),
    queries: List[str] = typer.Argument(..., help="Image or data files, item numbers, or stored image "
                                        "paths (relative to the compressed folder)."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="Write a contact sheet PNG: each query, "
                                         "then its neighbours."),
    as_json: bool = typer.Option(False, "--json", help="Print the neighbours as JSON."),
    given: Given = None,
) -> None:
    """The stored items nearest to each query in code space (exact search)."""
    from aetk.compress import neighbors

    options = given[NeighborsOptions]
    k, metric = options.k, options.metric
    results = neighbors(codes, queries, options, sheet=sheet)
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
