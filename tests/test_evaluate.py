"""Evaluation and pictures: ``aetk.evaluate`` (metrics vs PCA, PNGs, samples) and the
``aetk eval`` / ``aetk sample`` commands, on tiny runs trained on sklearn's digits."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.config import load_config
from aetk.data import load_data
from aetk.evaluate import PCA, EvaluationError, evaluate_run, sample_run
from aetk.evaluate.sampling import NotGenerativeError
from aetk.evaluate import plots
from aetk.train.checkpoint import CheckpointError
from aetk.artifacts import RunDir, train_run as train  # noqa: F401

COMMON = ['data.path="digits"', "train.epochs=1", "train.batch_size=64", "train.progress=false",
          "train.tensorboard=false", "train.seed=0"]
KINDS = {
    # standardized: exercises the de-normalization of metrics and pictures
    "deep": ['model.kind="deep"', "model.widths=[32, 2]", 'data.normalize="standardize"',
             "train.epochs=2"],  # two points on the training curves
    "vae": ['model.kind="vae"', "model.latent_dim=2", "model.hidden=[32]"],
    "denoising": ['model.kind="denoising"', 'model.base="ae"', "model.base_params={code_size = 12}",
                  'model.corruption="masking"', "model.level=0.3"],
    "contractive": ['model.kind="contractive"', "model.code_size=12"],
    # overcomplete (100 > 64 pixels): PCA is capped at 64 components
    "sparse": ['model.kind="sparse"', "model.code_size=100"],
    # a blind Gaussian denoiser whose code (4 x 8 x 8) is larger than an image: PCA is the identity
    "resconv": ['model.kind="resconv"', "model.features=4", "model.depth=1"],
}
COMMON_KEYS = {"sse_per_example", "mse_per_element", "psnr_db", "sse_per_example_pixel",
               "mse_per_element_pixel", "psnr_db_pixel"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train each kind once, on demand."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in done:
            train(load_config(None, COMMON + KINDS[kind]), root / kind)
            done[kind] = root / kind
        return done[kind]

    return get


@pytest.fixture(scope="module")
def evaluated(runs):
    """evaluate_run of each kind on the whole test split, once."""
    done: dict[str, dict] = {}

    def get(kind: str) -> dict:
        if kind not in done:
            done[kind] = evaluate_run(runs(kind))
        return done[kind]

    return get


def assert_picture(path, min_colors: int = 8) -> np.ndarray:
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        a = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert a.shape[0] >= 100 and a.shape[1] >= 100
    assert a.std() > 0, f"{path} is blank"
    colors = np.unique(a.reshape(-1, 3), axis=0)
    assert len(colors) >= min_colors, f"{path} has only {len(colors)} colours"
    return a


def assert_finite(section: dict) -> None:
    for k, v in section.items():
        assert v is not None and math.isfinite(v), (k, v)


def load_examples(run: Path, limit: int | None = None):
    """(model, normalized test x, training x) of a run, loaded independently of aetk.evaluate."""
    model, meta = RunDir(run).load_model()
    data = load_data(load_config(run / "config.toml").data)
    n = len(data.test) if limit is None else limit
    x = torch.stack([data.test[i][0] for i in range(n)])
    x_train = torch.stack([data.train[i][0] for i in range(len(data.train))])
    return model, data, x, x_train




def sklearn_pca_sse(x_train: torch.Tensor, x: torch.Tensor, k: int) -> float:
    from sklearn.decomposition import PCA as SKPCA

    a = x_train.reshape(len(x_train), -1).double().numpy()
    b = x.reshape(len(x), -1).double().numpy()
    sk = SKPCA(n_components=k, svd_solver="full").fit(a)
    return float(((sk.inverse_transform(sk.transform(b)) - b) ** 2).sum(1).mean())


# -- PCA --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d,k", [(300, 20, 5), (15, 40, 6), (50, 8, 8)])
def test_pca_matches_sklearn(n, d, k):
    from sklearn.decomposition import PCA as SKPCA

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) * 3 + rng.standard_normal((n, d))
    x_test = rng.standard_normal((40, 6)) @ rng.standard_normal((6, d)) + rng.standard_normal((40, d))
    ours = PCA(k).fit(x)
    sk = SKPCA(n_components=min(k, n, d), svd_solver="full").fit(x)
    assert ours.n_components_ == sk.n_components_
    np.testing.assert_allclose(ours.components_ @ ours.components_.T, np.eye(ours.n_components_),
                               atol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_, sk.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio_, sk.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(ours.reconstruct(x_test), sk.inverse_transform(sk.transform(x_test)),
                               atol=1e-8)
    # same subspace: codes agree up to the sign of each component
    np.testing.assert_allclose(np.abs(ours.transform(x_test)), np.abs(sk.transform(x_test)), atol=1e-8)


def test_pca_randomized_fallback_and_errors(monkeypatch):
    from aetk.evaluate import pca as pca_mod

    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 4)) @ rng.standard_normal((4, 30)) + 0.01 * rng.standard_normal((200, 30))
    exact = PCA(4).fit(x)
    monkeypatch.setattr(pca_mod, "MAX_EXACT", 10)  # both 200 and 30 are "too large"
    approx = PCA(4).fit(x)
    a, b = (((p.reconstruct(x) - x) ** 2).sum() for p in (exact, approx))
    assert abs(a - b) <= 1e-3 * a
    with pytest.raises(ValueError, match="positive integer"):
        PCA(0)
    with pytest.raises(RuntimeError, match="not fitted"):
        PCA(2).transform(x)
    with pytest.raises(ValueError, match="fitted on 30 features"):
        exact.transform(x[:, :5])


# -- evaluate_run per kind ----------------------------------------------------------------------
def test_deep_metrics_vs_independent_computation(runs, evaluated, tmp_path):
    run = runs("deep")
    m = evaluated("deep")
    assert m["kind"] == "deep" and m["split"] == "test" and m["examples"] == 359
    assert m["code_dim"] == 2 and m["pca_components"] == 2
    assert set(m["model"]) == COMMON_KEYS == set(m["pca"])  # standardized: no BCE
    assert_finite(m["model"])
    assert_finite(m["pca"])
    assert m["pixel_range"] == [0.0, 16.0]  # digits' nominal 4-bit range
    # the file is the returned dict
    assert json.loads((run / "eval" / "metrics.json").read_text()) == m
    assert not list((run / "eval").glob(".*.tmp"))

    model, data, x, x_train = load_examples(run)
    assert math.isclose(m["pca"]["sse_per_example"], sklearn_pca_sse(x_train, x, 2), rel_tol=1e-3)

    # the first two examples, by hand
    m2 = evaluate_run(run, limit=2, out_dir=tmp_path / "two", plots=False)
    assert m2["examples"] == 2
    with torch.no_grad():
        x_hat = model.decode(model.encode(x[:2])).double()
    x2 = x[:2].double()
    sse = ((x_hat - x2) ** 2).sum(dim=(1, 2, 3))
    assert math.isclose(m2["model"]["sse_per_example"], float(sse.mean()), rel_tol=1e-5)
    assert math.isclose(m2["model"]["mse_per_element"], float(sse.mean()) / 64, rel_tol=1e-5)
    data_range = float(x_train.max() - x_train.min())
    assert math.isclose(m2["data_range"], data_range, rel_tol=1e-6)
    assert math.isclose(m2["model"]["psnr_db"], 10 * math.log10(data_range ** 2 * 64 / float(sse.mean())),
                        rel_tol=1e-5)
    norm = data.normalization
    pix = lambda t: norm.invert(t) / 16.0  # noqa: E731
    sse_pix = ((pix(x_hat) - pix(x2)) ** 2).sum(dim=(1, 2, 3))
    assert math.isclose(m2["model"]["sse_per_example_pixel"], float(sse_pix.mean()), rel_tol=1e-5)
    assert math.isclose(m2["model"]["psnr_db_pixel"], 10 * math.log10(64 / float(sse_pix.mean())),
                        rel_tol=1e-5)


def test_deep_pictures(evaluated):
    m = evaluated("deep")
    files = m["files"]
    assert set(files) == {"metrics", "reconstructions", "training_curves", "codes_2d"}
    for name in ("reconstructions", "training_curves", "codes_2d"):
        assert_picture(files[name])
    rec = assert_picture(files["reconstructions"])
    assert rec.shape[1] > rec.shape[0]  # a row per kind of picture, a column per example


def test_vae_elbo_bce_and_latent_grid(runs, evaluated, tmp_path):
    m = evaluated("vae")
    keys = COMMON_KEYS | {"bce_per_example", "elbo_per_example", "recon_nll_per_example",
                          "kl_per_example"}
    assert set(m["model"]) == keys
    assert set(m["pca"]) == COMMON_KEYS | {"bce_per_example"}
    assert_finite(m["model"])
    mm = m["model"]
    assert math.isclose(mm["elbo_per_example"], -(mm["recon_nll_per_example"] + mm["kl_per_example"]))
    assert mm["kl_per_example"] >= 0 and mm["elbo_per_example"] < 0
    # unit-range data: normalized and pixel metrics agree
    assert math.isclose(mm["sse_per_example"], mm["sse_per_example_pixel"], rel_tol=1e-9)
    for name in ("latent_grid", "codes_2d", "reconstructions", "training_curves"):
        assert_picture(m["files"][name])

    run = runs("vae")
    model, data, x, x_train = load_examples(run, limit=2)
    assert math.isclose(m["pca"]["sse_per_example"],
                        sklearn_pca_sse(x_train, torch.stack([data.test[i][0] for i in range(len(data.test))]), 2),
                        rel_tol=1e-3)
    m2 = evaluate_run(run, limit=2, out_dir=tmp_path, plots=False)
    with torch.no_grad():
        mu, logvar = model.encode_stats(x)
        p = model.decode(mu).double().clamp(1e-7, 1 - 1e-7)
    t = x.double()
    bce = -(t * p.log() + (1 - t) * (1 - p).log()).sum(dim=(1, 2, 3))
    kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
    assert math.isclose(m2["model"]["bce_per_example"], float(bce.mean()), rel_tol=1e-5)
    assert math.isclose(m2["model"]["kl_per_example"], float(kl.mean()), rel_tol=1e-4)


def test_denoising_gain(runs, evaluated, tmp_path):
    m = evaluated("denoising")
    denoise = {"denoise_psnr_corrupted_db", "denoise_psnr_reconstructed_db", "denoise_gain_db",
               "denoise_sse_per_example"}
    assert set(m["model"]) == COMMON_KEYS | {"bce_per_example"} | denoise
    assert set(m["pca"]) == set(m["model"])
    assert_finite(m["model"])
    assert_finite(m["pca"])
    assert m["base"] == "ae" and m["corruption"] == "masking 0.3"
    for sec in (m["model"], m["pca"]):
        assert math.isclose(sec["denoise_gain_db"],
                            sec["denoise_psnr_reconstructed_db"] - sec["denoise_psnr_corrupted_db"])
    # the same corrupted inputs for both
    assert m["model"]["denoise_psnr_corrupted_db"] == m["pca"]["denoise_psnr_corrupted_db"]
    assert_picture(m["files"]["reconstructions"])
    assert "codes_2d" not in m["files"] and "latent_grid" not in m["files"]

    run = runs("denoising")
    model, _, x, _ = load_examples(run, limit=2)
    m2 = evaluate_run(run, limit=2, out_dir=tmp_path, plots=False)
    with torch.no_grad():
        xt = model.corrupt_input(x, step=0).double()
        den = model.decode(model.encode(xt.float())).double()
    mse_in = float(((xt - x.double()) ** 2).mean())
    mse_out = float(((den - x.double()) ** 2).mean())
    assert math.isclose(m2["model"]["denoise_psnr_corrupted_db"], -10 * math.log10(mse_in), rel_tol=1e-5)
    assert math.isclose(m2["model"]["denoise_psnr_reconstructed_db"], -10 * math.log10(mse_out),
                        rel_tol=1e-5)


def test_contractive_jacobian_norm(runs, evaluated, tmp_path):
    m = evaluated("contractive")
    assert {"mean_jacobian_norm", "mean_jacobian_norm_sq"} <= set(m["model"])
    assert_finite(m["model"])
    assert m["pca"]["mean_jacobian_norm_sq"] == pytest.approx(12.0)  # orthonormal rows: k
    run = runs("contractive")
    model, _, x, _ = load_examples(run, limit=2)
    m2 = evaluate_run(run, limit=2, out_dir=tmp_path, plots=False)
    norms = []
    for i in range(2):
        J = torch.autograd.functional.jacobian(lambda v: model.encode(v.reshape(1, 1, 8, 8))[0],
                                               x[i].reshape(-1))
        norms.append(float((J.double() ** 2).sum()))
    assert math.isclose(m2["model"]["mean_jacobian_norm_sq"], float(np.mean(norms)), rel_tol=1e-4)
    assert math.isclose(m2["model"]["mean_jacobian_norm"], float(np.mean(np.sqrt(norms))), rel_tol=1e-4)


def test_sparse_activation_and_overcomplete_pca(runs, evaluated, tmp_path):
    m = evaluated("sparse")
    assert "mean_code_activation" in m["model"] and "mean_code_activation" not in m["pca"]
    assert_finite(m["model"])
    assert m["code_dim"] == 100 and m["pca_components"] == 64
    assert any("capped at 64" in n for n in m["notes"])
    assert m["pca"]["sse_per_example"] < 1e-8  # all 64 components: (nearly) exact
    run = runs("sparse")
    model, _, x, _ = load_examples(run, limit=2)
    m2 = evaluate_run(run, limit=2, out_dir=tmp_path, plots=False)
    with torch.no_grad():
        act = float(model.encode(x).mean())
    assert math.isclose(m2["model"]["mean_code_activation"], act, rel_tol=1e-5)
    assert 0 < act < 1


def test_train_split_and_bad_options(runs, tmp_path):
    run = runs("contractive")
    m = evaluate_run(run, split="train", limit=50, out_dir=tmp_path, plots=False)
    assert m["split"] == "train" and m["examples"] == 50
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_run(run, split="val")
    with pytest.raises(ValueError, match="limit"):
        evaluate_run(run, limit=0)


def test_no_test_split_falls_back_to_training_data_with_line_plots(tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6.28, 12)
    x = np.sin(t[None] * rng.uniform(0.5, 2, (160, 1)) + rng.uniform(0, 3, (160, 1)))
    np.save(tmp_path / "rows.npy", x.astype(np.float32))
    run = tmp_path / "tab"
    train(load_config(None, [f'data.path="{tmp_path / "rows.npy"}"', 'model.kind="ae"',
                             "model.code_size=3"] + COMMON[1:]), run)
    m = evaluate_run(run)
    assert m["split"] == "train" and m["examples"] == 160
    assert any("no test split" in n for n in m["notes"])
    assert_finite(m["model"])
    assert_picture(m["files"]["reconstructions"])  # line plots for rows of 12 features


# -- pictures ---------------------------------------------------------------------------------
def test_mosaic_and_display():
    imgs = np.random.default_rng(0).uniform(size=(5, 1, 4, 3))
    grid = plots.mosaic(imgs, ncol=3, pad=1, pad_value=0.5)
    assert grid.shape == (2 * 4 + 1, 3 * 3 + 2)
    np.testing.assert_array_equal(grid[:4, :3], imgs[0, 0])
    np.testing.assert_array_equal(grid[5:, 4:7], imgs[4, 0])
    assert np.all(grid[5:, 8:] == 0.5)  # the empty sixth cell
    assert plots.mosaic(np.zeros((2, 3, 4, 4)), ncol=2).shape == (4, 9, 3)

    from aetk.data import Normalization

    norm = Normalization.standardize([4.0], [2.0], shape=[1, 1, 1])
    disp = plots.Display((1, 2, 2), norm, (0.0, 16.0))
    raw = np.array([[[[0.0, 8.0], [16.0, 20.0]]]])
    np.testing.assert_allclose(disp.to_unit(norm.apply(raw)), [[[[0, 0.5], [1, 1]]]])


def test_line_plot_pictures(tmp_path):
    from aetk.data import Normalization

    rng = np.random.default_rng(0)
    seq = rng.standard_normal((4, 16, 3))
    disp = plots.Display((16, 3), Normalization.none())
    fig = plots.reconstruction_figure([("original", seq), ("model", seq * 0.5)], disp, "sequences")
    assert_picture(plots.save_figure(fig, tmp_path / "seq.png"))
    fig = plots.examples_figure(rng.standard_normal((6, 10)), plots.Display((10,), Normalization.none()),
                                "rows")
    assert_picture(plots.save_figure(fig, tmp_path / "rows.png"))


# -- sample_run -------------------------------------------------------------------------------
def test_sample_vae_and_gaussian_codes(runs, tmp_path):
    p = sample_run(runs("vae"), n=16, seed=0)
    assert p == runs("vae") / "eval" / "samples.png"
    a = assert_picture(p)
    b = assert_picture(sample_run(runs("vae"), n=16, seed=0, out=tmp_path / "again.png"))
    c = assert_picture(sample_run(runs("vae"), n=16, seed=1, out=tmp_path))  # a folder
    assert (tmp_path / "samples.png").is_file()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a model that is not generative is refused unless its fitted code Gaussian is asked for
    with pytest.raises(NotGenerativeError, match="not generative"):
        sample_run(runs("deep"), n=9, seed=0, out=tmp_path / "deep.png")
    assert not (tmp_path / "deep.png").exists()
    assert_picture(sample_run(runs("deep"), n=9, seed=0, out=tmp_path / "deep.png", fitted_codes=True))
    with pytest.raises(ValueError, match="positive"):
        sample_run(runs("deep"), n=0)


# -- CLI --------------------------------------------------------------------------------------
def test_cli_eval_and_sample(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs("denoising"), run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(run), "--limit", "40"])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("SSE per example", "PCA, 12 comp.", "PSNR", "denoising gain", "reconstructions.png",
                 "metrics.json"):
        assert text in out, text
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["examples"] == 40
    # a denoiser is judged noisy input -> denoised output, both against the clean target
    assert "noisy input" in out and "denoising, denoised" in out and "against the clean target" in out
    den = m["denoising"]
    assert den["space"] == "[0,1] pixels"  # unit-scaled digits: the same numbers as in model space
    assert den["noisy"]["psnr_db"] == pytest.approx(m["model"]["denoise_psnr_corrupted_db"], abs=1e-6)
    assert den["denoised"]["psnr_db"] == pytest.approx(m["model"]["denoise_psnr_reconstructed_db"], abs=1e-6)
    assert den["pca"]["psnr_db"] == pytest.approx(m["pca"]["denoise_psnr_reconstructed_db"], abs=1e-6)
    result = runner.invoke(app, ["sample", str(run), "-n", "4", "--seed", "2", "--out",
                                 str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "not generative" in result.output, result.output
    assert not (tmp_path / "s.png").exists()
    result = runner.invoke(app, ["sample", str(run), "-n", "4", "--seed", "2", "--out",
                                 str(tmp_path / "s.png"), "--fitted-codes"])
    assert result.exit_code == 0, result.output
    assert "s.png" in result.output
    assert_picture(tmp_path / "s.png")
    result = runner.invoke(app, ["eval", str(run), "--split", "validation"])
    assert result.exit_code == 2 and "--split" in result.output


def test_cli_errors_missing_and_corrupt_runs(runs, tmp_path):
    runner = CliRunner()
    for cmd in ("eval", "sample"):
        result = runner.invoke(app, [cmd, str(tmp_path / "nope")])
        assert result.exit_code == 2, result.output  # a bad path: exit 2 (aetk/errors.py)
        assert "does not exist" in result.output and "Traceback" not in result.output

    run = tmp_path / "corrupt"
    shutil.copytree(runs("contractive"), run)
    (run / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    for cmd in ("eval", "sample"):
        result = runner.invoke(app, [cmd, str(run)])
        assert result.exit_code == 3, result.output  # a corrupt file: exit 3 (aetk/errors.py)
        assert "corrupt" in result.output and "Traceback" not in result.output
    with pytest.raises(CheckpointError):
        evaluate_run(run)

    run = tmp_path / "badjson"
    shutil.copytree(runs("contractive"), run)
    (run / "model.json").write_text("{not json")
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 3 and "not valid JSON" in result.output  # a corrupt file

    run = tmp_path / "noconfig"
    shutil.copytree(runs("contractive"), run)
    (run / "config.toml").unlink()
    with pytest.raises(EvaluationError, match="config.toml is missing"):
        evaluate_run(run)
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 2 and "config.toml is missing" in result.output  # an incomplete run folder


def test_progress_is_reported_by_eval_and_classify(runs, tmp_path):
    """eval and classify used to show nothing for 20-60 s: both report their stages."""
    from aetk.evaluate.classify import finetune_classifier

    run = tmp_path / "run"
    shutil.copytree(runs("deep"), run)
    from aetk.progress import NullProgress
    from aetk.train.options import ClassifyOptions

    class Seen(NullProgress):
        """Every stage with its total and the units advanced in it; finish() calls."""

        def __init__(self):
            self.stages, self.finished = [], 0

        def start(self, description, total=None, unit="items"):
            self.stages.append([description, total, 0])

        def advance(self, n=1):
            self.stages[-1][2] += n

        def finish(self):
            self.finished += 1

    seen = Seen()
    evaluate_run(run, limit=20, plots=False, progress=seen)
    stages = [s for s, _, _ in seen.stages]
    assert stages[0] == "loading the run" and "fitting PCA" in stages and stages[-1] == "drawing pictures"
    assert ["running the model", 20, 20] in seen.stages and seen.finished == 1
    seen = Seen()
    finetune_classifier(run, ClassifyOptions(labelled=20, epochs=2), seen)
    assert seen.stages[1:] == [["pretrained encoder", 2, 2], ["from scratch", 2, 2]] and seen.finished == 1


def test_a_denoiser_is_judged_noisy_to_denoised_not_against_identity_pca(evaluated):
    """The shipped kind's eval used to set it beside PCA with as many components as pixels
    (PSNR 306 dB): PCA as the identity is left out, noisy -> denoised leads."""
    from io import StringIO

    from rich.console import Console

    from aetk.cli.evaluate import print_metrics

    m = evaluated("resconv")
    assert m["pca_identity"] and m["pca_components"] == 64
    den = m["denoising"]
    assert "pca" not in den and den["noisy"]["psnr_db"] < 40  # the model's own noise, sigma up to 55
    assert den["denoised"]["psnr_db"] == pytest.approx(m["model"]["denoise_psnr_reconstructed_db"], abs=1e-6)
    out = StringIO()
    print_metrics(m, Console(file=out, width=200))
    text = out.getvalue()
    assert "noisy input" in text and "resconv, denoised" in text
    assert "PCA, 64 comp." not in text and "is the identity" in text
