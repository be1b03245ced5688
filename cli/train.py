"""``aetk train``: train any registered autoencoder from a TOML config and dotted overrides.

    aetk train run.toml train.epochs=5 model.widths=[256,64] --run-dir runs/deep
    aetk train --model conv --data fashion-mnist --run-dir runs/conv
    aetk train --run-dir runs/conv --resume
    aetk train --run-dir runs/conv --resume --epochs 20     # the run's config, 20 epochs
    aetk train run.toml --nproc-per-node 2 --run-dir runs/ddp
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from aetk.train.options import TrainOptions

from ._options import Given, with_options


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for a in args:
        if a.endswith(".toml") and "=" not in a and config is None:
            config = a
        else:
            overrides.append(a)
    return config, overrides


@with_options(TrainOptions)
def train_cli(
    args: Optional[List[str]] = typer.Argument(
        None, help="An optional config.toml, then section.key=value overrides."),
    run_dir: Path = typer.Option(..., "--run-dir", "-o", help="Folder for the run's files."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model kind (model.kind)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset path or name (data.path)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (train.epochs)."),
    given: Given = None,
) -> None:
    from aetk.models.registry import model_names

    config, overrides = _split_args(list(args or []))
    if model is not None:
        if model not in model_names():
            raise typer.BadParameter(
                f"unknown model {model!r}; valid models: {', '.join(model_names())}",
                param_hint="--model")
        overrides.insert(0, f"model.kind={model}")
    if data is not None:
        overrides.insert(0, f"data.path={data!r}".replace("'", '"'))
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    run_training(config, overrides, run_dir, given[TrainOptions])


def run_training(config: str | None, overrides: list[str], run_dir: Path,
                 options: TrainOptions = TrainOptions()) -> None:
    """The work behind ``aetk train`` (callable from Python). A resumed run starts from
    the run's saved config, with ``config``'s values and ``overrides`` on top (safe keys only).
    Every config value is checked here, before any data is read or any file written; errors
    (aetk.errors) go to the CLI's one-line handler."""
    from aetk.artifacts import RunDir
    from aetk.config import load_config
    from aetk.train.trainer import train

    resume, nproc_per_node = options.resume, options.nproc_per_node
    run = RunDir(run_dir)
    cfg = run.resume_config(config, overrides) if resume else load_config(config, overrides)
    if nproc_per_node > 1:
        from aetk.train.distributed import launch

        worker_args = ["--run-dir", str(run_dir)] + (["--config", config] if config else [])
        for o in overrides:
            worker_args += ["--set", o]
        if resume:
            worker_args.append("--resume")
        with run.lock():  # held for the workers: a second launch is refused before it starts
            code = launch(nproc_per_node, worker_args, run_locked=True)
        if code:
            raise typer.Exit(code)
        return
    result = train(cfg, run, resume=resume)
    last = result.history[-1] if result.history else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.endswith("loss"))
    typer.echo(f"trained {result.epochs} epoch(s), {result.steps} steps into {run_dir} ({summary})")
