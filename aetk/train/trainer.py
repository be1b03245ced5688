"""The generic training loop. It knows nothing about a particular model: it runs what the
model declares. Each batch, ``out = model(x, step=step)`` once, then every step of
``model.training_steps()`` in order (one optimizer minimising ``out["loss"]`` by default; an
adversarial kind declares two); every scalar in ``out`` is logged as a loss term. Stages of
``model.pretraining_stages()`` (greedy layer-wise, for ``stacked``) are trained the same
way first, each alone.

What a run folder gets: the resolved config, checkpoints of the full training state (model,
optimizer, scheduler, RNG states, step) for ``resume``, the model, a metrics CSV and
TensorBoard logs. The trainer writes them through the run folder object it is handed (a
:class:`RunFolder`, i.e. ``aetk.artifacts.RunDir``), so it knows no file name itself.

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
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from aetk.config import RunConfig, TrainConfig, check_resume
from aetk.errors import AetkError
from aetk.data import LoadedData, load_data
from aetk.models.registry import create_model
from aetk.seeds import PRETRAIN_OFFSET, epoch_seed, rank_seed
from aetk.train import distributed
from aetk.train.augment import random_flips
from aetk.atomic import atomic_write_text
from aetk.options import flag
from aetk.train.checkpoint import CheckpointError, RunLock, flatten_state, init_weights, unflatten_state
from aetk.train.options import TrainOptions


class RunFolder(Protocol):
    """What the trainer needs of a run folder; ``aetk.artifacts.RunDir`` is the one there is."""

    path: Path
    config_file: Path
    checkpoint_file: Path
    checkpoints_dir: Path
    lock_file: Path
    metrics_file: Path
    tensorboard_dir: Path

    def has_checkpoint(self) -> bool: ...
    def lock(self) -> RunLock: ...
    def remove_temporaries(self) -> list[Path]: ...
    def remove_if_unstarted(self) -> None: ...
    def write_config(self, cfg: RunConfig) -> None: ...
    def save_checkpoint(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None: ...
    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...
    def save_model(self, model: nn.Module, info: dict[str, Any]) -> None: ...
    def weights_stem(self, source: str | Path) -> Path: ...


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
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
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


def train(cfg: RunConfig, run: RunFolder, *, resume: bool = False,
          stop_at_step: int | None = None) -> TrainResult:
    """Train ``cfg`` into the run folder ``run`` (``aetk.artifacts.RunDir``; from a path:
    ``aetk.artifacts.train_run``); ``resume`` continues from its last checkpoint (``cfg`` may
    then differ from the run's own config only in RESUME_SAFE keys, see aetk.config).

    The config is checked first (a ConfigError names the key), and one process at a time
    trains in a run folder (a lock; a second is refused)."""
    cfg.check()  # before any work, whether it came from load_config or was built in Python
    if isinstance(run, (str, Path)):  # RunDir is path-like too, but not a str or Path
        raise TypeError(f"train() writes through a run folder object, not the path {run!r}: pass "
                        f"aetk.artifacts.RunDir(path), or call aetk.artifacts.train_run(cfg, path)")
    tc = cfg.train
    run_dir = run.path
    device = pick_device(tc.device)
    dist_info = distributed.setup(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    created = not run_dir.exists()
    try:
        if dist_info.is_main and resume and not run.has_checkpoint():
            if distributed.locks_run_folder(dist_info) and run.lock_file.is_file():
                with run.lock():  # a trainer at work before its first checkpoint: say that
                    pass
            raise TrainingError(f"cannot resume: {run.checkpoint_file} does not exist (the run stopped before "
                                f"its first checkpoint: start it again without {flag(TrainOptions, 'resume')})")
        with run.lock() if distributed.locks_run_folder(dist_info) else contextlib.nullcontext():
            result = _train(cfg, run, device, dist_info, resume, stop_at_step)
        distributed.finish_together(dist_info)
        return result
    except BaseException:
        if created and dist_info.is_main:
            run.remove_if_unstarted()
        raise
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # process-wide: put it back
        distributed.teardown(dist_info)


@dataclass
class _Amp:
    """Mixed precision: on CUDA only when train.amp asks; bfloat16 where the GPU has it
    (no loss scaling then), else float16 with a gradient scaler."""

    enabled: bool
    dtype: torch.dtype
    scaler: torch.amp.GradScaler


@dataclass
class _Training:
    """One training run's working set, built by :func:`_setup` and carried through the epoch
    loop. ``state`` is what the checkpoint saves of the loop (epoch, step, batch, best
    validation loss, the epoch's running sums); ``metrics.history`` is the per-epoch rows."""

    cfg: RunConfig
    run: RunFolder
    device: torch.device
    dist_info: Any
    stop_at_step: int | None
    data: LoadedData
    train_set: Dataset
    val_set: Dataset | None
    model: nn.Module
    ddp_model: nn.Module  # the model, wrapped for data parallel when distributed
    steps: list  # the model's declared training steps, each with its optimizer and scheduler
    opts: list[torch.optim.Optimizer]
    scheds: list
    state: dict[str, Any]
    metrics: MetricsLog
    writer: Any  # a TensorBoard SummaryWriter, or None
    amp: _Amp

    @property
    def tc(self) -> TrainConfig:
        return self.cfg.train

    @property
    def main(self) -> bool:
        return self.dist_info.is_main

    @property
    def sched(self):
        return self.scheds[0]  # the learning rate logged

    def save_last(self) -> None:
        _save_training_state(self.run, self.model, (self.steps, self.opts, self.scheds), self.state,
                             self.metrics.history, self.cfg)


@dataclass
class _EpochTotals:
    """Running sums of one epoch's loss terms (restored on a mid-epoch resume)."""

    sums: dict[str, float]
    count: int
    seen_before: int  # examples counted before this process started the epoch (resume)
    t0: float

    def rate(self, world_size: int) -> float:
        return (self.count - self.seen_before) * world_size / max(time.perf_counter() - self.t0, 1e-9)


def _train(cfg: RunConfig, run: RunFolder, device, dist_info, resume: bool, stop_at_step) -> TrainResult:
    t = _setup(cfg, run, device, dist_info, resume, stop_at_step)
    _run_epochs(t)
    if t.writer is not None:
        t.writer.close()
    return TrainResult(run.path, t.state["epoch"], t.state["step"], t.metrics.history, t.state["best_val"])


def _setup(cfg: RunConfig, run: RunFolder, device, dist_info, resume: bool, stop_at_step) -> _Training:
    """Everything before the first epoch, in the order exact resume depends on: seed, data,
    model (its initial weights drawn), the checkpoint's weights and RNG states (or init_from),
    pretraining, then one optimizer and scheduler per declared training step."""
    tc, main = cfg.train, dist_info.is_main
    if main:
        _prepare_run_dir(run, cfg, resume)
    seed_everything(tc.seed, tc.deterministic)
    data, train_set, val_set = _load_training_data(cfg, main)
    model = _build_model(cfg, data, device, dist_info)
    steps_per_epoch = len(epoch_batches(len(train_set), tc.batch_size, tc.seed, 0, dist_info))
    state, history = _start_state(run, model, tc, device, resume, main)
    if tc.pretrain_epochs > 0 and model.traits.pretraining and state["phase"] == "train" and not resume:
        _pretrain(model, train_set, tc, device, dist_info, main)
    ddp_model: nn.Module = model
    if dist_info.enabled:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    steps, opts, scheds = _build_optimization(model, tc, steps_per_epoch)
    if resume:
        _resume_optimizer(run, steps, opts, scheds)
    writer = _tensorboard(run.tensorboard_dir, tc) if main else None
    return _Training(cfg, run, device, dist_info, stop_at_step, data, train_set, val_set, model, ddp_model,
                     steps, opts, scheds, state, MetricsLog(run.metrics_file, history), writer,
                     _amp_settings(tc, device))


def _load_training_data(cfg: RunConfig, main: bool) -> tuple[LoadedData, Dataset, Dataset | None]:
    """The data, its skipped items reported, split into training and validation sets."""
    tc = cfg.train
    data = load_data(cfg.data)
    if main and data.skipped:
        shown = "; ".join(f"{f}: {why}" for f, why in data.skipped[:5])
        more = f" (and {len(data.skipped) - 5} more)" if len(data.skipped) > 5 else ""
        print(f"skipped {len(data.skipped)} unreadable item(s): {shown}{more}")
    train_set, val_set = split_train_val(data.train, tc.val_fraction, tc.seed)
    if len(train_set) == 0:
        raise TrainingError(f"no training examples in {cfg.data.path}")
    return data, train_set, val_set


def _build_model(cfg: RunConfig, data: LoadedData, device, dist_info) -> nn.Module:
    """The configured model for the data's shape, checked against the data, on ``device``."""
    tc = cfg.train
    model = create_model(cfg.model.kind, data.input_shape, **cfg.model.params)
    # Each process draws its own noise (rank 0 draws what a single process would).
    model.seed = rank_seed(tc.seed, dist_info.rank)
    check_data_range(model, data)
    if tc.flips and len(data.input_shape) not in (2, 3):
        raise TrainingError(f"train.flips=true turns images; {cfg.data.path} holds examples of shape "
                            f"{tuple(data.input_shape)}, not (H, W) or (C, H, W)")
    model.to(device)
    return model


def _start_state(run: RunFolder, model, tc: TrainConfig, device, resume: bool, main: bool
                 ) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The loop's state and metrics history: fresh, or the checkpoint's (its weights and RNG
    states restored into ``model`` and the process); a fresh run may start from init_from."""
    history: list[dict[str, float]] = []
    state = {"epoch": 0, "step": 0, "batch": 0, "best_val": None, "bad_epochs": 0, "phase": "train"}
    if resume:
        state, history = _resume(run, model, device)
    elif tc.init_from:
        copied, new = init_weights(model, run.weights_stem(tc.init_from), tc.init_from)
        if main:
            print(f"init_from {tc.init_from}: {len(copied)} tensor(s) copied, {len(new)} new")
    return state, history


def _build_optimization(model, tc: TrainConfig, steps_per_epoch: int) -> tuple[list, list, list]:
    """The model's declared training steps, each with its own optimizer and scheduler."""
    steps = model.training_steps()
    opts = [make_optimizer(tc, step.parameters()) for step in steps]
    scheds = [make_scheduler(tc, opt, steps_per_epoch) for opt in opts]
    return steps, opts, scheds


def _amp_settings(tc: TrainConfig, device) -> _Amp:
    use_amp = tc.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return _Amp(use_amp, amp_dtype, torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16))


def _run_epochs(t: _Training) -> None:
    """The remaining epochs, from the checkpoint's batch on a resume, until the last or early
    stopping."""
    start_epoch = t.state["epoch"]
    for epoch in range(start_epoch, t.tc.epochs):
        t.state["epoch"] = epoch
        first = t.state["batch"] if epoch == start_epoch else 0
        totals, elapsed = _train_epoch(t, epoch, first)
        if _end_epoch(t, epoch, totals, elapsed):
            break


def _train_epoch(t: _Training, epoch: int, first: int) -> tuple[_EpochTotals, float]:
    """One epoch's batches from batch ``first`` on; returns the epoch's totals and seconds."""
    tc, state = t.tc, t.state
    batches = epoch_batches(len(t.train_set), tc.batch_size, tc.seed, epoch, t.dist_info)
    # Own generator: a DataLoader otherwise draws its base seed from the global RNG,
    # which would shift dropout masks after a resume.
    loader = DataLoader(t.train_set, batch_sampler=batches[first:], num_workers=tc.num_workers,
                        generator=torch.Generator().manual_seed(tc.seed + epoch))
    t.model.train()
    # Running sums of the epoch's terms; restored on a mid-epoch resume.
    sums: dict[str, float] = dict(state.get("epoch_sums", {})) if first else {}
    count = int(state.get("epoch_count", 0)) if first else 0
    totals = _EpochTotals(sums, count, count, time.perf_counter())
    progress = _progress(t.main and tc.progress, f"epoch {epoch + 1}/{tc.epochs}", len(batches), first)
    with progress as bar:
        task = bar.tasks[0].id if bar is not None and bar.tasks else None
        for b, (x, _labels) in enumerate(loader, start=first):
            _train_batch(t, x, b, epoch, totals)
            if bar is not None:
                bar.update(task, advance=1, loss=totals.sums["loss"] / totals.count,
                           rate=totals.rate(t.dist_info.world_size))
            _checkpoint_or_stop(t)
    return totals, time.perf_counter() - totals.t0


def _train_batch(t: _Training, x: torch.Tensor, b: int, epoch: int, totals: _EpochTotals) -> None:
    """One batch: one forward, then every declared training step on its loss term."""
    tc, state, device = t.tc, t.state, t.device
    x = x.to(device, non_blocking=True)
    if tc.flips:
        x = random_flips(x, t.model.seed, state["step"])
    with torch.autocast(device.type, dtype=t.amp.dtype, enabled=t.amp.enabled):
        out = t.ddp_model(x, step=state["step"])
    loss = out["loss"]
    for st in t.steps:
        if not torch.isfinite(out[st.loss]):
            what = "loss" if st.loss == "loss" else f"{st.loss!r} loss"
            raise TrainingError(
                f"the {what} became {out[st.loss].item()} at step {state['step']} (epoch "
                f"{epoch + 1}); stopped. The last good checkpoint is in {t.run.checkpoints_dir}; "
                "try a lower train.lr or train.grad_clip"
            )
    run_steps(out, t.steps, t.opts, t.amp.scaler, tc.grad_clip)
    for s in t.scheds:
        s.step()
    state["step"] += 1
    state["batch"] = b + 1
    n = x.shape[0]
    totals.count += n
    for k, v in out.items():
        if v.dim() == 0 and k not in ("x_hat", "z"):
            totals.sums[k] = totals.sums.get(k, 0.0) + float(v.detach()) * n
    if t.writer is not None and state["step"] % tc.log_every == 0:
        t.writer.add_scalar("train/loss", float(loss.detach()), state["step"])
        t.writer.add_scalar("train/lr", t.sched.get_last_lr()[0], state["step"])
    state["epoch_sums"], state["epoch_count"] = totals.sums, totals.count


def _checkpoint_or_stop(t: _Training) -> None:
    """After a batch: the checkpoint every train.checkpoint_every steps; at ``stop_at_step``
    (tests), a checkpoint if that step has none yet, then TrainingInterrupted."""
    tc, step = t.tc, t.state["step"]
    due = bool(tc.checkpoint_every) and step % tc.checkpoint_every == 0
    if due and t.main:
        t.save_last()
    if t.stop_at_step is not None and step >= t.stop_at_step:
        if t.main and not due:
            t.save_last()
        raise TrainingInterrupted(f"stopped at step {step} as asked")


def _end_epoch(t: _Training, epoch: int, totals: _EpochTotals, elapsed: float) -> bool:
    """The epoch's metrics row (validation loss too, with a validation set), the model when it
    improved (or always, without early stopping) and the checkpoint; True to stop early."""
    tc, state, main = t.tc, t.state, t.main
    row = {"epoch": epoch + 1, "step": state["step"], "lr": t.sched.get_last_lr()[0],
           "samples_per_s": (totals.count - totals.seen_before) * t.dist_info.world_size / max(elapsed, 1e-9)}
    row.update({f"train_{k}": v / max(totals.count, 1) for k, v in totals.sums.items()})
    if t.val_set is not None:
        row.update({f"val_{k}": v for k, v in evaluate_loss(t.model, t.val_set, tc, t.device).items()})
    state["batch"] = 0
    state["epoch"] = epoch + 1
    state["epoch_sums"], state["epoch_count"] = {}, 0
    improved = _track_best(state, row, tc)
    if main:
        t.metrics.append(row)
        if t.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    t.writer.add_scalar(f"epoch/{k}", v, epoch + 1)
        if improved or not tc.early_stopping:
            t.run.save_model(t.model, _model_info(t.data, state, row))
        t.save_last()
    if tc.early_stopping and state["bad_epochs"] >= tc.early_stopping:
        if main and tc.progress:
            print(f"early stopping: no validation improvement for {tc.early_stopping} epochs")
        return True
    return False


def run_steps(out: dict[str, torch.Tensor], steps, opts, scaler, grad_clip: float) -> None:
    """The model's declared training steps on one forward's ``out``, in order: each zeroes its
    optimizer's gradients, back-propagates its own loss term and steps, so its parameters move
    by that loss alone. A later step's backward must not need parameters an earlier step has
    just changed in place: its loss reads them through detached tensors (as a GAN's
    discriminator loss reads the generator's output), or the steps are ordered so."""
    for i, (st, opt) in enumerate(zip(steps, opts)):
        opt.zero_grad(set_to_none=True)
        scaler.scale(out[st.loss]).backward(retain_graph=i + 1 < len(steps))
        if grad_clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(st.parameters(), grad_clip)
        scaler.step(opt)
    scaler.update()


def _optimizer_key(part: str, i: int, step) -> str:
    """Checkpoint key of step i's optimizer or scheduler: the first keeps the plain name, so
    runs of one-step kinds keep the checkpoint layout they always had."""
    return part if i == 0 else f"{part}.{step.name}"


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


def _prepare_run_dir(run: RunFolder, cfg: RunConfig, resume: bool) -> None:
    """Under the run's lock: clear what killed writes left, check a resume, write the config."""
    removed = run.remove_temporaries()
    if removed:
        print(f"removed {len(removed)} temporary file(s) an interrupted write left in {run.path}")
    if resume:
        if not run.has_checkpoint():  # gone since train() looked, before the lock
            raise TrainingError(f"cannot resume: {run.checkpoint_file} does not exist")
        # Read whole (its hash checked) before anything is written; then the config it was
        # written with (older checkpoints: the run's config file).
        info = run.load_checkpoint()[1]
        saved = info.get("config")
        done = int((info.get("state") or {}).get("epoch") or 0)
        if cfg.train.epochs < done:  # the config would then say fewer epochs than the model has had
            from aetk.settings import ConfigError

            raise ConfigError(f"train.epochs={cfg.train.epochs} is fewer than the {done} epoch(s) {run.path} has "
                              f"trained already; pass --epochs {done} or more to continue it")
        if saved is None and run.config_file.is_file():
            from aetk.config import load_config

            saved = load_config(run.config_file).to_dict()
        if saved is not None:
            check_resume(saved, cfg.to_dict(), run.path)
    elif run.has_checkpoint():
        raise TrainingError(
            f"{run.path} already holds a training run; pass {flag(TrainOptions, 'resume')} to continue it or choose "
            "another --run-dir")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)  # on resume: with the safe changes
    except OSError as exc:
        raise TrainingError(f"cannot write the run folder {run.path}: {exc}") from exc


def _save_training_state(run: RunFolder, model, optimization, state, history, cfg: RunConfig) -> None:
    """optimization: (steps, optimizers, schedulers) of the model's declared training steps."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {"model": flatten_state("model", model.state_dict(), tensors)}
    for i, (step, opt, sched) in enumerate(zip(*optimization)):
        key = _optimizer_key("optimizer", i, step)
        skeleton[key] = flatten_state(key, opt.state_dict(), tensors)
        key = _optimizer_key("scheduler", i, step)
        skeleton[key] = flatten_state(key, {k: v for k, v in sched.state_dict().items()
                                            if k != "lr_lambdas"}, tensors)
    skeleton["rng"] = flatten_state("rng", rng_state(), tensors)
    info = {"state": state, "history": history, "skeleton": skeleton, "config": cfg.to_dict()}
    run.save_checkpoint(tensors, info)


def _resume(run: RunFolder, model, device):
    tensors, info = run.load_checkpoint()
    sk = info["skeleton"]
    try:
        model.load_state_dict(unflatten_state(sk["model"], tensors))
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint {run.checkpoint_file} does not fit this "
                              f"{model.kind} model (was the run's config edited?): "
                              f"{str(exc).splitlines()[0]}") from exc
    set_rng_state(unflatten_state(sk["rng"], tensors))
    return dict(info["state"]), list(info["history"])


def _resume_optimizer(run: RunFolder, steps, opts, scheds) -> None:
    tensors, info = run.load_checkpoint()
    sk = info["skeleton"]
    for i, (step, opt, sched) in enumerate(zip(steps, opts, scheds)):
        opt.load_state_dict(unflatten_state(sk[_optimizer_key("optimizer", i, step)], tensors))
        sched_state = unflatten_state(sk[_optimizer_key("scheduler", i, step)], tensors)
        sched_state["lr_lambdas"] = [None] * len(opt.param_groups)
        sched.load_state_dict(sched_state)


def _pretrain(model, train_set, tc: TrainConfig, device, dist_info, main) -> None:
    """The model's pretraining stages (greedy layer-wise: each trains one layer on the codes
    of the layers below it, frozen), each by its own declared training steps; then the whole
    model fine-tunes in the main loop."""
    step = 0
    no_scaling = torch.amp.GradScaler("cuda", enabled=False)
    for name, stage, input_fn in model.pretraining_stages():
        steps = stage.training_steps()
        opts = [make_optimizer(tc, [p for p in st.parameters() if p.requires_grad]) for st in steps]
        for epoch in range(tc.pretrain_epochs):
            batches = epoch_batches(len(train_set), tc.batch_size, tc.seed + PRETRAIN_OFFSET, epoch, dist_info)
            loader = DataLoader(train_set, batch_sampler=batches, num_workers=tc.num_workers,
                                generator=torch.Generator().manual_seed(tc.seed + epoch))
            total, n = 0.0, 0
            for x, _ in loader:
                x = x.to(device)
                if tc.flips:
                    x = random_flips(x, model.seed + PRETRAIN_OFFSET, step)
                with torch.no_grad():
                    inp = input_fn(x)
                out = stage(inp, step=step)
                run_steps(out, steps, opts, no_scaling, 0.0)
                step += 1
                total += float(out["loss"].detach()) * x.shape[0]
                n += x.shape[0]
            if main and tc.progress:
                print(f"pretraining {name}: epoch {epoch + 1}/{tc.pretrain_epochs} "
                      f"loss {total / max(n, 1):.4f}")


def _tensorboard(log_dir: Path, tc: TrainConfig):
    if not tc.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir))


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
