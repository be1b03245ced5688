"""``aetk serve``: an export folder or a Triton repository on the Open Inference Protocol.

    aetk serve out/                                  # http://127.0.0.1:8000/v2/models/encoder/infer
    aetk serve repo/ --host 0.0.0.0 --max-batch 128 --max-queue-delay-ms 2 --workers 2

The work is done by ``aetk.serve``; every default lives in ``aetk.serve.options.ServeOptions``.
"""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable, List

import typer

from aetk.options import flag
from aetk.serve.options import ServeOptionError, ServeOptions, default, help_text

from ._errors import OneLineCommand
from ._options import Given, with_options

# Flags the command declares itself: --preferred-batch takes comma-separated text, and
# --access-log has its --no-access-log.
OWN = ("preferred_batch", "access_log")
SERVE_HELP = "Serve exported models over HTTP: Open Inference Protocol (KServe v2), batching, metrics."


def _preferred(values: List[str]) -> tuple[int, ...]:
    parts = [part.strip() for v in values for part in v.split(",") if part.strip()]
    bad = [p for p in parts if not p.lstrip("+-").isdigit()]
    if bad:
        raise ServeOptionError(f"{flag(ServeOptions, 'preferred_batch')} takes integers, got {bad[0]!r}")
    return tuple(int(p) for p in parts)


def _in_field_order(command: Callable) -> Callable:
    """List the command's options in ServeOptions' field order (as ``--help`` shows them)."""
    order = {f.name: i for i, f in enumerate(fields(ServeOptions))}
    signature = inspect.signature(command)
    params = sorted((p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()),
                    key=lambda p: order.get(p.name, -1))  # (Typer passes every value by name)
    command.__signature__ = signature.replace(parameters=params)
    return command


@_in_field_order
@with_options(ServeOptions, skip=OWN)
def serve_cli(
    model_dir: Path = typer.Argument(..., help=help_text("model_dir")),
    preferred_batch: List[str] = typer.Option(default("preferred_batch"), flag(ServeOptions, "preferred_batch"),
                                              help=help_text("preferred_batch")),
    access_log: bool = typer.Option(default("access_log"), f"{flag(ServeOptions, 'access_log')}/--no-access-log",
                                    help=help_text("access_log")),
    given: Given = None,
) -> None:
    """Serve exported models over HTTP on the Open Inference Protocol (KServe v2)."""
    from aetk.serve.server import serve

    options = replace(given[ServeOptions], model_dir=model_dir, preferred_batch=_preferred(preferred_batch),
                      access_log=access_log)
    code = serve(options)
    raise typer.Exit(code)


def main() -> None:
    """``python -m aetk.cli.serve MODEL_DIR [flags]``: ``aetk serve`` alone, as the deploy image
    runs it; the image holds the runtime and the server, not the other commands' jobs."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=OneLineCommand, help=SERVE_HELP)(serve_cli)
    app(prog_name="aetk serve")


if __name__ == "__main__":
    main()
