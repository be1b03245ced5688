"""The trainer: run folder, exact resume, divergence, atomic checkpoints, config errors,
two-process data parallel training."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aetk.config import apply_overrides, from_dict, load_config, parse_value
from aetk.train import checkpoint as ckpt
from aetk.artifacts import RunDir, train_run as train
from aetk.train.trainer import TrainingError, TrainingInterrupted

BASE = [
    'data.path="digits"',
    'model.kind="denoising"',  # stochastic: exercises (seed, step) noise on resume
    'model.base="deep"',
    "model.base_params={widths = [32, 8], dropout = 0.1}",  # dropout: torch RNG on resume
    'model.corruption="masking"',
    "model.level=0.3",
    "train.epochs=3",
    "train.batch_size=64",
    "train.checkpoint_every=5",
    "train.progress=false",
    'train.schedule="cosine"',
]


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "samples_per_s"} for row in csv.DictReader(f)]


def test_run_folder_and_exact_resume(tmp_path):
    cfg = load_config(None, BASE)
    straight = tmp_path / "straight"
    result = train(cfg, straight)
    assert result.epochs == 3 and result.steps > 40
    for name in ("config.toml", "model.safetensors", "model.json", "metrics.csv",
                 "checkpoints/last.safetensors"):
        assert (straight / name).is_file(), name
    assert any((straight / "tb").iterdir()), "no TensorBoard events"
    assert len(_metrics(straight)) == 3
    # the saved config reproduces the run's config
    assert load_config(straight / "config.toml").to_dict() == cfg.to_dict()

    interrupted = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted):
        train(cfg, interrupted, stop_at_step=27)  # mid-epoch 2 (21 steps per epoch)
    torch.manual_seed(1234)  # the resumed run must not depend on the process's RNG
    train(load_config(interrupted / "config.toml"), interrupted, resume=True)

    a = load_file(straight / "model.safetensors")
    b = load_file(interrupted / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(straight) == _metrics(interrupted)
    header = (straight / "metrics.csv").read_text().splitlines()[0]
    assert (interrupted / "metrics.csv").read_text().splitlines()[0] == header  # same column order
    assert header.startswith("epoch,step,")


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    cfg = load_config(None, BASE + ["train.epochs=1"])
    train(cfg, tmp_path / "r")
    with pytest.raises(TrainingError, match="already holds a training run; pass --resume"):
        train(cfg, tmp_path / "r")
    with pytest.raises(TrainingError, match="cannot resume"):
        train(cfg, tmp_path / "empty", resume=True)


def test_init_from_starts_a_larger_model_from_a_trained_run(tmp_path, capsys):
    small = ['data.path="digits"', 'model.kind="resconv"', "model.features=4", "model.depth=2",
             "train.epochs=1", "train.batch_size=64", "train.progress=false", "train.tensorboard=false"]
    # digits are 8x8: a multiple of 8, so the context branch fits
    train(load_config(None, small), tmp_path / "trunk")
    trunk = load_file(tmp_path / "trunk" / "model.safetensors")
    grown = small + ["model.context=3", "train.lr=0", f'train.init_from="{tmp_path / "trunk"}"']
    train(load_config(None, grown), tmp_path / "grown")
    assert "init_from" in capsys.readouterr().out
    after = load_file(tmp_path / "grown" / "model.safetensors")
    for k, v in trunk.items():  # lr 0: the copied weights are still the trunk's
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(after[k], v), k
    assert any(k.startswith("context.") for k in after)

    with pytest.raises(ckpt.CheckpointError, match="train.init_from: .* not a run folder"):
        train(load_config(None, small + [f'train.init_from="{tmp_path / "nowhere"}"']), tmp_path / "a")
    # Wider (resconv grows, function-preserving, see test_models); narrower does not fit.
    train(load_config(None, small + ["model.features=6", "train.lr=0", f'train.init_from="{tmp_path / "trunk"}"']),
          tmp_path / "wide")
    wide = load_file(tmp_path / "wide" / "model.safetensors")
    assert wide["body.2.weight"].shape == (6, 6, 3, 3)
    assert torch.equal(wide["body.0.weight"][:4], trunk["body.0.weight"])  # old channels first, unjittered
    with pytest.raises(ckpt.CheckpointError, match="train.init_from: shapes of .* do not fit"):
        train(load_config(None, small + ["model.features=3", f'train.init_from="{tmp_path / "trunk"}"']),
              tmp_path / "b")
    with pytest.raises(ckpt.CheckpointError, match="are not in this resconv model"):
        train(load_config(None, grown[:-1] + [f'train.init_from="{tmp_path / "grown"}"', "model.context=0"]),
              tmp_path / "c")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from aetk.models.denoising import DenoisingAutoencoder

    cfg = load_config(None, BASE + ["train.epochs=3", "train.checkpoint_every=0"])
    real_forward = DenoisingAutoencoder.forward

    def forward(self, x, *, target=None, step=0):
        out = real_forward(self, x, target=target, step=step)
        if step >= 30:  # epoch 2
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(DenoisingAutoencoder, "forward", forward)
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"loss became nan at step 30 \(epoch 2\)"):
        train(cfg, run)
    tensors, info = ckpt.load_checkpoint(RunDir(run).checkpoint_stem)
    assert info["state"]["step"] == 21 and info["state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_interrupted_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    cfg = load_config(None, BASE + ["train.epochs=1"])
    run = tmp_path / "r"
    train(cfg, run)
    before = (run / "checkpoints/last.safetensors").read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(RunDir(run).checkpoint_stem, {"w": torch.zeros(3)}, {"x": 1})
    assert (run / "checkpoints/last.safetensors").read_bytes() == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    ckpt.load_checkpoint(RunDir(run).checkpoint_stem)  # still loads


def test_corrupt_checkpoint_is_reported(tmp_path):
    cfg = load_config(None, BASE + ["train.epochs=1"])
    run = tmp_path / "r"
    train(cfg, run)
    (run / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="unreadable or corrupt"):
        RunDir(run).load_model()
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        RunDir(tmp_path / "nope").load_model()


def test_bernoulli_model_refuses_standardized_data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "\n".join(f"{i},{-i * 3}" for i in range(50)))
    cfg = load_config(None, [f'data.path="{path}"', 'model.kind="ae"', "model.code_size=2",
                             'model.loss="bce"', "train.progress=false"])
    with pytest.raises(TrainingError, match=r"needs data in \[0, 1\]"):
        train(cfg, tmp_path / "r")


def test_config_errors_list_valid_choices():
    with pytest.raises(ValueError, match="unknown model kind 'nope'; valid kinds: ae, contractive"):
        from_dict({"model": {"kind": "nope"}})
    with pytest.raises(ValueError, match="unknown option.*widthz.*valid options:.*widths"):
        from_dict({"model": {"kind": "deep", "widthz": [3]}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) train.epoch; valid \[train\] keys:.*epochs"):
        from_dict({"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown config section"):
        from_dict({"trian": {}})
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["epochs"])


def test_overrides_parse_toml_values():
    assert parse_value("3e-4") == 3e-4
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("true") is True
    assert parse_value("fashion-mnist") == "fashion-mnist"
    d = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=0.5", "model.kind=vae"])
    assert d == {"train": {"lr": 0.5}, "model": {"kind": "vae"}}


def test_two_process_data_parallel_matches_one_process(tmp_path):
    """`aetk train --nproc-per-node 2` (gloo on CPU): with the same global batch, two
    processes follow the single-process run up to float rounding."""
    overrides = ['data.path="digits"', 'model.kind="deep"', "model.widths=[16, 4]",
                 "train.epochs=2", "train.batch_size=32", "train.progress=false",
                 "train.val_fraction=0", "data.limit=1280"]  # 20 global batches of 64
    single = tmp_path / "single"
    train(load_config(None, overrides + ["train.batch_size=64"]), single)

    import aetk

    # the workers must import this same aetk (installed, or the source tree under make dev)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(aetk.__file__).parents[1])}
    ddp = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "aetk.cli.main", "train", *overrides,
                           "--nproc-per-node", "2",
                           "--run-dir", str(ddp)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)  # cwd: not the source tree
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(single / "model.safetensors"), load_file(ddp / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


def test_early_stopping_keeps_the_best_model(tmp_path, monkeypatch):
    from aetk.train import trainer

    cfg = load_config(None, BASE + ["train.epochs=10", "train.early_stopping=2",
                                    "train.checkpoint_every=0"])
    losses = iter([5.0, 3.0, 4.0, 4.5, 1.0, 1.0])  # best at epoch 2, then two worse epochs
    real = trainer.evaluate_loss
    monkeypatch.setattr(trainer, "evaluate_loss",
                        lambda *a, **k: {**real(*a, **k), "loss": next(losses)})
    result = train(cfg, tmp_path / "r")
    assert result.epochs == 4 and result.best_val == 3.0
    meta = ckpt.load_pair(tmp_path / "r" / "model")[1]
    assert meta["epoch"] == 2  # the saved model is the best one, not the last


def test_cli_train_and_errors(tmp_path):
    from typer.testing import CliRunner

    from aetk.cli.main import app

    runner = CliRunner()

    def text(result) -> str:  # rich draws errors in a box; compare the words
        return " ".join(result.output.replace("│", " ").split())

    result = runner.invoke(app, ["train", "--model", "nope", "--run-dir", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "unknown model 'nope'; valid models: ae, contractive" in text(result)
    result = runner.invoke(app, ["train", "train.epochz=1", "--run-dir", str(tmp_path / "x")])
    assert result.exit_code != 0 and "valid [train] keys" in text(result)
    run = tmp_path / "ok"
    result = runner.invoke(app, ["train", "--model", "ae", "--data", "digits", "--epochs", "1",
                                 "model.code_size=4", "train.progress=false", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "trained 1 epoch(s)" in result.output and (run / "model.safetensors").is_file()
    result = runner.invoke(app, ["train", "--run-dir", str(run), "--resume", "train.epochs=2",
                                 "--model", "ae", "--data", "digits", "model.code_size=4",
                                 "train.progress=false"])
    assert result.exit_code == 0, result.output
    assert "trained 2 epoch(s)" in result.output


def test_semi_supervised_classifier_from_a_pretrained_stack(tmp_path):
    """Greedy layer-wise pretraining of a stacked DAE, then a classifier fine-tuned on 100
    labels: it must beat chance clearly, and the CLI reports both accuracies."""
    from typer.testing import CliRunner

    from aetk.cli.main import app
    from aetk.evaluate.classify import finetune_classifier
    from aetk.train.options import ClassifyOptions

    cfg = load_config(None, ['data.path="digits"', 'model.kind="stacked"', "model.widths=[48, 16]",
                             'model.activation="relu"', "train.epochs=5", "train.pretrain_epochs=3",
                             "train.lr=3e-3", "train.progress=false", "train.tensorboard=false"])
    run = tmp_path / "sdae"
    train(cfg, run)
    r = finetune_classifier(run, ClassifyOptions(labelled=100, epochs=30, lr=3e-3))
    assert r["labelled"] == 100
    assert r["accuracy"] > 0.5  # chance is 0.1
    assert 0 <= r["scratch_accuracy"] <= 1
    assert (run / "classifier.safetensors").is_file()
    result = CliRunner().invoke(app, ["classify", str(run), "-n", "50", "--epochs", "5"])
    assert result.exit_code == 0, result.output
    assert "test accuracy with 50 labels" in result.output
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "missing")])
    assert result.exit_code == 2  # a bad path: one line, exit 2
    assert result.output.strip() == f"error: run folder {tmp_path / 'missing'} does not exist"


def test_deterministic_mode_repeats_exactly_and_is_restored(tmp_path):
    cfg = load_config(None, BASE + ["train.epochs=1", "train.deterministic=true"])
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a, b = load_file(tmp_path / "a/model.safetensors"), load_file(tmp_path / "b/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.are_deterministic_algorithms_enabled()


def test_random_flips_are_the_eight_symmetries_drawn_from_seed_and_step():
    from aetk.train.augment import random_flips, symmetry

    image = torch.arange(12.0).reshape(1, 3, 4)[:, :3, :3]  # no symmetry of its own
    turned = [symmetry(image, k) for k in range(8)]
    assert len({tuple(t.flatten().tolist()) for t in turned}) == 8
    assert torch.equal(symmetry(image, 0), image)
    assert torch.equal(symmetry(image, 5), image.transpose(-2, -1).flip(-1))

    batch = torch.randn(64, 2, 5, 5)
    a, b = random_flips(batch, seed=7, step=3), random_flips(batch, seed=7, step=3)
    assert torch.equal(a, b)  # reproducible from (seed, step): exact resume
    assert not torch.equal(a, random_flips(batch, seed=7, step=4))
    used = set()
    for x, y in zip(batch, a):  # each example turned as a whole, channels together
        ks = [k for k in range(8) if torch.equal(symmetry(x, k), y)]
        assert ks, "an example is not a symmetry of its original"
        used.update(ks)
    assert used == set(range(8))
    wide = random_flips(torch.randn(32, 3, 6), seed=0, step=0)  # not square: mirrorings only
    assert wide.shape == (32, 3, 6)
    with pytest.raises(ValueError, match="train.flips needs image batches"):
        random_flips(torch.randn(4, 10), seed=0, step=0)


def test_flips_train_turned_images_resume_exactly_and_refuse_tabular_data(tmp_path):
    overrides = [*BASE, "train.epochs=2", "train.flips=true"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(load_config(None, overrides), straight)
    plain = train(load_config(None, [*BASE, "train.epochs=2"]), tmp_path / "plain")
    assert _metrics(straight)[0]["train_loss"] != _metrics(plain.run_dir)[0]["train_loss"]
    with pytest.raises(TrainingInterrupted):
        train(load_config(None, overrides), interrupted, stop_at_step=27)
    train(load_config(interrupted / "config.toml"), interrupted, resume=True)
    a, b = load_file(straight / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    table = tmp_path / "table.csv"
    table.write_text("a,b,c\n" + "\n".join(f"{i},{i * 2},{i % 3}" for i in range(40)) + "\n")
    cfg = load_config(None, [f'data.path="{table}"', 'model.kind="ae"', "model.code_size=2",
                             "train.flips=true", "train.progress=false"])
    with pytest.raises(TrainingError, match=r"train.flips=true turns images; .*table.csv holds examples of shape \(3,\)"):
        train(cfg, tmp_path / "tabular")


def test_flips_also_turn_the_layerwise_pretraining_batches(tmp_path, monkeypatch):
    from aetk.train import trainer

    seeds = []

    def recording(x, seed, step):
        seeds.append(seed)
        return real(x, seed, step)

    real = trainer.random_flips
    monkeypatch.setattr(trainer, "random_flips", recording)
    cfg = load_config(None, ['data.path="digits"', 'model.kind="stacked"', "model.widths=[16, 8]",
                             "train.epochs=1", "train.pretrain_epochs=1", "train.flips=true",
                             "train.progress=false", "train.tensorboard=false"])
    train(cfg, tmp_path / "stack")
    pretraining = [s for s in seeds if s == 7919]  # model seed 0 + the pretraining offset
    assert pretraining and len(seeds) > len(pretraining)  # both phases turned their batches
