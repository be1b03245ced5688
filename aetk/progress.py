"""One progress contract for every long job (compress, decompress, denoise, export).

A job calls ``start`` when a stage begins (``total`` units, or None when unknown),
``advance`` as units finish, and ``finish`` once at the end. The CLI draws it with Rich
(cli/_progress.py); a library caller passes nothing and gets ``NullProgress``, or passes
any object with these three methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    def start(self, description: str, total: int | None = None, unit: str = "items") -> None:
        """A stage begins: ``description`` names it, ``total`` units of ``unit`` (None: unknown)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current stage are done."""

    def finish(self) -> None:
        """The job is over (successful or not): stop drawing."""


class NullProgress:
    """Reports nothing: the default when a library caller passes no progress."""

    def start(self, description: str, total: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def or_null(progress: Progress | None) -> Progress:
    return NullProgress() if progress is None else progress


__all__ = ["NullProgress", "Progress", "or_null"]
