"""Argument checks shared by every layer: one rule for "a positive integer", raised as the
caller's own error class so each layer's errors keep their type. Standard library only."""

from __future__ import annotations

import numbers
from typing import Any

from aetk.errors import UserInputError


def positive_int(name: str, value: Any, *, error: type[Exception] = UserInputError, allow_none: bool = False,
                 allow_zero: bool = False, what: str | None = None) -> int | None:
    """``value`` as an int when it is an integer >= 1 (>= 0 with ``allow_zero``; None passes
    with ``allow_none``), else ``error("NAME must be WHAT, got VALUE")``. Booleans and floats
    are refused (``True`` is not a count); numpy integers are taken."""
    if value is None and allow_none:
        return None
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral or value < (0 if allow_zero else 1):
        if what is None:
            what = "an integer >= 0" if allow_zero else "a positive integer"
            what += " or None" if allow_none else ""
        raise error(f"{name} must be {what}, got {value!r}")
    return int(value)


__all__ = ["positive_int"]
