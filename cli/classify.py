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
    from aetk.train.classify import finetune_classifier

    r = finetune_classifier(run, labelled=labelled, epochs=epochs, lr=lr, fine_tune=not freeze, seed=seed)
    typer.echo(f"test accuracy with {r['labelled']} labels: {r['accuracy']:.4f} from the pretrained "
               f"encoder, {r['scratch_accuracy']:.4f} from scratch")
