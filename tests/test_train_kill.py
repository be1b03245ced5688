"""Real kills (issue 19, item 6): `aetk train` is killed with SIGKILL at seeded random moments
while it checkpoints every step, then resumed. Every trial must either resume exactly (final
weights equal to an uninterrupted run's) or refuse with a clear error; a resume that accepts
weights of one step with the state of another would end with different weights and fail.

AETK_KILL_TRIALS=30 runs more trials (the default keeps the suite fast); AETK_KILL_REPORT=1
prints the outcome of each."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import aetk
from aetk.config import load_config
from aetk.train import checkpoint as ckpt
from aetk.artifacts import RunDir, train_run as train  # noqa: F401

# 256 training examples in 16 batches of 16, 4 epochs: 64 steps, a checkpoint after each.
RUN = ['data.path="digits"', "data.limit=320", 'model.kind="deep"', "model.widths=[16, 4]",
       "model.dropout=0.1", "train.batch_size=16", "train.val_fraction=0.2", "train.epochs=4",
       "train.checkpoint_every=1", "train.progress=false", "train.tensorboard=false"]
TRIALS = int(os.environ.get("AETK_KILL_TRIALS", "3"))


def _single_thread():
    """The killed process runs with one thread (OMP_NUM_THREADS=1); so does this one while it
    trains, so that both sides compute the same floats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def _kill_at_random(run: Path, delay: float) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(aetk.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "aetk.cli.main", "train", *RUN, "--run-dir", str(run)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             cwd=env["PYTHONPATH"])  # not the source tree, which would shadow it
    try:
        deadline = time.monotonic() + 300
        while not RunDir(run).checkpoint_file.exists():  # training has started
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the training process ended early: {proc.stderr.read()!r}")
            time.sleep(0.005)
        time.sleep(delay)
        if proc.poll() is not None:
            return "finished before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        return "killed"
    finally:
        proc.wait()
        proc.stderr.close()


def test_sigkill_at_random_moments_then_resume_is_exact_or_refused(tmp_path):
    threads = _single_thread()
    try:
        straight = tmp_path / "straight"
        train(load_config(None, RUN), straight)
        want = load_file(straight / "model.safetensors")

        rng = random.Random(19)
        outcomes: dict[str, int] = {}
        for trial in range(TRIALS):
            run = tmp_path / f"trial{trial}"
            delay = rng.uniform(0.0, 1.5)
            how = _kill_at_random(run, delay)
            step = None
            strays = len(ckpt.stray_temporaries(run)) + len(ckpt.stray_temporaries(run / "checkpoints"))
            try:  # the model pair a kill left: whole, or refused (torn between its two renames)
                RunDir(run).load_model()
                pair = "model pair whole"
            except ckpt.MissingRunError:
                pair = "no model yet"
            except ckpt.CheckpointError:
                pair = "model pair torn and refused"
            try:
                step = ckpt.load_checkpoint(RunDir(run).checkpoint_stem)[1]["state"]["step"]
                train(RunDir(run).resume_config(), run, resume=True)
            except ckpt.CheckpointError as exc:  # refused: clearly, naming the file
                outcome = "refused"
                assert str(run) in str(exc)
            else:
                got = load_file(run / "model.safetensors")
                assert got.keys() == want.keys()
                mixed = [k for k in want if not torch.equal(got[k], want[k])]
                assert not mixed, f"trial {trial} ({how} {delay:.2f}s in, step {step}) resumed to other weights"
                assert not ckpt.stray_temporaries(run) and not ckpt.stray_temporaries(run / "checkpoints")
                outcome = "resumed exactly"
            key = f"{how}, {outcome}"
            outcomes[key] = outcomes.get(key, 0) + 1
            if os.environ.get("AETK_KILL_REPORT"):
                print(f"trial {trial}: {how} {delay:.2f}s after the first checkpoint (at step {step}), "
                      f"{strays} stray temporaries, {pair}, {outcome}")
        if os.environ.get("AETK_KILL_REPORT"):
            print(outcomes)
        assert sum(outcomes.values()) == TRIALS
    finally:
        torch.set_num_threads(threads)
