"""aetk compress / decompress / neighbors with users' data (issue 19): manifests that point
outside their folder, decompressing onto the source, files of the user's in CODES/model,
codes and models that do not belong together, NaN codes, 16-bit and mixed-depth folders,
and each item's own layout (size, mode, array shape, CSV time series) restored.

Hostile cases end with one clear error and nothing written outside -o; ``tree_outside``
compares every file under tmp_path except -o before and after."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.compress import Codes, CompressError, CorruptShardError, compress, decompress, neighbors, verify
from aetk.compress import CompressOptions, DecompressOptions, ReaderOptions
from aetk.compress.errors import OutputExistsError, UnsafeManifestError
from aetk.compress.manifest import CHECKSUM, checksum, dumps
from aetk.data.idx import read_idx, write_idx
from aetk.errors import EXIT_INTEGRITY, EXIT_USER_INPUT
from aetk.normalization import Normalization


# -- fixtures -------------------------------------------------------------------------------------
def smooth_images(n: int, h: int, w: int, seed: int, peak: float = 255.0) -> np.ndarray:
    """n smooth (h, w) float images in 0..peak: what a small autoencoder can learn fast."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, 3, 3)).astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(b).resize((w, h), Image.Resampling.BILINEAR)) for b in base]) * peak


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A conv autoencoder for 1x16x16 images in 0..255, trained a few hundred steps on
    smooth images (a few seconds), exported."""
    from aetk.export import export_model
    from aetk.models import create_model

    torch.manual_seed(0)
    model = create_model("conv", (1, 16, 16), channels=[8, 16], code_size=16)
    x = torch.from_numpy(smooth_images(512, 16, 16, seed=0, peak=1.0))[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only contend (60 s instead of 3 on 2 busy cores)
    try:
        for step in range(300):
            batch = x[(step * 64) % 512:(step * 64) % 512 + 64]
            loss = ((model(batch)["x_hat"] - batch) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("trained")
    export_model(model.eval(), folder, normalization=Normalization.unit(255.0).to_dict())
    return folder


@pytest.fixture(scope="session")
def other(trained, tmp_path_factory) -> Path:
    """Another model as the codes' checks see it: the trained graphs under another
    weights_sha256 (rewriting the metadata spares a second export)."""
    import onnx

    folder = tmp_path_factory.mktemp("other")
    for g in ("encoder.onnx", "decoder.onnx"):
        m = onnx.load(str(trained / g))
        for prop in m.metadata_props:
            if prop.key == "aetk.weights_sha256":
                prop.value = hashlib.sha256(b"other weights").hexdigest()
        onnx.save(m, str(folder / g))
    return folder


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tree(folder: Path, skip: Path | None = None) -> dict[str, bytes]:
    """Every file under folder (hidden ones too, links by their target) -> its bytes,
    leaving out `skip` and what lies under it."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(peak ** 2 / mse)


def png_folder(root: Path, seed: int = 0) -> Path:
    """Six 16x16 gray PNGs, one in a subfolder, names with a space and non-ASCII letters."""
    imgs = smooth_images(6, 16, 16, seed)
    (root / "sub dir").mkdir(parents=True)
    for k, a in enumerate(imgs):
        name = f"img {k} é.png" if k % 2 else f"{k:02d}.png"
        Image.fromarray(np.rint(a).astype(np.uint8)).save(root / ("sub dir" if k == 3 else "") / name)
    return root


def rewrite_manifest(codes: Path, edit, *, fix_checksum: bool = True) -> None:
    """Edit a manifest as someone passing a folder on might; by default with its checksum
    recomputed, so that the check of what it names is what catches the edit."""
    path = codes / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    if fix_checksum:
        m[CHECKSUM] = checksum(m)
    path.write_text(dumps(m))


# -- item 1: paths from a manifest stay inside its folder ------------------------------------------
HOSTILE_EDITS = {
    "origin file ../../x.gz": lambda m: m["job"]["source"]["parts"][0]["origin"].__setitem__("file", "../../x.npy"),
    "origin file absolute": lambda m: m["job"]["source"]["parts"][0]["origin"].__setitem__("file", "/tmp/aetk-evil.npy"),
    "origin file with a folder": lambda m: m["job"]["source"]["parts"][0]["origin"].__setitem__("file", "a/../../x.npy"),
    "part name ../p": lambda m: (m["job"]["source"]["parts"][0].__setitem__("name", "../p"),
                                 [r.__setitem__("part", "../p") for r in m["shards"]]),
    "shard file ../": lambda m: m["shards"][0].__setitem__("file", "../shard-00000.npy"),
    "shard file absolute": lambda m: m["shards"][0].__setitem__("file", "/etc/passwd"),
    "model file ../": lambda m: m["model_files"].__setitem__("../../decoder.onnx", "0" * 64),
    "NaN in the manifest": lambda m: m["totals"].__setitem__("bytes", float("nan")),
    "value type object": lambda m: m["job"]["source"]["parts"][0].__setitem__("dtype", "object"),
    "item shape of 10^12 values": lambda m: m["job"]["source"]["parts"][0].__setitem__("item_shape", [1, 10 ** 6, 10 ** 6]),
    "file shape negative": lambda m: m["job"]["source"]["parts"][0].__setitem__("file_shape", [-16, 16]),
}


@pytest.fixture(scope="module")
def npy_codes(trained, tmp_path_factory) -> Path:
    """Codes of a (40, 1, 16, 16) uint8 .npy: a template to edit (copied by each test)."""
    root = tmp_path_factory.mktemp("npy_codes")
    np.save(root / "x.npy", np.rint(smooth_images(40, 16, 16, 3)).astype(np.uint8)[:, None])
    compress(str(root / "x.npy"), trained, root / "codes", CompressOptions(shard_size=16, png_sample=0))
    return root / "codes"


def copy_codes(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("fix_checksum", [False, True], ids=["edited", "edited+checksum"])
@pytest.mark.parametrize("edit", sorted(HOSTILE_EDITS))
def test_hostile_manifest_paths_are_refused_by_every_reader(npy_codes, tmp_path, edit, fix_checksum):
    codes = copy_codes(npy_codes, tmp_path / "work" / "codes")
    if edit == "NaN in the manifest":  # JSON has no NaN: written by hand, as an editor would
        path = codes / "manifest.json"
        path.write_text(path.read_text().replace('"bytes": ', '"bytes": NaN, "was": ', 1))
    else:
        rewrite_manifest(codes, HOSTILE_EDITS[edit], fix_checksum=fix_checksum)
    out = tmp_path / "work" / "out"
    before = tree(tmp_path, skip=out)
    with pytest.raises((UnsafeManifestError, CompressError)) as caught:
        decompress(codes, out)
    assert "manifest" in str(caught.value) or "NaN" in str(caught.value)
    assert not out.exists(), "nothing may be written when the manifest is refused"
    for args in (["compress", "--verify", codes], ["decompress", codes, "-o", out],
                 ["neighbors", codes, "0"]):
        res = cli(*args)
        assert res.exit_code in (EXIT_USER_INPUT, EXIT_INTEGRITY), (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    with pytest.raises((UnsafeManifestError, CompressError)):
        neighbors(codes, ["0"])
    assert tree(tmp_path, skip=out) == before and not out.exists()
    assert not Path("/tmp/aetk-evil.npy").exists()


def test_an_edited_manifest_fails_its_checksum(npy_codes, tmp_path):
    codes = copy_codes(npy_codes, tmp_path / "codes")
    rewrite_manifest(codes, lambda m: m["totals"].__setitem__("rows", 41), fix_checksum=False)
    with pytest.raises(UnsafeManifestError, match=r"does not match its own manifest_sha256"):
        verify(codes)
    res = cli("compress", "--verify", codes)
    assert res.exit_code == EXIT_INTEGRITY and "edited after `aetk compress` wrote it" in res.output
    # compressing into it again refuses too (nothing touched), and --overwrite remakes it
    data = str(npy_codes.parent / "x.npy")
    before = tree(codes)
    res = cli("compress", data, "-m", codes / "model", "-o", codes, "--shard-size", "16", "--png-sample", "0", "-q")
    assert res.exit_code == EXIT_INTEGRITY and "manifest_sha256" in res.output and tree(codes) == before
    compress(data, codes / "model", codes, CompressOptions(shard_size=16, png_sample=0, overwrite=True))
    assert verify(codes) == []


def verify_refuses(codes: Path, words: str) -> bool:
    res = cli("compress", "--verify", codes)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    return res.exit_code == EXIT_INTEGRITY and len(lines) == 1 and words in lines[0]


def test_image_paths_and_links_out_of_the_output_are_refused(trained, tmp_path):
    src = png_folder(tmp_path / "imgs")
    codes = tmp_path / "codes"
    compress(str(src), trained, codes, CompressOptions(png_sample=0))
    for bad in ("../escape.png", "/tmp/aetk-evil.png", "sub dir/../../escape.png", "a//b.png", "./x.png"):
        c = copy_codes(codes, tmp_path / f"c{abs(hash(bad))}")
        rewrite_manifest(c, lambda m, bad=bad: m["shards"][0]["ids"].__setitem__(0, bad))
        with pytest.raises(UnsafeManifestError, match=r"not a relative path inside its folder"):
            decompress(c, tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path / "escape.png").exists()
    # an image of 10^10 pixels: the memory it would take is refused before decoding
    c = copy_codes(codes, tmp_path / "huge")
    rewrite_manifest(c, lambda m: m["shards"][0]["layout"].__setitem__(0, [100000, 100000, "L"]))
    with pytest.raises(UnsafeManifestError, match=r"the layout \[100000, 100000, 'L'\]"):
        decompress(c, tmp_path / "out")
    # two rows naming one file: the second would silently replace the first
    c = copy_codes(codes, tmp_path / "dup")
    rewrite_manifest(c, lambda m: m["shards"][0]["ids"].__setitem__(1, m["shards"][0]["ids"][0]))
    with pytest.raises(UnsafeManifestError, match=r"names the image .* twice"):
        decompress(c, tmp_path / "out")
    assert verify_refuses(c, "twice")  # --verify sees it too, not only decompress
    # a name that is no image file (or a folder of the tree): refused by --verify and decompress
    for bad in ("notes.txt", "sub dir"):
        c = copy_codes(codes, tmp_path / f"t{abs(hash(bad))}")
        rewrite_manifest(c, lambda m, bad=bad: m["shards"][0]["ids"].__setitem__(0, bad))
        with pytest.raises(UnsafeManifestError, match=r"which is not an image file aetk reads and writes"):
            decompress(c, tmp_path / "out")
        assert verify_refuses(c, "not an image file")
        assert not (tmp_path / "out").exists()
    # a link inside -o that leads out of it
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "sub dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeManifestError, match=r"lies outside -o .* \(through a link\)"):
        decompress(codes, out)
    assert list(outside.iterdir()) == [] and [p.name for p in out.iterdir()] == ["sub dir"]


# -- item 2: never onto the source, never over a file without --overwrite ----------------------------
def test_decompress_onto_the_source_is_refused(trained, tmp_path):
    src = png_folder(tmp_path / "imgs")
    codes = tmp_path / "codes"
    compress(str(src), trained, codes, CompressOptions(png_sample=0))
    before = tree(src)
    for target in (src, src / "sub dir"):
        with pytest.raises(OutputExistsError, match=r"folder the codes were made from"):
            decompress(codes, target, DecompressOptions(overwrite=True))
        res = cli("decompress", codes, "-o", target, "--overwrite", "-q")
        assert res.exit_code == EXIT_USER_INPUT and res.output.startswith("error: -o ")
    assert tree(src) == before

    # IDX: the folder is the source, and the file beside it is too
    idx = tmp_path / "idx"
    idx.mkdir()
    write_idx(idx / "train-images-idx3-ubyte.gz", np.rint(smooth_images(20, 16, 16, 1)).astype(np.uint8))
    compress(str(idx), trained, tmp_path / "c_idx", CompressOptions(png_sample=0))
    before = tree(idx)
    with pytest.raises(OutputExistsError, match=r"is the folder the codes were made from"):
        decompress(tmp_path / "c_idx", idx, DecompressOptions(overwrite=True))
    # .npy: -o the folder holding the source file would write over it
    data = tmp_path / "arrays"
    data.mkdir()
    np.save(data / "x.npy", np.rint(smooth_images(20, 16, 16, 2)).astype(np.uint8)[:, None])
    compress(str(data / "x.npy"), trained, tmp_path / "c_npy", CompressOptions(png_sample=0))
    with pytest.raises(OutputExistsError, match=r"would overwrite .*x\.npy, the source"):
        decompress(tmp_path / "c_npy", data, DecompressOptions(overwrite=True))
    (tmp_path / "alias").symlink_to(data, target_is_directory=True)  # the same folder by another name
    with pytest.raises(OutputExistsError, match=r"the source the codes were made from"):
        decompress(tmp_path / "c_npy", tmp_path / "alias", DecompressOptions(overwrite=True))
    assert tree(idx) == before and sorted(p.name for p in data.iterdir()) == ["x.npy"]


def test_existing_outputs_need_overwrite(trained, tmp_path):
    src = png_folder(tmp_path / "imgs")
    compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=0))
    out = tmp_path / "out"
    decompress(tmp_path / "codes", out)
    (out / "00.png").write_bytes(b"mine")
    (out / "keep.txt").write_text("mine too")
    before = tree(out)
    with pytest.raises(OutputExistsError, match=r"6 output file\(s\) exist already .*--overwrite"):
        decompress(tmp_path / "codes", out)
    res = cli("decompress", tmp_path / "codes", "-o", out, "-q")
    assert res.exit_code == EXIT_USER_INPUT and "--overwrite" in res.output
    assert tree(out) == before
    decompress(tmp_path / "codes", out, DecompressOptions(overwrite=True))
    assert (out / "00.png").read_bytes() != b"mine" and (out / "keep.txt").read_text() == "mine too"


# -- item 3: compress owns only what it wrote in CODES/model --------------------------------------------
def test_compress_keeps_the_users_files_in_the_model_folder(trained, other, npy_codes, tmp_path):
    data = str(npy_codes.parent / "x.npy")
    out = tmp_path / "codes"
    (out / "model").mkdir(parents=True)
    (out / "model" / "notes.txt").write_text("my notes")
    (out / "model" / "mine.onnx").write_bytes(b"my model")
    (out / "model" / ".draft.onnx.x1.tmp").write_bytes(b"looks like a temporary, is mine")
    compress(data, trained, out, CompressOptions(png_sample=0))
    compress(data, other, out, CompressOptions(png_sample=0,
                                               overwrite=True))  # another model replaces only its own files
    assert (out / "model" / "notes.txt").read_text() == "my notes"
    assert (out / "model" / "mine.onnx").read_bytes() == b"my model"
    assert (out / "model" / ".draft.onnx.x1.tmp").is_file()
    assert verify(out) == []

    # files with the names compress writes, in a folder that is not a codes folder: refused
    theirs = tmp_path / "theirs"
    (theirs / "model").mkdir(parents=True)
    (theirs / "model" / "encoder.onnx").write_bytes(b"their encoder")
    with pytest.raises(CompressError, match=r"already holds encoder\.onnx, but .* is not a codes folder"):
        compress(data, trained, theirs, CompressOptions(png_sample=0))
    assert (theirs / "model" / "encoder.onnx").read_bytes() == b"their encoder"
    # CODES/model as a link to someone's export folder: refused, the export untouched
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "model").symlink_to(other, target_is_directory=True)
    before = tree(other)
    res = cli("compress", data, "-m", trained, "-o", linked, "-q")
    assert res.exit_code == EXIT_USER_INPUT and "is a link" in res.output
    assert tree(other) == before


# -- item 4: codes and model belong together; codes are finite ---------------------------------------------
def test_a_model_with_other_weights_fails_verify_decompress_and_neighbors(npy_codes, other, tmp_path):
    import shutil

    codes = copy_codes(npy_codes, tmp_path / "codes")
    # the other model's files, with the manifest's file hashes brought along: only the
    # weights_sha256 inside the graphs can tell
    for g in ("encoder.onnx", "decoder.onnx"):
        shutil.copy(other / g, codes / "model" / g)

    def rehash(m):
        for g in m["model_files"]:
            m["model_files"][g] = hashlib.sha256((codes / "model" / g).read_bytes()).hexdigest()

    rewrite_manifest(codes, rehash)
    problems = verify(codes)
    assert len(problems) == 1 and "weights_sha256" in problems[0] and "do not belong together" in problems[0]
    res = cli("compress", "--verify", codes)
    assert res.exit_code == EXIT_INTEGRITY
    last = res.output.strip().splitlines()[-1]  # the error line says what is wrong and what helps
    assert "weights_sha256" in last and "--overwrite" in last and "rewrite damaged shards" not in last, last
    for call in (lambda: neighbors(codes, ["3"]), lambda: decompress(codes, tmp_path / "out")):
        with pytest.raises(CorruptShardError, match=r"weights_sha256"):
            call()
    assert not (tmp_path / "out").exists()
    # the manifest's weights_sha256 edited instead
    codes2 = copy_codes(npy_codes, tmp_path / "codes2")
    rewrite_manifest(codes2, lambda m: m["job"]["model"].__setitem__("weights_sha256", "f" * 64))
    assert any("weights_sha256" in p for p in verify(codes2))
    res = cli("neighbors", codes2, "3")
    assert res.exit_code == EXIT_INTEGRITY and "weights_sha256" in res.output


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_codes_fail_verify_and_every_reader(npy_codes, tmp_path, value):
    codes = copy_codes(npy_codes, tmp_path / "codes")
    shard = codes / "shard-00001.npy"
    z = np.load(shard)
    z[3, 2] = value
    np.save(shard, z)
    data = shard.read_bytes()

    def fix(m):
        m["shards"][1]["sha256"] = hashlib.sha256(data).hexdigest()
        m["shards"][1]["bytes"] = len(data)

    rewrite_manifest(codes, fix)  # checksums that agree: only the values can tell
    problems = verify(codes)
    assert len(problems) == 1 and "shard-00001.npy: holds NaN or infinite codes in 1 row(s)" in problems[0]
    res = cli("compress", "--verify", codes)
    assert res.exit_code == EXIT_INTEGRITY
    with pytest.raises(CorruptShardError, match=r"NaN or infinite codes"):
        decompress(codes, tmp_path / "out")
    with pytest.raises(CorruptShardError, match=r"NaN or infinite codes"):
        neighbors(codes, ["0"])
    assert not (tmp_path / "out").exists()
    # the advice works: a plain rerun keeps the shard (its bytes match), --overwrite remakes it
    last = res.output.strip().splitlines()[-1]
    assert "NaN or infinite" in last and "--overwrite" in last, last
    data_file = str(npy_codes.parent / "x.npy")
    compress(data_file, codes / "model", codes, CompressOptions(shard_size=16, png_sample=0))
    assert verify(codes) != []
    compress(data_file, codes / "model", codes, CompressOptions(shard_size=16, png_sample=0, overwrite=True))
    assert verify(codes) == []


# -- item 8: bit depth ----------------------------------------------------------------------------------------
def test_16_bit_images_keep_their_depth_and_range(trained, tmp_path):
    src = tmp_path / "deep"
    src.mkdir()
    imgs = np.rint(smooth_images(8, 16, 16, 5, peak=65535.0)).astype(np.uint16)
    for k, a in enumerate(imgs):
        Image.fromarray(a).save(src / f"{k}.png")
    res = compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=0, evaluate=True))
    decompress(tmp_path / "codes", tmp_path / "out")
    got = []
    for k in range(8):
        with Image.open(tmp_path / "out" / f"{k}.png") as im:
            assert im.mode.startswith("I;16") and im.size == (16, 16)
            got.append(np.asarray(im).astype(np.float64))
    got = np.stack(got)
    assert got.max() > 40000, "16-bit images must come back in their range, not nearly black"
    quality = psnr(got, imgs, 65535.0)
    assert quality > 20, f"16-bit round trip at {quality:.1f} dB (the bug gave 4.9 dB)"
    assert res.report["eval"]["psnr_db"] == pytest.approx(quality, abs=0.5)


def test_a_folder_mixing_8_and_16_bit_comes_back_each_in_its_depth(trained, tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    imgs = smooth_images(6, 16, 16, 6, peak=1.0)
    want = {}
    for k, a in enumerate(imgs):
        if k % 2:
            want[f"{k}.png"] = (np.rint(a * 65535).astype(np.uint16), 65535.0)
        else:
            want[f"{k}.png"] = (np.rint(a * 255).astype(np.uint8), 255.0)
        Image.fromarray(want[f"{k}.png"][0]).save(src / f"{k}.png")
    compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=0))
    decompress(tmp_path / "codes", tmp_path / "out")
    for name, (a, peak) in want.items():
        with Image.open(tmp_path / "out" / name) as im:
            assert (im.mode.startswith("I;16")) == (peak > 255), (name, im.mode)
            b = np.asarray(im)
        assert b.max() > 0.5 * a.max() and psnr(b, a, peak) > 20, name


def test_16_bit_colour_comes_back_16_bit(trained, tmp_path):
    import cv2

    src = tmp_path / "colour16"
    src.mkdir()
    a = np.rint(smooth_images(1, 16, 16, 14, peak=65535.0)[0]).astype(np.uint16)
    rgb = np.stack([a, a, a], -1)  # gray in colour: a 1-channel model sees it whole
    cv2.imwrite(str(src / "c.png"), rgb)
    Image.fromarray(np.rint(a / 257).astype(np.uint8)).save(src / "g.png")  # and an 8-bit file beside it
    res = compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=0,
                                                                          reader=ReaderOptions(channels=1)))
    assert res.manifest["job"]["source"]["parts"][0]["value_max"] == 65535.0
    assert [lay[2] for r in res.manifest["shards"] for lay in r["layout"]] == ["RGB;16", "L"]
    decompress(tmp_path / "codes", tmp_path / "out")
    b = cv2.imread(str(tmp_path / "out" / "c.png"), cv2.IMREAD_UNCHANGED)
    assert b.dtype == np.uint16 and b.shape == (16, 16, 3) and b.max() > 40000
    assert psnr(b[..., 0], a, 65535.0) > 20
    with Image.open(tmp_path / "out" / "g.png") as im:
        assert im.mode == "L"


# -- item 9: each item's own layout -----------------------------------------------------------------------------
def test_images_come_back_at_their_own_size_and_mode(trained, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    sizes = {"tall.png": (40, 20), "wide.jpg": (18, 50), "small.png": (16, 16)}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.rint(smooth_images(1, h, w, 8)[0]).astype(np.uint8)).save(src / name)
    rgb = np.stack([np.rint(smooth_images(1, 30, 24, 9 + c)[0]) for c in range(3)], -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(src / "colour.png")
    res = compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=4,
                                                                          reader=ReaderOptions(image_size=(16, 16),
                                                                          channels=1)))
    assert res.report["ratio_vs_source_files"] is None
    assert "resized to the model's 16x16" in res.report["ratio_vs_source_files_why_not"]
    out = decompress(tmp_path / "codes", tmp_path / "out")
    assert any("resized back to their own sizes" in n for n in out.notes)
    for name, (h, w) in {**sizes, "colour.png": (30, 24)}.items():
        with Image.open(tmp_path / "out" / name) as im:
            assert im.size == (w, h) and im.mode == ("RGB" if name == "colour.png" else "L"), (name, im.size, im.mode)
            if name == "tall.png":
                b = np.asarray(im)
        with Image.open(src / name) as im:
            if name == "tall.png":
                a = np.asarray(im)
    assert psnr(b, a, 255.0) > 18
    # the CLI prints why there is no ratio against the source files
    res = cli("compress", src, "-m", trained, "-o", tmp_path / "c2", "--image-size", "16x16", "--channels", "1", "-q")
    assert res.exit_code == 0 and "ratio vs source files: not given" in res.output.replace("\n", " ")


def test_center_crops_come_back_at_the_crop_size(trained, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    a = np.rint(smooth_images(1, 24, 20, 13)[0]).astype(np.uint8)
    Image.fromarray(a).save(src / "a.png")
    compress(str(src), trained, tmp_path / "codes", CompressOptions(png_sample=0,
                                                                    reader=ReaderOptions(image_size=(16, 16),
                                                                    resize="crop")))
    out = decompress(tmp_path / "codes", tmp_path / "out")
    assert any("center-cropped" in n and "margins are not in the codes" in n for n in out.notes)
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert im.size == (16, 16) and im.mode == "L"
        assert psnr(np.asarray(im), a[4:20, 2:18], 255.0) > 18  # the crop, not the whole image squeezed


def test_arrays_idx_and_csv_time_series_come_back_in_their_shape(trained, tmp_path):
    from aetk.export import export_model
    from aetk.models import create_model

    x = np.rint(smooth_images(30, 16, 16, 10)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)  # (N, 16, 16): no channel axis
    compress(str(tmp_path / "x.npy"), trained, tmp_path / "c_npy", CompressOptions(png_sample=0,
                                                                                   reader=ReaderOptions(channels=1)))
    decompress(tmp_path / "c_npy", tmp_path / "o_npy")
    y = np.load(tmp_path / "o_npy" / "x.npy")
    assert y.shape == (30, 16, 16) and y.dtype == np.uint8 and psnr(y, x, 255.0) > 20

    # IDX at 24x24 through a 16x16 model: resized back to 24x24
    big = np.rint(smooth_images(12, 24, 24, 11)).astype(np.uint8)
    (tmp_path / "idx").mkdir()
    write_idx(tmp_path / "idx" / "train-images-idx3-ubyte", big)
    compress(str(tmp_path / "idx"), trained, tmp_path / "c_idx", CompressOptions(png_sample=0,
                                                                                 reader=ReaderOptions(image_size=(16,
                                                                                 16))))
    decompress(tmp_path / "c_idx", tmp_path / "o_idx")
    y = read_idx(tmp_path / "o_idx" / "train-images-idx3-ubyte")
    assert y.shape == (12, 24, 24) and psnr(y, big, 255.0) > 18

    # a CSV time series read as windows of 4 rows comes back as its 30 rows of 3 columns
    torch.manual_seed(0)
    export_model(create_model("deep", (4, 3), widths=[16, 12]).eval(), tmp_path / "seq",
                 normalization=Normalization.unit(1.0).to_dict())
    rows = np.random.default_rng(12).random((30, 3))
    (tmp_path / "s.csv").write_text("a,b,c\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f}\n" for r in rows))
    compress(str(tmp_path / "s.csv"), tmp_path / "seq", tmp_path / "c_csv", CompressOptions(png_sample=0,
                                                                                            reader=ReaderOptions(sequence_length=4)))
    decompress(tmp_path / "c_csv", tmp_path / "o_csv")
    lines = (tmp_path / "o_csv" / "s.csv").read_text().splitlines()
    assert lines[0] == "a,b,c" and len(lines) == 31 and all(len(ln.split(",")) == 3 for ln in lines[1:])
    # each row is the mean of the reconstructions of the windows covering it
    from aetk.runtime import load_export

    m = load_export(tmp_path / "seq", device="cpu")
    windows = np.stack([rows[i:i + 4] for i in range(27)]).astype(np.float32)
    rec = m.reconstruct(windows, raw=True)
    acc, n = np.zeros((30, 3)), np.zeros(30)
    for i in range(27):
        acc[i:i + 4] += rec[i]
        n[i:i + 4] += 1
    got = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    np.testing.assert_allclose(got, acc / n[:, None], rtol=1e-4, atol=1e-5)


# -- misleading output ---------------------------------------------------------------------------------------------
def test_decompress_reports_progress_while_checking_and_decoding(npy_codes, tmp_path):
    from aetk.progress import NullProgress

    class Seen(NullProgress):
        def __init__(self):
            self.stages, self.done, self.finished = [], {}, 0

        def start(self, text, total=None, unit="items"):
            self.stages.append((text, total))
            self.done[text] = 0

        def advance(self, n=1):
            self.done[self.stages[-1][0]] += n

        def finish(self):
            self.finished += 1

    seen = Seen()
    decompress(npy_codes, tmp_path / "out", DecompressOptions(batch_size=7), progress=seen)
    (check, shards), (decode, rows) = seen.stages
    assert check.startswith("checking 3 shards") and shards == 3 and seen.done[check] == 3
    assert decode.startswith("decoding 40 codes") and rows == 40 and seen.done[decode] == 40
    assert seen.finished == 1


# -- property-based: round trips over generated folders, hostile manifests ------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAME_CHARS = "abcXYZ019 _-.éßжλ中文"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and s.strip() == s)
image_spec = st.tuples(st.integers(4, 28), st.integers(4, 28), st.sampled_from(["L", "RGB", "I;16", "RGB;16"]),
                       st.sampled_from([".png", ".tif"]), st.integers(0, 2 ** 16))


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(specs=st.lists(st.tuples(names, image_spec), min_size=1, max_size=4, unique_by=lambda t: t[0]),
       in_subfolder=st.booleans())
def test_property_folders_round_trip_in_their_own_layout(trained, tmp_path_factory, specs, in_subfolder):
    root = tmp_path_factory.mktemp("prop")
    src = root / "src"
    (src / "sub folder é").mkdir(parents=True)
    want = {}
    for k, (name, (h, w, mode, suffix, seed)) in enumerate(specs):
        rel = (f"sub folder é/{name}" if in_subfolder and k % 2 else name) + suffix
        a = smooth_images(1, h, w, seed, peak=1.0)[0]
        if mode == "RGB;16":
            import cv2

            cv2.imwrite(str(src / rel), np.repeat(np.rint(a * 65535).astype(np.uint16)[..., None], 3, 2))
            want[rel] = (h, w, mode)
            continue
        if mode == "I;16":
            img = Image.fromarray(np.rint(a * 65535).astype(np.uint16))
        elif mode == "L":
            img = Image.fromarray(np.rint(a * 255).astype(np.uint8), "L")
        else:
            img = Image.fromarray(np.repeat(np.rint(a * 255).astype(np.uint8)[..., None], 3, 2), "RGB")
        img.save(src / rel)
        want[rel] = (h, w, mode)
    res = compress(str(src), trained, root / "codes", CompressOptions(png_sample=2,
                                                                      reader=ReaderOptions(image_size=(16, 16),
                                                                      channels=1)))
    assert res.manifest["totals"]["rows"] == len(want)
    before = tree(root, skip=root / "out")
    decompress(root / "codes", root / "out")
    written = {str(p.relative_to(root / "out")) for p in (root / "out").rglob("*") if p.is_file()}
    assert written == set(want), "exactly the source's files, nothing more"
    assert tree(root, skip=root / "out") == before
    for rel, (h, w, mode) in want.items():
        if mode == "RGB;16":
            import cv2

            b = cv2.imread(str(root / "out" / rel), cv2.IMREAD_UNCHANGED)
            assert b.dtype == np.uint16 and b.shape == (h, w, 3), (rel, b.dtype, b.shape)
            a = cv2.imread(str(src / rel), cv2.IMREAD_UNCHANGED).astype(np.float64)
            assert psnr(b, a, 65535.0) > 12, rel
            continue
        with Image.open(root / "out" / rel) as im:
            assert im.size == (w, h), rel
            assert im.mode == mode or (mode == "I;16" and im.mode.startswith("I;16")), (rel, im.mode)
            b = np.asarray(im).astype(np.float64)
        peak = 65535.0 if mode == "I;16" else 255.0
        with Image.open(src / rel) as im:
            a = np.asarray(im).astype(np.float64)
        assert psnr(b, a, peak) > 12, (rel, psnr(b, a, peak))  # in its own depth, not nearly black


hostile_path = st.one_of(
    st.builds(lambda k, n: "../" * k + n, st.integers(1, 4), names),
    st.builds(lambda n: "/tmp/" + n, names),
    st.builds(lambda n: "sub/../../" + n, names),
    st.builds(lambda n: "./" + n, names),
    st.builds(lambda n: n + "/", names),
    st.builds(lambda a, b: a + "//" + b, names, names),
    st.just(".."), st.just("."), st.just(""), st.just("a\0b"),
)
FIELDS = ("origin file", "shard file", "model file", "part name", "npz key")


def _put(m: dict, where: str, value: str) -> None:
    part = m["job"]["source"]["parts"][0]
    if where == "origin file":
        part["origin"]["file"] = value
    elif where == "shard file":
        m["shards"][0]["file"] = value
    elif where == "model file":
        m["model_files"][value] = "0" * 64
    elif where == "part name":
        part["name"] = value
        for r in m["shards"]:
            r["part"] = value
    else:
        part["origin"]["key"] = value


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=hostile_path, where=st.sampled_from(FIELDS), fix=st.booleans())
def test_property_hostile_manifest_paths_end_in_one_clear_error(npy_codes, tmp_path_factory, path, where, fix):
    root = tmp_path_factory.mktemp("hostile")
    codes = copy_codes(npy_codes, root / "codes")
    rewrite_manifest(codes, lambda m: _put(m, where, path), fix_checksum=fix)
    out = root / "out"
    # where the path would land, from each folder it could be joined to
    targets = {Path(os.path.normpath(os.path.join(base, path.replace("\0", "")))) for base in (out, codes, codes / "model")}
    existed = {t: t.exists() for t in targets}
    before = tree(root, skip=out)
    with pytest.raises(CompressError) as caught:
        decompress(codes, out)
    assert isinstance(caught.value, (UnsafeManifestError, CompressError)) and str(caught.value).count("\n") == 0
    with pytest.raises(CompressError):
        verify(codes)
    with pytest.raises(CompressError):
        neighbors(codes, ["1"])
    assert not out.exists() and tree(root, skip=out) == before
    assert {t: t.exists() for t in targets} == existed, "nothing written where the path points"


@pytest.mark.parametrize("stage", ["decode", "write"])
def test_a_failure_while_decompressing_leaves_no_partial_file_and_no_thread(npy_codes, tmp_path, monkeypatch, stage):
    import threading

    import aetk.compress.decode as dec

    calls = []
    real = dec.decode_codes if stage == "decode" else dec._NpyWriter.write

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError(f"{stage} failed")
        return real(*args, **kw)

    if stage == "decode":
        monkeypatch.setattr(dec, "decode_codes", failing)
    else:
        monkeypatch.setattr(dec._NpyWriter, "write", failing)
    with pytest.raises(RuntimeError, match=f"{stage} failed"):
        decompress(npy_codes, tmp_path / "out", DecompressOptions(batch_size=8))
    assert [p.name for p in (tmp_path / "out").iterdir()] == [], "no partial x.npy, no temporary"
    assert not [t for t in threading.enumerate() if t.name == "aetk-decompress-writer"]
