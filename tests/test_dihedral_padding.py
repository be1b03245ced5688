"""aetk.dihedral (the 8 symmetries of the square) and aetk.padding (reflect-pad), each the one
helper behind its callers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aetk import dihedral
from aetk.padding import pad_to_multiple, reflect_pad

IMAGE = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)  # no symmetry of its own


@pytest.mark.parametrize("k", range(8))
def test_every_symmetry_is_undone_by_its_inverse_numpy_and_torch(k):
    y = dihedral.symmetry(IMAGE, k)
    assert y.shape == ((2, 5, 3) if k & 4 else IMAGE.shape)
    np.testing.assert_array_equal(dihedral.symmetry(y, dihedral.inverse(k)), IMAGE)
    t = torch.from_numpy(IMAGE)
    assert torch.equal(dihedral.symmetry(t, k), torch.from_numpy(np.ascontiguousarray(y)))
    assert torch.equal(dihedral.symmetry(dihedral.symmetry(t, k), dihedral.inverse(k)), t)


def test_the_eight_are_distinct_and_match_numpy_by_name():
    views = {dihedral.symmetry(IMAGE[0], k).tobytes() + bytes(k & 4) for k in range(8)}
    assert len(views) == 8
    a = IMAGE[0]
    np.testing.assert_array_equal(dihedral.symmetry(a, 1), a[:, ::-1])
    np.testing.assert_array_equal(dihedral.symmetry(a, 2), a[::-1])
    np.testing.assert_array_equal(dihedral.symmetry(a, 5), a.T[:, ::-1])
    for q, k in enumerate(dihedral.ROTATIONS):
        np.testing.assert_array_equal(dihedral.symmetry(a, k), np.rot90(a, q))


@pytest.mark.parametrize("first", range(8))
@pytest.mark.parametrize("then", range(8))
def test_compose_is_applying_one_after_the_other(first, then):
    expect = dihedral.symmetry(dihedral.symmetry(IMAGE, first), then)
    np.testing.assert_array_equal(dihedral.symmetry(IMAGE, dihedral.compose(first, then)), expect)


def test_patch_views_are_the_old_rotate_then_mirror_rule_and_cycle_through_all_eight():
    a = IMAGE[0]
    for k in range(16):
        p = np.rot90(a, k % 4)
        old = p[:, ::-1] if (k // 4) % 2 else p
        np.testing.assert_array_equal(dihedral.symmetry(a, dihedral.patch_view(k)), old)
    assert sorted(dihedral.patch_view(k) for k in range(8)) == list(range(8))


def test_exif_orientation_matches_pillow():
    from PIL import Image, ImageOps

    rgb = np.random.default_rng(0).integers(0, 255, (3, 5, 3), dtype=np.uint8)
    for orientation, k in dihedral.EXIF_ORIENTATION.items():
        im = Image.fromarray(rgb)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.info["exif"] = exif.tobytes()
        upright = np.asarray(ImageOps.exif_transpose(im))
        np.testing.assert_array_equal(dihedral.symmetry(rgb, k, axes=(0, 1)), upright, err_msg=str(orientation))


def test_symmetry_refuses_an_index_outside_0_to_7():
    with pytest.raises(ValueError, match="0 to 7"):
        dihedral.symmetry(IMAGE, 8)


def test_reflect_pad_reflects_without_repeating_the_edge_and_falls_back_to_symmetric():
    a = np.arange(4.0).reshape(1, 4)
    np.testing.assert_array_equal(reflect_pad(a, (-1,), (6,)), [[0, 1, 2, 3, 2, 1]])
    np.testing.assert_array_equal(reflect_pad(a, (-1,), (9,)), np.pad(a, [(0, 0), (0, 5)], mode="symmetric"))
    assert reflect_pad(a, (-1,), (3,)) is a  # never crops
    x = np.zeros((2, 1, 5, 7), np.float32)
    assert pad_to_multiple(x, (2, 3), 4).shape == (2, 1, 8, 8)
    assert pad_to_multiple(x[..., :4, :4], (2, 3), 4).shape == (2, 1, 4, 4)
