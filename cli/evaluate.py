"""``aetk eval`` and ``aetk sample``: metrics side by side with PCA, and pictures of a run.

    aetk eval runs/deep                    # runs/deep/eval/metrics.json + PNGs, a table
    aetk eval runs/deep --split train --limit 1000
    aetk sample runs/vae -n 64 --seed 1    # runs/vae/eval/samples.png

The work is done by ``aetk.evaluate.evaluate_run`` and ``aetk.evaluate.sample_run``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer

SPLITS = ("test", "train")
LOWER_IS_BETTER = ("sse_per_example", "mse_per_element", "bce_per_example", "sse_per_example_pixel",
                   "mse_per_element_pixel", "denoise_sse_per_example")
HIGHER_IS_BETTER = ("psnr_db", "psnr_db_pixel", "denoise_psnr_reconstructed_db", "denoise_gain_db")


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.4g}"
    return str(v)


def print_metrics(metrics: dict[str, Any], console=None) -> None:
    """The metrics as a rich table (model and PCA side by side), then the files written."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from aetk.evaluate import METRIC_LABELS

    console = console or Console()
    if metrics.get("denoising"):
        print_denoising(metrics, console)
    model, pca = metrics.get("model", {}), metrics.get("pca", {})
    kind = metrics.get("kind", "model")
    if metrics.get("base"):
        kind = f"{kind} ({metrics['base']})"
    what = "clean inputs reconstructed" if metrics.get("denoising") else "reconstructions"
    table = Table(title=escape(f"{kind} on {metrics.get('data')}, {metrics.get('split')} split "
                               f"({metrics.get('examples')} examples): {what}"))
    with_pca = not metrics.get("pca_identity")  # PCA as the identity is no baseline (a note says so)
    table.add_column("metric")
    table.add_column(escape(f"{kind}, code {metrics.get('code_dim')}"), justify="right")
    if with_pca:
        table.add_column(f"PCA, {metrics.get('pca_components')} comp.", justify="right")
    keys = [k for k in METRIC_LABELS if k in model or k in pca]
    keys += [k for k in list(model) + list(pca) if k not in keys]
    for key in dict.fromkeys(keys):
        a, b = model.get(key), pca.get(key)
        sa, sb = escape(_fmt(a)), escape(_fmt(b))
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b:
            better_a = (a < b) if key in LOWER_IS_BETTER else (a > b) if key in HIGHER_IS_BETTER else None
            if better_a is True:
                sa = f"[bold green]{sa}[/]"
            elif better_a is False:
                sb = f"[bold green]{sb}[/]"
        if with_pca:
            table.add_row(escape(METRIC_LABELS.get(key, key)), sa, sb)
        elif key in model:
            table.add_row(escape(METRIC_LABELS.get(key, key)), sa)
    console.print(table)
    ratio = metrics.get("pca_explained_variance_ratio")
    console.print(escape(
        f"normalization: {metrics.get('normalization')}; data range {_fmt(metrics.get('data_range'))} "
        f"({metrics.get('data_range_from')}); PCA explains "
        f"{_fmt(100 * ratio) if ratio is not None else '—'}% of the training variance"))
    for note in metrics.get("notes", []):
        console.print(escape(f"note: {note}"))
    for warning in metrics.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/]")
    for name, path in metrics.get("files", {}).items():
        console.print(f"{escape(name)}: {escape(str(path))}", soft_wrap=True)


def print_denoising(metrics: dict[str, Any], console) -> None:
    """A denoiser's table: noisy input and denoised output, each against the clean target."""
    from rich.markup import escape
    from rich.table import Table

    from aetk.evaluate import METRIC_LABELS

    den = metrics["denoising"]
    kind = metrics.get("kind", "model")
    corruption = metrics.get("corruption") or "the model's own noise"
    table = Table(title=escape(f"denoising on {metrics.get('data')}, {metrics.get('split')} split "
                               f"({metrics.get('examples')} examples, {corruption}; {den.get('space')}), "
                               f"against the clean target"))
    cols = [("noisy", "noisy input"), ("denoised", f"{kind}, denoised")]
    if den.get("pca"):
        cols.append(("pca", f"PCA {metrics.get('pca_components')} comp., from noisy"))
    table.add_column("metric")
    for _, title in cols:
        table.add_column(escape(title), justify="right")
    for key in ("psnr_db", "mse_per_element", "sse_per_example"):
        values = [(den.get(name) or {}).get(key) for name, _ in cols]
        nums = [v for v in values if isinstance(v, (int, float))]
        best = (max(nums) if key in HIGHER_IS_BETTER else min(nums)) if nums else None
        cells = [f"[bold green]{escape(_fmt(v))}[/]" if v == best and len(nums) > 1 else escape(_fmt(v))
                 for v in values]
        table.add_row(escape(METRIC_LABELS.get(key, key)), *cells)
    p_in, p_out = (den.get("noisy") or {}).get("psnr_db"), (den.get("denoised") or {}).get("psnr_db")
    if isinstance(p_in, (int, float)) and isinstance(p_out, (int, float)):
        table.caption = f"gain {p_out - p_in:+.2f} dB"
    console.print(table)


def eval_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    split: str = typer.Option("test", "--split", help="Data to evaluate: test (the default; the "
                              "training data when there is no test set) or train."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Evaluate only the first N examples."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:
    """Metrics of a trained run next to PCA of the same code size, and pictures (in RUN/eval)."""
    if split not in SPLITS:
        raise typer.BadParameter(f"{split!r} is not one of {', '.join(SPLITS)}", param_hint="--split")
    from aetk.evaluate import evaluate_run

    from ._progress import RichProgress

    with RichProgress() as bar:  # errors go to the one handler in cli/_errors.py
        metrics = evaluate_run(run, split=split, limit=limit, device=device, progress=bar)
    print_metrics(metrics)


def sample_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    n: int = typer.Option(64, "--n", "-n", min=1, help="Number of samples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random draws."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="PNG to write (default RUN/eval/samples.png)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    fitted_codes: bool = typer.Option(False, "--fitted-codes", help="For a model that is not generative: "
                                      "decode codes drawn from a Gaussian fitted to its training codes "
                                      "(a look at its code space, not samples of the data)."),
) -> None:
    """A grid of generated examples from a generative model (a VAE); other models are refused
    unless --fitted-codes is given."""
    from aetk.evaluate import sample_run

    path = sample_run(run, n=n, seed=seed, out=out, device=device, fitted_codes=fitted_codes)
    typer.echo(f"wrote {n} samples to {path}")
