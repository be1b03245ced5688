"""aetk.data.imageio: the one owner of image formats and bit depths (training data, denoise,
compress/decompress), with the decode guard of aetk.data.imageguard in front of every read."""

from __future__ import annotations

import numpy as np
import pytest

from aetk.data.imageio import (EXTENSIONS, IMAGE_SUFFIXES, SIXTEEN_BIT_FORMATS, ImageWriteError, encode_image,
                               pil_format)

RNG = np.random.default_rng(0)
IMAGES = {
    "gray8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "gray16": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "rgb16": RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16),
}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("kind", list(IMAGES))
def test_lossless_round_trip_keeps_values_and_bit_depth(tmp_path, suffix, kind):
    from aetk.data.images import decode_image
    from aetk.denoise.imagefiles import read_image

    a = IMAGES[kind]
    path = tmp_path / f"{kind}{suffix}"
    path.write_bytes(encode_image(a, pil_format(suffix)))
    img = read_image(path)  # denoise's reader: planes in [0, 1] and the mode written back
    depth = 65535.0 if a.dtype == np.uint16 else 255.0
    hwc = a[..., None] if a.ndim == 2 else a
    np.testing.assert_array_equal(np.rint(img.planes * depth), np.moveaxis(hwc, -1, 0))
    assert img.bits == (16 if a.dtype == np.uint16 else 8)
    channels = 1 if a.ndim == 2 else 3
    raw = decode_image(str(path), channels, depth, None, "resize")  # training's reader: raw values
    np.testing.assert_array_equal(raw, np.moveaxis(hwc, -1, 0).astype(np.float32))


def test_compress_writes_images_through_the_same_encoder(tmp_path):
    from aetk.compress.decode import image_file
    from aetk.denoise.imagefiles import read_image

    a = IMAGES["rgb16"].transpose(2, 0, 1).astype(np.float32)  # (C, H, W) raw values
    path = tmp_path / "x.tif"
    path.write_bytes(image_file(a, [5, 7, "RGB;16"], "uint16", 65535.0, ".tif"))
    np.testing.assert_array_equal(np.rint(read_image(path).planes * 65535.0), a)


def test_formats_table_and_its_errors():
    assert IMAGE_SUFFIXES == tuple(EXTENSIONS) and set(SIXTEEN_BIT_FORMATS) <= set(EXTENSIONS.values())
    assert pil_format(".JPG") == "JPEG"
    with pytest.raises(ImageWriteError, match="'.gif'"):
        pil_format(".gif")
    with pytest.raises(ImageWriteError, match="PNG or TIFF"):
        encode_image(IMAGES["rgb16"], "JPEG")
    with pytest.raises(ImageWriteError, match="uint8"):
        encode_image(IMAGES["rgb8"].astype(np.float32), "PNG")


def test_every_reader_goes_through_the_bomb_guard(tmp_path):
    from aetk.data.imageguard import ImageTooLargeError
    from aetk.data.images import decode_image
    from aetk.denoise.imagefiles import read_image
    from aetk.denoise.training_photos import load_rgb

    path = tmp_path / "big.png"
    path.write_bytes(encode_image(np.zeros((40, 50), np.uint8), "PNG"))
    with pytest.raises(ImageTooLargeError, match="2000 pixels exceeds the limit of 1999"):
        read_image(path, max_pixels=1999)
    assert read_image(path, max_pixels=2000).planes.shape == (1, 40, 50)
    from aetk.data import imageguard

    old, imageguard.BUDGET.capacity = imageguard.BUDGET.capacity, 1000  # bytes: far less than needed
    try:
        for read in (lambda: decode_image(str(path), 1, 255.0, None, "resize"), lambda: load_rgb(path)):
            with pytest.raises(ImageTooLargeError, match="decode memory budget"):
                read()
    finally:
        imageguard.BUDGET.capacity = old
