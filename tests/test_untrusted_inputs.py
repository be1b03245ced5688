"""Untrusted input files (issue 19 items 11 and 12, issue 20's command items): FIFOs in input
trees and on the command line never hang a command; small files holding huge images are
refused from their header, before decoding; decode memory is one process-wide budget; a
truncated image is skipped and reported by training as by compress and denoise; 16-bit colour
stays 16-bit through ``aetk denoise``; ``--model`` is checked before any input is looked at;
``--report --reference`` scores each output."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import aetk as aetk_package
from aetk.cli.main import app
from aetk.data.imageguard import (BUDGET, DecodeBudget, ImageTooLargeError, NotRegularFileError, decoded_bytes,
                                  open_regular, regular_file_problem)
from aetk.denoise import DenoiseOptions, denoise_paths
from aetk.denoise.imagefiles import read_image
from aetk.denoise.modelcheck import ModelCheckError, check_denoiser_metadata
from aetk.errors import EXIT_USER_INPUT

# The folder holding the aetk these tests import (the source tree in `make dev`, site-packages in a
# fresh clone after `make test`): child processes run there, so the source tree never shadows it.
ROOT = Path(aetk_package.__file__).resolve().parents[1]
UNIT = {"kind": "unit", "scale": 255.0, "mean": None, "std": None, "shape": None, "value_range": [0.0, 1.0]}
HANG = 120  # seconds: a command still running after this hangs (each takes a few seconds)


def aetk(*args, timeout: int = HANG) -> subprocess.CompletedProcess:
    """The CLI in a child process, so that a hang is a test failure, not a hung test run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "aetk.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def gray_pngs(folder: Path, n: int, size: int = 8, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def huge_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit PNG of width x height, all zeros: a few KB on disk (written row by row, never
    held whole in memory)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    z = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def export_model(kind: str, folder: Path, shape=(1, 16, 16), **params) -> Path:
    from aetk.export import export_model as export
    from aetk.models import create_model

    torch.manual_seed(0)
    model = create_model(kind, shape, **params).eval()
    export(model, folder, normalization=UNIT)
    return folder


@pytest.fixture(scope="module")
def identity(identity_denoiser) -> Path:
    return identity_denoiser


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> Path:
    """A conv autoencoder (not a denoiser) for 1x8x8 images."""
    return export_model("conv", tmp_path_factory.mktemp("conv"), shape=(1, 8, 8), channels=[4, 8], code_size=6)


# -- the guard ------------------------------------------------------------------------------------
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(NotRegularFileError, match="FIFO"):
        open_regular(fifo)  # a plain open() would wait for a writer forever
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_image(fifo)
    assert time.monotonic() - start < 5
    assert "FIFO" in regular_file_problem(fifo)
    assert regular_file_problem(gray_pngs(tmp_path / "ok", 1)[0]) is None


def test_huge_image_in_a_small_file_is_refused_from_its_header(tmp_path):
    bomb = huge_png(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels
    assert bomb.stat().st_size < 200_000
    start = time.monotonic()
    with pytest.raises(ImageTooLargeError, match="20000x20000 = 400000000 pixels exceeds"):
        read_image(bomb)
    assert time.monotonic() - start < 5  # decoding it would take seconds and gigabytes


def test_decode_memory_budget_refuses_from_the_header(tmp_path, monkeypatch):
    """An image under --max-pixels whose decode would exceed the budget is refused before
    any pixel is decoded (the budget is AETK_DECODE_MEMORY in a fresh process)."""
    big = huge_png(tmp_path / "wide.png", 3000, 3000)  # 9 MP, under --max-pixels
    need = decoded_bytes(3000, 3000, "1")
    assert need >= 3000 * 3000 * 5  # stored bytes, a converted copy, float32 planes
    monkeypatch.setattr(BUDGET, "_capacity", need - 1)
    with pytest.raises(ImageTooLargeError, match="decode memory budget"):
        read_image(big)
    monkeypatch.setattr(BUDGET, "_capacity", need)
    assert read_image(big).planes.shape == (1, 3000, 3000)
    # the environment variable sets it for a new process
    out = subprocess.run([sys.executable, "-c", "from aetk.data.imageguard import BUDGET; print(BUDGET.capacity)"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                              "AETK_DECODE_MEMORY": "64M"}, check=True, cwd=ROOT)
    assert int(out.stdout) == 64 << 20


def test_budget_lets_one_large_decode_run_at_a_time():
    budget = DecodeBudget(100)
    order: list[str] = []
    first_in = threading.Event()

    def first():
        with budget.reserve(80):
            order.append("first in")
            first_in.set()
            time.sleep(0.3)
            order.append("first out")

    def second():
        first_in.wait()
        with budget.reserve(50):  # 80 + 50 > 100: waits for the first
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first in", "first out", "second in"]
    assert budget.used == 0


# -- FIFOs through the commands -----------------------------------------------------------------------
def test_denoise_skips_a_fifo_in_a_folder_and_refuses_one_named(tmp_path, identity):
    src = tmp_path / "in"
    gray_pngs(src, 2, size=16)
    os.mkfifo(src / "pipe.png")
    r = aetk("denoise", src, "-o", tmp_path / "out", "--model", identity)
    assert r.returncode == 0, r.stderr
    assert "pipe.png" in r.stderr and "FIFO" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img00.png", "img01.png"]

    r = aetk("denoise", src / "pipe.png", "-o", tmp_path / "out2", "--model", identity)
    assert r.returncode == EXIT_USER_INPUT
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "FIFO" in lines[0], r.stderr
    assert not (tmp_path / "out2").exists()


def test_denoise_refuses_a_huge_image_quickly_and_goes_on(tmp_path, identity):
    src = tmp_path / "in"
    gray_pngs(src, 1, size=16)
    huge_png(src / "bomb.png", 20000, 20000)
    start = time.monotonic()
    r = aetk("denoise", src, "-o", tmp_path / "out", "--model", identity)
    assert time.monotonic() - start < 60
    assert r.returncode == 1 and "Traceback" not in r.stderr  # 1: some inputs failed
    assert "bomb.png" in r.stderr and "exceeds the limit" in r.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["img00.png"]


def test_compress_skips_a_fifo_in_a_folder(tmp_path, conv):
    src = tmp_path / "imgs"
    gray_pngs(src, 6)
    os.mkfifo(src / "pipe.png")
    r = aetk("compress", src, "--model", conv, "-o", tmp_path / "codes")
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads((tmp_path / "codes" / "manifest.json").read_text())
    assert manifest["totals"]["unreadable_at_open"] == 1
    assert "FIFO" in (tmp_path / "codes" / "manifest.json").read_text()


def test_train_skips_fifo_and_truncated_images_and_reports_them(tmp_path):
    src = tmp_path / "imgs"
    paths = gray_pngs(src, 12)
    os.mkfifo(src / "pipe.png")
    truncate(paths[0])  # a PNG cut in half
    jpeg = src / "photo.jpg"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("L").save(
        jpeg, quality=95)
    truncate(jpeg, 0.7)  # a JPEG without its end
    run = tmp_path / "run"
    r = aetk("train", "--model", "ae", "--data", src, "--epochs", "1", "--run-dir", run,
             "model.code_size=4", "train.batch_size=4")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "skipped 3 unreadable item(s)" in out, out
    for name in ("pipe.png", "img00.png", "photo.jpg"):
        assert name in out
    assert (run / "model.safetensors").is_file()


def test_a_fifo_named_as_the_data_is_one_clear_error(tmp_path):
    fifo = tmp_path / "data.npy"
    os.mkfifo(fifo)
    r = aetk("train", "--model", "ae", "--data", fifo, "--epochs", "1", "--run-dir", tmp_path / "run")
    assert r.returncode == EXIT_USER_INPUT, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "FIFO" in lines[0], r.stderr


def test_data_folder_scan_skips_bad_files_fast(tmp_path):
    from aetk.data import DataConfig, load_data

    src = tmp_path / "imgs"
    gray_pngs(src, 4)
    huge_png(src / "bomb.png", 20000, 20000)
    os.mkfifo(src / "pipe.png")
    start = time.monotonic()
    data = load_data(DataConfig(path=str(src)))
    assert time.monotonic() - start < 10
    assert len(data.train) == 4
    why = dict((Path(f).name, w) for f, w in data.skipped)
    assert "exceeds" in why["bomb.png"] and "FIFO" in why["pipe.png"]
    assert "2 skipped" in data.describe()


# -- aetk denoise: 16-bit colour, --model, --report ----------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_stays_16bit(tmp_path, identity, suffix):
    import cv2

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)  # values 8 bits cannot hold
    rgb[0, 0] = (0, 65535, 1)
    src = tmp_path / "in"
    src.mkdir()
    assert cv2.imwrite(str(src / f"a{suffix}"), rgb[..., ::-1])  # OpenCV writes BGR
    assert Image.open(src / f"a{suffix}").mode == "RGB"  # Pillow alone would read it as 8-bit
    # a one-channel model denoises each colour plane; the file stays 16-bit RGB
    summary = denoise_paths([src], tmp_path / "out", identity, DenoiseOptions(device="cpu"))
    assert summary.ok and len(summary.done) == 1
    out = cv2.imread(str(tmp_path / "out" / f"a{suffix}"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (20, 24, 3)
    assert np.array_equal(out[..., ::-1], rgb)  # the identity model: every 16-bit value kept


def test_non_denoiser_model_is_refused_before_any_input_is_read(tmp_path, conv):
    src = tmp_path / "in"
    gray_pngs(src, 1, size=32)
    os.mkfifo(src / "pipe.png")  # reading it would hang; looking at the inputs would note it
    with pytest.raises(ModelCheckError, match="'conv' model, not a denoiser"):
        denoise_paths([tmp_path / "no such input"], tmp_path / "out", conv)  # the model comes first
    r = CliRunner().invoke(app, ["denoise", str(src), "-o", str(tmp_path / "out"), "--model", str(conv)])
    assert r.exit_code == EXIT_USER_INPUT
    assert r.stderr.strip().startswith("error: --model") and "not a denoiser" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_model_check_names_what_is_wrong():
    from types import SimpleNamespace

    def meta(**kw):
        base = dict(kind="resconv", base_kind="", graph="autoencoder", layout="NCHW", input_shape=[1, 16, 16],
                    dynamic_spatial=True)
        return SimpleNamespace(**{**base, **kw})

    check_denoiser_metadata(meta(), "m.onnx")
    check_denoiser_metadata(meta(kind="denoising", base_kind="conv"), "m.onnx")
    for kw, text in (({"kind": "vae"}, "not a denoiser"), ({"dynamic_spatial": False}, "not fully convolutional"),
                     ({"input_shape": [2, 16, 16]}, "2-channel"), ({"graph": "encoder"}, "encoder graph"),
                     ({"layout": "NF", "input_shape": [64]}, "NF data")):
        with pytest.raises(ModelCheckError, match=text):
            check_denoiser_metadata(meta(**kw), "m.onnx")


def test_report_scores_each_image_against_its_reference(tmp_path, identity):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    clean = np.clip(np.add.outer(np.linspace(0, 1, 24), np.linspace(0, 1, 20)) / 2, 0, 1)
    noisy = np.clip(clean + 0.08 * rng.standard_normal(clean.shape), 0, 1)
    (tmp_path / "noisy" / "sub").mkdir(parents=True)
    (tmp_path / "clean" / "sub").mkdir(parents=True)
    c8, n8 = (clean * 255).round().astype(np.uint8), (noisy * 255).round().astype(np.uint8)
    Image.fromarray(n8).save(tmp_path / "noisy" / "sub" / "a.png")
    Image.fromarray(c8).save(tmp_path / "clean" / "sub" / "a.bmp")  # any image suffix
    Image.fromarray(n8).save(tmp_path / "noisy" / "b.png")  # no reference for it
    summary = denoise_paths([tmp_path / "noisy"], tmp_path / "out", identity, DenoiseOptions(reference=tmp_path / "clean"))
    (score,) = summary.report.scores
    want_psnr = peak_signal_noise_ratio(c8, n8, data_range=255)
    want_ssim = structural_similarity(c8 / 255.0, n8 / 255.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
    assert score.psnr_in == pytest.approx(want_psnr, abs=1e-6)
    assert score.ssim_in == pytest.approx(want_ssim, abs=1e-6)
    assert score.psnr_out == pytest.approx(score.psnr_in, abs=1e-6)  # the identity model
    assert [Path(m[0]).name for m in summary.report.missing] == ["b.png"]

    r = CliRunner().invoke(app, ["denoise", str(tmp_path / "noisy"), "-o", str(tmp_path / "out2"), "--model",
                                 str(identity), "--report", "--reference", str(tmp_path / "clean")])
    assert r.exit_code == 0, r.output
    assert "mean" in r.stdout and f"{want_psnr:.2f}" in r.stdout
    r = CliRunner().invoke(app, ["denoise", str(tmp_path / "noisy"), "--report"])
    assert r.exit_code == EXIT_USER_INPUT and "--report needs --reference" in r.stderr


def test_tile_defaults_come_from_the_model(tmp_path, identity):
    """--tile alone never fails on --overlap, which the user did not pass (its default follows
    the tile), and a model's own tile size is used when none is given."""
    src = tmp_path / "in"
    gray_pngs(src, 1, size=40)
    summary = denoise_paths([src], tmp_path / "out", identity, DenoiseOptions(tile=16))  # overlap 32 would not fit
    assert summary.ok and len(summary.done) == 1
    a = np.asarray(Image.open(src / "img00.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "img00.png")), a)  # identity, tiled


def test_progress_rate_is_images_over_elapsed_time():
    from aetk.cli.denoise import rate_text

    assert rate_text(5, 48.0) == "0.10 img/s"  # was shown as 42 img/s: a burst of finished writes
    assert rate_text(5, 60.0) == "12.0 s/img"
    assert rate_text(40, 10.0) == "4.00 img/s"
    assert rate_text(0, 3.0) == "— img/s"
