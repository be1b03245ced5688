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


def rate_text(completed: float, elapsed: float | None) -> str:
    """Images per second over the whole elapsed time (seconds per image when below 0.1/s)."""
    if not elapsed or not completed:
        return "— img/s"
    rate = completed / elapsed
    return f"{rate:.2f} img/s" if rate >= 0.1 else f"{elapsed / completed:.1f} s/img"


def denoise_cli(
    inputs: List[Path] = typer.Argument(..., help="Image files and folders (searched recursively)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: <input>_denoised "
                                       "beside each input folder, <name>_denoised.<ext> beside each file)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="An exported .onnx, an `aetk export` folder "
                                        "or an `aetk train` run (default: the shipped blind Gaussian denoiser)."),
    sigma: Optional[float] = typer.Option(None, "--sigma", min=0, help="Noise level (0-255 scale) for non-blind models."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Tiles per model call (default 4)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Threads decoding and encoding files."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads."),
    tile: Optional[int] = typer.Option(None, "--tile", min=8, help="Largest tile side in pixels (default 512); images are cut into equal tiles."),
    overlap: Optional[int] = typer.Option(None, "--overlap", min=0, help="Tile overlap in pixels (default 32)."),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", help="Average the model over 1, 2, 4 or 8 mirrored "
                                           "and rotated copies of each tile: a little more quality for 2x, 4x or 8x "
                                           "the time. Default 1; with the shipped model, 4 on lightly noisy images."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Write this format instead of the input's: "
                                      "png, jpeg, tiff, bmp or webp."),
    quality: int = typer.Option(95, "--quality", min=1, max=100, help="JPEG/WebP quality."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip images whose output exists "
                                       "(finishes an interrupted run)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be written, and stop."),
    max_pixels: int = typer.Option(89_478_485, "--max-pixels", min=1, help="Refuse larger images "
                                   "(decompression-bomb guard; decode memory is bounded too, see AETK_DECODE_MEMORY)."),
    report: bool = typer.Option(False, "--report", help="Print PSNR/SSIM of each image before and after, "
                                "against its clean reference (--reference), and the mean."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Folder of clean images laid out like "
                                             "the inputs (same relative paths; any image suffix)."),
) -> None:
    """Denoise image files and folders; outputs mirror the input tree, inputs are never overwritten."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from aetk.denoise import DenoiseInputError, denoise_paths

    if report and reference is None:
        raise DenoiseInputError("--report needs --reference DIR: a folder of the clean images to compare with")
    console = Console(stderr=True)

    class Rate(ProgressColumn):
        """Images over the whole elapsed time: outputs finish in bursts (writes are
        collected a few at a time), so Rich's windowed speed would read a burst as the rate."""

        def render(self, task) -> Text:
            return Text(rate_text(task.completed, task.finished_time if task.finished else task.elapsed))

    bar = Progress(TextColumn("denoise"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn(),
                   console=console, transient=False)
    task = None

    def on_start(n: int) -> None:
        nonlocal task
        bar.start()
        task = bar.add_task("denoise", total=n)

    def on_progress(status: str, _mp: float) -> None:
        bar.advance(task)

    try:  # errors go to the one handler in cli/main.py (one line and the exit code)
        summary = denoise_paths(inputs, out, model, device=device, sigma=sigma, batch_size=batch_size,
                                workers=workers, tile=tile, overlap=overlap, fmt=fmt, quality=quality,
                                skip_existing=skip_existing, dry_run=dry_run, threads=threads,
                                max_pixels=max_pixels, ensemble=ensemble, on_start=on_start, on_progress=on_progress,
                                reference=reference)
    finally:
        bar.stop()
    if dry_run:
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
