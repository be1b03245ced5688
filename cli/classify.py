"""``aetk classify RUN``: semi-supervised use of a trained autoencoder."""

from __future__ import annotations

from pathlib import Path

import typer

from aetk.train.options import ClassifyOptions

from ._options import Given, with_options
from ._progress import RichProgress


@with_options(ClassifyOptions)
def classify_cli(
    run: Path = typer.Argument(..., help="A run folder written by `aetk train`."),
    given: Given = None,
) -> None:
    from aetk.evaluate.classify import finetune_classifier

    options = given[ClassifyOptions]
    with RichProgress() as bar:  # errors go to the one handler in cli/_errors.py
        r = finetune_classifier(run, options, bar)
    scratch = f", {r['scratch_accuracy']:.4f} from scratch" if "scratch_accuracy" in r else ""
    typer.echo(f"test accuracy with {r['labelled']} labels: {r['accuracy']:.4f} from the pretrained "
               f"encoder{scratch}")
