"""Image files' formats and bit depths, in one place for training data, ``aetk denoise`` and
``aetk compress``/``decompress``: which suffixes aetk reads and writes, the Pillow format
of each, which formats keep 16 bits, and the encoding and decoding of 16-bit colour (Pillow
keeps only 8 of its 16 bits per sample, so OpenCV reads and writes it).

    fmt = pil_format(".tif")                          # "TIFF"
    data = encode_image(hwc_uint16, fmt)              # file bytes: 8/16-bit gray or RGB(A)
    rgb16 = read_16bit_colour(path)                   # (H, W, 3 or 4) uint16

Opening files safely (regular files only, decode memory bounded, the decompression-bomb
guard) is aetk.data.imageguard's: every reader goes through ``guarded_image``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from aetk.errors import UserInputError
from aetk.data.imageguard import ImageReadError, open_regular

# The suffixes aetk reads as images (and writes back), each with its Pillow format.
EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
              ".webp": "WEBP"}
IMAGE_SUFFIXES = tuple(EXTENSIONS)
# Format names a user may ask for (--format), each with the suffix it writes.
FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "tiff": ".tif", "tif": ".tif", "bmp": ".bmp",
           "webp": ".webp"}
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # of those, the formats that keep 16 bits per sample
DEFAULT_QUALITY = 95  # JPEG and lossy WebP


class ImageWriteError(UserInputError):
    """An array that cannot be written as an image of the format asked for."""


def pil_format(suffix: str) -> str:
    """The Pillow format that writes files with ``suffix`` (".jpg" -> "JPEG")."""
    fmt = EXTENSIONS.get(suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"cannot write images of type {suffix!r} (aetk writes {', '.join(IMAGE_SUFFIXES)})")
    return fmt


def read_16bit_colour(path: str | os.PathLike) -> np.ndarray:
    """(H, W, C) uint16 RGB or RGBA of a 16-bit colour PNG or TIFF, through OpenCV."""
    try:
        import cv2
    except ImportError as exc:  # a declared dependency; an installation without it
        raise ImageReadError(f"{path}: 16-bit colour images need OpenCV "
                             f"(pip install opencv-python-headless)") from exc
    with open_regular(path) as f:
        data = np.frombuffer(f.read(), np.uint8)
    a = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if a is None or a.ndim != 3 or a.dtype != np.uint16:
        raise ImageReadError(f"{path}: corrupt or truncated 16-bit colour image")
    return a[..., [2, 1, 0, 3][:a.shape[-1]]] if a.shape[-1] in (3, 4) else a  # OpenCV's BGR(A) -> RGB(A)


def pil_image(a: np.ndarray):
    """A Pillow image of an (H, W) or (H, W, C) uint8 or (H, W) uint16 array: mode L, LA,
    RGB, RGBA or I;16 from the channels and the type."""
    from PIL import Image

    a = np.ascontiguousarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a)
    if a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(a)  # mode I;16
    if a.dtype != np.uint8:
        raise ImageWriteError(f"an image array must be uint8 (or uint16 gray), got {a.dtype} of shape {a.shape}")
    return Image.fromarray(a)


def encode_image(a: np.ndarray, fmt: str, **options: Any) -> bytes:
    """File bytes of an (H, W) or (H, W, C) image array in Pillow format ``fmt``: uint8 in any
    format; uint16 gray and 16-bit colour (RGB, RGBA) kept 16-bit in PNG and TIFF (colour
    through OpenCV, which takes no ``options``); ``options`` go to Pillow's ``save``."""
    if a.dtype == np.uint16 and a.ndim == 3 and a.shape[-1] in (3, 4):
        if fmt not in SIXTEEN_BIT_FORMATS:
            raise ImageWriteError(f"16-bit colour images are written as PNG or TIFF, not {fmt}")
        import cv2

        bgr = np.ascontiguousarray(a[..., [2, 1, 0, 3][:a.shape[-1]]])
        ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tif", bgr)
        if not ok:
            raise ImageWriteError(f"OpenCV could not encode a {bgr.shape} 16-bit colour {fmt} image")
        return buf.tobytes()
    buf = io.BytesIO()
    pil_image(a).save(buf, format=fmt, **options)
    return buf.getvalue()


__all__ = ["DEFAULT_QUALITY", "EXTENSIONS", "FORMATS", "IMAGE_SUFFIXES", "SIXTEEN_BIT_FORMATS", "ImageWriteError",
           "encode_image", "pil_format", "pil_image", "read_16bit_colour"]
