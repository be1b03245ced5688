"""Typed config fields whose ranges are declared once, next to the field, and one check
that reads the types from the dataclass annotations and the ranges from the fields:

    @dataclass
    class TrainConfig:
        batch_size: int = setting(128, min=1)
        val_fraction: float = setting(0.1, min=0, below=1)
        optimizer: str = setting("adam", choices=("adam", "adamw"))

    check_fields("train", cfg)   # UserInputError: train.batch_size must be a positive integer, got -5

Standard library only (aetk.data.config uses it, and aetk.data stays torch-free).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from aetk.errors import UserInputError


class ConfigError(UserInputError):
    """A config value of the wrong type or out of its range, an unknown key or section."""


RULES = ("min", "max", "below", "choices", "length", "pattern", "what")


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **rules: Any) -> Any:
    """A dataclass field with its allowed values: ``min``/``max`` (inclusive), ``below``
    (exclusive upper bound), ``choices``, ``length`` (of a list), ``pattern`` (a regular
    expression a string must match whole); ``what`` replaces the generated description
    ("a positive integer") in error messages."""
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise TypeError(f"setting() got unknown rules {unknown}; valid: {', '.join(RULES)}")
    rules = {k: v for k, v in rules.items() if v is not None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"rules": rules})


def check_fields(section: str, obj: Any) -> None:
    """Check (and normalize: an int where a float is declared becomes a float) every field of
    the dataclass instance ``obj``; the first bad one raises ConfigError naming
    ``section.field``, what it must be, and the value it got."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        new = check_value(f"{section}.{f.name}", value, hints.get(f.name, Any), f.metadata.get("rules", {}))
        if new is not value:
            setattr(obj, f.name, new)


def check_value(key: str, value: Any, hint: Any, rules: dict[str, Any]) -> Any:
    ok, checked = _conforms(value, hint)
    if ok:
        ok = _in_range(checked, rules)
    if not ok:
        raise ConfigError(f"{key} must be {rules.get('what') or describe(hint, rules)}, got {value!r}")
    return checked


def describe(hint: Any, rules: dict[str, Any]) -> str:
    """What a value of this type and these rules is, in words: "a number in [0, 1)"."""
    if "choices" in rules:
        return "one of " + ", ".join(repr(c) for c in rules["choices"])
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if _is_union(hint):
        return " or ".join(describe(a, rules) for a in args)
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return "true or false"
    if origin in (int, float):
        what = "an integer" if origin is int else "a number"
        lo, hi, below = rules.get("min"), rules.get("max"), rules.get("below")
        if lo == 1 and origin is int and hi is None:
            return "a positive integer"
        if lo is not None and hi is not None:
            return f"{what} in [{_num(lo)}, {_num(hi)}]"
        if lo is not None and below is not None:
            return f"{what} in [{_num(lo)}, {_num(below)})"
        if lo is not None:
            return f"{what} >= {_num(lo)}"
        return what
    if origin is str:
        return "a string"
    if origin in (list, tuple):
        inner = args[0] if args else Any
        n = f"{rules['length']} " if "length" in rules else ""
        plural = {"a positive integer": "positive integers", "an integer": "integers", "a number": "numbers",
                  "a string": "strings"}.get(describe(inner, {k: v for k, v in rules.items() if k != "length"}),
                                             "values")
        return f"a list of {n}{plural}"
    if origin is dict:
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _conforms(value: Any, hint: Any) -> tuple[bool, Any]:
    """(does value have type hint, the value normalized: int -> float where float is declared)."""
    if hint is Any:
        return True, value
    if _is_union(hint):
        for arg in typing.get_args(hint):
            ok, v = _conforms(value, arg)
            if ok:
                return True, v
        return False, value
    if hint is type(None):
        return value is None, value
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return isinstance(value, bool), value
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, value if isinstance(value, float) else float(value)
    if origin is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(hint)
        if args and args[0] is not Any:
            items = [_conforms(v, args[0]) for v in value]
            if not all(ok for ok, _ in items):
                return False, value
            if any(v is not w for (_, v), w in zip(items, value)):
                value = type(value)(v for _, v in items)
        return True, value
    if origin is dict:
        return isinstance(value, dict), value
    return True, value  # a type this check does not know: the consumer checks it


def _in_range(value: Any, rules: dict[str, Any]) -> bool:
    if value is None:
        return True
    if "choices" in rules and value not in rules["choices"]:
        return False
    if "pattern" in rules and isinstance(value, str) and not re.fullmatch(rules["pattern"], value):
        return False
    if isinstance(value, (list, tuple)):
        if "length" in rules and len(value) != rules["length"]:
            return False
        item_rules = {k: v for k, v in rules.items() if k in ("min", "max", "below")}
        return all(_in_range(v, item_rules) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value) and rules.keys() & {"min", "max", "below"}:
            return False
        if "min" in rules and not value >= rules["min"]:
            return False
        if "max" in rules and not value <= rules["max"]:
            return False
        if "below" in rules and not value < rules["below"]:
            return False
    return True


__all__ = ["ConfigError", "check_fields", "check_value", "describe", "setting"]
