"""The one guard every image reader in aetk goes through: regular files only, never a
blocking open, and decode memory bounded before any pixel is decoded.

    with guarded_image(path, max_pixels) as im:   # header read, size and memory checked
        im.load()                                 # decoded while holding its memory share

- **Regular files only.** ``open_regular`` opens with ``O_NONBLOCK`` and checks ``fstat``:
  a FIFO, socket or device can never block a reader, and is refused with one line
  (``NotRegularFileError``); folder walkers test ``regular_file_problem`` first and skip
  such entries with a reason.
- **Decompression bombs.** A small file can hold a huge image (an 88-megapixel PNG of
  274 KB takes gigabytes to decode). From the header alone, the pixels are checked against
  ``max_pixels`` and the decode's peak memory is estimated (``decoded_bytes``: the image as
  Pillow stores it, one converted copy, and float32 planes). An image whose estimate exceeds
  the process-wide budget is refused (``ImageTooLargeError``); the others take their share
  of the budget while they decode, so several huge images never decode at once, whatever
  the number of worker threads. The budget is ``AETK_DECODE_MEMORY`` bytes (suffixes K, M,
  G allowed), by default a quarter of the machine's memory, at most 2 GiB.
- Pillow's own decompression-bomb check is switched off (``Image.MAX_IMAGE_PIXELS = None``)
  because this is the guard: ``--max-pixels`` then means what it says.
- **Complete files.** ``check_complete`` reads a PNG's chunks (CRCs, up to IEND), looks for a
  JPEG's end marker, compares a WebP's or BMP's recorded size with the file's, and decodes
  the rest: truncated files are found when a folder is scanned, not mid-training.
"""

from __future__ import annotations

import os
import stat
import threading
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from aetk.data.source import DataError
from aetk.errors import UserInputError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's historical default limit (a 0.25 GB RGBA image)


class ImageReadError(DataError):
    """A file that cannot be read as an image: corrupt, truncated, not an image, too large,
    or not a regular file. The message starts with the file's path."""


class NotRegularFileError(ImageReadError):
    """A FIFO, socket, device or other special file where a regular file was expected."""


class ImageTooLargeError(ImageReadError):
    """An image over ``max_pixels`` or over the decode memory budget, found from its header."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a regular file (following symbolic links), or None if it is one.
    ``os.stat`` never blocks, even on a FIFO."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"{_kind(st.st_mode)}, not a regular file: skipped"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for regular files only. The open itself cannot block: it uses
    O_NONBLOCK (a FIFO without a writer would otherwise wait forever), then ``fstat`` checks
    what was opened, so a file swapped for a FIFO after a scan is caught too."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{path}: {_kind(st.st_mode)}, not a regular file; "
                                      f"aetk reads regular files only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # plain blocking reads from here on (a regular file)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# ---------------------------------------------------------------------------------------
# Decode memory

# Bytes per pixel of each Pillow mode as Pillow stores it (multi-band modes use 4 bytes).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}


def decoded_bytes(width: int, height: int, mode: str, bits: int = 8) -> int:
    """Peak bytes of decoding one image, from its header: the image as Pillow stores it
    (or as uint16 for 16-bit colour, ``bits=16``), one converted copy (palette or bilevel to
    RGB or L), and float32 planes of its colour bands."""
    from PIL import Image

    pixels = int(width) * int(height)
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    colour = 3 if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV") else max(1, bands - (1 if mode.endswith("A") else 0))
    stored = bands * 2 if bits == 16 and bands > 1 else _STORED_BYTES.get(mode, 4)
    converted = 4 if mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV") else 0
    return pixels * (stored + converted + 4 * colour)


def _parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:] if text else "", 1)
    number = text[:-1] if scale != 1 else text
    try:
        value = float(number) * scale
    except ValueError:
        raise UserInputError(f"AETK_DECODE_MEMORY={text!r}: expected a number of bytes such as "
                             f"2G, 512M or 1000000") from None
    if value <= 0:
        raise UserInputError(f"AETK_DECODE_MEMORY={text!r}: expected a positive number of bytes")
    return int(value)


def default_budget() -> int:
    """``AETK_DECODE_MEMORY``, else a quarter of physical memory, at most 2 GiB."""
    env = os.environ.get("AETK_DECODE_MEMORY")
    if env:
        return _parse_bytes(env)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 8 << 30
    return max(256 << 20, min(2 << 30, physical // 4))


class DecodeBudget:
    """Bytes of decode memory shared by every thread of the process: ``reserve(n)`` waits
    until ``n`` bytes are free (one image larger than the whole budget is refused instead)."""

    def __init__(self, capacity: int | None = None):
        self._capacity = capacity
        self._used = 0
        self._cond = threading.Condition()

    @property
    def capacity(self) -> int:
        if self._capacity is None:
            self._capacity = default_budget()
        return self._capacity

    @capacity.setter
    def capacity(self, value: int | None) -> None:
        with self._cond:
            self._capacity = value
            self._cond.notify_all()

    @property
    def used(self) -> int:
        return self._used

    def fits(self, n: int) -> bool:
        return n <= self.capacity

    @contextmanager
    def reserve(self, n: int) -> Iterator[None]:
        n = int(n)
        with self._cond:
            while self._used and self._used + n > self.capacity:
                self._cond.wait()
            self._used += n
        try:
            yield
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()


BUDGET = DecodeBudget()  # the process-wide one


def _pil():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # this module is the guard (see the module docstring)
    return Image


def sixteen_bit_colour(im) -> bool:
    """A PNG or TIFF that stores 16-bit colour samples (Pillow would decode them to 8 bits)."""
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
    rawmode = args[0] if isinstance(args, tuple) else args
    return isinstance(rawmode, str) and ";16" in rawmode


def check_header(path, im, max_pixels: int | None, budget: DecodeBudget = BUDGET,
                 hint: str = "raise it with --max-pixels") -> int:
    """The decode's estimated peak bytes; ImageTooLargeError when over ``max_pixels`` or the budget."""
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{path}: empty image ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                                 f"(a guard against decompression bombs{'; ' + hint if hint else ''})")
    need = decoded_bytes(w, h, im.mode, 16 if sixteen_bit_colour(im) else 8)
    if not budget.fits(need):
        raise ImageTooLargeError(
            f"{path}: {w}x{h} {im.mode} image would take about {need / 2**20:.0f} MiB to decode, over the "
            f"decode memory budget of {budget.capacity / 2**20:.0f} MiB (set AETK_DECODE_MEMORY to raise it)")
    return need


@contextmanager
def guarded_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  budget: DecodeBudget = BUDGET, hint: str = "raise it with --max-pixels"):
    """The image at ``path`` opened by Pillow (header read, no pixels yet), after the checks
    above; its share of the decode budget is held until the block ends. Pillow's errors on
    opening become ImageReadError naming the file."""
    Image = _pil()
    from PIL import UnidentifiedImageError

    with open_regular(path) as f:
        try:
            im = Image.open(f)
        except UnidentifiedImageError as exc:
            raise ImageReadError(f"{path}: not an image Pillow can read") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageReadError(f"{path}: corrupt or truncated image ({exc})") from exc
        with im:
            need = check_header(path, im, max_pixels, budget, hint)
            with budget.reserve(need):
                yield im


def check_complete(path: str | os.PathLike, im) -> None:
    """Cheap checks that the whole file is there, without decoding pixels where the format
    allows: a PNG's chunks and their CRCs up to IEND; a JPEG's end-of-image marker (a JPEG
    with other data after it, like a phone's motion photo, is decoded to make sure); the
    sizes a WebP or BMP header records against the file's. Other formats (TIFF) are decoded.
    ImageReadError if the file is incomplete or corrupt."""
    fmt = im.format
    try:
        if fmt == "PNG":
            Image = _pil()
            with open_regular(path) as f, Image.open(f) as again:
                again.verify()
            return
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(16)
            f.seek(max(0, size - 1024))
            tail = f.read()
        if fmt == "JPEG" and b"\xff\xd9" in tail:
            return
        if fmt == "WEBP" and head[:4] == b"RIFF":
            need = int.from_bytes(head[4:8], "little") + 8
            if size < need:
                raise ImageReadError(f"{path}: truncated WebP ({size} of {need} bytes)")
            return
        if fmt == "BMP" and head[:2] == b"BM":
            need = int.from_bytes(head[2:6], "little")
            if size < need:
                raise ImageReadError(f"{path}: truncated BMP ({size} of {need} bytes)")
            return
        Image = _pil()
        with open_regular(path) as f, Image.open(f) as again:
            again.load()  # decoded (within the budget the caller holds) to make sure
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image ({exc})") from exc


__all__ = ["BUDGET", "DEFAULT_MAX_PIXELS", "DecodeBudget", "ImageReadError", "ImageTooLargeError",
           "NotRegularFileError", "check_complete", "check_header", "decoded_bytes", "default_budget",
           "guarded_image", "open_regular", "regular_file_problem", "sixteen_bit_colour"]
