"""The blind colour denoiser (model kind ``resunet``) and its training photographs: shapes,
the noise-level map and its override, any input size, training signal, export and the
``aetk denoise`` Denoiser running the export on colour and grayscale images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aetk.denoise import training_photos
from aetk.errors import UserInputError
from aetk.models import create_model, model_names
from aetk.models.resunet import LEVEL_SCALE, true_level

TINY = {"width": 4, "blocks": 1, "scales": 3, "estimator_width": 4}


def tiny(shape=(3, 32, 32), **kw):
    torch.manual_seed(0)
    return create_model("resunet", shape, **{**TINY, **kw})


def test_registered_and_shapes():
    assert "resunet" in model_names()
    m = tiny()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = m(x, step=0)
        mse = tiny(loss="mse")(x, step=0)
    assert out["x_hat"].shape == x.shape
    assert out["z"].shape == (2, 6, 32, 32)  # the image and its noise map, per channel
    assert torch.isfinite(out["loss"])
    # "psnr" (default): minus the examples' mean PSNR (MSE floored at 1e-5) plus the level term
    mse_i = ((out["x_hat"] - x) ** 2).flatten(1).mean(dim=1)
    expected = (10 * torch.log10(mse_i + 1e-5)).mean() + 0.005 * 200 * out["level"]
    assert float(out["loss"]) == pytest.approx(float(expected), abs=1e-3)
    assert float(mse["loss"]) == pytest.approx(float(mse["recon"]) + 0.005 * float(mse["level"]) * 3 * 32 * 32,
                                               rel=1e-4)
    assert m.spatial_multiple == 8


def test_starts_as_the_identity_then_learns_to_denoise():
    m = tiny()
    x = torch.rand(2, 3, 32, 32)
    z = m.encode(x)
    assert torch.equal(m.decode(z), x)  # zero tail: x_hat = noisy input
    # Steps on one flat colour image with the same noise (step 99): the error falls.
    clean = (torch.tensor([0.3, 0.5, 0.6]).view(1, 3, 1, 1)).expand(4, 3, 32, 32).contiguous()
    torch.nn.init.normal_(m.tail.weight, std=0.01)  # the zero start learns slowly: skip it here
    before = float(m(clean, step=99)["psnr"])
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(60):
        out = m(clean, step=99)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(m(clean, step=99)["psnr"]) > before + 0.5  # dB


def test_forward_is_reproducible_from_the_step():
    m = tiny().eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m(x, step=5)["x_hat"], m(x, step=5)["x_hat"])
    assert not torch.equal(m(x, step=5)["x_hat"], m(x, step=6)["x_hat"])


def test_decoder_takes_any_size_and_a_sigma_override():
    m = tiny().eval()
    x = torch.rand(1, 3, 37, 29)
    level = torch.full_like(x, 25 / 255)  # --sigma 25: a constant map instead of the estimate
    y = m.decode(torch.cat([x, level], dim=1))
    assert y.shape == x.shape
    torch.nn.init.normal_(m.tail.weight, std=0.1)
    a = m.decode(torch.cat([x, level], dim=1))
    b = m.decode(torch.cat([x, 2 * level], dim=1))
    assert not torch.allclose(a, b)  # the map steers the network


def test_level_map_is_nonnegative_and_the_true_level_is_the_noise_rms():
    m = tiny()
    assert (m.level_map(torch.rand(2, 3, 32, 32)) >= 0).all()
    clean = torch.full((1, 3, 16, 16), 0.5)
    noise = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = true_level(clean + 0.1 * noise, clean)
    assert t.shape == (1, 3, 2, 2)
    assert float(t.mean()) == pytest.approx(0.1, rel=0.15)
    assert LEVEL_SCALE == pytest.approx(255 / 25)


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="scales"):
        create_model("resunet", (3, 32, 32), scales=9)
    with pytest.raises(ValueError, match="multiples of 16"):
        create_model("resunet", (3, 40, 40), scales=4)
    with pytest.raises(UserInputError, match="jpeg"):
        create_model("resunet", (3, 32, 32), synthesis={"jpeg": 2})


def test_export_runs_in_the_denoiser_on_colour_and_gray(tmp_path):
    from aetk.denoise.denoiser import Denoiser
    from aetk.export.exporter import export_model

    m = tiny()
    torch.nn.init.normal_(m.tail.weight, std=0.01)
    m.eval()
    norm = {"kind": "unit", "mean": None, "scale": 255.0, "shape": None, "std": None, "value_range": [0.0, 1.0]}
    export_model(m, tmp_path / "out", normalization=norm)
    den = Denoiser(tmp_path / "out" / "autoencoder.onnx", tile=64, overlap=8, threads=1)
    assert den.channels == 3 and den.blind
    rgb = np.random.default_rng(0).random((3, 50, 70)).astype(np.float32)
    out = den.denoise(rgb)
    assert out.shape == rgb.shape
    with torch.no_grad():  # the exported graph computes what PyTorch does (one tile, no padding effects)
        ref = m.decode(m.encode(torch.from_numpy(rgb[:, :48, :64])[None]))[0].numpy()
    den1 = Denoiser(tmp_path / "out" / "autoencoder.onnx", tile=64, overlap=0, threads=1)
    np.testing.assert_allclose(den1.denoise(rgb[:, :48, :64]), ref, atol=1e-4)
    gray = rgb[:1]
    assert den.denoise(gray).shape == gray.shape  # replicated to 3 channels and averaged back


def test_training_patches_and_crops():
    img = np.arange(3 * 200 * 260, dtype=np.uint32).reshape(3, 200, 260).astype(np.uint8)
    p = training_photos.patches([img], size=128, stride=64)
    assert p.shape == (3 * 4, 3, 128, 128)  # rows 0, 64 and 72 (the edge); columns 0, 64, 128, 132
    assert p.dtype == np.uint8
    assert np.array_equal(p[0], img[:, :128, :128])  # the first is unturned
    c = training_photos.centre_crop(img, 256)
    assert c.shape == (3, 192, 192)  # limited by the height, a multiple of 32


def test_validation_photographs_are_held_out_by_name():
    paths = [p for files in training_photos.WALLPAPERS.values() for p in files]
    held = [p for p in paths if training_photos.is_validation(p)]
    assert len(held) == len(training_photos.VALIDATION_WALLPAPERS)
    from aetk.denoise import photos

    assert not set(photos.TEST) & set(photos.TRAIN)  # the test photographs never train


def test_missing_wallpaper_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(training_photos, "WALLPAPERS", {"some-wallpapers": (tmp_path / "nope.jpg",)})
    with pytest.raises(UserInputError, match="apt-get install some-wallpapers"):
        training_photos.wallpaper_paths()
    with pytest.raises(UserInputError, match="bsd400"):
        training_photos.shared_data(tmp_path)


def test_training_resumes_exactly_with_the_noise_synthesis(tmp_path):
    """The synthesis is drawn from (seed, step): a run stopped mid-epoch and resumed ends with
    the weights of an uninterrupted one (flips and the PSNR loss included)."""
    from safetensors.torch import load_file

    from aetk.config import load_config
    from aetk.artifacts import train_run as train
    from aetk.train.trainer import TrainingInterrupted

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    x[:4] = x[:4, :1]  # grayscale photographs among colour ones
    np.savez(tmp_path / "patches.npz", x=x)
    overrides = [f'data.path="{tmp_path / "patches.npz"}"', 'model.kind="resunet"', "model.width=4",
                 "model.blocks=1", "model.scales=3", "model.estimator_width=4", "train.epochs=2",
                 "train.batch_size=4", "train.val_fraction=0.0", "train.flips=true", "train.tensorboard=false",
                 "train.progress=false", "train.checkpoint_every=2"]
    cfg = load_config(None, overrides)
    train(cfg, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "cut", stop_at_step=4)  # mid-epoch 2 (3 steps per epoch)
    train(load_config(tmp_path / "cut" / "config.toml"), tmp_path / "cut", resume=True)
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sigma_override_graph_runs_as_a_non_blind_denoiser(tmp_path):
    from aetk.denoise.denoiser import Denoiser
    from aetk.export.exporter import export_model
    from aetk.export.sigma_graph import export_sigma_graph
    from aetk.models.resunet import SigmaGraph

    m = tiny()
    torch.nn.init.normal_(m.tail.weight, std=0.05)
    m.eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():  # the graph is the decoder on [x, sigma everywhere]
        want = m.decode(torch.cat([x, torch.full_like(x, 0.1)], dim=1))
        assert torch.allclose(SigmaGraph(m)(x, torch.tensor([[0.1]])), want)
    norm = {"kind": "unit", "mean": None, "scale": 255.0, "shape": None, "std": None, "value_range": [0.0, 1.0]}
    export_model(m, tmp_path / "out", normalization=norm)
    path = export_sigma_graph(m, tmp_path / "out")
    assert path.name == "autoencoder-sigma.onnx"
    den = Denoiser(path, tile=64, overlap=0, threads=1, sigma=25.5)
    assert den.non_blind
    got = den.denoise(x[0].numpy())
    with torch.no_grad():
        ref = m.decode(torch.cat([x, torch.full_like(x, 0.1)], dim=1))[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    with pytest.raises(UserInputError, match="--sigma"):
        Denoiser(path, tile=64, overlap=0, threads=1)


def test_sigma_runs_the_models_sigma_graph_when_it_has_one(tmp_path):
    """`aetk denoise --model OUT --sigma S` runs OUT/autoencoder-sigma.onnx at level S (the
    output moves with S); without --sigma the blind graph runs; a blind model without the
    sibling ignores --sigma and says so."""
    from PIL import Image

    from aetk.denoise import DenoiseOptions
    from aetk.denoise.denoiser import load_denoiser
    from aetk.denoise.pipeline import denoise_paths
    from aetk.export.exporter import export_model
    from aetk.export.sigma_graph import export_sigma_graph

    m = tiny()
    torch.nn.init.normal_(m.tail.weight, std=0.05)
    m.eval()
    norm = {"kind": "unit", "mean": None, "scale": 255.0, "shape": None, "std": None, "value_range": [0.0, 1.0]}
    out = tmp_path / "out"
    export_model(m, out, normalization=norm)
    assert load_denoiser(out, threads=1).blind
    note = "is a blind model"
    photos = tmp_path / "in"
    photos.mkdir()
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(photos / "a.png")
    blind = denoise_paths([photos], tmp_path / "blind", out, DenoiseOptions(sigma=30, threads=1))
    assert any(note in n for n in blind.notes)  # no sibling yet: --sigma is not used, and said
    export_sigma_graph(m, out)
    den = load_denoiser(out, threads=1, sigma=30)
    assert den.non_blind and den.path.name == "autoencoder-sigma.onnx"
    assert load_denoiser(out, threads=1).blind  # without --sigma: the blind graph
    results = {}
    for s in (5, 50):
        summary = denoise_paths([photos], tmp_path / f"s{s}", out, DenoiseOptions(sigma=s, threads=1))
        assert not any(note in n for n in summary.notes)
        results[s] = np.asarray(Image.open(tmp_path / f"s{s}" / "a.png"), np.float64)
    assert np.abs(results[50] - results[5]).mean() > 0.5  # the level reached the graph


def test_a_sigma_graph_left_from_another_model_is_refused(tmp_path):
    """`aetk export` into a folder keeps files it does not write: after another model is
    exported over OUT, OUT/autoencoder-sigma.onnx is the old model's. --sigma must not run it
    in place of the model OUT now holds."""
    from aetk.denoise.denoiser import DenoiserError, load_denoiser
    from aetk.export.exporter import export_model
    from aetk.export.sigma_graph import export_sigma_graph

    norm = {"kind": "unit", "mean": None, "scale": 255.0, "shape": None, "std": None, "value_range": [0.0, 1.0]}
    old, new = tiny(), tiny()
    torch.nn.init.normal_(new.tail.weight, std=0.05)
    out = tmp_path / "out"
    export_model(old.eval(), out, normalization=norm)
    export_sigma_graph(old, out)
    assert load_denoiser(out, threads=1, sigma=25).non_blind  # its own: run
    export_model(new.eval(), out, normalization=norm)
    assert (out / "autoencoder-sigma.onnx").is_file()
    with pytest.raises(DenoiserError, match=r"autoencoder-sigma\.onnx.*autoencoder\.onnx"):
        load_denoiser(out, threads=1, sigma=25)
    assert load_denoiser(out, threads=1).blind  # without --sigma: the model OUT holds
