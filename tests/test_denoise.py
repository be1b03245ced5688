"""aetk denoise: tiling, modes and bit depths, safety of paths and files, the shipped model."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aetk.denoise import SHIPPED_MODEL, DenoiseInputError, DenoiseOptions, denoise_paths, load_denoiser
from aetk.denoise.tiling import Blender, pad_to, ramp, starts, tile_count, tile_shape



@pytest.fixture(scope="module")
def identity_model(identity_denoiser) -> Path:
    return identity_denoiser


@pytest.fixture(scope="module")
def random_model(tmp_path_factory, export_resconv) -> Path:
    return export_resconv(tmp_path_factory.mktemp("random"), identity=False, depth=2)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# -- tiling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,tile,overlap", [(10, 4, 1), (256, 64, 16), (65, 64, 8), (30, 64, 8), (100, 32, 0)])
def test_tiles_cover_every_pixel(size, tile, overlap):
    s = starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for a in s:
        covered[a:a + tile] = True
    assert covered.all() and s[0] == 0 and (size <= tile or s[-1] == size - tile)
    w = ramp(min(tile, size), overlap, False, False)
    assert (w > 0).all() and w.max() == 1.0


@pytest.mark.parametrize("size,tile,overlap,multiple", [(512, 256, 32, 8), (600, 512, 32, 8), (1000, 512, 32, 2),
                                                      (100, 512, 32, 8), (97, 16, 4, 1), (4000, 512, 32, 8)])
def test_tiles_are_as_few_and_as_small_as_cover_the_image(size, tile, overlap, multiple):
    (t, _) = tile_shape((size, 50), tile, multiple, overlap)
    s = starts(size, t, overlap)
    assert t <= max(tile, multiple) and t % multiple == 0
    assert len(s) == tile_count(size, tile, overlap)
    assert s[-1] + t >= size and all(b - a <= t - overlap for a, b in zip(s, s[1:]))  # covered, overlapping
    if len(s) > 1:  # as few tiles as can cover it, and none larger than needed
        assert (len(s) - 1) * (tile - overlap) + overlap < size
        assert len(s) * (t - multiple) - (len(s) - 1) * overlap < size
    assert tile_shape((512, 512), 256, 8, 32) == (192, 192)  # 3 x 3 tiles of 192, not of 256


def test_blending_an_identity_is_exact():
    rng = np.random.default_rng(0)
    img = rng.random((3, 123, 77), dtype=np.float32)
    th, tw = tile_shape((123, 77), 32, 2)
    padded = pad_to(img, (max(123, th), max(77, tw)))
    blend = Blender(3, padded.shape[1:], (th, tw), 8)
    for y, x in blend.positions():
        blend.add(slice(0, 3), y, x, padded[:, y:y + th, x:x + tw])
    np.testing.assert_allclose(blend.result()[:, :123, :77], img, rtol=1e-6, atol=1e-6)


def test_tiled_output_matches_the_whole_image(random_model):
    """A real (random) conv net on small overlapping tiles: no seams against one big tile."""
    img = np.random.default_rng(1).random((1, 200, 152), dtype=np.float32)
    whole = load_denoiser(random_model, device="cpu", tile=256, overlap=0).denoise(img)
    tiled = load_denoiser(random_model, device="cpu", tile=64, overlap=24).denoise(img)
    diff = np.abs(whole - tiled)
    assert diff.mean() < 1e-4 and diff.max() < 2e-3, (diff.mean(), diff.max())
    untapered = load_denoiser(random_model, device="cpu", tile=64, overlap=0).denoise(img)
    assert np.abs(whole - untapered).max() > diff.max()  # the blending is what removes the seams


def test_colour_images_are_denoised_per_channel(random_model):
    den = load_denoiser(random_model, device="cpu")
    rgb = np.random.default_rng(2).random((3, 40, 50), dtype=np.float32)
    out = den.denoise(rgb)
    assert out.shape == rgb.shape
    np.testing.assert_allclose(out[1], den.denoise(rgb[1:2])[0], rtol=1e-5, atol=1e-6)


def test_ensemble_averages_the_mirrored_and_rotated_tiles(random_model):
    img = np.random.default_rng(4).random((1, 48, 40), dtype=np.float32)  # not square: rotation swaps H, W
    one = load_denoiser(random_model, device="cpu", tile=256)
    # The eight symmetries of the plane, each undone on its output: k quarter turns, then a mirror.
    outs = []
    for mirror in (False, True):
        for k in range(4):
            t = np.rot90(img, k, axes=(1, 2))
            t = t[:, :, ::-1] if mirror else t
            o = one.denoise(np.ascontiguousarray(t))
            o = o[:, :, ::-1] if mirror else o
            outs.append(np.rot90(o, -k, axes=(1, 2)))
    mirrors = (one.denoise(img) + one.denoise(img[:, :, ::-1].copy())[:, :, ::-1]
               + one.denoise(img[:, ::-1].copy())[:, ::-1] + one.denoise(img[:, ::-1, ::-1].copy())[:, ::-1, ::-1]) / 4
    four = load_denoiser(random_model, device="cpu", tile=256, ensemble=4).denoise(img)
    np.testing.assert_allclose(four, mirrors, rtol=1e-5, atol=1e-6)
    eight = load_denoiser(random_model, device="cpu", tile=256, ensemble=8).denoise(img)
    np.testing.assert_allclose(eight, np.mean(outs, axis=0), rtol=1e-5, atol=1e-6)
    assert np.abs(four - one.denoise(img)).max() > 1e-4  # a random net is not mirror-symmetric
    assert np.abs(eight - four).max() > 1e-4  # nor symmetric under rotation
    # On non-square tiles too (a transposed tile is W x H): the same up to the blending.
    tiled = load_denoiser(random_model, device="cpu", tile=32, overlap=8, ensemble=8).denoise(img)
    assert np.abs(tiled - eight).mean() < 1e-3
    with pytest.raises(ValueError, match="--ensemble must be 1, 2, 4 or 8"):
        load_denoiser(random_model, device="cpu", ensemble=3)


# -- files: modes, depths, EXIF, safety --------------------------------------------------------------
def _write_inputs(root: Path) -> None:
    rng = np.random.default_rng(3)
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 52), dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 65536, (30, 44), dtype=np.uint16)).save(root / "sub" / "gray16.png")
    Image.fromarray(rng.integers(0, 65536, (30, 44), dtype=np.uint16)).save(root / "sub" / "gray16.tif")
    Image.fromarray(rng.integers(0, 256, (36, 20, 3), dtype=np.uint8)).save(root / "sub" / "deeper" / "rgb.bmp")
    Image.fromarray(rng.integers(0, 256, (24, 30, 4), dtype=np.uint8), "RGBA").save(root / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (24, 30, 2), dtype=np.uint8), "LA").save(root / "la.png")
    Image.fromarray(rng.integers(0, 256, (26, 30, 3), dtype=np.uint8)).save(root / "photo.webp", lossless=True)
    rotated = Image.fromarray(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated.save(root / "sub" / "rotated.jpg", exif=exif.tobytes(), quality=95)
    (root / "notes.txt").write_text("not an image, not an image extension: ignored")


def test_folder_is_mirrored_with_modes_and_depths_kept(identity_model, tmp_path):
    src = tmp_path / "photos"
    _write_inputs(src)
    before = {p: _sha(p) for p in src.rglob("*") if p.is_file()}
    summary = denoise_paths([src], model=identity_model, options=DenoiseOptions(device="cpu", tile=16, overlap=4))
    out = tmp_path / "photos_denoised"  # the default: a sibling folder
    assert summary.ok and len(summary.done) == 8
    assert {p: _sha(p) for p in src.rglob("*") if p.is_file()} == before  # inputs untouched
    for rel in ("gray.png", "sub/gray16.png", "sub/gray16.tif", "sub/deeper/rgb.bmp", "rgba.png", "la.png",
                "photo.webp", "sub/rotated.jpg"):
        assert (out / rel).is_file(), rel
    for rel in ("gray.png", "sub/gray16.png", "sub/gray16.tif", "sub/deeper/rgb.bmp", "rgba.png", "la.png",
                "photo.webp"):
        a, b = Image.open(src / rel), Image.open(out / rel)
        assert a.mode == b.mode and a.size == b.size, rel
        # The identity model returns every pixel exactly, 16-bit ones included; alpha untouched.
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=rel)
    with Image.open(out / "sub" / "rotated.jpg") as r:
        assert r.size == (20, 50)  # stored upright
        assert r.getexif().get(0x0112) in (None, 1)
    assert not list(out.rglob("*.txt")) and not list(out.rglob(".*.tmp"))


def test_bad_files_are_counted_and_the_rest_is_done(identity_model, tmp_path):
    from typer.testing import CliRunner

    from aetk.cli.main import app

    src = tmp_path / "in"
    src.mkdir()
    good = np.random.default_rng(4).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(good).save(src / "good.png")
    data = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(data[: len(data) // 2])
    (src / "fake.jpg").write_bytes(b"this is text, not a JPEG")
    (src / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(src / "big.png")
    res = CliRunner().invoke(app, ["denoise", str(src), "-o", str(tmp_path / "out"), "-m", str(identity_model),
                                   "--device", "cpu", "--max-pixels", "20000"])
    assert res.exit_code == 1, res.output
    assert "done 1, skipped 0, failed 4" in res.output
    assert "decompression bombs" in res.output and "truncated" in res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_symlinks_out_of_the_tree_are_not_followed(identity_model, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside / "secret.png")
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "a.png")
    os.symlink(outside / "secret.png", src / "link.png")
    os.symlink(src / "a.png", src / "inside-link.png")
    os.symlink(outside, src / "linked-folder")
    summary = denoise_paths([src], tmp_path / "out", identity_model, DenoiseOptions(device="cpu"))
    assert sorted(summary.done) == sorted([str(src / "a.png"), str(src / "inside-link.png")])
    reasons = dict(summary.skipped)
    assert "leading out of the input tree" in reasons[str(src / "link.png")]
    assert "not followed" in reasons[str(src / "linked-folder")]
    assert not (tmp_path / "out" / "link.png").exists() and not (tmp_path / "out" / "linked-folder").exists()


def test_outputs_never_overwrite_inputs(identity_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "a.png")
    with pytest.raises(DenoiseInputError, match="inside the input folder"):
        denoise_paths([src], src / "out", identity_model)
    with pytest.raises(DenoiseInputError, match="overwrite an input"):
        denoise_paths([src / "a.png"], src, identity_model)
    with pytest.raises(DenoiseInputError, match="both be written"):
        other = tmp_path / "other"
        other.mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / "a.png")
        denoise_paths([src / "a.png", other / "a.png"], tmp_path / "out", identity_model)
    with pytest.raises(DenoiseInputError, match="does not exist"):
        denoise_paths([tmp_path / "missing"], tmp_path / "out", identity_model)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        denoise_paths([empty], tmp_path / "out2", identity_model)


def test_single_files_format_and_dry_run(identity_model, tmp_path):
    a = tmp_path / "a.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(a)
    planned = denoise_paths([a], model=identity_model, options=DenoiseOptions(dry_run=True))
    assert planned.planned == [(str(a), str(tmp_path / "a_denoised.png"))]
    assert not (tmp_path / "a_denoised.png").exists()
    summary = denoise_paths([a], tmp_path / "out", identity_model, DenoiseOptions(format="tiff", device="cpu"))
    assert summary.ok and Image.open(tmp_path / "out" / "a.tif").format == "TIFF"
    with pytest.raises(DenoiseInputError, match="--format"):
        denoise_paths([a], tmp_path / "out", identity_model, DenoiseOptions(format="gif"))


def test_killed_run_is_completed_by_skip_existing(random_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)).save(src / f"{i:03d}.png", compress_level=0)
    cmd = [sys.executable, "-m", "aetk.cli.main", "denoise", str(src), "--model", str(random_model),
           "--device", "cpu", "--workers", "1", "--threads", "1"]
    import aetk

    # The aetk this test imported (source tree in dev mode, installed package in CI), run
    # outside the repository so the source tree (no built extension, no aetk/cli) cannot shadow it.
    env = {**os.environ, "PYTHONPATH": str(Path(aetk.__file__).resolve().parents[1])}
    reference = tmp_path / "reference"
    subprocess.run(cmd + ["-o", str(reference)], check=True, env=env, capture_output=True, cwd=tmp_path)

    out = tmp_path / "out"
    proc = subprocess.Popen(cmd + ["-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(out.glob("*.png"))) < 3:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = sorted(p.name for p in out.glob("*.png"))
    assert 3 <= len(partial) < 60, "the run should have been killed part-way"
    for name in partial:  # every output present is complete
        assert _sha(out / name) == _sha(reference / name)
    res = subprocess.run(cmd + ["-o", str(out), "--skip-existing"], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"skipped {len(partial)}" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    for p in reference.iterdir():
        assert _sha(out / p.name) == _sha(p), p.name


# -- the shipped model ------------------------------------------------------------------------------------
def _psnr(a: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - clean) ** 2)))


def test_shipped_models_denoise_photographs():
    from aetk.denoise.denoiser import SHIPPED_GRAY_MODEL
    from aetk.denoise.photos import TEST, load_photo

    den = load_denoiser(device="cpu")
    colour, gray = den.colour.meta, den.gray.meta  # as aetk.runtime read them from the files
    assert den.colour.path == SHIPPED_MODEL and den.gray.path == SHIPPED_GRAY_MODEL
    assert SHIPPED_MODEL.stat().st_size < 6_000_000 and SHIPPED_GRAY_MODEL.stat().st_size < 4_000_000
    assert colour.kind == "resunet" and colour.input_shape[0] == 3 and colour.dynamic_spatial
    assert gray.kind == "resconv" and gray.input_shape[0] == 1 and gray.dynamic_spatial
    assert colour.extra["weights_storage"] == gray.extra["weights_storage"] == "float16"
    assert {"camera", "astronaut"} <= set(TEST)  # photographs neither model was trained on
    rng = np.random.default_rng(0)
    for name in ("camera", "astronaut"):
        photo = load_photo(name)[128:320, 128:320].astype(np.float32) / 255.0
        clean = photo[None] if photo.ndim == 2 else photo.transpose(2, 0, 1)
        noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
        out = den.denoise(noisy)
        assert out.shape == clean.shape
        assert _psnr(out, clean) > _psnr(noisy, clean) + 6.0, (name, _psnr(noisy, clean), _psnr(out, clean))


def test_shipped_pair_picks_its_model_by_channels():
    from aetk.denoise.denoiser import SHIPPED_GRAY_MODEL, ShippedDenoiser

    den = load_denoiser(device="cpu")
    assert isinstance(den, ShippedDenoiser) and den.path == SHIPPED_MODEL and den.meta.kind == "resunet"
    assert den.gray.path == SHIPPED_GRAY_MODEL and den.gray.meta.weights_sha256 != den.meta.weights_sha256
    assert den.describe() == "colour images: colour.onnx ×1; gray images: gray.onnx ×1"
    rng = np.random.default_rng(2)
    gray = rng.random((1, 40, 48), dtype=np.float32)
    rgb = rng.random((3, 40, 48), dtype=np.float32)
    assert den.pick(gray) is den.gray and den.pick(rgb) is den.colour
    np.testing.assert_array_equal(den.denoise(gray), den.gray.denoise(gray))
    np.testing.assert_array_equal(den.denoise(rgb), den.colour.denoise(rgb))
    # --ensemble N: N passes through whichever model runs
    two = load_denoiser(device="cpu", ensemble=2)
    assert len(two.colour.transforms) == 2 and len(two.gray.transforms) == 2
    with pytest.raises(ValueError, match="--ensemble must be 1, 2, 4 or 8"):
        load_denoiser(device="cpu", ensemble=3)
    with pytest.raises(ValueError, match="mirrorings 6 to 9 asked for; there are 8"):
        den.colour.with_ensemble(4, first=6)
    # an explicit --model is that model alone, on every image
    plain = load_denoiser(SHIPPED_MODEL, device="cpu")
    assert not isinstance(plain, ShippedDenoiser) and plain.path == SHIPPED_MODEL
    assert plain.denoise(gray).shape == gray.shape  # gray repeated to RGB and averaged back
    # --sigma: the colour model's sibling for every image, gray ones included
    given = load_denoiser(device="cpu", sigma=25)
    assert given.path.name == "colour-sigma.onnx" and given.non_blind
    assert given.meta.weights_sha256 == den.meta.weights_sha256
    assert given.denoise(gray).shape == gray.shape


def test_shipped_pair_routes_files_by_their_mode(tmp_path):
    """Through the command's own reading and writing: gray (L, LA, 16-bit I;16) files go to
    gray.onnx, colour (RGB, RGBA, palette) ones to colour.onnx, each output as that model gives it."""
    from aetk.denoise.imagefiles import read_image

    rng = np.random.default_rng(4)
    src = tmp_path / "in"
    src.mkdir()
    gray8 = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    rgb8 = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(gray8).save(src / "l.png")
    Image.fromarray(gray8).convert("LA").save(src / "la.png")
    Image.fromarray(rng.integers(0, 65536, (40, 48), dtype=np.uint16)).save(src / "i16.png")
    Image.fromarray(rgb8).save(src / "rgb.png")
    Image.fromarray(rgb8).convert("RGBA").save(src / "rgba.png")
    Image.fromarray(rgb8).convert("P").save(src / "p.png")
    summary = denoise_paths([src], tmp_path / "out", None, DenoiseOptions(device="cpu"))
    assert summary.ok
    den = load_denoiser(device="cpu")
    for name, model in (("l", den.gray), ("la", den.gray), ("i16", den.gray),
                        ("rgb", den.colour), ("rgba", den.colour), ("p", den.colour)):
        planes = read_image(src / f"{name}.png").planes
        written = read_image(tmp_path / "out" / f"{name}.png").planes
        other = den.colour if model is den.gray else den.gray
        expected = np.clip(model.denoise(planes), 0, 1)
        step = 1 / 65535 if name == "i16" else 1 / 255
        assert np.abs(written - expected).max() <= step, name
        assert np.abs(written - np.clip(other.denoise(planes), 0, 1)).max() > 10 * step, name


def test_shipped_pair_without_its_gray_model_runs_the_colour_one(monkeypatch, tmp_path):
    from aetk.denoise import denoiser

    monkeypatch.setattr(denoiser, "SHIPPED_GRAY_MODEL", tmp_path / "absent.onnx")
    den = load_denoiser(device="cpu")
    gray = np.random.default_rng(3).random((1, 32, 32), dtype=np.float32)
    assert den.gray is None and den.pick(gray) is den.colour
    assert den.describe() == "colour.onnx ×1"


def _real_noise_pairs() -> Path | None:
    """PolyU's Canon pairs (development data, never in the repository; AETK_DENOISE_DATA or
    ../shared/data/denoise beside the repository), or None where this machine has none."""
    from aetk.denoise.training_photos import SHARED

    root = Path(os.environ.get("AETK_DENOISE_DATA", SHARED))
    folder = root / "realnoise" / "polyu-canon"
    return folder if folder.is_dir() and any(folder.glob("*_real.JPG")) else None


@pytest.mark.skipif(_real_noise_pairs() is None, reason="no real noisy/clean pairs on this machine "
                    "(set AETK_DENOISE_DATA to ../shared/data/denoise)")
def test_shipped_model_improves_real_camera_noise():
    """Real camera noise, not synthetic: one shot against the mean of many (PolyU Canon), the
    centre 128x128 of three scenes, through `aetk denoise`'s own file reading."""
    from aetk.denoise.imagefiles import read_image

    folder = _real_noise_pairs()
    den = load_denoiser(device="cpu")
    shots = sorted(folder.glob("*_real.JPG"))
    shots = shots[::max(1, len(shots) // 3)][:3]  # three scenes spread over the set (55 pairs: 0, 18, 36)
    gains = []
    for shot in shots:
        noisy = read_image(shot).planes[:, 192:320, 192:320]
        clean = read_image(shot.with_name(shot.name.replace("_real", "_mean"))).planes[:, 192:320, 192:320]
        out = np.round(np.clip(den.denoise(noisy), 0, 1) * 255) / 255
        gains.append(_psnr(out, clean) - _psnr(noisy, clean))
    assert len(gains) == min(3, len(shots)) and min(gains) > 0.3 and np.mean(gains) > 1.0, gains


# -- the noise level estimate ------------------------------------------------------------------------------
def test_noise_level_estimate_reads_sigma():
    from aetk.denoise.noise_level import estimate_sigma, image_sigma
    from aetk.denoise.photos import load_photo

    rng = np.random.default_rng(0)
    ramp_image = np.add.outer(np.linspace(0.2, 0.8, 256), np.linspace(0, 0.1, 320)).astype(np.float32)
    for sigma in (5, 15, 30):
        noisy = ramp_image + rng.normal(0, sigma / 255, ramp_image.shape).astype(np.float32)
        assert abs(estimate_sigma(noisy) - sigma) < 0.05 * sigma, sigma
    photo = load_photo("camera").astype(np.float32) / 255.0
    assert estimate_sigma(photo) < 3  # a clean photograph reads as (almost) no noise
    # clipped noise: half the image black, whose clipped noise would read low, is left out
    half = np.where(np.arange(320) < 160, 0.0, 0.5)[None].repeat(256, 0)
    clipped = np.clip(half + rng.normal(0, 20 / 255, half.shape), 0, 1)
    assert abs(estimate_sigma(clipped) - 20) < 1.5
    # a colour image reads as its noisiest channel
    planes = np.stack([ramp_image, ramp_image + rng.normal(0, 0.1, ramp_image.shape)]).astype(np.float32)
    assert abs(image_sigma(planes) - 25.5) < 1.5
    with pytest.raises(ValueError, match=r"one \(H, W\) plane"):
        estimate_sigma(planes)


# -- the training photographs -----------------------------------------------------------------------------
def test_wallpapers_missing_package_is_named(tmp_path, monkeypatch):
    from aetk.denoise import photos

    monkeypatch.setattr(photos, "WALLPAPER_FOLDER", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt install lomiri-wallpapers-16.04"):
        photos.wallpaper_paths()


def test_wallpapers_are_downscaled_to_the_test_photos_scale(tmp_path, monkeypatch):
    from aetk.denoise import photos

    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (1500, 2400, 3), dtype=np.uint8)).save(big)
    planes = photos.grayscale_planes(big)
    assert len(planes) == 4  # luminance and three colour channels
    assert all(p.shape == (photos.WALLPAPER_SHORT_SIDE, 960) and p.dtype == np.uint8 for p in planes)
    small = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 256, (100, 80), dtype=np.uint8)).save(small)
    assert [p.shape for p in photos.grayscale_planes(small)] == [(100, 80)]  # never upscaled
    monkeypatch.setattr(photos, "WALLPAPERS", {"pkg": ("big.jpg", "small.png")})
    monkeypatch.setattr(photos, "WALLPAPER_FOLDER", tmp_path)
    assert photos.wallpaper_paths() == [big, small]
    p = photos.patches([big], size=64, stride=64)
    assert p.shape == (4 * (600 // 64) * (960 // 64), 1, 64, 64)
