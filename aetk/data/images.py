"""Folders of images (PNG, JPEG, TIFF, BMP, WebP), searched recursively and streamed:
the source keeps only the list of paths and decodes one image per ``get``.

The initial scan opens each file's header with Pillow (size and mode, no pixel data)
through aetk.data.imageguard (regular files only, size and decode memory checked, PNG and
JPEG checked complete): special files (FIFOs), truncated, unreadable or non-image files are
skipped and reported, differing sizes without
``data.image_size`` are an error. Images in first-level subfolders are labelled by the
folder's name (sorted names -> ids 0, 1, ...).

Raw values keep the folder's bit depth: 0..255, or 0..65535 when any image is 16-bit
(8-bit images in such a folder are scaled by 257 to match). 16-bit colour PNG and TIFF files,
which Pillow would decode to 8 bits, are decoded by OpenCV (imageio.read_16bit_colour) and
keep their 16 bits too; the scan names their mode "RGB;16".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aetk.data.imageguard import (DEFAULT_MAX_PIXELS, ImageReadError, check_complete, guarded_image,
                                  regular_file_problem, sixteen_bit_colour)
from aetk.data.imageio import IMAGE_SUFFIXES, read_16bit_colour
from aetk.data.source import DataError, Source
from aetk.data.config import DataConfig

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
SIXTEEN_BIT_COLOUR = "RGB;16"  # the scan's name for a 16-bit colour file (Pillow says "RGB")
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # Pillow is not a hard dependency of aetk
        raise DataError("reading images needs Pillow: install it with `pip install pillow`") from exc
    return Image


def _size_arg(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    return (int(image_size[0]), int(image_size[1]))


class ImageTransform:
    """Channel conversion (gray <-> RGB) then resize or center crop of a (C, H, W) float
    array of raw values; used for images held in arrays (IDX, .npy, built-ins)."""

    def __init__(self, channels: int | None, size: tuple[int, int] | None, resize: str):
        self.channels, self.size, self.resize = channels, size, resize

    @classmethod
    def make(cls, shape: tuple[int, ...], channels: int | None, image_size: Any, resize: str,
             name: str) -> ImageTransform | None:
        size = _size_arg(image_size)
        if size == tuple(shape[1:]):
            size = None
        if channels == shape[0]:
            channels = None
        if size and resize == "crop" and (size[0] > shape[1] or size[1] > shape[2]):
            raise DataError(f"{name}: images are {shape[1]}x{shape[2]} (HxW), smaller than "
                            f"data.image_size={list(size)}, so they cannot be cropped to it; "
                            f"use data.resize='resize'")
        return cls(channels, size, resize) if (size or channels) else None

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.channels or shape[0], *(self.size or shape[1:]))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.channels == 3 and a.shape[0] == 1:
            a = np.repeat(a, 3, axis=0)
        elif self.channels == 1 and a.shape[0] == 3:
            a = np.tensordot(LUMA, a, axes=1)[None]
        if self.size:
            a = resize_or_crop(a, self.size, self.resize)
        return np.ascontiguousarray(a, dtype=np.float32)


def resize_or_crop(a: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """(C, H, W) float -> (C, *size): center crop, or Pillow's antialiased bilinear resize
    per channel (a triangle filter: no overshoot, so values stay within their range)."""
    h, w = a.shape[1:]
    if (h, w) == tuple(size):
        return a
    if resize == "crop":
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
        return a[:, top:top + size[0], left:left + size[1]]
    Image = _pil()
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32))
                                .resize((size[1], size[0]), Image.Resampling.BILINEAR))
                     for c in a])


def decode_image(path: str, channels: int, depth_max: float, size: tuple[int, int] | None,
                 resize: str) -> np.ndarray:
    """One image file -> float32 (channels, H, W) raw values in 0..depth_max."""
    Image = _pil()
    try:
        # Regular files only, size and decode memory checked from the header (imageguard).
        with guarded_image(path, DEFAULT_MAX_PIXELS, hint="") as im:
            if sixteen_bit_colour(im):
                a = read_16bit_colour(path)[..., :3].astype(np.float32).transpose(2, 0, 1)
                if channels == 1:
                    a = np.tensordot(LUMA, a, axes=1)[None]
                src_max = 65535.0
                if size:
                    a = resize_or_crop(np.ascontiguousarray(a), size, resize)
            elif im.mode in SIXTEEN_BIT_MODES:
                a = np.clip(np.asarray(im, dtype=np.float32), 0, 65535)[None]
                a = np.repeat(a, 3, axis=0) if channels == 3 else a
                src_max = 65535.0
                if size:
                    a = resize_or_crop(a, size, resize)
            else:
                target = "L" if channels == 1 else "RGB"
                if size and resize == "resize" and im.format == "JPEG":
                    # Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 while staying at
                    # least as large as the target: much faster for big photos.
                    im.draft(target, (size[1], size[0]))
                im = im.convert(target)
                if size:
                    w, h = im.size
                    if resize == "crop":
                        top, left = (h - size[0]) // 2, (w - size[1]) // 2
                        im = im.crop((left, top, left + size[1], top + size[0]))
                    elif (h, w) != tuple(size):
                        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32)
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
                src_max = 255.0
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"could not decode image {path}: {exc} (it passed the initial scan, so "
                        f"it is truncated or changed since; remove or replace it)") from exc
    if src_max != depth_max:
        a = a * np.float32(depth_max / src_max)
    return np.ascontiguousarray(a, dtype=np.float32)


@dataclass(frozen=True)
class ImageDecoding:
    """How a folder's images are decoded: to ``channels`` (1 or 3), raw values scaled to
    0..``depth_max`` (255 or 65535), resized or center-cropped (``resize``) to ``size``
    (H, W) or kept at their own size (None)."""

    channels: int
    depth_max: float
    size: tuple[int, int] | None
    resize: str


class ImageFolderSource(Source):
    """Images under a folder; holds paths only and decodes in ``get``."""

    auto_norm = "unit"
    nominal_scale = True
    raw_min = 0.0
    origin = {"format": "images"}  # each item's path, relative to the folder, says the rest
    layouts: list[tuple[int, int, str]] | None = None  # per path: (H, W, Pillow mode) of the file

    def __init__(self, root: str, paths: list[str], labels: np.ndarray, classes: list[str] | None,
                 decoding: ImageDecoding, input_shape: tuple[int, int, int], skipped: list[tuple[str, str]]):
        self.name = root
        self.paths = paths
        self.labels = labels
        self.classes = classes
        self.num_classes = len(classes) if classes else None
        self.decoding = decoding
        self.channels, self.depth_max = decoding.channels, decoding.depth_max
        self.size, self.resize = decoding.size, decoding.resize
        self.input_shape = input_shape
        self.unit_scale = decoding.depth_max
        self.skipped = skipped

    def get(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i], self.channels, self.depth_max, self.size, self.resize)


def _walk(root: Path):
    """Files under root in a deterministic order, hidden files and folders left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def _image_header(f: Path) -> tuple[int, int, str] | str:
    """(H, W, mode) of an image file from its header, or why the scan skips it."""
    if f.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file (suffix {f.suffix!r}; reading {', '.join(IMAGE_SUFFIXES)})"
    if problem := regular_file_problem(f):  # a FIFO would block the scan forever
        return problem
    try:
        # Header only (size checked against the decode memory budget), then a cheap
        # completeness check (PNG chunks, JPEG end marker): a truncated file is skipped
        # here, not found mid-training.
        with guarded_image(f, DEFAULT_MAX_PIXELS, hint="") as im:
            w, h = im.size
            mode = SIXTEEN_BIT_COLOUR if sixteen_bit_colour(im) else im.mode
            check_complete(f, im)
    except (ImageReadError, OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image: {exc}"
    if w <= 0 or h <= 0:
        return f"empty image ({w}x{h})"
    if mode not in GRAY_MODES and mode not in {"P", "PA", "RGB", "RGBA", "RGBX", "RGBa", SIXTEEN_BIT_COLOUR,
                                               "CMYK", "YCbCr", "HSV"}:
        return f"unsupported pixel format {mode!r} (e.g. 32-bit float, Lab)"
    return h, w, mode


@dataclass
class _FolderScan:
    """What the scan of an image folder found. With ``size`` every image is brought to it;
    else with ``expected`` (a training source's name and (H, W): test images) each must have
    that size; else all must have the first image's size."""

    root: Path
    size: tuple[int, int] | None
    resize: str
    expected: tuple[str, tuple[int, int]] | None
    found: list[tuple[str, str | None, str]] = field(default_factory=list)  # (path, class folder or None, mode)
    layouts: list[tuple[int, int, str]] = field(default_factory=list)  # each found image's (H, W, Pillow mode)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    first: tuple[str, tuple[int, int]] | None = None  # a file and its (H, W), to compare against

    def check_size(self, f: Path, h: int, w: int) -> None:
        size, expected, first = self.size, self.expected, self.first
        if size is not None:
            if self.resize == "crop" and (h < size[0] or w < size[1]):
                raise DataError(f"image {f} is {h}x{w} (HxW), smaller than data.image_size="
                                f"{list(size)}, so it cannot be center-cropped; use "
                                f"data.resize='resize' or a smaller data.image_size")
        elif expected is not None:
            if (h, w) != expected[1]:
                raise DataError(f"test image {f} is {h}x{w} (HxW) but the training images in "
                                f"{expected[0]} are {expected[1][0]}x{expected[1][1]}; set "
                                f"data.image_size to bring both to one size")
        elif first is None:
            self.first = (str(f), (h, w))
        elif (h, w) != first[1]:
            raise DataError(f"images in {self.root} differ in size: {first[0]} is {first[1][0]}x"
                            f"{first[1][1]} (HxW) but {f} is {h}x{w}; set data.image_size = [H, W] "
                            f"to resize (or data.resize='crop' to center-crop) them to one size")

    def add(self, f: Path, h: int, w: int, mode: str) -> None:
        self.check_size(f, h, w)
        rel = f.relative_to(self.root).parts
        self.found.append((str(f), rel[0] if len(rel) > 1 else None, mode))
        self.layouts.append((h, w, mode))

    def image_hw(self) -> tuple[int, int]:
        """The (H, W) every image is decoded to."""
        if self.size is not None:
            return self.size
        return self.expected[1] if self.expected else self.first[1]


def _scan_folder(scan: _FolderScan) -> _FolderScan:
    """Every file under the folder: images kept (sizes checked), the rest skipped with why."""
    for f in _walk(scan.root):
        header = _image_header(f)
        if isinstance(header, str):
            scan.skipped.append((str(f), header))
            continue
        scan.add(f, *header)
    if not scan.found:
        if scan.skipped:
            raise DataError(f"no readable images in {scan.root}: {len(scan.skipped)} files skipped (first: "
                            f"{scan.skipped[0][0]}: {scan.skipped[0][1]})")
        raise DataError(f"no examples found in {scan.root} (looked recursively for "
                        f"{', '.join(IMAGE_SUFFIXES)} files)")
    return scan


def _folder_decoding(scan: _FolderScan, cfg: DataConfig, like: Source | None) -> ImageDecoding:
    """Channels and bit depth: a training source's (``like``), or the folder's own (gray when
    every image is, 16-bit when any is; data.channels overrides the channels)."""
    modes = [m for _, _, m in scan.found]
    if like is not None:
        channels, depth_max = like.input_shape[0], float(like.unit_scale)
    else:
        channels = cfg.channels or (1 if all(m in GRAY_MODES for m in modes) else 3)
        depth_max = 65535.0 if any(m in SIXTEEN_BIT_MODES or m == SIXTEEN_BIT_COLOUR for m in modes) else 255.0
    return ImageDecoding(channels, depth_max, scan.size, cfg.resize)


def _folder_labels(scan: _FolderScan, like: Source | None) -> tuple[list[str] | None, np.ndarray]:
    """Class subfolders label the images only when every image lies in one (and, for test
    images, the training source has classes too); else no classes and every label -1."""
    folders = [c for _, c, _ in scan.found]
    if all(c is not None for c in folders) and (like is None or like.classes is not None):
        classes = like.classes if like is not None else sorted(set(folders))
        lookup = {c: k for k, c in enumerate(classes)}
        unknown = sorted(set(folders) - set(lookup))
        if unknown:
            raise DataError(f"class folders {unknown} in {scan.root} are not among the training "
                            f"classes {classes}")
        return classes, np.array([lookup[c] for c in folders], np.int64)
    return None, np.full(len(folders), -1, np.int64)


def read_image_folder(path: Path, cfg: DataConfig, like: Source | None, stream: bool = False
                      ) -> tuple[Source, None]:
    # `stream` changes nothing: a folder source always decodes one image per get.
    _pil()  # Pillow is needed: say so before scanning
    size = _size_arg(cfg.image_size)
    expected = None
    if like is not None and size is None:
        expected = (str(like.name), tuple(like.input_shape[1:]))  # test images: training size
    scan = _scan_folder(_FolderScan(path, size, cfg.resize, expected))
    decoding = _folder_decoding(scan, cfg, like)
    classes, labels = _folder_labels(scan, like)
    paths = [p for p, _, _ in scan.found]
    src = ImageFolderSource(str(path), paths, labels, classes, decoding,
                            (decoding.channels, *scan.image_hw()), scan.skipped)
    src.layouts = scan.layouts  # what `aetk decompress` restores: each file's size, mode and depth
    return src, None
