"""One frozen options dataclass per job, each field carrying its command-line flag.

    @dataclass(frozen=True)
    class DenoiseOptions:
        max_pixels: int = option(89_478_485, "--max-pixels", "Refuse larger images.", min=1)

    flag(DenoiseOptions, "max_pixels")        # "--max-pixels": what error messages name
    check(options, DenoiseInputError)         # each field against its declared range

The default lives only here: the CLI (cli/_options.py) builds its Typer options from these
fields, so ``aetk denoise --help`` shows the same default a Python caller gets, and a library
error names the option the way the user typed it. Standard library only.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from aetk.errors import UserInputError
from aetk.settings import check_value

FLAG = "flag"


def option(default: Any, flag: str, help: str, *, short: str | None = None, rules: dict | None = None,
           **range_rules: Any) -> Any:
    """A field of an options dataclass: its default, its flag (``--max-pixels``), an optional
    short flag (``-q``), the help text, and its allowed values (``min``, ``max``, ``below``,
    ``choices``, ``what``: as aetk.settings.setting)."""
    merged = {**(rules or {}), **{k: v for k, v in range_rules.items() if v is not None}}
    return dataclasses.field(default=default, metadata={FLAG: flag, "short": short, "help": help,
                                                        "rules": merged})


def flag(options: Any, name: str) -> str:
    """The command-line flag of field ``name`` of an options class (or instance)."""
    cls = options if isinstance(options, type) else type(options)
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get(FLAG, f"{cls.__name__}.{name}")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def flagged_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options class that have a flag (nested options have none)."""
    return [f for f in dataclasses.fields(cls) if FLAG in f.metadata]


def check(options: Any, error: type[UserInputError] = UserInputError) -> None:
    """Every flagged field of ``options`` against its type and declared range; the first bad
    one raises ``error`` naming its flag: "--shard-size must be a positive integer, got 0"."""
    hints = typing.get_type_hints(type(options))
    for f in flagged_fields(type(options)):
        value = getattr(options, f.name)
        try:
            check_value(f.metadata[FLAG], value, hints.get(f.name, Any), f.metadata.get("rules", {}))
        except UserInputError as exc:
            raise error(str(exc)) from None


def cli_defaults(cls: type) -> dict[str, Any]:
    """{flag: default} of an options class (what ``--help`` shows)."""
    return {f.metadata[FLAG]: f.default for f in flagged_fields(cls)}


__all__ = ["check", "cli_defaults", "flag", "flagged_fields", "option"]
