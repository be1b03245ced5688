"""aetk compress / decompress / neighbors: streaming readers, shard formats and precisions,
resume after SIGKILL, stale jobs, damaged shards, bad input, retrieval, the Ray engine --
on small real and synthetic data written to tmp folders at run time."""

from __future__ import annotations

import json
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
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.compress import (Codes, CompressError, CompressOptions, CorruptShardError, DecompressOptions,
                           IncompleteCodesError, NeighborsOptions, Ray, ReaderOptions, ShapeMismatchError,
                           StaleCodesError, compress, decompress, neighbors, verify)
from aetk.compress.decode import to_dtype
from aetk.compress.quantize import dequantize, quantize
from aetk.data import DataConfig, load_data
from aetk.data.forward import ForwardArray
from aetk.data.idx import read_idx, write_idx
from aetk.data.stream import open_parts, read_range
from aetk.errors import EXIT_INTEGRITY, EXIT_OS, EXIT_USER_INPUT
from aetk.normalization import Normalization
from aetk.runtime import load_export



# -- fixtures -------------------------------------------------------------------------------------
def _export(model, folder: Path, scale: float = 255.0) -> Path:
    from aetk.export import export_model

    for m in model.modules():  # untrained BatchNorm statistics are trivial; make them not so
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    export_model(model.eval(), folder, normalization=Normalization.unit(scale).to_dict())
    return folder


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> Path:
    """A small conv autoencoder for 1x8x8 images in 0..255, exported."""
    from aetk.models import create_model

    torch.manual_seed(0)
    return _export(create_model("conv", (1, 8, 8), channels=[4, 8], code_size=6),
                   tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def conv_other(tmp_path_factory) -> Path:
    """The same architecture with other weights (a changed model)."""
    from aetk.models import create_model

    torch.manual_seed(1)
    return _export(create_model("conv", (1, 8, 8), channels=[4, 8], code_size=6),
                   tmp_path_factory.mktemp("conv_other"))


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    """600 smooth 8x8 uint8 images (N, 1, 8, 8) in a .npy."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (600, 1, 3, 3)).astype(np.float32)
    big = np.asarray([np.asarray(Image.fromarray(b[0]).resize((8, 8), Image.Resampling.BILINEAR)) for b in base])
    x = np.clip(big + rng.normal(0, 4, big.shape), 0, 255).astype(np.uint8)[:, None]
    path = tmp_path_factory.mktemp("pixels") / "pixels.npy"
    np.save(path, x)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder (hidden ones too) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def raw_codes(folder: Path, x_raw: np.ndarray) -> np.ndarray:
    """What the encoder gives for raw examples, straight from aetk.runtime."""
    return load_export(folder, device="cpu").encode(x_raw, raw=True)


# -- streaming readers ------------------------------------------------------------------------------
def test_stream_reads_what_training_reads(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 6, 5), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    np.savez(tmp_path / "a.npz", x=x.astype(np.float32), x_test=x[:7].astype(np.float32))
    rows = rng.normal(size=(40, 3))
    (tmp_path / "t.csv").write_text("a,b,label,c\n" + "".join(f"{r[0]},{r[1]},k{i % 3},{r[2]}\n"
                                                               for i, r in enumerate(rows)))
    for path, kw in ((tmp_path / "train-images-idx3-ubyte.gz", {}), (tmp_path / "a.npz", {}),
                     (tmp_path / "t.csv", {"label_column": "label"})):
        parts, _ = open_parts(str(path), DataConfig(**kw))
        assert all(isinstance(p.source.x, ForwardArray) for p in parts), "must not load the file whole"
        want = load_data(DataConfig(path=str(path), normalize="none", **kw))
        splits = [want.train] + ([want.test] if want.test is not None else [])
        assert [len(p) for p in parts] == [len(s) for s in splits]
        for p, s in zip(parts, splits):
            got = np.concatenate([read_range(p, a, min(a + 16, len(p))).x for a in range(0, len(p), 16)])
            np.testing.assert_array_equal(got, np.stack([s[i][0].numpy() for i in range(len(s))]))
    parts, _ = open_parts(str(tmp_path / "train-images-idx3-ubyte.gz"), DataConfig())
    assert parts[0].origin == {"format": "idx", "file": "train-images-idx3-ubyte.gz", "gzip": True}
    assert parts[0].dtype == "uint8" and parts[0].source.input_shape == (1, 6, 5)


def test_stream_skips_bad_csv_rows_and_non_finite_values(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n3,oops\n5,6\n7\n9,nan\n11,12\n")
    parts, _ = open_parts(str(f), DataConfig())
    rows = read_range(parts[0], 0, len(parts[0]))
    np.testing.assert_array_equal(rows.x, [[1, 2], [5, 6], [11, 12]])
    assert rows.index.tolist() == [0, 2, 5]
    why = dict(rows.skipped)
    assert sorted(why) == [1, 3, 4]
    assert "line 3 (data row 2), column 'b' holds 'oops'" in why[1]
    assert "line 5: 1 fields, but the header names 2" in why[3] and "NaN" in why[4]
    x = np.ones((6, 4), np.float32)
    x[2, 1] = np.inf
    np.save(tmp_path / "inf.npy", x)
    rows = read_range(open_parts(str(tmp_path / "inf.npy"), DataConfig())[0][0], 0, 6)
    assert rows.index.tolist() == [0, 1, 3, 4, 5] and "example 2" in rows.skipped[0][1]


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read memory use")
def test_memory_mapped_pages_are_handed_back(tmp_path):
    x = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(6144, 16384))
    x[:] = 7  # 96 MiB
    x.flush()
    del x
    parts, _ = open_parts(str(tmp_path / "big.npy"), DataConfig())
    before = _rss_file_kib()
    peak = before
    for a in range(0, 6144, 50):  # ranges that do not end on page boundaries
        read_range(parts[0], a, min(a + 50, 6144))
        peak = max(peak, _rss_file_kib())
    # Pages kept would grow the file-backed resident set towards the file's 96 MiB.
    assert peak - before < 2048, f"file pages in memory grew by {(peak - before) // 1024} MiB"


# -- compress: formats and precisions ---------------------------------------------------------------
@pytest.mark.parametrize("zstd", [False, True], ids=["plain", "zstd"])
@pytest.mark.parametrize("shard_format", ["npy", "parquet"])
@pytest.mark.parametrize("precision", ["float32", "float16", "int8"])
def test_precisions_and_shard_formats(conv, pixels, tmp_path, precision, shard_format, zstd):
    x = np.load(pixels)[:300]
    np.save(tmp_path / "x.npy", x)
    res = compress(str(tmp_path / "x.npy"), conv, tmp_path / "codes", CompressOptions(precision=precision,
                                                                                      shard_format=shard_format,
                                                                                      zstd=zstd, shard_size=128,
                                                                                      batch_size=50, png_sample=16))
    m = res.manifest
    suffix = {("npy", False): ".npy", ("npy", True): ".npy.zst"}.get((shard_format, zstd), ".parquet")
    assert [r["file"] for r in m["shards"]] == [f"shard-0000{k}{suffix}" for k in range(3)]
    assert [(r["start"], r["stop"], r["rows"]) for r in m["shards"]] == [(0, 128, 128), (128, 256, 128),
                                                                          (256, 300, 44)]
    assert m["job"]["codes"]["precision"] == precision and m["code_shape"] == [6]
    assert m["job"]["model"]["weights_sha256"] == load_export(conv).metadata.weights_sha256
    assert m["job"]["preprocessing"]["normalization"]["scale"] == 255.0 and m["aetk_version"]
    assert not (tmp_path / "codes" / ".progress").exists() and verify(tmp_path / "codes") == []

    want = raw_codes(conv, x)
    codes = Codes.open(tmp_path / "codes")
    got = np.concatenate([codes.read(r)[0] for r in codes.records])
    if precision == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    elif precision == "float16":
        np.testing.assert_allclose(got, want.astype(np.float16).astype(np.float32), rtol=1e-3, atol=1e-3)
    else:  # per shard and dimension: error at most half a step
        for r, (z, items) in zip(codes.records, (codes.read(r) for r in codes.records)):
            step = np.asarray(r["quantization"]["scale"], np.float32)
            assert np.all(np.abs(z - want[items]) <= step / 2 + 1e-5)
    rep = res.report
    assert rep["bytes_per_sample"] == pytest.approx(m["totals"]["bytes"] / 300, abs=1e-3)
    assert rep["raw_bytes_per_sample"] == 64 and rep["ratio_vs_raw"] == pytest.approx(64 * 300 / m["totals"]["bytes"], rel=1e-3)
    assert rep["png_sample"] == 16 and rep["png_bytes_per_sample"] > 64  # PNG headers alone exceed 8x8 pixels

    out = decompress(tmp_path / "codes", tmp_path / "out")
    y = np.load(tmp_path / "out" / "x.npy")
    assert y.shape == x.shape and y.dtype == np.uint8 and out.rows == 300
    dec = load_export(conv, device="cpu")
    np.testing.assert_allclose(y.astype(float), to_dtype(dec.decode(got, raw=True), "uint8").astype(float), atol=1)


def test_int8_quantization_bounds():
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(500, 2, 3)) * [[1.0, 5.0, 0.01]]).astype(np.float32)
    z[:, 1, 2] = 3.25  # a constant dimension
    q, params = quantize(z, "int8")
    assert q.dtype == np.int8 and q.shape == z.shape and q.min() == -128 and q.max() == 127
    back = dequantize(q, "int8", json.loads(json.dumps(params)))  # through the manifest's JSON
    step = np.asarray(params["scale"], np.float32).reshape(2, 3)
    assert np.all(np.abs(back - z) <= step / 2 + 1e-6)
    assert np.all(back[:, 1, 2] == np.float32(3.25))
    with pytest.raises(CompressError, match="beyond float16's range"):
        quantize(np.array([[1e6]], np.float32), "float16")


def test_vae_codes_are_the_mean_and_deterministic(tmp_path):
    from aetk.models import create_model

    torch.manual_seed(0)
    vae = _export(create_model("vae", (64,), latent_dim=3, hidden=[12]), tmp_path / "vae")
    x = np.random.default_rng(2).integers(0, 256, (70, 64), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    compress(str(tmp_path / "x.npy"), vae, tmp_path / "a", CompressOptions(shard_size=32, png_sample=0))
    compress(str(tmp_path / "x.npy"), vae, tmp_path / "b", CompressOptions(shard_size=32, png_sample=0))
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    codes = Codes.open(tmp_path / "a")
    got = np.concatenate([codes.read(r)[0] for r in codes.records])
    mean, _ = load_export(vae, device="cpu").encode_stats(x, raw=True)
    np.testing.assert_allclose(got, mean, rtol=1e-6, atol=1e-6)
    assert codes.manifest["job"]["model"]["variational"] is True


# -- sources and their layouts ----------------------------------------------------------------------
def _image_folder(root: Path, n: int = 24) -> Path:
    rng = np.random.default_rng(3)
    for i in range(n):
        a = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        cls = "cats" if i % 2 else "dogs"
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / cls / f"{i:02d}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "cats" / "photo.jpg", quality=95)
    (root / "dogs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # fails the header scan
    cut = root / "dogs" / "cut.png"
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:60])  # header intact, pixels cut: fails when decoded
    return root


def test_image_folder_unreadable_items_are_skipped_listed_and_counted(conv, tmp_path):
    src = _image_folder(tmp_path / "imgs")
    res = compress(str(src), conv, tmp_path / "codes", CompressOptions(shard_size=10, png_sample=8))
    m = res.manifest
    # bad.png fails the header scan; cut.png fails either the scan's completeness check or
    # its decode: both are listed, neither has a code
    assert m["totals"]["rows"] == 25 and m["totals"]["skipped"] + m["totals"]["unreadable_at_open"] == 2
    assert m["totals"]["items"] == 25 + m["totals"]["skipped"]
    part = m["job"]["source"]["parts"][0]
    skipped = [Path(f).name for f, _ in part["skipped_at_open"]] + [Path(s[1]).name for r in m["shards"]
                                                                     for s in r["skipped"]]
    assert sorted(skipped) == ["bad.png", "cut.png"]
    ids = [i for r in m["shards"] for i in r["ids"]]
    assert len(ids) == 25 and "cats/photo.jpg" in ids and "dogs/cut.png" not in ids
    assert sum(r["rows"] for r in m["shards"]) == 25
    assert res.notes and "2 items could not be read" in res.notes[0]

    out = decompress(tmp_path / "codes", tmp_path / "out")
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == sorted(ids) and out.rows == 25
    with Image.open(tmp_path / "out" / "cats" / "photo.jpg") as im:
        assert im.format == "JPEG" and im.mode == "L" and im.size == (8, 8)
    with Image.open(tmp_path / "out" / "dogs" / "00.png") as im:
        assert im.format == "PNG" and im.mode == "L"
        got = np.asarray(im)
    rec = next(r for r in m["shards"] if "dogs/00.png" in r["ids"])
    z = Codes.open(tmp_path / "codes").read(rec)[0][rec["ids"].index("dogs/00.png")]
    want = to_dtype(load_export(conv, device="cpu").decode(z[None], raw=True)[0, 0], "uint8")
    np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)


def test_idx_npz_csv_and_builtin_come_back_in_kind(conv, tmp_path):
    from aetk.models import create_model

    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    (tmp_path / "idx").mkdir()
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte.gz", imgs[:20])
    write_idx(tmp_path / "idx" / "t10k-images-idx3-ubyte.gz", imgs[20:])
    res = compress(str(tmp_path / "idx"), conv, tmp_path / "c_idx", CompressOptions(shard_size=16, png_sample=0))
    assert [p["name"] for p in res.manifest["job"]["source"]["parts"]] == ["train", "test"]
    assert [(r["part"], r["start"], r["stop"]) for r in res.manifest["shards"]] == [
        ("train", 0, 16), ("train", 16, 20), ("test", 20, 30)]
    decompress(tmp_path / "c_idx", tmp_path / "o_idx")
    for name, n in (("train-images-idx3-ubyte.gz", 20), ("t10k-images-idx3-ubyte.gz", 10)):
        y = read_idx(tmp_path / "o_idx" / name)
        assert y.shape == (n, 8, 8) and y.dtype == np.dtype(">u1")
        with open(tmp_path / "o_idx" / name, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"  # gzipped like the source
    decompress(tmp_path / "c_idx", tmp_path / "o_arr", DecompressOptions(arrays=True))
    assert np.load(tmp_path / "o_arr" / "test.npy").shape == (10, 1, 8, 8)

    np.savez(tmp_path / "a.npz", x=imgs[:20, None], x_test=imgs[20:, None])
    compress(str(tmp_path / "a.npz"), conv, tmp_path / "c_npz", CompressOptions(png_sample=0))
    decompress(tmp_path / "c_npz", tmp_path / "o_npz")
    with np.load(tmp_path / "o_npz" / "a.npz") as z:
        assert sorted(z.files) == ["x", "x_test"] and z["x"].shape == (20, 1, 8, 8) and z["x"].dtype == np.uint8

    torch.manual_seed(0)
    mlp = _export(create_model("deep", (3,), widths=[4, 2]), tmp_path / "mlp", scale=1.0)
    (tmp_path / "t.csv").write_text("u;label;v;w\n" + "".join(f"{i};k{i % 2};{i / 7};{-i}\n" for i in range(25)))
    res = compress(str(tmp_path / "t.csv"), mlp, tmp_path / "c_csv", CompressOptions(reader=ReaderOptions(label_column="label", delimiter=";"), png_sample=0))
    assert res.report["png_bytes_per_sample"] is None
    d = decompress(tmp_path / "c_csv", tmp_path / "o_csv")
    lines = (tmp_path / "o_csv" / "t.csv").read_text().splitlines()
    assert lines[0] == "u;v;w" and len(lines) == 26 and "labels are not stored" in d.notes[0]

    res = compress("digits", conv, tmp_path / "c_dig", CompressOptions(png_sample=0))  # held in memory; float values
    assert res.manifest["totals"]["items"] == 1797 and res.report["png_bytes_per_sample"] is None
    decompress(tmp_path / "c_dig", tmp_path / "o_dig")
    assert np.load(tmp_path / "o_dig" / "train.npy").dtype == np.float32
    assert sorted(p.name for p in (tmp_path / "o_dig").iterdir()) == ["test.npy", "train.npy"]


# -- crash safety -------------------------------------------------------------------------------------
def _compress_cmd(data: Path, model: Path, out: Path, *extra: str, shard_size: int = 40) -> list[str]:
    return [sys.executable, "-m", "aetk.cli.main", "compress", str(data), "-m", str(model), "-o", str(out),
            "--shard-size", str(shard_size), "--png-sample", "8", "--quiet", *extra]


def _env(**kw: str) -> dict[str, str]:
    # Subprocesses import the same aetk as this test (the source tree in dev mode, the installed
    # package in CI, whose source tree lacks the built extension and aetk/cli); run them outside
    # the repository (cwd=tmp_path) so the source tree does not shadow it.
    import aetk

    pkg = str(Path(aetk.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=pkg + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(kw)
    return env


def test_sigkill_part_way_then_rerun_is_byte_identical(conv, pixels, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(_compress_cmd(pixels, conv, clean, "--zstd"), check=True, env=_env(), cwd=tmp_path)
    proc = subprocess.Popen(_compress_cmd(pixels, conv, killed, "--zstd"), cwd=tmp_path,
                            env=_env(AETK_COMPRESS_SHARD_DELAY="0.25"))
    try:
        deadline = time.monotonic() + 120
        while len(list((killed / ".progress").glob("shard-*.json"))) < 4:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no shards written in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (killed / "manifest.json").exists(), "a killed run must leave no manifest"
    done = len(list((killed / ".progress").glob("shard-*.json")))
    assert 4 <= done < 15
    with pytest.raises(IncompleteCodesError, match=r"rerun the same `aetk compress`"):
        verify(killed)
    rerun = subprocess.run(_compress_cmd(pixels, conv, killed, "--zstd", "--json"), check=True, env=_env(),
                           cwd=tmp_path, capture_output=True, text=True)
    info = json.loads(rerun.stdout)
    assert info["shards_kept"] == done and info["shards_written"] + info["shards_kept"] == 15
    assert tree(killed) == tree(clean)


def test_full_disk_leaves_no_manifest_and_a_rerun_finishes(conv, tmp_path):
    import resource

    def limit_file_size():  # writes past 32 KiB fail with EFBIG, as they would on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))

    np.save(tmp_path / "x.npy", np.random.default_rng(5).integers(0, 256, (2000, 1, 8, 8), dtype=np.uint8))
    out = tmp_path / "codes"
    cmd = _compress_cmd(tmp_path / "x.npy", conv, out, shard_size=1500)  # 36 KiB of codes in shard 0
    proc = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit_file_size)
    assert proc.returncode == EXIT_OS, proc.stderr  # the disk refused: one line, exit 4
    assert "writing codes to" in proc.stderr and "rerun resumes" in proc.stderr
    assert (out / "model" / "decoder.onnx").is_file(), "the model (under the limit) was copied first"
    assert not (out / "manifest.json").exists() and not list(out.glob("shard-*"))
    assert not list(out.rglob("*.tmp")), "temporary files must not be left behind"
    subprocess.run(cmd, check=True, env=_env(), cwd=tmp_path)
    assert verify(out) == [] and Codes.open(out).manifest["totals"]["rows"] == 2000


def test_disk_full_part_way_keeps_finished_shards(conv, pixels, tmp_path, monkeypatch):
    import errno

    from aetk.compress import encode

    real = encode.atomic_write_bytes
    calls = []

    def fail_third(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(encode, "atomic_write_bytes", fail_third)
    with pytest.raises(OSError, match=r"No space left on device.*the 2 finished shards are kept"):
        compress(str(pixels), conv, tmp_path / "codes", CompressOptions(shard_size=100, png_sample=0))
    assert not (tmp_path / "codes" / "manifest.json").exists()
    monkeypatch.setattr(encode, "atomic_write_bytes", real)
    res = compress(str(pixels), conv, tmp_path / "codes", CompressOptions(shard_size=100, png_sample=0))
    assert (res.shards_kept, res.shards_written) == (2, 4)
    compress(str(pixels), conv, tmp_path / "clean", CompressOptions(shard_size=100, png_sample=0))
    assert tree(tmp_path / "codes") == tree(tmp_path / "clean")


@pytest.mark.parametrize("stage", ["read", "encode", "write"])
def test_a_failure_in_any_stage_stops_the_run(conv, pixels, tmp_path, monkeypatch, stage):
    import threading

    from aetk.compress import encode
    from aetk.data import stream

    def boom(real):
        calls = []

        def f(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError(f"{stage} failed")
            return real(*a, **k)
        return f

    if stage == "read":
        monkeypatch.setattr(stream, "read_range", boom(stream.read_range))
    elif stage == "write":
        monkeypatch.setattr(encode, "atomic_write_bytes", boom(encode.atomic_write_bytes))
    else:
        real_init = encode.ShardEncoder.__init__

        def init(self, *a, **k):
            real_init(self, *a, **k)
            self.model.encode = boom(self.model.encode)
        monkeypatch.setattr(encode.ShardEncoder, "__init__", init)
    outcome = []

    def target():
        try:
            compress(str(pixels), conv, tmp_path / "codes", CompressOptions(shard_size=100, batch_size=50,
                                                                            png_sample=0))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), f"a failure in the {stage} stage left the run hanging"
    assert len(outcome) == 1 and str(outcome[0]) == f"{stage} failed"
    assert not (tmp_path / "codes" / "manifest.json").exists()
    assert not [th for th in threading.enumerate() if th.name.startswith("aetk-compress-")]


def test_unwritable_output_and_shape_mismatch_fail_before_any_work(conv, tmp_path):
    (tmp_path / "file").write_text("x")
    np.save(tmp_path / "x.npy", np.zeros((10, 1, 8, 8), np.uint8))
    with pytest.raises(CompressError, match=r"codes folder cannot be written"):
        compress(str(tmp_path / "x.npy"), conv, tmp_path / "file" / "codes")
    with pytest.raises(CompressError, match=r"exists and is not a folder"):
        compress(str(tmp_path / "x.npy"), conv, tmp_path / "file")

    np.save(tmp_path / "big.npy", np.zeros((10, 1, 12, 12), np.uint8))
    with pytest.raises(ShapeMismatchError, match=r"takes examples of shape \[1, 8, 8\].*has examples of shape "
                                                 r"\[1, 12, 12\].*--image-size 8x8"):
        compress(str(tmp_path / "big.npy"), conv, tmp_path / "codes")
    assert not (tmp_path / "codes").exists(), "nothing may be written before the shapes are checked"
    res = cli("compress", tmp_path / "big.npy", "-m", conv, "-o", tmp_path / "codes", "--image-size", "8x8", "-q")
    assert res.exit_code == 0, res.output
    assert Codes.open(tmp_path / "codes").job["preprocessing"]["reader"]["image_size"] == [8, 8]
    res = cli("compress", tmp_path / "big.npy", "-m", conv, "-o", tmp_path / "c2", "--channels", "3")
    assert res.exit_code == EXIT_USER_INPUT and "--channels 1" in res.output
    # (N, H, W) without a channel axis: the refusal says how to read them, and that works
    np.save(tmp_path / "nhw.npy", np.zeros((10, 8, 8), np.uint8))
    res = cli("compress", tmp_path / "nhw.npy", "-m", conv, "-o", tmp_path / "c3")
    assert res.exit_code == EXIT_USER_INPUT and "--channels 1 reads them as 1-channel images" in res.output
    res = cli("compress", tmp_path / "nhw.npy", "-m", conv, "-o", tmp_path / "c3", "--channels", "1", "-q")
    assert res.exit_code == 0, res.output


def test_stale_codes_are_refused_unless_overwrite(conv, conv_other, pixels, tmp_path):
    out = tmp_path / "codes"
    compress(str(pixels), conv, out, CompressOptions(shard_size=200, png_sample=0))
    before = tree(out)
    again = compress(str(pixels), conv, out, CompressOptions(shard_size=200, png_sample=0))
    assert (again.shards_written, again.shards_kept) == (0, 3) and tree(out) == before
    with pytest.raises(StaleCodesError, match=r"model\.weights_sha256: .* -> .*--overwrite"):
        compress(str(pixels), conv_other, out, CompressOptions(shard_size=200, png_sample=0))
    with pytest.raises(StaleCodesError, match=r"codes\.precision: \"float32\" -> \"int8\""):
        compress(str(pixels), conv, out, CompressOptions(shard_size=200, precision="int8", png_sample=0))
    with pytest.raises(StaleCodesError, match=r"codes\.shard_size: 200 -> 100"):
        compress(str(pixels), conv, out, CompressOptions(shard_size=100, png_sample=0))
    with pytest.raises(StaleCodesError, match=r"preprocessing\.reader\.resize"):
        compress(str(pixels), conv, out, CompressOptions(shard_size=200, png_sample=0,
                                                         reader=ReaderOptions(resize="crop")))
    assert tree(out) == before, "a refused run must not touch the folder"
    res = compress(str(pixels), conv_other, out, CompressOptions(shard_size=100, png_sample=0, overwrite=True))
    assert res.shards_written == 6 and sorted(p.name for p in out.glob("shard-*")) == [
        f"shard-0000{k}.npy" for k in range(6)]
    assert Codes.open(out).job["model"]["weights_sha256"] == load_export(conv_other).metadata.weights_sha256
    # an interrupted run of another job is refused too
    (out / "manifest.json").unlink()
    (out / ".progress").mkdir()
    (out / ".progress" / "job.json").write_text(json.dumps({"job": {"model": {"weights_sha256": "0" * 64}}}))
    with pytest.raises(StaleCodesError, match=r"an unfinished run in \.progress/"):
        compress(str(pixels), conv_other, out, CompressOptions(shard_size=100, png_sample=0))
    shutil_free = tmp_path / "strays"
    shutil_free.mkdir()
    (shutil_free / "shard-00000.npy").write_bytes(b"?")
    with pytest.raises(CompressError, match=r"holds shard files but no manifest\.json"):
        compress(str(pixels), conv, shutil_free, CompressOptions(png_sample=0))


def test_a_second_run_on_the_same_folder_is_refused(conv, pixels, tmp_path):
    from aetk.compress.manifest import locked

    out = tmp_path / "codes"
    out.mkdir()
    with locked(out):  # as a run in flight holds it
        with pytest.raises(CompressError, match=r"another `aetk compress` is writing to"):
            compress(str(pixels), conv, out, CompressOptions(png_sample=0))
    assert list(out.iterdir()) == []
    compress(str(pixels), conv, out, CompressOptions(png_sample=0))


def test_damaged_shards_are_caught_by_verify_and_decompress_and_redone(conv, pixels, tmp_path):
    out = tmp_path / "codes"
    compress(str(pixels), conv, out, CompressOptions(shard_size=100, png_sample=0, precision="int8"))
    good = tree(out)
    s1, s4 = out / "shard-00001.npy", out / "shard-00004.npy"
    s1.write_bytes(s1.read_bytes()[:-10])  # truncated
    data = bytearray(s4.read_bytes())
    data[-3] ^= 0x01  # one bit of one code
    s4.write_bytes(bytes(data))
    problems = verify(out)
    assert len(problems) == 2 and "shard-00001.npy: is" in problems[0] and "truncated" in problems[0]
    assert "shard-00004.npy: does not match its sha256" in problems[1]
    res = cli("compress", "--verify", out)
    assert res.exit_code == EXIT_INTEGRITY and "shard-00004.npy" in res.output
    with pytest.raises(CorruptShardError, match=r"2 problem\(s\).*nothing decoded"):
        decompress(out, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()
    with pytest.raises(CorruptShardError, match="shard-00001"):
        neighbors(out, ["0"])
    (out / "model" / "decoder.onnx").write_bytes(b"not a model")
    assert any("model/decoder.onnx" in p for p in verify(out))
    res = compress(str(pixels), conv, out, CompressOptions(shard_size=100, png_sample=0, precision="int8"))
    assert (res.shards_written, res.shards_kept) == (2, 4)
    assert tree(out) == good
    assert cli("compress", "--verify", out).exit_code == 0


# -- models: run folders, evaluation --------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from aetk.config import load_config
    from aetk.artifacts import RunDir, train_run as train  # noqa: F401

    run = tmp_path_factory.mktemp("run") / "digits-conv"
    cfg = load_config(None, ['model.kind="conv"', 'data.path="digits"', "train.epochs=5", "train.lr=1e-2",
                             "model.channels=[4, 8]", "model.code_size=8", "train.progress=false"])
    train(cfg, run)
    return run


def test_run_folder_model_and_eval_psnr(trained_run, tmp_path, monkeypatch):
    out = tmp_path / "codes"
    res = cli("compress", "digits", "-m", trained_run, "-o", out, "--eval", "--json", "--shard-size", "500")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    ev = info["report"]["eval"]
    assert (out / "model" / "run.json").is_file() and sorted(p.name for p in (out / "model").iterdir()) == [
        "decoder.onnx", "encoder.onnx", "run.json"]
    # the PSNR reported is the PSNR of what decompress writes
    decompress(out, tmp_path / "restored")
    src = load_data(DataConfig(path="digits", normalize="none"))
    x = np.concatenate([np.stack([d[i][0].numpy() for i in range(len(d))]) for d in (src.train, src.test)])
    y = np.concatenate([np.load(tmp_path / "restored" / f) for f in ("train.npy", "test.npy")])
    mse = float(((y.astype(np.float64) - x) ** 2).mean())
    assert ev["peak"] == pytest.approx(16.0) and ev["peak_from"] == "data range"
    assert ev["psnr_db"] == pytest.approx(10 * np.log10(16.0 ** 2 / mse), abs=1e-3)
    mean_psnr = 10 * np.log10(16.0 ** 2 / float(((x - x.mean()) ** 2).mean()))
    assert ev["psnr_db"] > mean_psnr, "a trained autoencoder must beat predicting the mean"
    # a rerun finds the exported model in CODES/model and does not export again
    import aetk.export

    monkeypatch.setattr(aetk.export, "export_run", lambda *a, **k: pytest.fail("exported again"))
    again = compress("digits", trained_run, out, CompressOptions(shard_size=500, png_sample=0))
    assert again.shards_written == 0 and again.shards_kept == 4
    before = tree(out)
    again = compress("digits", trained_run, out, CompressOptions(shard_size=500, png_sample=0, overwrite=True))
    assert again.shards_written == 4 and tree(out) == before  # started over from the cached export


def test_compress_path_never_imports_torch(conv, pixels, tmp_path):
    code = ("import sys; from aetk.compress import CompressOptions, NeighborsOptions, compress, decompress, neighbors; "
            f"compress({str(pixels)!r}, {str(conv)!r}, {str(tmp_path / 'c')!r}, "
            "CompressOptions(shard_size=256, evaluate=True)); "
            f"decompress({str(tmp_path / 'c')!r}, {str(tmp_path / 'o')!r}); "
            f"neighbors({str(tmp_path / 'c')!r}, ['3', {str(pixels)!r}], NeighborsOptions(k=2)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# -- retrieval -------------------------------------------------------------------------------------------
def test_neighbors_exact_against_brute_force(conv, pixels, tmp_path):
    out = tmp_path / "codes"
    compress(str(pixels), conv, out, CompressOptions(shard_size=128, png_sample=0))
    codes = Codes.open(out)
    z = np.concatenate([codes.read(r)[0] for r in codes.records]).astype(np.float64)
    for metric in ("cosine", "euclidean"):
        res = neighbors(out, ["17", "250"], NeighborsOptions(k=4, metric=metric))
        for r, q in zip(res, (17, 250)):
            if metric == "cosine":
                u = z / np.linalg.norm(z, axis=1, keepdims=True)
                d = 1 - u @ u[q]
            else:
                d = np.linalg.norm(z - z[q], axis=1)
            d[q] = np.inf  # a stored query is not its own neighbour
            want = np.argsort(d, kind="stable")[:4]
            assert [m.item for m in r.matches] == want.tolist() and r.item == q
            np.testing.assert_allclose([m.distance for m in r.matches], d[want], rtol=1e-6, atol=1e-9)
    # a query file is encoded with the stored encoder: a copy of item 33 finds item 33 at distance 0
    x = np.load(pixels)
    np.save(tmp_path / "q.npy", x[33])
    res = neighbors(out, [str(tmp_path / "q.npy")], NeighborsOptions(k=1, metric="euclidean"))
    assert res[0].matches[0].item == 33 and res[0].matches[0].distance < 1e-3
    with pytest.raises(CompressError, match=r"item numbers run from 0 to 599"):
        neighbors(out, ["600"])
    with pytest.raises(CompressError, match=r"neither a file nor a stored item"):
        neighbors(out, ["nope.png"])
    with pytest.raises(CompressError, match=r"--metric 'manhattan'"):
        neighbors(out, ["1"], NeighborsOptions(metric="manhattan"))


def test_neighbors_cli_with_image_queries_and_contact_sheet(conv, tmp_path):
    src = _image_folder(tmp_path / "imgs")
    out = tmp_path / "codes"
    compress(str(src), conv, out, CompressOptions(png_sample=0))
    sheet = tmp_path / "sheet.png"
    res = cli("neighbors", out, src / "cats" / "05.png", "dogs/10.png", "-k", "3", "--sheet", sheet, "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    assert found[0]["neighbors"][0]["id"] == "cats/05.png" and found[0]["neighbors"][0]["distance"] < 1e-4
    assert found[1]["item"] is not None and all(n["id"] != "dogs/10.png" for n in found[1]["neighbors"])
    with Image.open(sheet) as im:
        # 2 rows of 1 query + 3 neighbours, 8x8 images shown 8x larger
        assert im.size == (4 * 64 + 2 * 4 + 16, 2 * 64 + 4)
        a = np.asarray(im)
    np.testing.assert_array_equal(a[:64, :64, 0], np.repeat(np.repeat(np.asarray(Image.open(src / "cats" / "05.png")), 8, 0), 8, 1))
    res = cli("neighbors", out, "dogs/10.png", "-k", "2")
    assert res.exit_code == 0 and "dogs/10.png" in res.output


# -- the Ray engine ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, at import
def test_ray_engine_writes_the_same_codes_as_the_local_engine(conv, pixels, tmp_path):
    import ray

    from aetk.compress.ray_engine import _runtime_env

    compress(str(pixels), conv, tmp_path / "local", CompressOptions(shard_size=100, precision="int8", zstd=True,
                                                                    png_sample=8))
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=_runtime_env() or None, log_to_driver=False)
    try:
        res = compress(str(pixels), conv, tmp_path / "ray", CompressOptions(shard_size=100, precision="int8",
                                                                            zstd=True, png_sample=8,
                                                                            engine=Ray(workers=2)))
        assert res.shards_written == 6 and res.engine == "ray"
    finally:
        ray.shutdown()
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")


# -- the CLI ---------------------------------------------------------------------------------------------------
def test_cli_usage_and_bad_options(conv, pixels, tmp_path):
    out = tmp_path / "codes"
    res = cli("compress", pixels, "-m", conv, "-o", out, "--precision", "int8", "--shard-format", "parquet",
              "--zstd", "--shard-size", "250", "-q")
    assert res.exit_code == 0, res.output
    assert "ratio vs raw" in res.output and "ratio vs PNG" in res.output and "bytes per sample" in res.output
    res = cli("compress", "--verify", out)
    assert res.exit_code == 0 and "3 shards, 600 codes" in res.output
    res = cli("decompress", out, "-o", tmp_path / "back", "-q")
    assert res.exit_code == 0 and "decoded 600 codes" in res.output
    assert np.load(tmp_path / "back" / "pixels.npy").shape == (600, 1, 8, 8)
    for args, message in ((["--precision", "int4"], "--precision 'int4' is not one of"),
                          (["--shard-format", "csv"], "--shard-format 'csv' is not one of"),
                          (["--engine", "spark"], "--engine 'spark' is not one of")):
        res = cli("compress", pixels, "-m", conv, "-o", tmp_path / "x", *args)
        assert res.exit_code == EXIT_USER_INPUT and message in res.output, res.output
    res = cli("compress", pixels, "-m", tmp_path, "-o", tmp_path / "x")
    assert res.exit_code == EXIT_USER_INPUT and "neither an export folder" in res.output
    res = cli("compress", pixels, "-o", tmp_path / "x")
    assert res.exit_code == EXIT_USER_INPUT and "needs -m MODEL and -o CODES" in res.output
    res = cli("decompress", tmp_path / "nothing", "-o", tmp_path / "y")
    assert res.exit_code == EXIT_USER_INPUT and "does not exist" in res.output
