"""Files that appear whole or not at all: write a temporary file in the same folder, flush,
fsync, then rename over the target (atomic on POSIX). A crash, a full disk or an
exception leaves the old file, or none, never half of one. Standard library only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: p appears when the block ends without error."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush, fsync, then rename."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames inside a folder durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "fsync_folder"]


class NotAFolderError(OSError):
    """The path exists, and is a file, not a folder."""


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Make ``folder`` (with its parents) and prove a file can be created in it, before any
    slow work. Raises NotAFolderError when it exists as a file, OSError when unwritable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotAFolderError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".aetk-write-test-"):
        pass
