"""The ``aetk`` Typer application: one console command, subcommands registered here."""

from __future__ import annotations

import typer

from ._errors import OneLineErrors
from .classify import classify_cli
from .compress import compress_cli, decompress_cli, neighbors_cli
from .denoise import denoise_cli
from .evaluate import eval_cli, sample_cli
from .export import export_cli
from .info import info_cli
from .serve import SERVE_HELP, serve_cli
from .train import train_cli

app = typer.Typer(
    name="aetk",
    cls=OneLineErrors,
    pretty_exceptions_enable=False,
    help="aetk, the autoencoder toolkit: train, export, denoise and compress.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(ctx: typer.Context,
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of every error.")) -> None:
    """aetk, the autoencoder toolkit: train, export, denoise and compress."""
    ctx.obj = {"debug": debug}


app.command("info", help="Show the version, the native kernels built, and the runtimes.")(info_cli)
app.command("train", help="Train an autoencoder (config.toml plus section.key=value overrides).")(
    train_cli)
app.command("eval", help="Evaluate a trained run: metrics next to PCA, pictures in RUN/eval.")(eval_cli)
app.command("sample", help="Draw a grid of generated examples from a trained run.")(sample_cli)
app.command("export", help="Export a trained run to validated ONNX files (and a Triton repository).")(
    export_cli)
app.command("denoise", help="Denoise images (files and folders) with the shipped model or your own.")(
    denoise_cli)
app.command("classify", help="Fine-tune a classifier on a few labels from a trained encoder.")(
    classify_cli)
app.command("compress", help="Encode a dataset into latent codes: shards, manifest, resumable, local or Ray.")(
    compress_cli)
app.command("decompress", help="Decode latent codes back to data (checksums first).")(decompress_cli)
app.command("serve", help=SERVE_HELP)(serve_cli)
app.command("neighbors", help="Nearest stored items in code space; optional contact sheet.")(neighbors_cli)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
