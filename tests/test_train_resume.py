"""A resumed run starts from its own config (issue 19, item 5): `--resume --epochs 4` used to
ignore RUN/config.toml as soon as any flag was given (a state_dict traceback, or training on
with another batch size). Safe overrides apply on top; anything that would change the model
or the data order is refused, naming the key, and changes nothing."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.config import load_config
from aetk.errors import EXIT_USER_INPUT
from aetk.settings import ConfigError
from aetk.artifacts import RunDir, train_run as train  # noqa: F401

# Not the defaults (batch 128, model ae): a resume that forgets the saved config shows.
# 256 training examples in 8 batches of 32; dropout draws from the RNG that resume restores.
RUN = ['data.path="digits"', "data.limit=320", 'model.kind="deep"', "model.widths=[16, 4]",
       "model.dropout=0.1", "train.batch_size=32", "train.val_fraction=0.2", "train.progress=false",
       "train.tensorboard=false"]


def _cli(*args: str):
    return CliRunner().invoke(app, ["train", *args])


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A run trained for 2 epochs through the CLI (copy it before changing it)."""
    run = tmp_path_factory.mktemp("resume") / "run"
    result = _cli(*RUN, "--epochs", "2", "--run-dir", str(run))
    assert result.exit_code == 0, result.output
    return run


def _weights(run):
    return load_file(run / "model.safetensors")


def test_resume_with_only_epochs_keeps_the_saved_config_and_is_exact(tmp_path, two_epochs):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    result = _cli("--run-dir", str(run), "--resume", "--epochs", "4")
    assert result.exit_code == 0, result.output
    assert "trained 4 epoch(s), 32 steps" in result.output  # 8 batches of 32 per epoch, not 2 of 128
    saved = load_config(run / "config.toml")
    assert saved.train.batch_size == 32 and saved.train.epochs == 4
    assert saved.model.kind == "deep" and saved.model.params["widths"] == [16, 4]

    straight = tmp_path / "straight"  # the same run, never interrupted
    train(load_config(None, RUN + ["train.epochs=4"]), straight)
    a, b = _weights(straight), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


REFUSED = [
    (["train.batch_size=16"], "train.batch_size 32 -> 16"),
    (["model.widths=[16, 8]"], "model.widths [16, 4] -> [16, 8]"),
    (["--model", "ae"], "model.kind"),
    (["model.dropout=0.2"], "model.dropout 0.1 -> 0.2"),
    (["data.limit=300"], "data.limit 320 -> 300"),
    (['--data', 'fashion-mnist'], "data.path"),
    (["train.seed=1"], "train.seed 0 -> 1"),
    (["train.flips=true"], "train.flips false -> true"),
    (["train.lr=0.01"], "train.lr 0.001 -> 0.01"),
]


@pytest.mark.parametrize("args,named", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_resume_refuses_changes_to_the_model_or_the_data_naming_the_key(two_epochs, args, named):
    before = {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file()}
    result = _cli("--run-dir", str(two_epochs), "--resume", "--epochs", "3", *args)
    assert result.exit_code == EXIT_USER_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot resume {two_epochs} with "), result.output
    assert named in lines[0]
    assert {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file()} == before  # nothing touched


def test_resume_with_fewer_epochs_than_done_is_refused_untouched(two_epochs):
    before = {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file()}
    result = _cli("--run-dir", str(two_epochs), "--resume", "--epochs", "1")
    assert result.exit_code == EXIT_USER_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.epochs=1 is fewer than the 2 epoch(s)" in lines[0], result.output
    assert {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file()} == before  # config.toml kept


def test_safe_overrides_apply_on_top_of_the_saved_config(tmp_path, two_epochs):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    result = _cli("--run-dir", str(run), "--resume", "--epochs", "3", "train.early_stopping=1",
                  "train.log_every=5", "train.checkpoint_every=2", 'train.device="cpu"')
    assert result.exit_code == 0, result.output
    saved = load_config(run / "config.toml")  # the next plain --resume goes on with them
    assert (saved.train.epochs, saved.train.early_stopping, saved.train.log_every,
            saved.train.checkpoint_every, saved.train.device) == (3, 1, 5, 2, "cpu")
    assert saved.train.batch_size == 32


def test_a_hand_edited_config_is_checked_against_the_checkpoint(tmp_path, two_epochs):
    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    toml = run / "config.toml"
    toml.write_text(toml.read_text().replace("batch_size = 32", "batch_size = 64"))
    result = _cli("--run-dir", str(run), "--resume", "--epochs", "3")
    assert result.exit_code == EXIT_USER_INPUT
    assert "train.batch_size 32 -> 64" in result.output  # the checkpoint knows its config
    # the Python API: train() checks a resume whatever config it is given
    with pytest.raises(ConfigError, match="cannot resume .* with model.widths"):
        train(load_config(None, RUN + ["model.widths=[16, 2]"]), run, resume=True)


def test_resume_config_merges_a_config_file_and_needs_a_run(tmp_path, two_epochs):
    toml = tmp_path / "more.toml"
    toml.write_text("[train]\nepochs = 6\n")
    cfg = RunDir(two_epochs).resume_config(toml, ["train.early_stopping=2"])
    assert (cfg.train.epochs, cfg.train.early_stopping, cfg.train.batch_size) == (6, 2, 32)
    toml.write_text("[train]\nbatch_size = 8\n")
    with pytest.raises(ConfigError, match="train.batch_size 32 -> 8"):
        RunDir(two_epochs).resume_config(toml)
    with pytest.raises(ConfigError, match="there is no run to resume"):
        RunDir(tmp_path / "empty").resume_config()
    result = _cli("--run-dir", str(tmp_path / "empty"), "--resume", "--epochs", "3")
    assert result.exit_code == EXIT_USER_INPUT and "no run to resume" in result.output
    assert not (tmp_path / "empty").exists()
