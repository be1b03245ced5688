"""``--engine ray``: the shards to encode as a Ray Data dataset, one row per shard, mapped
by an actor pool (``map_batches`` with a callable class). Each actor opens the data and
one ONNX Runtime session once, then reads, encodes and writes whole shards with the same
``ShardEncoder`` as the local engine, so the shards, records and manifest are the same.

    ray start --head                                    # or an existing cluster
    aetk compress DATA -m MODEL -o CODES --engine ray --ray-address auto --workers 8 \\
        --gpus-per-worker 1

Requirements on a cluster: every node sees DATA and CODES at the same paths (a shared
file system) and has aetk installed. With ``gpus_per_worker`` > 0 Ray assigns GPUs per
actor and each session runs on its own GPU (ONNX Runtime's CUDA provider).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aetk.compress.encode import Settings, ShardEncoder
from aetk.compress.errors import CompressError
from aetk.compress.manifest import Shard
from aetk.compress.options import Ray
from aetk.options import check, flag


class ShardActor:
    """A Ray Data callable class: a batch of shard rows in, their records (JSON) out."""

    def __init__(self, settings: Settings):
        options = settings.options
        # Ray sets CUDA_VISIBLE_DEVICES for an actor given GPUs: its GPU is then cuda:0.
        if options.engine.gpus_per_worker > 0:
            options = replace(options, device="cuda")
        elif options.device == "auto":
            options = replace(options, device="cpu")  # no GPU reserved: do not take one another actor holds
        self.encoder = ShardEncoder(replace(settings, options=options))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards = [Shard(int(i), int(p), int(a), int(b), str(f)) for i, p, a, b, f in
                  zip(batch["index"], batch["part"], batch["start"], batch["stop"], batch["file"])]
        records = self.encoder.run(shards)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise CompressError("the Ray engine needs Ray Data: pip install 'aetk[ray]'") from exc
    return ray


def _runtime_env() -> dict[str, Any]:
    """Workers of a local Ray instance import aetk from where this process did (a source
    tree during development); installed copies need nothing."""
    import aetk

    root = str(Path(aetk.__file__).resolve().parent.parent)
    if "site-packages" in root or "dist-packages" in root:
        return {}
    path = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return {"env_vars": {"PYTHONPATH": path}}


def init_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to `address` (a running cluster: "auto" or "ray://host:10001"), or start a
    local instance; a Ray already initialised in this process is used as it is."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    env = _runtime_env()
    if address:
        ray.init(address=address, runtime_env=env or None, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env or None, log_to_driver=False)
    return ray


def run_ray(settings: Settings, shards: list[Shard], on_items: Callable[[int], None] | None = None
            ) -> list[dict[str, Any]]:
    """Encode `shards` on Ray (``settings.options.engine``: a ``Ray``); returns their records."""
    if not shards:
        return []
    engine = settings.options.engine
    if engine.cpus_per_worker <= 0:
        raise CompressError(f"{flag(Ray, 'cpus_per_worker')} must be > 0, got {engine.cpus_per_worker}")
    check(engine, CompressError)
    ray = init_ray(engine.address)
    workers = engine.workers
    if workers is None:
        cpus = ray.cluster_resources().get("CPU", 1)
        workers = max(1, min(len(shards), int(cpus // engine.cpus_per_worker)))
    threads = settings.options.threads or max(1, int(engine.cpus_per_worker))  # one actor's share of the cores
    settings = replace(settings, options=replace(settings.options, threads=threads))
    rows = [{"index": sh.index, "part": sh.part, "start": sh.start, "stop": sh.stop, "file": sh.file}
            for sh in shards]
    # aetk reports progress itself (per shard, below): Ray Data's own bars and logs would
    # interleave with it.
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(
        ShardActor, batch_size=1, fn_constructor_kwargs={"settings": settings},
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=engine.cpus_per_worker,
        num_gpus=engine.gpus_per_worker or None, runtime_env=_runtime_env() or None)
    records = []
    for row in ds.iter_rows():
        rec = json.loads(row["record"])
        records.append(rec)
        if on_items:
            on_items(rec["stop"] - rec["start"])
    return records


__all__ = ["ShardActor", "init_ray", "run_ray"]
