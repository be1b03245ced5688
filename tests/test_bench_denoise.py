"""benchmarks/bench_denoise.py and its DnCNN-S peer, on synthetic weights and tiny images (no
../shared data needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from aetk.errors import UserInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed
from benchmarks import bench_denoise as bench  # noqa: E402
from benchmarks.peers.dncnn import BN_EPS, DnCNN, load_dncnn  # noqa: E402


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A DnCNN-S state as the authors' file holds it (with BatchNorm's step counters), random
    but small enough that the output stays near the input."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in DnCNN().state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    return state


def reference_dncnn(x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """DnCNN-S written out layer by layer from the paper: x - net(x)."""
    y = F.relu(F.conv2d(x, state["dncnn.0.weight"], state["dncnn.0.bias"], padding=1))
    for i in range(15):
        conv, bn = 2 + 3 * i, 3 + 3 * i
        y = F.conv2d(y, state[f"dncnn.{conv}.weight"], padding=1)
        y = F.batch_norm(y, state[f"dncnn.{bn}.running_mean"], state[f"dncnn.{bn}.running_var"],
                         state[f"dncnn.{bn}.weight"], state[f"dncnn.{bn}.bias"], training=False, eps=1e-4)
        y = F.relu(y)
    return x - F.conv2d(y, state["dncnn.47.weight"], padding=1)


def test_dncnn_has_the_published_layout():
    net = DnCNN()
    convs = [m for m in net.dncnn if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.dncnn if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 17 and len(norms) == 15
    assert all(m.eps == BN_EPS == 1e-4 for m in norms)
    assert convs[0].bias is not None and all(c.bias is None for c in convs[1:])
    assert [c.out_channels for c in convs] == [64] * 16 + [1]
    keys = net.state_dict()
    assert keys["dncnn.0.weight"].shape == (64, 1, 3, 3) and keys["dncnn.47.weight"].shape == (1, 64, 3, 3)
    assert "dncnn.3.running_var" in keys and not any(k.startswith("dncnn.46.") for k in keys)  # 46 is a ReLU


def test_load_dncnn_matches_the_layer_by_layer_reference(tmp_path):
    from safetensors.torch import save_file

    state = random_state()
    save_file(state, str(tmp_path / "w.safetensors"))
    net = load_dncnn(tmp_path / "w.safetensors")
    assert not net.training
    x = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = net(x)
    np.testing.assert_allclose(out.numpy(), reference_dncnn(x, state).numpy(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, x)  # the weights were used, not an identity


def test_load_dncnn_refuses_a_file_that_does_not_fit(tmp_path):
    from safetensors.torch import save_file

    state = random_state()
    del state["dncnn.47.weight"]
    state["dncnn.0.weight"] = torch.zeros(64, 3, 3, 3)
    save_file(state, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserInputError, match=r"other\.safetensors.*dncnn\.47\.weight.*dncnn\.0\.weight"):
        load_dncnn(tmp_path / "other.safetensors")


def test_noise_is_seeded_and_the_8bit_file_is_the_float_image_rounded_and_clipped():
    clean = np.full((64, 64), 250, np.uint8)
    clean[:, :32] = 3
    a = bench.gaussian_noise(clean.shape, 25.0, 0, "set12", 0)
    np.testing.assert_array_equal(a, bench.gaussian_noise(clean.shape, 25.0, 0, "set12", 0))
    assert not np.array_equal(a, bench.gaussian_noise(clean.shape, 25.0, 0, "set12", 1))
    assert not np.array_equal(a, bench.gaussian_noise(clean.shape, 25.0, 1, "set12", 0))
    assert abs(a.std() - 25.0) < 1.5
    file, exact = bench.noisy_versions(clean, a)
    assert file.dtype == np.uint8 and exact.dtype == np.float32
    np.testing.assert_array_equal(file, np.clip(np.rint(exact.astype(np.float64) * 255), 0, 255))
    assert exact.min() < 0 and exact.max() > 1  # the float protocol is not clipped


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    ref = rng.random((48, 40)).astype(np.float32)
    assert bench.psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert bench.ssim(ref, ref) == pytest.approx(1.0)
    noisy = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1)
    less = np.clip(ref + rng.normal(0, 0.02, ref.shape), 0, 1)
    assert bench.ssim(noisy, ref) < bench.ssim(less, ref) < 1.0
    colour = np.stack([ref, ref[::-1], ref[:, ::-1]], axis=-1)
    assert bench.ssim(colour, colour) == pytest.approx(1.0)
    assert bench.ssim(np.clip(colour + 0.05, 0, 1), colour) < 1.0
    np.testing.assert_allclose(bench.as_written(np.array([-0.2, 0.5004, 1.3]), True), [0.0, 128 / 255, 1.0], rtol=1e-6)
    np.testing.assert_allclose(bench.as_written(np.array([-0.2, 0.5004, 1.3]), False), [0.0, 0.5004, 1.0], rtol=1e-6)


def test_sigma_estimate_reads_white_noise_and_sees_correlated_noise():
    rng = np.random.default_rng(0)
    white = np.clip(np.rint(128 + rng.normal(0, 10, (128, 128, 3))), 0, 255).astype(np.uint8)
    assert bench.estimated_sigma(white) == pytest.approx(10, abs=1.5)
    # noise constant over 2x2 blocks (as if upsampled): none at the finest scale, 10 at scale 2
    blocks = np.repeat(np.repeat(rng.normal(0, 10, (64, 64, 3)), 2, axis=0), 2, axis=1)
    correlated = np.clip(np.rint(128 + blocks), 0, 255).astype(np.uint8)
    from aetk.denoise.noise_level import estimate_sigma

    assert estimate_sigma(correlated[..., 0] / 255.0) < 1
    assert bench.estimated_sigma(correlated) > 8


@pytest.fixture
def tiny_data(tmp_path):
    """A --data folder: two tiny Set12 images, two PolyU pairs, DnCNN-S weights (random)."""
    from safetensors.torch import save_file

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    for i in range(2):
        (tmp_path / "test" / "set12").mkdir(parents=True, exist_ok=True)
        img = (128 + 60 * np.sin(xx / (4 + i)) * np.cos(yy / 5)).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "test" / "set12" / f"0{i + 1}.png")
        polyu = tmp_path / "realnoise" / "polyu-canon"
        polyu.mkdir(parents=True, exist_ok=True)
        clean = np.stack([img, img[::-1], 255 - img], axis=-1)
        Image.fromarray(clean).save(polyu / f"Canon_{i}_mean.JPG", format="JPEG", quality=95)
        noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(polyu / f"Canon_{i}_real.JPG", format="JPEG", quality=95)
    (tmp_path / "peers").mkdir()
    save_file(random_state(), str(tmp_path / "peers" / "dncnn-s-sigma25.safetensors"))
    return tmp_path


def run_bench(*argv: str):
    from rich.console import Console

    console = Console(record=True, width=120)
    return bench.run(bench.parser().parse_args(list(argv)), console.print), console.export_text()


def test_benchmark_on_tiny_images_writes_the_tables_targets_and_json(tiny_data, tmp_path):
    out = tmp_path / "result.json"
    result, text = run_bench("--data", str(tiny_data), "--sets", "set12,polyu", "--sigmas", "25",
                             "--methods", "noisy,dncnn,aetk", "--json", str(out), "--threads", "1")
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["sets"]["set12"]["rows"]
    assert [(r["noise"], r["protocol"]) for r in rows] == [("sigma 25", "8-bit"), ("sigma 25", "float")]
    assert set(rows[0]["means"]) == {"noisy", "dncnn", "aetk"}
    # the noisy row is the seeded 8-bit file scored against the clean image
    clean = np.asarray(Image.open(tiny_data / "test" / "set12" / "01.png"))
    file, exact = bench.noisy_versions(clean, bench.gaussian_noise(clean.shape, 25.0, 0, "set12", 0))
    first = [p for p in rows[0]["per_image"] if p["method"] == "noisy" and p["image"] == "01"][0]
    assert first["psnr"] == pytest.approx(bench.psnr(file / 255.0, clean / 255.0))
    float_noisy = [p for p in rows[1]["per_image"] if p["method"] == "noisy" and p["image"] == "01"][0]
    assert float_noisy["psnr"] == pytest.approx(bench.psnr(np.clip(exact, 0, 1), clean / 255.0), abs=1e-4)
    assert rows[0]["means"]["aetk"]["psnr"] > rows[0]["means"]["noisy"]["psnr"] + 3  # the shipped model denoises
    assert rows[0]["means"]["aetk"]["s_per_mp"] > 0
    real = result["sets"]["polyu"]["rows"]
    assert [r["noise"] for r in real] == ["real"] and "dncnn" not in real[0]["means"]  # sigma-25 rows only
    targets = {t["target"]: t for t in result["targets"]}
    assert {"aetk >= DnCNN-S, set12 sigma 25 8-bit", "aetk >= DnCNN-S, set12 sigma 25 float",
            "aetk >= noisy + 1 dB, polyu real 8-bit"} <= set(targets)
    gain = real[0]["means"]["aetk"]["psnr"] - real[0]["means"]["noisy"]["psnr"]
    assert targets["aetk >= noisy + 1 dB, polyu real 8-bit"]["met"] == (gain >= 1.0)
    assert "published" in text and "30.44" in text  # Set12's published DnCNN-S at sigma 25, beside ours
    assert "met: aetk >= DnCNN-S, set12 sigma 25 8-bit" in text


def test_benchmark_classical_methods_on_tiny_images(tiny_data, tmp_path):
    # opencv is a core dependency and bm3d a test one: both are always there
    result, text = run_bench("--data", str(tiny_data), "--sets", "set12", "--sigmas", "50", "--limit", "1",
                             "--methods", "noisy,nlm,bm3d,aetk", "--json", str(tmp_path / "r.json"))
    means = result["sets"]["set12"]["rows"][0]["means"]
    assert means["bm3d"]["psnr"] > means["noisy"]["psnr"] + 3 and means["nlm"]["psnr"] > means["noisy"]["psnr"]
    assert "aetk >= 10x BM3D's speed, set12 sigma 50 8-bit" in {t["target"] for t in result["targets"]}
    assert result["nlm_h_over_sigma"]["gray sigma 50"] in bench.NLM_FACTORS
    methods = bench.Methods(["nlm"], tiny_data, None, 1)
    methods.prepare("nlm", np.zeros((8, 8, 3), np.uint8), 12.4)  # h chosen before the timed run
    assert set(methods._nlm_factor) == {(True, 12)}


def test_reuse_takes_the_methods_not_run_from_an_earlier_run(tiny_data, tmp_path):
    """--reuse: the peers run once; aetk again beside them, in one table, with its targets."""
    first, _ = run_bench("--data", str(tiny_data), "--sets", "set12,polyu", "--sigmas", "25", "--methods", "noisy,dncnn",
                         "--float-methods", "noisy,dncnn", "--json", str(tmp_path / "peers.json"), "--threads", "1")
    result, text = run_bench("--data", str(tiny_data), "--sets", "set12,polyu", "--sigmas", "25",
                             "--methods", "noisy,aetk", "--float-methods", "noisy,aetk", "--threads", "1",
                             "--json", str(tmp_path / "aetk.json"), "--reuse", str(tmp_path / "peers.json"))
    old, new = first["sets"]["set12"]["rows"], result["sets"]["set12"]["rows"]
    assert [(r["protocol"], list(r["means"])) for r in new] == [("8-bit", ["noisy", "aetk", "dncnn"]),
                                                                ("float", ["noisy", "aetk", "dncnn"])]
    for o, n in zip(old, new):
        assert n["means"]["dncnn"] == o["means"]["dncnn"]
        assert n["means"]["noisy"] == o["means"]["noisy"]  # the same seeded noisy files
        assert [p for p in n["per_image"] if p["method"] == "dncnn"] == [p for p in o["per_image"] if p["method"] == "dncnn"]
    assert result["sets"]["set12"]["reused"] == ["DnCNN-S (sigma 25, 8-bit)", "DnCNN-S (sigma 25, float)"]
    assert result["sets"]["polyu"]["reused"] == []  # no DnCNN-S on real noise: nothing to take
    assert "aetk >= DnCNN-S, set12 sigma 25 8-bit" in {t["target"] for t in result["targets"]}
    assert "from --reuse" in text and "DnCNN-S" in text
    # aetk is never taken (the earlier run's may be another model), nor a method this run runs
    again, _ = run_bench("--data", str(tiny_data), "--sets", "set12", "--sigmas", "25", "--methods", "noisy,dncnn",
                         "--float-methods", "", "--threads", "1", "--json", str(tmp_path / "again.json"),
                         "--reuse", str(tmp_path / "aetk.json"))
    assert list(again["sets"]["set12"]["rows"][0]["means"]) == ["noisy", "dncnn"] and again["sets"]["set12"]["reused"] == []
    # another seed's files, or a file that is not a result: one clear error, nothing written
    out = tmp_path / "never.json"
    with pytest.raises(UserInputError, match=r"--reuse .*peers.json: its noise seed is 0, this run's 1"):
        run_bench("--data", str(tiny_data), "--sets", "set12", "--methods", "aetk", "--seed", "1",
                  "--json", str(out), "--reuse", str(tmp_path / "peers.json"))
    with pytest.raises(UserInputError, match=r"--reuse .*peers.json: its set12 rows are on other images \(2 against "
                                             r"this run's 1\); give the same --data and --limit"):
        run_bench("--data", str(tiny_data), "--sets", "set12", "--methods", "aetk", "--limit", "1",
                  "--json", str(out), "--reuse", str(tmp_path / "peers.json"))
    (tmp_path / "bad.json").write_text('{"seed": 0, "environment": {}, "sets": {"set12": {"images": [], "rows": [{}]}}}')
    with pytest.raises(UserInputError, match=r"--reuse .*bad.json: not a bench_denoise.py --json file"):
        run_bench("--data", str(tiny_data), "--sets", "set12", "--methods", "aetk", "--json", str(out),
                  "--reuse", str(tmp_path / "bad.json"))
    assert not out.exists()


@pytest.mark.parametrize("argv, match", [
    (("--sets", "set12,kodak"), r"--sets: kodak given; expected .*set12, bsd68, polyu, colour"),
    (("--methods", "aetk,drunet"), r"--methods: drunet"),
    (("--sigmas", "25,abc"), r"--sigmas: expected"),
    (("--limit", "0"), r"--limit"),
])
def test_bad_options_are_one_clear_error_and_write_nothing(tiny_data, tmp_path, argv, match):
    out = tmp_path / "result.json"
    with pytest.raises(UserInputError, match=match):
        run_bench("--data", str(tiny_data), "--json", str(out), *argv)
    assert not out.exists()


def test_missing_data_is_named_before_any_work(tmp_path):
    out = tmp_path / "result.json"
    (tmp_path / "empty" / "test" / "set12").mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"no images in .*set12"):
        run_bench("--data", str(tmp_path / "empty"), "--sets", "set12", "--json", str(out))
    with pytest.raises(UserInputError, match=r"--data .*nowhere is not a folder"):
        run_bench("--data", str(tmp_path / "nowhere"), "--json", str(out))
    assert not out.exists()
    assert bench.main(["--data", str(tmp_path / "nowhere"), "--json", str(out)]) == 2


def test_colour_test_photographs_are_none_that_a_shipped_model_trained_or_validated_on():
    """The colour benchmark must judge on photographs no model saw: not the old gray model's
    training photos or wallpapers (aetk.denoise.photos), nor the colour denoiser's training and
    validation photographs (aetk.denoise.training_photos)."""
    from aetk.denoise import photos, training_photos

    tested = set(bench.TEST_PHOTOS)
    assert not tested & (set(photos.TRAIN) | set(photos.VALIDATION))
    assert tested <= set(photos.TEST)
    files = {Path(f) for group in bench.TEST_WALLPAPERS.values() for f in group.values()}
    seen = {Path(photos.WALLPAPER_FOLDER) / n for group in photos.WALLPAPERS.values() for n in group}
    seen |= {Path(p) for group in training_photos.WALLPAPERS.values() for p in group}
    folders = {p.parent.parent.parent for p in seen if "contents" in p.parts}  # plasma: one folder a photo
    for f in files:
        assert f not in seen, f
        assert f.parent.parent.parent not in folders, f  # no other size of a seen wallpaper
        assert not training_photos.is_validation(f), f
