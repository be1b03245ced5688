"""The generic training loop. It knows nothing about a particular model: it asks the
model for ``out = model(x, step=step)`` and minimises ``out["loss"]``; every other scalar
in ``out`` is logged as a loss term.

What a run folder gets (see checkpoint.py): the resolved config, checkpoints of the full
training state (model, optimizer, scheduler, RNG states, step) for ``resume``, the model,
a metrics CSV and TensorBoard logs.

Exact resume: batch order comes from (seed, epoch), stochastic ops draw from
(seed, step), and the RNG states are restored, so on CPU an interrupted and resumed run
ends with weights identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from aetk.config import RunConfig, TrainConfig, check_resume
from aetk.errors import AetkError
from aetk.data import LoadedData, load_data
from aetk.models.registry import create_model
from aetk.train import distributed
from aetk.train.augment import random_flips
from aetk.train.checkpoint import (
    LAST,
    LOCK_FILE,
    CheckpointError,
    RunLock,
    atomic_write_text,
    checkpoint_exists,
    flatten_state,
    init_weights,
    load_checkpoint,
    remove_stray_temporaries,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from aetk.options import flag
from aetk.train.options import TrainOptions


class TrainingError(AetkError, RuntimeError):
    """Training cannot go on (diverged loss, data the model cannot take, bad resume)."""


class TrainingInterrupted(AetkError, RuntimeError):
    """Raised by ``stop_at_step`` after the checkpoint at that step is written (tests)."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float | None = None


# --------------------------------------------------------------------------------------
# pieces
# --------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"train.device={name!r} but no CUDA GPU is available; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise TrainingError(f"train.device must be auto, cpu or cuda[:N], got {name!r}")
    return dev


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer must be adam or adamw, got {cfg.optimizer!r}")


def make_scheduler(cfg: TrainConfig, opt, steps_per_epoch: int):
    """A per-step LambdaLR: linear warm-up, then constant, cosine or step decay."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule not in ("constant", "cosine", "step"):
        raise ValueError(f"train.schedule must be constant, cosine or step, got {cfg.schedule!r}")

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if cfg.schedule == "step":
            return cfg.gamma ** (step // max(1, cfg.step_size * steps_per_epoch))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def split_train_val(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    n = len(ds)
    n_val = int(round(n * fraction)) if fraction > 0 else 0
    if n_val == 0 or n_val >= n:
        return ds, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(ds, sorted(perm[n_val:])), Subset(ds, sorted(perm[:n_val]))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist_info) -> list[list[int]]:
    """This process's batches of one epoch: a permutation fixed by (seed, epoch), cut into
    global batches, each split between the processes (data parallel)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    world, rank = dist_info.world_size, dist_info.rank
    batches = []
    for i in range(0, n - (n % (batch_size * world) if world > 1 else 0), batch_size * world):
        chunk = perm[i:i + batch_size * world]
        mine = chunk[rank::world]
        if mine:
            batches.append(mine)
    return batches


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(_np_state_to_json(np.random.get_state())),
        "python": json.dumps(_py_state_to_json(random.getstate())),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_np_state_from_json(json.loads(state["numpy"])))
    random.setstate(_py_state_from_json(json.loads(state["python"])))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _np_state_to_json(s):
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def _np_state_from_json(s):
    return (s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4])


def _py_state_to_json(s):
    return [s[0], list(s[1]), s[2]]


def _py_state_from_json(s):
    return (s[0], tuple(s[1]), s[2])


def check_data_range(model, data: LoadedData) -> None:
    """A sigmoid/Bernoulli decoder models data in [0, 1]: refuse anything else, loudly."""
    if not model.needs_unit_range:
        return
    lo_hi = data.value_range
    if lo_hi is None or lo_hi[0] < 0 or lo_hi[1] > 1:
        raise TrainingError(
            f"model {model.kind!r} uses a Bernoulli/sigmoid output, which needs data in [0, 1], "
            f"but the data's normalized range is {lo_hi if lo_hi else 'unbounded (standardized)'}; "
            "set data.normalize=\"unit\" for data in [0, max], or use loss=\"mse\" / "
            "likelihood=\"gaussian\""
        )


class MetricsLog:
    """Per-epoch metrics kept in memory and rewritten whole (atomically) each epoch, so a
    resumed run's CSV matches its checkpoint."""

    def __init__(self, path: Path, history: list[dict[str, float]]):
        self.path = path
        self.history = history

    def append(self, row: dict[str, float]) -> None:
        self.history.append(row)
        # The new row's order first: rows restored from a checkpoint's JSON come back with
        # sorted keys, and the columns should not reorder after a resume.
        keys: list[str] = list(row)
        for r in self.history:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        atomic_write_text(self.path, buf.getvalue())


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
          stop_at_step: int | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir``; ``resume`` continues from checkpoints/last (``cfg`` may
    then differ from the run's own config only in RESUME_SAFE keys, see aetk.config).

    The config is checked first (a ConfigError names the key), and one process at a time
    trains in a run folder (a lock; a second is refused)."""
    cfg.check()  # before any work, whether it came from load_config or was built in Python
    tc = cfg.train
    run_dir = Path(run_dir)
    device = pick_device(tc.device)
    dist_info = distributed.setup(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    created = not run_dir.exists()
    try:
        if dist_info.is_main and resume and not checkpoint_exists(run_dir):
            if distributed.locks_run_folder(dist_info) and (run_dir / LOCK_FILE).is_file():
                with RunLock(run_dir):  # a trainer at work before its first checkpoint: say that
                    pass
            raise TrainingError(f"cannot resume: {run_dir / (LAST + '.safetensors')} does not exist (the run "
                                f"stopped before its first checkpoint: start it again without {flag(TrainOptions, 'resume')})")
        with RunLock(run_dir) if distributed.locks_run_folder(dist_info) else contextlib.nullcontext():
            result = _train(cfg, tc, run_dir, device, dist_info, resume, stop_at_step)
        distributed.finish_together(dist_info)
        return result
    except BaseException:
        if created and dist_info.is_main:
            _remove_unstarted_run(run_dir)
        raise
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # process-wide: put it back
        distributed.teardown(dist_info)


def _train(cfg, tc, run_dir, device, dist_info, resume, stop_at_step) -> TrainResult:
    main = dist_info.is_main
    if main:
        _prepare_run_dir(run_dir, cfg, resume)
    seed_everything(tc.seed, tc.deterministic)

    data = load_data(cfg.data)
    if main and data.skipped:
        shown = "; ".join(f"{f}: {why}" for f, why in data.skipped[:5])
        more = f" (and {len(data.skipped) - 5} more)" if len(data.skipped) > 5 else ""
        print(f"skipped {len(data.skipped)} unreadable item(s): {shown}{more}")
    train_set, val_set = split_train_val(data.train, tc.val_fraction, tc.seed)
    if len(train_set) == 0:
        raise TrainingError(f"no training examples in {cfg.data.path}")
    model = create_model(cfg.model.kind, data.input_shape, **cfg.model.params)
    # Each process draws its own noise (rank 0 draws what a single process would).
    model.seed = tc.seed + 1_000_003 * dist_info.rank
    check_data_range(model, data)
    if tc.flips and len(data.input_shape) not in (2, 3):
        raise TrainingError(f"train.flips=true turns images; {cfg.data.path} holds examples of shape "
                            f"{tuple(data.input_shape)}, not (H, W) or (C, H, W)")
    model.to(device)

    steps_per_epoch = len(epoch_batches(len(train_set), tc.batch_size, tc.seed, 0, dist_info))
    history: list[dict[str, float]] = []
    state = {"epoch": 0, "step": 0, "batch": 0, "best_val": None, "bad_epochs": 0, "phase": "train"}

    if resume:
        state, history = _resume(run_dir, model, device)
    elif tc.init_from:
        copied, new = init_weights(model, tc.init_from)
        if main:
            print(f"init_from {tc.init_from}: {len(copied)} tensor(s) copied, {len(new)} new")

    if tc.pretrain_epochs > 0 and hasattr(model, "pretraining_stages") and state["phase"] == "train" \
            and not resume:
        _pretrain(model, train_set, tc, device, dist_info, main)

    ddp_model: nn.Module = model
    if dist_info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(tc, model.parameters())
    sched = make_scheduler(tc, opt, steps_per_epoch)
    if resume:
        _resume_optimizer(run_dir, opt, sched)

    writer = _tensorboard(run_dir, tc) if main else None
    metrics = MetricsLog(run_dir / "metrics.csv", history)
    use_amp = tc.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def save_last() -> None:
        _save_training_state(run_dir, model, opt, sched, state, history, cfg)

    start_epoch = state["epoch"]
    for epoch in range(start_epoch, tc.epochs):
        state["epoch"] = epoch
        batches = epoch_batches(len(train_set), tc.batch_size, tc.seed, epoch, dist_info)
        first = state["batch"] if epoch == start_epoch else 0
        # Own generator: a DataLoader otherwise draws its base seed from the global RNG,
        # which would shift dropout masks after a resume.
        loader = DataLoader(train_set, batch_sampler=batches[first:], num_workers=tc.num_workers,
                            generator=torch.Generator().manual_seed(tc.seed + epoch))
        model.train()
        # Running sums of the epoch's terms; restored on a mid-epoch resume.
        sums: dict[str, float] = dict(state.get("epoch_sums", {})) if first else {}
        count = int(state.get("epoch_count", 0)) if first else 0
        seen_before, t0 = count, time.perf_counter()
        progress = _progress(main and tc.progress, f"epoch {epoch + 1}/{tc.epochs}", len(batches), first)
        with progress as bar:
            task = bar.tasks[0].id if bar is not None and bar.tasks else None
            for b, (x, _labels) in enumerate(loader, start=first):
                x = x.to(device, non_blocking=True)
                if tc.flips:
                    x = random_flips(x, model.seed, state["step"])
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out = ddp_model(x, step=state["step"])
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at step {state['step']} (epoch {epoch + 1}); "
                        f"stopped. The last good checkpoint is in {run_dir / 'checkpoints'}; "
                        "try a lower train.lr or train.grad_clip"
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tc.grad_clip > 0:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                state["step"] += 1
                state["batch"] = b + 1
                n = x.shape[0]
                count += n
                for k, v in out.items():
                    if v.dim() == 0 and k not in ("x_hat", "z"):
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
                if writer is not None and state["step"] % tc.log_every == 0:
                    writer.add_scalar("train/loss", float(loss.detach()), state["step"])
                    writer.add_scalar("train/lr", sched.get_last_lr()[0], state["step"])
                state["epoch_sums"], state["epoch_count"] = sums, count
                if bar is not None:
                    rate = (count - seen_before) * dist_info.world_size / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=1, loss=sums["loss"] / count, rate=rate)
                if tc.checkpoint_every and state["step"] % tc.checkpoint_every == 0 and main:
                    save_last()
                if stop_at_step is not None and state["step"] >= stop_at_step:
                    if main and not (tc.checkpoint_every and state["step"] % tc.checkpoint_every == 0):
                        save_last()
                    raise TrainingInterrupted(f"stopped at step {state['step']} as asked")

        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "step": state["step"], "lr": sched.get_last_lr()[0],
               "samples_per_s": (count - seen_before) * dist_info.world_size / max(elapsed, 1e-9)}
        row.update({f"train_{k}": v / max(count, 1) for k, v in sums.items()})
        if val_set is not None:
            row.update({f"val_{k}": v for k, v in evaluate_loss(model, val_set, tc, device).items()})
        state["batch"] = 0
        state["epoch"] = epoch + 1
        state["epoch_sums"], state["epoch_count"] = {}, 0
        improved = _track_best(state, row, tc)
        if main:
            metrics.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k not in ("epoch", "step"):
                        writer.add_scalar(f"epoch/{k}", v, epoch + 1)
            if improved or not tc.early_stopping:
                save_model(run_dir, model, _model_info(data, state, row))
            save_last()
        if tc.early_stopping and state["bad_epochs"] >= tc.early_stopping:
            if main and tc.progress:
                print(f"early stopping: no validation improvement for {tc.early_stopping} epochs")
            break
    if writer is not None:
        writer.close()
    return TrainResult(run_dir, state["epoch"], state["step"], metrics.history, state["best_val"])


@torch.no_grad()
def evaluate_loss(model, dataset: Dataset, tc: TrainConfig, device) -> dict[str, float]:
    """Mean of every scalar term over a dataset, model in eval mode (no corruption)."""
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for x, _ in DataLoader(dataset, batch_size=max(tc.batch_size, 256),
                           generator=torch.Generator()):
        out = model(x.to(device))
        for k, v in out.items():
            if v.dim() == 0:
                sums[k] = sums.get(k, 0.0) + float(v) * x.shape[0]
        n += x.shape[0]
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def _track_best(state, row, tc) -> bool:
    val = row.get("val_loss", row.get("train_loss"))
    if val is None:
        return True
    if state["best_val"] is None or val < state["best_val"]:
        state["best_val"] = val
        state["bad_epochs"] = 0
        return True
    state["bad_epochs"] += 1
    return False


def _model_info(data: LoadedData, state, row) -> dict[str, Any]:
    return {"normalization": data.normalization.to_dict(), "epoch": state["epoch"],
            "step": state["step"], "metrics": row, "data_source": data.source,
            "num_classes": data.num_classes}


def _remove_unstarted_run(run_dir: Path) -> None:
    """A new run that failed before it trained (bad data, say) leaves no folder behind: only
    when the folder holds nothing but what train() itself wrote first (its config and lock)."""
    try:
        entries = list(run_dir.iterdir())
        if all(p.name in ("config.toml", LOCK_FILE) and p.is_file() for p in entries):
            for p in entries:
                p.unlink()
            run_dir.rmdir()
    except OSError:
        pass  # best effort: the error being raised is what the user needs to see


def _prepare_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    """Under the run's lock: clear what killed writes left, check a resume, write config.toml."""
    removed = remove_stray_temporaries(run_dir)
    if removed:
        print(f"removed {len(removed)} temporary file(s) an interrupted write left in {run_dir}")
    if resume:
        if not checkpoint_exists(run_dir):  # gone since train() looked, before the lock
            raise TrainingError(f"cannot resume: {run_dir / (LAST + '.safetensors')} does not exist")
        # Read whole (its hash checked) before anything is written; then the config it was
        # written with (older checkpoints: the run's config.toml).
        info = _load_last(run_dir)[1]
        saved = info.get("config")
        done = int((info.get("state") or {}).get("epoch") or 0)
        if cfg.train.epochs < done:  # config.toml would then say fewer epochs than the model has had
            from aetk.settings import ConfigError

            raise ConfigError(f"train.epochs={cfg.train.epochs} is fewer than the {done} epoch(s) {run_dir} has "
                              f"trained already; pass --epochs {done} or more to continue it")
        if saved is None and (run_dir / "config.toml").is_file():
            from aetk.config import load_config

            saved = load_config(run_dir / "config.toml").to_dict()
        if saved is not None:
            check_resume(saved, cfg.to_dict(), run_dir)
    elif checkpoint_exists(run_dir):
        raise TrainingError(
            f"{run_dir} already holds a training run; pass {flag(TrainOptions, 'resume')} to continue it or choose "
            "another --run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", cfg.to_toml())  # on resume: with the safe changes
    except OSError as exc:
        raise TrainingError(f"cannot write the run folder {run_dir}: {exc}") from exc


def _save_training_state(run_dir, model, opt, sched, state, history, cfg: RunConfig) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {
        "model": flatten_state("model", model.state_dict(), tensors),
        "optimizer": flatten_state("optimizer", opt.state_dict(), tensors),
        "scheduler": flatten_state("scheduler", {k: v for k, v in sched.state_dict().items()
                                                  if k != "lr_lambdas"}, tensors),
        "rng": flatten_state("rng", rng_state(), tensors),
    }
    info = {"state": state, "history": history, "skeleton": skeleton, "config": cfg.to_dict()}
    save_checkpoint(run_dir / LAST, tensors, info)


def _load_last(run_dir: Path):
    tensors, info = load_checkpoint(run_dir / LAST)
    return tensors, info


def _resume(run_dir: Path, model, device):
    tensors, info = _load_last(run_dir)
    sk = info["skeleton"]
    try:
        model.load_state_dict(unflatten_state(sk["model"], tensors))
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint {run_dir / (LAST + '.safetensors')} does not fit this "
                              f"{model.kind} model (was the run's config edited?): "
                              f"{str(exc).splitlines()[0]}") from exc
    set_rng_state(unflatten_state(sk["rng"], tensors))
    return dict(info["state"]), list(info["history"])


def _resume_optimizer(run_dir: Path, opt, sched) -> None:
    tensors, info = _load_last(run_dir)
    sk = info["skeleton"]
    opt.load_state_dict(unflatten_state(sk["optimizer"], tensors))
    sched_state = unflatten_state(sk["scheduler"], tensors)
    sched_state["lr_lambdas"] = [None] * len(opt.param_groups)
    sched.load_state_dict(sched_state)


# Pretraining draws its batch order and flips from seeds of its own, not the main loop's.
PRETRAIN_SEED_OFFSET = 7919


def _pretrain(model, train_set, tc: TrainConfig, device, dist_info, main) -> None:
    """Greedy layer-wise pretraining: each stage trains one layer on the codes of the
    layers below it (frozen), then the whole model fine-tunes in the main loop."""
    step = 0
    for name, stage, input_fn in model.pretraining_stages():
        opt = make_optimizer(tc, [p for p in stage.parameters() if p.requires_grad])
        for epoch in range(tc.pretrain_epochs):
            batches = epoch_batches(len(train_set), tc.batch_size, tc.seed + PRETRAIN_SEED_OFFSET, epoch, dist_info)
            loader = DataLoader(train_set, batch_sampler=batches, num_workers=tc.num_workers,
                                generator=torch.Generator().manual_seed(tc.seed + epoch))
            total, n = 0.0, 0
            for x, _ in loader:
                x = x.to(device)
                if tc.flips:
                    x = random_flips(x, model.seed + PRETRAIN_SEED_OFFSET, step)
                with torch.no_grad():
                    inp = input_fn(x)
                out = stage(inp, step=step)
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                opt.step()
                step += 1
                total += float(out["loss"].detach()) * x.shape[0]
                n += x.shape[0]
            if main and tc.progress:
                print(f"pretraining {name}: epoch {epoch + 1}/{tc.pretrain_epochs} "
                      f"loss {total / max(n, 1):.4f}")


def _tensorboard(run_dir: Path, tc: TrainConfig):
    if not tc.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"))


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, title: str, total: int, done: int):
    """A rich progress bar with loss and samples/s, or nothing."""
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} samples/s"),
        TimeRemainingColumn(), transient=False,
    )
    bar.add_task(title, total=total, completed=done, loss=float("nan"), rate=0.0)
    return bar
