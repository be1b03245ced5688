"""``aetk classify RUN``: semi-supervised use of a trained autoencoder."""

from __future__ import annotations

from pathlib import Path

import typer


def classify_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    labelled: int = typer.Option(1000, "--labelled", "-n", help="Labelled training examples to use."),
    epochs: int = typer.Option(20, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    freeze: bool = typer.Option(False, "--freeze", help="Train the head only (linear probe)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aetk.evaluate.classify import finetune_classifier

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task("loading the run and its data", total=None)

    def progress(stage: str, done: int, total: int) -> None:
        bar.update(task, description=stage, completed=done, total=total)

    with bar:  # errors go to the one handler in cli/main.py
        r = finetune_classifier(run, labelled=labelled, epochs=epochs, lr=lr, fine_tune=not freeze, seed=seed,
                                progress=progress)
    typer.echo(f"test accuracy with {r['labelled']} labels: {r['accuracy']:.4f} from the pretrained "
               f"encoder, {r['scratch_accuracy']:.4f} from scratch")
