"""The one place command errors end (``aetk`` and the serve-only entry of the deploy image)."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable

import typer
from typer.core import TyperCommand, TyperGroup

from aetk.errors import EXIT_BUG, AetkError, exit_code_for, one_line

# Click's UsageError and NoArgsIsHelpError as Typer raises them (Typer may vendor its own Click).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_NoArgsIsHelp = getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", ())


def report_errors(invoke: Callable[[typer.Context], Any], ctx: typer.Context) -> Any:
    """Run ``invoke(ctx)``; an AetkError or a disk error is one line and its exit code
    (aetk/errors.py has the table); anything else is a bug and keeps its traceback.
    ``aetk --debug`` (or AETK_DEBUG=1) shows the traceback for every error. Usage errors (a
    bad option value, a missing argument, an unknown command) are one line too, exit 2."""
    try:
        return invoke(ctx)
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


class OneLineErrors(TyperGroup):
    """A command group whose commands' errors go through report_errors."""

    def invoke(self, ctx: typer.Context):
        return report_errors(super().invoke, ctx)


class OneLineCommand(TyperCommand):
    """A lone command (no group) whose errors go through report_errors."""

    def invoke(self, ctx: typer.Context):
        return report_errors(super().invoke, ctx)


def _debug(ctx: typer.Context) -> bool:
    root = ctx.find_root()
    return bool((root.obj or {}).get("debug")) or os.environ.get("AETK_DEBUG", "") not in ("", "0")
