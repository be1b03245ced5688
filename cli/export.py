"""``aetk export``: a trained run as validated ONNX files (and a Triton model repository).

    aetk export runs/conv -o out/                  # encoder.onnx, decoder.onnx, autoencoder.onnx
    aetk export runs/conv -o out/ --fp16 --int8    # + *.fp16.onnx, *.int8.onnx, accuracy change
    aetk export runs/conv -o out/ --triton repo/   # + repo/<name>_encoder/{config.pbtxt,1/model.onnx}

The work is done by ``aetk.export.export_run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


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


def export_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the ONNX files (made if missing)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write float16 variants (for GPUs)."),
    int8: bool = typer.Option(False, "--int8", help="Also write int8 variants (ONNX Runtime quantization: "
                              "static with calibration for conv models, dynamic for MLPs)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (18 or newer; older ones get a warning)."),
    triton: Optional[Path] = typer.Option(None, "--triton", help="Also write a Triton model repository here."),
    triton_name: Optional[str] = typer.Option(None, "--triton-name",
                                              help="Model name prefix in the repository (default: the run folder's name)."),
    triton_max_batch: int = typer.Option(1024, "--triton-max-batch", min=1, help="Triton max_batch_size."),
    triton_kind: str = typer.Option("auto", "--triton-kind", help="Triton instance group: auto, gpu or cpu."),
    atol: float = typer.Option(1e-5, "--atol", min=0.0, help="Validation: absolute tolerance, ONNX Runtime vs PyTorch "
                               "(deep conv nets may need 1e-4: float32 rounding adds up over layers)."),
    rtol: float = typer.Option(1e-5, "--rtol", min=0.0, help="Validation: relative tolerance."),
) -> None:
    """Export a trained run to ONNX: encoder, decoder and autoencoder, validated against PyTorch."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from aetk.export import export_run

    if triton_kind not in ("auto", "gpu", "cpu"):
        raise typer.BadParameter(f"{triton_kind!r} is not one of auto, gpu, cpu", param_hint="--triton-kind")
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} steps"),
               TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:  # errors go to the one handler in cli/main.py
        task = bar.add_task("export", total=None)  # VAEs have one graph more

        def step(msg: str) -> None:
            bar.update(task, description=msg, advance=1)

        result = export_run(run, out, opset=opset, fp16=fp16, int8=int8, triton=triton,
                            triton_name=triton_name, triton_max_batch=triton_max_batch,
                            triton_kind=triton_kind, atol=atol, rtol=rtol, progress=step)
    print_result(result)
