"""What every saved-folder class shares: a path that os functions accept, equality by path.
Standard library only (the runtime imports ExportDir)."""

from __future__ import annotations

import os
from pathlib import Path


class SavedFolder:
    """One folder aetk wrote; subclasses name the files inside (nothing is read until asked)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


__all__ = ["SavedFolder"]
