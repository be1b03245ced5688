"""``aetk denoise``: batch-denoise images with the shipped model or your own.

    aetk denoise photos/                       # -> photos_denoised/, same tree, same formats
    aetk denoise a.png b.jpg scans/ -o clean/ --format png --skip-existing
    aetk denoise photos/ --model out/ --device cuda --tile 512
    aetk denoise noisy/ -o clean/ --report --reference truth/   # + PSNR/SSIM per image and the mean

The work is done by ``aetk.denoise.denoise_paths``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aetk.denoise.options import DenoiseOptions

from ._options import Given, with_options
from ._progress import RichProgress, rate_text  # noqa: F401  (rate_text: tests import it from here)


@with_options(DenoiseOptions)
def denoise_cli(
    inputs: List[Path] = typer.Argument(..., help="Image files and folders (searched recursively)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <input>_denoised "
                                       "beside each input folder, <name>_denoised.<ext> beside each file)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="An exported .onnx, an `aetk export` folder "
                                        "or an `aetk train` run (default: the shipped blind denoisers, "
                                        "colour.onnx for colour images and gray.onnx for grayscale ones)."),
    report: bool = typer.Option(False, "--report", help="Print PSNR/SSIM of each image before and after, "
                                "against its clean reference (--reference), and the mean."),
    given: Given = None,
) -> None:
    """Denoise image files and folders; outputs mirror the input tree, inputs are never overwritten."""
    from rich.console import Console
    from rich.markup import escape

    from aetk.denoise import DenoiseInputError, denoise_paths

    options = given[DenoiseOptions]
    if report and options.reference is None:
        raise DenoiseInputError("--report needs --reference DIR: a folder of the clean images to compare with")
    console = Console(stderr=True)
    with RichProgress(transient=False, overall_rate=True) as bar:  # errors: the one handler in cli/_errors.py
        summary = denoise_paths(inputs, out, model, options, bar)
    if options.dry_run:
        for src, dst in summary.planned:
            typer.echo(f"{src} -> {dst}")
        typer.echo(f"{len(summary.planned)} image(s) would be denoised (dry run: nothing written)")
        return
    for note in summary.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    for label, reason in summary.skipped:
        console.print(f"[yellow]skipped[/] {escape(label)}: {escape(reason)}", soft_wrap=True)
    for label, reason in summary.failed:
        console.print(f"[red]failed[/] {escape(label)}: {escape(reason)}", soft_wrap=True)
    if summary.report is not None and (report or summary.report.scores):
        print_report(summary.report, Console())  # stdout: the numbers are the output
    rate = summary.megapixels / summary.seconds if summary.seconds > 0 else 0.0
    typer.echo(f"done {len(summary.done)}, skipped {len(summary.skipped)}, failed {len(summary.failed)} "
               f"({summary.megapixels:.1f} MP in {summary.seconds:.1f} s, {rate:.2f} MP/s)")
    if not summary.ok:
        raise typer.Exit(1)


def print_report(report, console) -> None:
    """PSNR/SSIM per image and the mean, as a table (aetk.denoise.report has the numbers)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="against the clean reference")
    for col in ("image", "PSNR in (dB)", "PSNR out (dB)", "gain (dB)", "SSIM in", "SSIM out"):
        table.add_column(col, justify="left" if col == "image" else "right")

    def row(s, style: str = "") -> None:
        cells = [escape(s.label), f"{s.psnr_in:.2f}", f"{s.psnr_out:.2f}", f"{s.gain_db:+.2f}",
                 f"{s.ssim_in:.4f}", f"{s.ssim_out:.4f}"]
        table.add_row(*cells, style=style)

    for s in report.scores:
        row(s)
    mean = report.mean()
    if mean is not None:
        table.add_section()
        row(mean, "bold")
    console.print(table)
    for label, why in report.missing:
        console.print(f"[yellow]no score[/] {escape(label)}: {escape(why)}", soft_wrap=True)
