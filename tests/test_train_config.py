"""Config values are checked before any work (issue 19, item 7): a wrong type or range
fails at once with one line naming the key, before the data loads and before the run
folder's config.toml is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.config import RunConfig, from_dict, load_config
from aetk.errors import EXIT_USER_INPUT, UserInputError
from aetk.settings import ConfigError
from aetk.artifacts import RunDir
from aetk.train import trainer

TINY = ['data.path="digits"', 'model.kind="deep"', "model.widths=[8, 2]", "train.progress=false",
        "train.tensorboard=false"]

# (command-line arguments, the message it must give); the cases of the issue first.
CASES = [
    (["train.lr=abc"], "train.lr must be a number >= 0, got 'abc'"),
    (['train.epochs="three"'], "train.epochs must be a positive integer, got 'three'"),
    (["train.batch_size=-5"], "train.batch_size must be a positive integer, got -5"),
    (["train.batch_size=0"], "train.batch_size must be a positive integer, got 0"),
    (["--epochs", "0"], "train.epochs must be a positive integer, got 0"),
    (["train.val_fraction=1.5"], "train.val_fraction must be a number in [0, 1), got 1.5"),
    (["train.lr=nan"], "train.lr must be a number >= 0, got nan"),
    (["train.amp=1"], "train.amp must be true or false, got 1"),
    (['train.device="gpu"'], "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (['train.optimizer="sgd"'], "train.optimizer must be one of 'adam', 'adamw', got 'sgd'"),
    (["train.seed=-1"], "train.seed must be an integer in [0, 4294967295], got -1"),
    (["data.test_fraction=1"], "data.test_fraction must be a number in [0, 1), got 1"),
    (["data.limit=0"], "data.limit must be a positive integer, got 0"),
    (["data.image_size=[3]"], "data.image_size must be [H, W] or one positive integer, got [3]"),
    (['model.tied="yes"'], "model.tied must be true or false, got 'yes'"),
    (["model.dropout=[0.1]"], "model.dropout must be a number, got [0.1]"),
]


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_fail_at_once_naming_the_key(tmp_path, monkeypatch, args, message):
    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the config was checked")

    monkeypatch.setattr(trainer, "load_data", no_data)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", *TINY, *args, "--run-dir", str(run)])
    assert result.exit_code == EXIT_USER_INPUT, result.output
    assert _one_line(result) == f"error: {message}"
    assert not run.exists()  # no config.toml, no lock file, no folder


def test_a_config_file_is_checked_the_same_way(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[train]\nepochs = "three"\n')
    with pytest.raises(ConfigError, match="train.epochs must be a positive integer, got 'three'"):
        load_config(toml)
    toml.write_text("[train\n")
    with pytest.raises(ConfigError, match=f"config file {toml} is not valid TOML"):
        load_config(toml)
    with pytest.raises(ConfigError, match="config file .*nowhere.toml does not exist"):
        load_config(tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError, match=r"\[train\] must be a table"):
        from_dict({"train": 3})


def test_a_config_built_in_python_is_checked_by_train(tmp_path):
    cfg = RunConfig()
    cfg.train.batch_size = -5  # bypasses load_config: train() checks too
    with pytest.raises(ConfigError, match="train.batch_size must be a positive integer, got -5"):
        trainer.train(cfg, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_checked_values_are_normalized_and_round_trip(tmp_path):
    cfg = load_config(None, TINY + ["train.lr=0", "train.val_fraction=0", "data.image_size=[4, 4]"])
    assert cfg.train.lr == 0.0 and isinstance(cfg.train.lr, float)  # an int where a float is declared
    again = from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert issubclass(ConfigError, UserInputError) and issubclass(ConfigError, ValueError)
