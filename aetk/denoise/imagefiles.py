"""Reading images into float planes and writing results back in the input's own mode.

    img = read_image(path, max_pixels)          # DecodedImage: (C, H, W) float32 in [0, 1]
    write_image(out_path, img, denoised, fmt)   # same mode and bit depth, alpha untouched

Modes kept as they are: L, LA, RGB, RGBA (8-bit), I;16 (16-bit grayscale) and, for PNG and
TIFF, 16-bit colour (RGB;16, RGBA;16: read and written with OpenCV, since Pillow keeps only
8 of their 16 bits). Others are converted on reading and written in the converted mode: P/PA
(palette) to RGB/RGBA, 1 (bilevel) to L, CMYK/YCbCr to RGB; 32-bit integer images holding
16-bit values to I;16. A 16-bit image written to an 8-bit-only format (JPEG, BMP, WebP) is
rounded to 8 bits, and the summary says so. EXIF orientation is applied on reading (the
output is stored upright, without the tag); the ICC profile and the rest of the EXIF data
are passed on (not for 16-bit colour, whose writer cannot carry them). Files are opened
through aetk.data.imageguard (regular files only, decode memory bounded); writes are atomic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aetk.atomic import atomic_open, atomic_write_bytes
from aetk.data.imageguard import DEFAULT_MAX_PIXELS, ImageReadError, guarded_image, open_regular, sixteen_bit_colour
from aetk.data.imageio import DEFAULT_QUALITY, SIXTEEN_BIT_FORMATS, encode_image, pil_image, read_16bit_colour
from aetk.dihedral import EXIF_ORIENTATION, symmetry

SIXTEEN_BIT_MODES = ("I;16", "RGB;16", "RGBA;16")


@dataclass
class DecodedImage:
    path: Path
    planes: np.ndarray  # (C, H, W) float32 in [0, 1]: the colour channels
    mode: str  # the mode written back: L, LA, RGB, RGBA, I;16, RGB;16 or RGBA;16
    format: str  # Pillow format name of the input
    alpha: np.ndarray | None = None  # (H, W) uint8 (uint16 for RGBA;16), passed through untouched
    info: dict[str, Any] = field(default_factory=dict)  # exif / icc_profile to pass on

    @property
    def bits(self) -> int:
        return 16 if self.mode in SIXTEEN_BIT_MODES else 8

    @property
    def megapixels(self) -> float:
        return self.planes.shape[1] * self.planes.shape[2] / 1e6


def read_image(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """One image file as float planes; ImageReadError (one line naming the file) when it is
    not a regular file, not an image, corrupt, or too large for --max-pixels or the decode
    memory budget (checked from the header, before decoding)."""
    from PIL import ImageOps

    try:
        with guarded_image(path, max_pixels) as im:
            fmt = im.format or "PNG"
            if sixteen_bit_colour(im) and fmt in SIXTEEN_BIT_FORMATS:
                return _decode_16bit_colour(path, im, fmt)
            im.load()
            im = ImageOps.exif_transpose(im)
            info = {k: im.info[k] for k in ("icc_profile", "exif") if im.info.get(k)}
            if fmt == "WEBP" and _webp_is_lossless(path):
                info["lossless"] = True
            return _decode(path, im, fmt, info)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data
        raise ImageReadError(f"{path}: corrupt or truncated image ({exc})") from exc


def _decode_16bit_colour(path: Path, im, fmt: str) -> DecodedImage:
    orientation = im.getexif().get(0x0112, 1)
    a = read_16bit_colour(path)  # (H, W, 3 or 4) uint16
    if a.shape[:2] != im.size[::-1]:
        raise ImageReadError(f"{path}: the header says {im.size[0]}x{im.size[1]} but the pixels "
                             f"decode as {a.shape[1]}x{a.shape[0]}")
    a = symmetry(a, EXIF_ORIENTATION.get(orientation, 0), axes=(0, 1))  # (H, W, C): upright
    alpha = a[..., 3].copy() if a.shape[-1] == 4 else None
    planes = np.moveaxis(a[..., :3], -1, 0).astype(np.float32) / 65535.0
    return DecodedImage(path, np.ascontiguousarray(planes), "RGBA;16" if alpha is not None else "RGB;16",
                        fmt, alpha, {})


def _webp_is_lossless(path: Path) -> bool:
    """A lossless WebP stores its image in a VP8L chunk (a lossy one in VP8)."""
    with open_regular(path) as f:
        head = f.read(4096)
    return b"VP8L" in head and b"VP8 " not in head


def _decode(path: Path, im, fmt: str, info: dict[str, Any]) -> DecodedImage:
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if (im.mode == "PA" or "transparency" in im.info) else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "RGBa":
        im = im.convert("RGBA")
    mode = im.mode
    a = np.asarray(im)
    if mode in ("I;16", "I;16L", "I;16B", "I"):
        a = a.astype(np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise ImageReadError(f"{path}: 32-bit integer image with values outside 0..65535 is not supported")
        return DecodedImage(path, (a.astype(np.float32) / 65535.0)[None], "I;16", fmt, None, info)
    if mode == "F":
        raise ImageReadError(f"{path}: floating-point images (mode F) are not supported")
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageReadError(f"{path}: image mode {mode} is not supported")
    a = a.reshape(a.shape[0], a.shape[1], -1)
    alpha = a[..., -1].copy() if mode in ("LA", "RGBA") else None
    color = a[..., :-1] if alpha is not None else a
    planes = np.moveaxis(color, -1, 0).astype(np.float32) / 255.0
    return DecodedImage(path, np.ascontiguousarray(planes), mode, fmt, alpha, info)


def encode(img: DecodedImage, planes: np.ndarray, fmt: str):
    """A PIL image of ``planes`` (C, H, W, in [0, 1]) in the input's mode, for format ``fmt``."""
    planes = np.clip(planes, 0.0, 1.0)
    if img.mode == "I;16" and fmt in SIXTEEN_BIT_FORMATS:
        return pil_image(np.rint(planes[0] * 65535.0).astype(np.uint16))  # mode I;16
    u8 = np.rint(planes * 255.0).astype(np.uint8)
    hwc = np.moveaxis(u8, 0, -1)
    mode = {"I;16": "L", "RGB;16": "RGB", "RGBA;16": "RGBA"}.get(img.mode, img.mode)
    if img.alpha is not None:
        alpha = img.alpha if img.alpha.dtype == np.uint8 else np.rint(img.alpha / 257.0)
        hwc = np.concatenate([hwc, alpha[..., None].astype(np.uint8)], axis=-1)
    if fmt == "JPEG" and mode in ("LA", "RGBA"):  # JPEG has no alpha
        hwc, mode = hwc[..., :-1], mode[:-1] or "L"
    return pil_image(hwc)  # L, LA, RGB or RGBA from the channel count


def encode_16bit_colour(img: DecodedImage, planes: np.ndarray, fmt: str) -> bytes:
    """The file bytes of 16-bit colour ``planes`` (3, H, W, in [0, 1]) as PNG or TIFF."""
    hwc = np.moveaxis(np.rint(np.clip(planes, 0.0, 1.0) * 65535.0).astype(np.uint16), 0, -1)
    if img.alpha is not None:
        hwc = np.concatenate([hwc, img.alpha[..., None].astype(np.uint16)], axis=-1)
    return encode_image(hwc, fmt)


def write_image(path: Path, img: DecodedImage, planes: np.ndarray, fmt: str | None = None,
                quality: int = DEFAULT_QUALITY) -> None:
    """Write atomically: a temporary file in the same folder, flushed, then renamed."""
    fmt = fmt or img.format
    if img.mode in ("RGB;16", "RGBA;16") and fmt in SIXTEEN_BIT_FORMATS:
        atomic_write_bytes(path, encode_16bit_colour(img, planes, fmt))
        return
    pil = encode(img, planes, fmt)
    kwargs: dict[str, Any] = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = int(quality)
    if fmt == "WEBP":
        kwargs["lossless"] = bool(img.info.get("lossless"))  # as the input was
        kwargs["exact"] = img.alpha is not None  # keep the colour under transparent pixels
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs.update({k: v for k, v in img.info.items() if k in ("icc_profile", "exif")})
    with atomic_open(path, "wb") as f:  # a temporary ".<name>.*.tmp" beside it, then renamed
        pil.save(f, format=fmt, **kwargs)


__all__ = ["DEFAULT_MAX_PIXELS", "SIXTEEN_BIT_MODES", "DecodedImage", "ImageReadError",
           "encode", "encode_16bit_colour", "read_image", "write_image"]
