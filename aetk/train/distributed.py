"""Multi-process data parallel training through PyTorch's own launcher.

`aetk train --nproc-per-node N` re-runs the same training job under
``python -m torch.distributed.run --nproc-per-node N -m aetk.artifacts.train_worker ...``; each
process calls :func:`aetk.train.trainer.train`, which sees WORLD_SIZE/RANK in its
environment and joins the group (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aetk.checks import positive_int
from aetk.options import flag
from aetk.train.options import TrainOptions


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torch.distributed.run, else a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def finish_together(info: DistInfo) -> None:
    """Wait for every process before leaving the group. Without it a process that finishes
    first can tear down gloo while another still talks to it, and that one aborts
    ("terminate called without an active exception"). Only on success: after an error
    the other processes may never arrive."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


# Set for the workers when the launching process holds the run folder's lock for them.
LOCK_HELD_ENV = "AETK_TRAIN_LOCK_HELD_BY_LAUNCHER"


def launch(nproc_per_node: int, worker_args: list[str], *, run_locked: bool = False) -> int:
    """Run ``aetk.artifacts.train_worker`` in N processes on this machine; returns the exit code.
    ``run_locked``: the caller holds the run folder's lock (RunDir.lock) for them."""
    positive_int(flag(TrainOptions, "nproc_per_node"), nproc_per_node)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc_per_node}", "-m", "aetk.artifacts.train_worker", *worker_args]
    env = {**os.environ, LOCK_HELD_ENV: "1"} if run_locked else None
    return subprocess.call(cmd, env=env)


def locks_run_folder(info: DistInfo) -> bool:
    """Whether this process takes the run folder's lock: the main one, unless its launcher holds it."""
    return info.is_main and os.environ.get(LOCK_HELD_ENV) != "1"
