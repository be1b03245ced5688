"""Typer options built from the library's options dataclasses (aetk/options.py), so that each
default, flag and help text is written once, beside the field it belongs to.

    @with_options(DenoiseOptions)
    def denoise_cli(inputs: List[Path] = typer.Argument(...), given: Given = None) -> None:
        options = given[DenoiseOptions]          # a DenoiseOptions built from the flags

The command's own parameters (arguments, flags that are not options of the job) come first;
every flagged field of the classes follows as a Typer option of the same name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable

import typer

from aetk.options import FLAG, flagged_fields

GIVEN = "given"


class Given(dict):
    """The options a command was given: ``given[DenoiseOptions]`` is that class's instance."""


def _typer_parameter(field: dataclasses.Field, hint: Any) -> inspect.Parameter:
    meta = field.metadata
    rules = meta.get("rules", {})
    decls = [meta[FLAG]] + ([meta["short"]] if meta.get("short") else [])
    bounds = {k: rules[k] for k in ("min", "max") if k in rules and hint in (int, float, typing.Optional[int],
                                                                              typing.Optional[float])}
    info = typer.Option(field.default, *decls, help=meta.get("help"), **bounds)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=hint)


def with_options(*classes: type, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a Typer command one option per flagged field of ``classes`` (less ``skip``); the
    command receives them built, as ``given`` (a Given keyed by class)."""

    def wrap(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)  # (annotations are strings under `from __future__`)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(command).parameters.values() if p.name != GIVEN]
        fields: dict[str, tuple[type, dataclasses.Field]] = {}
        extra = []
        for cls in classes:
            hints = typing.get_type_hints(cls)
            for f in flagged_fields(cls):
                if f.name in skip:
                    continue
                if f.name in fields or any(p.name == f.name for p in own):
                    raise TypeError(f"{command.__name__}: option {f.name!r} is declared twice")
                fields[f.name] = (cls, f)
                extra.append(_typer_parameter(f, hints[f.name]))

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = Given()
            for cls in classes:
                values = {name: kwargs.pop(name) for name, (c, _) in fields.items() if c is cls}
                given[cls] = cls(**values)
            return command(**kwargs, given=given)

        run.__signature__ = inspect.Signature(own + extra)
        run.__annotations__ = {}
        del run.__wrapped__  # Typer must read the signature above, not the command's
        return run

    return wrap


__all__ = ["Given", "with_options"]
