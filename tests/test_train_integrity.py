"""Weights and checkpoints that do not match are refused (issue 19, items 6 and 13): a
flipped byte in model.safetensors, a model pair or checkpoint torn between two saves; stray
temporaries of killed writes are removed; two trainers on one run folder cannot both run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.config import load_config
from aetk.errors import EXIT_FAILED, EXIT_INTEGRITY, IntegrityError
from aetk.train import checkpoint as ckpt
from aetk.artifacts import RunDir, train_run as train  # noqa: F401

TINY = ['data.path="digits"', "data.limit=200", 'model.kind="deep"', "model.widths=[8, 2]",
        "train.batch_size=50", "train.progress=false", "train.tensorboard=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two one-epoch runs with different seeds (copy before changing them)."""
    base = tmp_path_factory.mktemp("integrity")
    for name, seed in (("a", 0), ("b", 1)):
        train(load_config(None, TINY + ["train.epochs=1", f"train.seed={seed}"]), base / name)
    return base


def _copy(trained, tmp_path, name="a"):
    return shutil.copytree(trained / name, tmp_path / name)


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor's bytes: the file still parses
    path.write_bytes(bytes(data))


def test_model_json_records_the_hash_the_export_writes(trained):
    from aetk.export.exporter import weights_sha256

    meta = json.loads((trained / "a" / "model.json").read_text())
    model, _ = RunDir(trained / "a").load_model()
    assert meta["weights_sha256"] == weights_sha256(model)  # a run and its ONNX name the same weights
    assert meta["weights_sha256"] == ckpt.tensors_sha256(load_file(trained / "a" / "model.safetensors"))


def test_a_flipped_byte_in_the_weights_is_refused_by_every_loader(tmp_path, trained):
    run = _copy(trained, tmp_path)
    _flip_last_byte(run / "model.safetensors")
    load_file(run / "model.safetensors")  # safetensors itself sees nothing wrong
    with pytest.raises(IntegrityError, match=f"{run / 'model.safetensors'} does not match .*model.json"):
        RunDir(run).load_model()
    runner = CliRunner()
    for args in (["eval", str(run)], ["export", str(run), "-o", str(tmp_path / "onnx")],
                 ["compress", "digits", "-m", str(run), "-o", str(tmp_path / "codes")],
                 ["classify", str(run), "-n", "20", "--epochs", "1"]):
        result = runner.invoke(app, args)
        if args[0] == "compress":  # it still prints its own errors (exit 1), not the central handler's 3
            assert result.exit_code != 0, result.output
        else:
            assert result.exit_code == EXIT_INTEGRITY, (args, result.output)
        assert "model.safetensors does not match" in result.output, (args, result.output)
    with pytest.raises(IntegrityError, match="does not match"):  # train.init_from
        train(load_config(None, TINY + [f'train.init_from="{run}"']), tmp_path / "child")


def test_a_torn_model_pair_is_refused(tmp_path, trained):
    run = _copy(trained, tmp_path)
    shutil.copy(trained / "b" / "model.safetensors", run / "model.safetensors")  # weights of another save
    with pytest.raises(ckpt.CheckpointError, match="does not match"):
        RunDir(run).load_model()


def test_a_folder_from_before_the_hash_still_loads(tmp_path, trained):
    run = _copy(trained, tmp_path)
    meta = json.loads((run / "model.json").read_text())
    del meta["weights_sha256"]
    (run / "model.json").write_text(json.dumps(meta))
    model, _ = RunDir(run).load_model()
    assert model.kind == "deep"


def test_the_checkpoint_is_one_file_and_a_torn_older_pair_is_refused(tmp_path, trained):
    run = _copy(trained, tmp_path)
    last = RunDir(run).checkpoint_stem
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.safetensors"]  # one rename makes it whole
    tensors, info = ckpt.load_checkpoint(last)
    assert info["state"]["epoch"] == 1 and info["config"]["train"]["batch_size"] == 50

    _flip_last_byte(last.with_suffix(".safetensors"))
    config = (run / "config.toml").read_text()
    with pytest.raises(IntegrityError, match="last.safetensors does not match its own header: its weights hash to "):
        train(load_config(run / "config.toml", ["train.epochs=2"]), run, resume=True)
    assert (run / "config.toml").read_text() == config  # refused before writing anything

    # The older layout (last.safetensors + last.json, which a kill between the two renames
    # could leave from two different steps): weights of step N+1 with the state of step N.
    other, other_info = ckpt.load_checkpoint(RunDir(trained / "b").checkpoint_stem)
    ckpt.save_pair(last, tensors, info)
    ckpt.atomic_save_tensors(last.with_suffix(".safetensors"), other)
    with pytest.raises(IntegrityError, match="last.safetensors does not match .*last.json"):
        train(load_config(run / "config.toml", ["train.epochs=2"]), run, resume=True)
    ckpt.save_pair(last, tensors, info)  # a whole older pair still resumes
    result = train(load_config(run / "config.toml", ["train.epochs=2"]), run, resume=True)
    assert result.epochs == 2 and not last.with_suffix(".json").exists()  # rewritten as one file


def test_stray_temporaries_of_killed_writes_are_removed(tmp_path, trained, capsys):
    run = _copy(trained, tmp_path)
    # the names atomic_path gives (the safetensors writer's too), left by a kill -9
    strays = [run / ".model.safetensors.k2j4x_a.tmp", run / ".metrics.csv.8fh2.tmp",
              run / "checkpoints" / ".last.safetensors.q0w9e.tmp"]
    for p in strays:
        p.write_bytes(b"half a file")
    (run / ".keep").write_text("not ours")
    train(load_config(run / "config.toml", ["train.epochs=2"]), run, resume=True)
    assert not [p for p in strays if p.exists()]
    assert (run / ".keep").read_text() == "not ours"
    assert "removed 3 temporary file(s)" in capsys.readouterr().out


def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding the folder's lock, as a running `aetk train` does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(RunDir(run).lock_file)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_trainer_on_one_run_folder_is_refused(tmp_path, trained):
    run = _copy(trained, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != RunDir(run).lock_file.name}
    # Another process holds the folder's lock, as a running `aetk train` does.
    holder = _hold_lock(run)
    try:
        result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "2"])
        assert result.exit_code == EXIT_FAILED, result.output
        assert f"another `aetk train` is working in {run}" in result.output
        assert {p: p.read_bytes() for p in run.rglob("*")
                if p.is_file() and p.name != RunDir(run).lock_file.name} == before
        result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "2",
                                          "--nproc-per-node", "2"])  # refused before any worker starts
        assert result.exit_code == EXIT_FAILED and "another `aetk train`" in result.output, result.output
        with pytest.raises(ckpt.RunLockedError):  # a new run into the folder too
            train(load_config(None, TINY + ["train.epochs=1"]), run)
    finally:
        holder.kill()  # the kernel drops a dead process's lock
        holder.wait()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    # and ours is released when train() returns
    fd = os.open(RunDir(run).lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_a_resume_while_a_trainer_works_before_its_first_checkpoint_names_the_lock(tmp_path, trained):
    run = _copy(trained, tmp_path)
    RunDir(run).checkpoint_file.unlink()  # the first run has not checkpointed yet
    holder = _hold_lock(run)
    try:
        result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "2"])
        assert result.exit_code == EXIT_FAILED, result.output
        assert f"another `aetk train` is working in {run}" in result.output  # not "start it again"
    finally:
        holder.kill()
        holder.wait()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "2"])
    assert result.exit_code != 0 and "before its first checkpoint" in result.output, result.output


def test_a_running_aetk_train_keeps_a_second_out_until_it_is_killed(tmp_path):
    import signal
    import time
    from pathlib import Path

    import aetk

    run = tmp_path / "busy"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(aetk.__file__).parents[1])}
    first = subprocess.Popen([sys.executable, "-m", "aetk.cli.main", "train", *TINY, "train.epochs=100000",
                              "train.checkpoint_every=1", "--run-dir", str(run)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=env["PYTHONPATH"])  # not the source tree, which would shadow it
    try:
        deadline = time.monotonic() + 300
        while not RunDir(run).checkpoint_file.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.01)
        for args in (["--resume", "--epochs", "100000"], TINY):  # a resume, and a new run into it
            result = CliRunner().invoke(app, ["train", "--run-dir", str(run), *args])
            assert result.exit_code == EXIT_FAILED, result.output
            assert f"another `aetk train` is working in {run}" in result.output
        assert first.poll() is None  # the first one trains on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        first.stderr.close()
    result = CliRunner().invoke(app, ["train", "--run-dir", str(run), "--resume", "--epochs", "1"])
    assert result.exit_code == 0, result.output  # the dead process's lock went with it


def test_a_checkpoint_that_does_not_fit_the_model_is_one_clear_error(tmp_path, trained):
    run = _copy(trained, tmp_path)
    tensors, info = ckpt.load_checkpoint(RunDir(run).checkpoint_stem)
    info["skeleton"]["model"]["__dict__"].pop()  # one tensor fewer than the model has
    ckpt.save_checkpoint(RunDir(run).checkpoint_stem, tensors, info)
    with pytest.raises(ckpt.CheckpointError, match="does not fit this deep model"):
        train(load_config(run / "config.toml", ["train.epochs=2"]), run, resume=True)
    assert torch.equal(ckpt.load_checkpoint(RunDir(run).checkpoint_stem)[0][next(iter(tensors))],
                       tensors[next(iter(tensors))])


def test_a_new_run_whose_data_fails_to_load_leaves_no_folder(tmp_path):
    run = tmp_path / "never"
    result = CliRunner().invoke(app, ["train", "-m", "ae", "-d", str(tmp_path / "missing"), "--epochs", "1",
                                      "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    assert not run.exists()  # neither config.toml nor the lock file stay behind
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["train", "-m", "ae", "-d", str(tmp_path / "missing"), "--epochs", "1",
                                      "--run-dir", str(kept)])
    assert result.exit_code == 2 and (kept / "notes.txt").read_text() == "mine"
