"""Files that appear whole or not at all: write a temporary file in the same folder, flush,
fsync, then rename over the target (atomic on POSIX). A crash, a full disk or an
exception leaves the old file, or none, never half of one. Standard library only."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from aetk.errors import UserInputError


TEMP_SUFFIX = ".tmp"
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)


def stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporaries that killed writes left in ``folder`` (not its subfolders)."""
    return sorted(p for p in Path(folder).glob(f".*{TEMP_SUFFIX}") if p.is_file())


def target_name(temporary: str | os.PathLike) -> str:
    """The name of the file a temporary was written for: ``.NAME.<random>.tmp`` -> ``NAME``."""
    return Path(temporary).name[1:].removesuffix(TEMP_SUFFIX).rsplit(".", 1)[0]


def remove_stray_temporaries(folder: str | os.PathLike,
                             of: Callable[[str], bool] | None = None) -> list[Path]:
    """Remove the temporaries killed writes left in ``folder`` (only those written for a name
    ``of`` accepts, when given) and return them. Call it when no live writer can own them
    (holding the folder's lock, or before the writes start)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    removed = [p for p in stray_temporaries(folder) if of is None or of(target_name(p))]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


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


def publish(source: str | os.PathLike, path: str | os.PathLike, *, sync: bool = True) -> None:
    """Rename a finished file over ``path`` (atomic on POSIX), fsyncing it first unless the
    caller makes a batch of files durable at once (``sync=False``, then one ``os.sync``)."""
    if sync:
        with open(source, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(source, path)


@contextlib.contextmanager
def staging_folder(parent: str | os.PathLike, label: str) -> Iterator[Path]:
    """A temporary folder inside ``parent`` (``.label-<random>.tmp``) for files that are
    written, checked, then published one by one; removed with what is left when the block ends."""
    stage = Path(tempfile.mkdtemp(dir=parent, prefix=f".{label}-", suffix=TEMP_SUFFIX))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, sync: bool = True) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: writer(tmp)``: for writers that take a file name (safetensors,
    numpy). ``tmp`` is a temporary beside ``p`` with the umask's mode; it is fsynced (unless
    ``sync=False``: see :func:`publish`) and renamed over ``p`` when the block ends without
    error, and removed when it does not."""
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
        publish(tmp, path, sync=sync)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if (isinstance(exc, OSError) and type(exc) is OSError and exc.filename is None
                and exc.errno in _DISK_ERRORS):  # a write to this file: say which (one_line shows it)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, sync: bool = True) -> Iterator[IO]:
    """``with atomic_open(p) as f: f.write(...)``: p appears when the block ends without error."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    with atomic_path(path, sync=sync) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Write to a temporary file in the same folder, flush, fsync (unless ``sync=False``), then rename."""
    with atomic_open(path, "wb", sync=sync) as f:
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
           "fsync_folder", "new_file_mode", "publish", "remove_stray_temporaries", "staging_folder",
           "stray_temporaries", "target_name"]


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
