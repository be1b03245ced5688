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

from ._options import Given, with_options

# Flags the command declares itself: --preferred-batch takes comma-separated text, and
# --access-log has its --no-access-log.
OWN = ("preferred_batch", "access_log")


def _preferred(values: List[str]) -> tuple[int, ...]:
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise ServeOptionError(f"{flag(ServeOptions, 'preferred_batch')} takes integers, "
                                           f"got {part.strip()!r}") from None
    return tuple(out)


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
