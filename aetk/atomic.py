"""Files that appear whole or not at all: write a temporary file in the same folder, flush,
fsync, then rename over the target (atomic on POSIX). A crash, a full disk or an
exception leaves the old file, or none, never half of one. Standard library only."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from aetk.errors import UserInputError


TEMP_SUFFIX = ".tmp"
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


def temp_name_pattern(name: str) -> str:
    """The glob that matches the temporaries an interrupted write of ``name`` may leave."""
    return f".{name}.*{TEMP_SUFFIX}"


def stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporaries that killed writes left in ``folder`` (not its subfolders)."""
    return sorted(p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file())


def new_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask."""
    try:  # Linux tells the umask without changing it (safe with threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere reading the umask means setting it: put it back at once
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)``: for writers that take a file name (safetensors,
    numpy). ``tmp`` is a temporary beside ``p`` with the umask's mode; it is fsynced and renamed
    over ``p`` when the block ends without error, and removed when it does not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        mode = new_file_mode()
        os.fchmod(fd, mode)  # mkstemp makes 0600; files follow the umask
        os.close(fd)
        yield Path(tmp)
        # Some writers replace the file rather than write into it (safetensors writes its own
        # 0600 temporary and renames it over tmp): give it the umask's mode again.
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (isinstance(exc, OSError) and type(exc) is OSError and exc.filename is None
                and exc.errno in _DISK_ERRORS):  # a write to this file: say which (one_line shows it)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: p appears when the block ends without error."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f


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


__all__ = ["TEMP_SUFFIX", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "fsync_folder", "new_file_mode", "stray_temporaries", "temp_name_pattern"]


class NotAFolderError(UserInputError, OSError):
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
