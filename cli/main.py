"""The ``aetk`` Typer application: one console command, subcommands registered here."""

from __future__ import annotations

import os
import traceback

import sys

import typer
from typer.core import TyperGroup

from aetk.errors import EXIT_BUG, AetkError, exit_code_for, one_line

from .classify import classify_cli
from .compress import compress_cli, decompress_cli, neighbors_cli
from .denoise import denoise_cli
from .evaluate import eval_cli, sample_cli
from .export import export_cli
from .info import info_cli
from .serve import serve_cli
from .train import train_cli

# Click's UsageError and NoArgsIsHelpError as Typer raises them (Typer may vendor its own Click).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_NoArgsIsHelp = getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", ())

class _OneLineErrors(TyperGroup):
    """Every command's errors end here: an AetkError or a disk error is one line and its exit
    code (aetk/errors.py has the table); anything else is a bug and keeps its traceback.
    ``aetk --debug`` (or AETK_DEBUG=1) shows the traceback for every error. Usage errors (a
    bad option value, a missing argument, an unknown command) are one line too, exit 2."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except _NoArgsIsHelp:
            raise
        except _UsageError as exc:
            if _debug(ctx):
                traceback.print_exc()
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            typer.secho(f"error: {' '.join(exc.format_message().split())} (see {where} --help)",
                        fg="red", err=True)
            ctx.exit(exc.exit_code)
        except (typer.Exit, typer.Abort, typer.TyperException):  # Typer's own: exits
            raise
        except (AetkError, OSError, KeyboardInterrupt) as exc:
            if _debug(ctx):
                traceback.print_exc()
            if isinstance(exc, KeyboardInterrupt):
                typer.secho("interrupted", fg="red", err=True)
            else:
                typer.secho(f"error: {one_line(exc)}", fg="red", err=True)
            ctx.exit(exit_code_for(exc))
        except Exception as exc:  # a bug: say so, with the traceback to report
            traceback.print_exc()
            typer.secho(f"internal error (a bug in aetk, please report it): {one_line(exc)}",
                        fg="red", err=True)
            ctx.exit(EXIT_BUG)


def _debug(ctx: typer.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("AETK_DEBUG", "") not in ("", "0")


app = typer.Typer(
    name="aetk",
    cls=_OneLineErrors,
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
app.command("serve", help="Serve exported models over HTTP: Open Inference Protocol (KServe v2), batching, metrics.")(
    serve_cli)
app.command("neighbors", help="Nearest stored items in code space; optional contact sheet.")(neighbors_cli)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
