"""``aetk export``: a trained run as validated ONNX files (and a Triton model repository).

    aetk export runs/conv -o out/                  # encoder.onnx, decoder.onnx, autoencoder.onnx
    aetk export runs/conv -o out/ --fp16 --int8    # + *.fp16.onnx, *.int8.onnx, accuracy change
    aetk export runs/conv -o out/ --triton repo/   # + repo/<name>_encoder/{config.pbtxt,1/model.onnx}

The work is done by ``aetk.export.export_run``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from aetk.export.options import ExportOptions, TritonOptions

from ._options import Given, with_options
from ._progress import RichProgress


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "—" if v is None else str(v)


def print_result(result, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    table = Table(title=escape(f"validated against PyTorch ({result.out_dir})"))
    for col in ("graph", "batch", "output", "shape", "max |ORT − torch|", "atol"):
        table.add_column(col, justify="right" if col in ("max |ORT − torch|", "atol") else "left")
    for graph, batches in result.validation.items():
        for batch, outputs in batches.items():
            for name, s in outputs.items():
                table.add_row(graph, batch, name, str(tuple(s["shape"])), _fmt(s["max_abs_diff"]), _fmt(s["atol"]))
    console.print(table)
    if result.variants:
        vt = Table(title="reduced-precision variants against float32 (ONNX Runtime, CPU)")
        for col in ("file", "output", "max abs diff", "relative RMS diff", "PSNR f32 → variant (dB)"):
            vt.add_column(col, justify="left" if col in ("file", "output") else "right")
        for key, acc in result.variants.items():
            if "not_measured" in acc:
                vt.add_row(result.files[key], "—", "—", "—", escape(acc["not_measured"]))
                continue
            p = acc.get("psnr_db")
            ptxt = f"{p['float32']:.2f} → {p['variant']:.2f} ({p['change']:+.2f})" if p else "—"
            for name, s in acc.items():
                if name != "psnr_db":
                    vt.add_row(result.files[key], name, _fmt(s["max_abs_diff"]), _fmt(s["rel_rms_diff"]), ptxt)
        console.print(vt)
    for w in result.warnings:
        console.print(f"[yellow]warning: {escape(w)}[/]")
    console.print(escape(f"wrote {', '.join(result.files.values())} and export.json to {result.out_dir}"),
                  soft_wrap=True)
    if result.triton:
        console.print(escape(f"Triton model repository: {result.triton}"), soft_wrap=True)


@with_options(ExportOptions, TritonOptions)
def export_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the ONNX files (made if missing)."),
    given: Given = None,
) -> None:
    """Export a trained run to ONNX: encoder, decoder and autoencoder, validated against PyTorch."""
    from aetk.export import export_run

    triton = given[TritonOptions]
    options = replace(given[ExportOptions], triton=triton if triton.repository is not None else None)
    with RichProgress() as bar:  # errors go to the one handler in cli/_errors.py
        result = export_run(run, out, options, bar)
    print_result(result)
