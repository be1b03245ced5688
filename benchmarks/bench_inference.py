"""Inference speed of aetk's models: PyTorch eager, torch.compile and ONNX Runtime side by side.

What is measured
----------------
The encoder (x -> z) and the full autoencoder (x -> x_hat) of a ``deep`` MLP
(784-1000-500-250-30, Hinton's) and a ``conv`` model (32-64-128 channels, 30-d code), on
Fashion-MNIST-shaped batches of 1, 64 and 1024 images, run by:

- eager     ``model.encode`` / ``model.decode(model.encode(x))`` under ``torch.inference_mode``;
- compile   ``torch.compile`` of the same function with static shapes (each batch size is
            compiled for itself, compile's best case; the compile time is in the notes;
            "skipped" under ``--quick``);
- ort fp32  the ``aetk export`` float32 ONNX graph through ``aetk.runtime.load_model(...).run``,
            what users of the runtime get, input checks included (the notes say how much
            ``run`` adds per call to onnxruntime's own ``InferenceSession.run``: ``run``
            timed over a session that returns canned outputs);
- ort int8  the export's int8 variant the same way (static QDQ calibrated on training data
            for ``conv``, dynamic quantization for the MLP; CPU only);
- ort fp16  the export's float16 variant on the CUDA provider (only when a GPU can be used).

Timing: for each (model, graph, batch) the backends are timed round-robin, one run of each per
round, so changes in machine load hit them alike; a run is as many back-to-back calls as
take >= ~10 ms, and a row's latency is the median over ``--repeats`` runs (batch 1024:
``--repeats-large``) of the time per call, after warm-up. Throughput = batch / latency.
"best ms" is the fastest run. "vs eager" (and the notes' "× ort fp32") is the median over
rounds of the two backends' time ratio within a round, which load that comes and goes between
rounds cancels out of; the last line says how busy other processes kept the CPU. torch
and ONNX Runtime use the same number of intra-op threads (``torch.get_num_threads()``, or
``--threads``). On the GPU every backend is timed host -> device -> host, as aetk.runtime does
it for numpy callers.

On a machine that other processes keep busy, PyTorch's OpenMP threads spin-wait for each other
at every op and eager times at small batches can grow tenfold or more (the last line says how
busy the CPU was); ``OMP_WAIT_POLICY=PASSIVE`` in the environment avoids most of that, and
the header shows it when set.

Accuracy, on real Fashion-MNIST test images (``--images``, default all 10,000), pushed
through each backend in batches of the largest batch size: for the autoencoder, the PSNR of
the reconstructions against the inputs (range of the model's sigmoid output) and its change;
for the encoder, the relative RMS difference of the codes. Changes are against eager, except
for int8 and fp16, which are against the float32 graph in the same runtime.

Targets (the issue's, CPU rows): ort fp32 >= 1.5x eager throughput at batch 1 and >= 1.0x at
batch 1024; int8 faster than ort fp32 at every batch size, and for the autoencoder losing at
most 0.3 dB of PSNR.

Meaningful accuracy needs trained weights, so each model is first trained briefly with
``aetk``'s trainer (deep: 1 epoch of the training set; conv: 1 epoch of 30,000 training
images, about 2-3 minutes for both on two cores) and exported with ``aetk.export``
(float32, int8 and float16). Both are cached under ``--work``, so later runs skip them; an
export is redone when the run's weights changed. ``--run-deep`` / ``--run-conv`` take an
existing run folder (written by ``aetk train``) instead.

Run (from the repository root, with aetk installed in .venv):

    .venv/bin/python benchmarks/bench_inference.py                # full run (a few minutes)
    .venv/bin/python benchmarks/bench_inference.py --quick        # smoke run on small models
    .venv/bin/python benchmarks/bench_inference.py --run-conv runs/conv --models conv
    .venv/bin/python benchmarks/bench_inference.py --device cpu --threads 1 --json out.json

Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import aetk
import aetk.runtime as rt
from aetk.artifacts import ExportDir, RunDir
from aetk.evaluate.metrics import array_psnr as psnr
from bench_ops import (  # this script's folder is on sys.path when run as a script
    add_timing_options,
    cpu_name,
    fmt_ms,
    timing_defaults,
)

SEED = 1234
MODELS = ("deep", "conv")
GRAPHS = ("encoder", "autoencoder")
DEFAULT_BATCHES = (1, 64, 1024)
LARGE_BATCH = 1024  # from this size on, --repeats-large applies
MIN_RUN_MS = 10.0  # a timed run repeats the call until it takes about this long

# How each model is trained (the settings of benchmarks/bench_quality.py, briefly).
TRAIN_OVERRIDES = {
    "deep": ['model.kind="deep"', "model.widths=[1000, 500, 250, 30]", 'model.loss="bce"',
             'model.output="sigmoid"'],
    "conv": ['model.kind="conv"', "model.channels=[32, 64, 128]", "model.code_size=30",
             'model.loss="bce"'],
}
TRAIN_LIMIT = {"deep": None, "conv": 30000}  # training images (None: all 60,000)
QUICK_TRAIN_LIMIT = 3000

# The targets (CPU).
ORT_VS_EAGER = {1: 1.5, 1024: 1.0}  # batch -> minimum throughput ratio of ort fp32 to eager
INT8_MAX_PSNR_LOSS_DB = 0.3

CPU_BACKENDS = ("eager", "compile", "ort fp32", "ort int8")
GPU_BACKENDS = ("eager", "compile", "ort fp32", "ort fp16")
ORT_FILES = {"ort fp32": "float32", "ort int8": "int8", "ort fp16": "float16"}  # backend -> precision
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")


# --------------------------------------------------------------------------------------
# Trained runs and their exports, cached under --work
# --------------------------------------------------------------------------------------

@dataclass
class Prepared:
    name: str  # deep | conv
    run_dir: Path
    export_dir: Path
    model: Any  # the trained aetk model, eval mode, CPU
    images: np.ndarray  # test images in model space, float32, (N, *input_shape)
    data_range: float  # of the autoencoder's output, for PSNR
    how: dict[str, str] = field(default_factory=dict)  # "run" / "export" -> what was done


def quiet():
    """Silence stdout/stderr and warnings of the libraries (training, export)."""
    stack = contextlib.ExitStack()
    buf = io.StringIO()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(buf))
    stack.enter_context(contextlib.redirect_stderr(buf))
    return stack


def train_run(name: str, run_dir: Path, args) -> str:
    from aetk.config import load_config
    from aetk.artifacts import train_run as train

    limit = QUICK_TRAIN_LIMIT if args.quick else TRAIN_LIMIT[name]
    overrides = TRAIN_OVERRIDES[name] + [
        'data.path="fashion-mnist"', f"train.epochs={args.epochs}", "train.progress=false",
        "train.tensorboard=false", f"train.seed={SEED}"]
    if limit:
        overrides.append(f"data.limit={limit}")
    if run_dir.exists():  # an interrupted earlier training: start over
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    with quiet():
        result = train(load_config(None, overrides), run_dir)
    images = f"{limit:,} training images" if limit else "the training set"
    val = result.history[-1].get("val_recon") if result.history else None
    val_text = f", val recon {val:.1f}" if val is not None else ""
    return (f"trained now: {result.epochs} epoch(s) of {images} in "
            f"{time.perf_counter() - t0:.0f} s{val_text}")


def export_is_current(export_dir: Path, sha: str, need_fp16: bool) -> bool:
    export = ExportDir(export_dir)
    precisions = ("float32", "int8", "float16") if need_fp16 else ("float32", "int8")
    return export.weights_sha256() == sha and all(export.graph(g, p).is_file() for g in GRAPHS for p in precisions)


def prepare(name: str, args, console: Console) -> Prepared:
    """The trained run (given, cached or trained now), its export, and test images."""
    from aetk.evaluate.loading import collect, load_run
    from aetk.export import ExportOptions, export_run
    from aetk.export.exporter import weights_sha256

    work = Path(args.work) / ("quick" if args.quick else "")
    how = {}
    given = getattr(args, f"run_{name}")
    if given:
        run_dir = Path(given)
        if not RunDir(run_dir).is_run():
            raise SystemExit(f"--run-{name} {run_dir}: not a finished run folder (no "
                             f"{RunDir(run_dir).weights_file.name})")
        where = str(run_dir.resolve())
        tag = f"{run_dir.resolve().name}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
        export_dir = work / name / f"onnx-{tag}"
        how["run"] = "given"
    else:
        run_dir = work / name / "run"
        export_dir = work / name / "onnx"
        if RunDir(run_dir).is_run():
            how["run"] = "cached"
        else:
            with console.status(f"training {name} into {run_dir} ..."):
                how["run"] = train_run(name, run_dir, args)
    with quiet():
        run = load_run(run_dir)
    model = run.model.cpu().eval()
    if model.kind != name:
        raise SystemExit(f"{run_dir} holds a {model.kind!r} model, not {name!r}")
    if tuple(model.input_shape) != (1, 28, 28):
        console.print(f"note: {run_dir} takes inputs of shape {tuple(model.input_shape)}",
                      highlight=False)
    sha = weights_sha256(model)
    if export_is_current(export_dir, sha, need_fp16=True):
        how["export"] = "cached"
    else:
        with console.status(f"exporting {name} to {export_dir} ..."):
            t0 = time.perf_counter()
            with quiet():
                export_run(run_dir, export_dir, ExportOptions(int8=True, fp16=True))
            how["export"] = f"exported now in {time.perf_counter() - t0:.0f} s"
    test = run.data.test if run.data.test is not None else run.data.train
    x, _ = collect(test, args.images)
    meta = rt.load_model(ExportDir(export_dir).graph("autoencoder"), device="cpu").metadata
    lo, hi = meta.value_range if meta.value_range else (float(x.min()), float(x.max()))
    return Prepared(name, run_dir, export_dir, model, x.numpy().astype(np.float32),
                    float(hi - lo) or 1.0, how)


# --------------------------------------------------------------------------------------
# Backends: each turns an input batch (numpy) into a zero-argument call, and runs the
# accuracy pass
# --------------------------------------------------------------------------------------

class Backend:
    name: str
    device: str

    def call(self, x: np.ndarray) -> Callable[[], Any]:
        raise NotImplementedError

    def outputs(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def overhead_ms(self, x: np.ndarray) -> float | None:
        return None  # ORT: what aetk.runtime adds to a bare InferenceSession.run


def graph_fn(model, graph: str) -> Callable:
    if graph == "encoder":
        def encoder(x):
            return model.encode(x)
        return encoder

    def autoencoder(x):
        return model.decode(model.encode(x))
    return autoencoder


class TorchBackend(Backend):
    def __init__(self, name: str, model, graph: str, device: str):
        self.name, self.device = name, device
        self.model = model if device == "cpu" else _to_device(model, device)
        fn = graph_fn(self.model, graph)
        self.fn = torch.compile(fn, dynamic=False) if name == "compile" else fn

    def call(self, x):
        fn, t = self.fn, torch.from_numpy(x)
        if self.device == "cpu":
            return lambda: fn(t)
        return lambda: fn(t.to(self.device)).cpu()  # .cpu() waits for the GPU

    def outputs(self, x):
        return self.fn(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


def _to_device(model, device: str):
    return copy.deepcopy(model).to(device).eval()


class OrtBackend(Backend):
    def __init__(self, name: str, path: Path, device: str, threads: int):
        self.name, self.device, self.path = name, device, path
        self.model = rt.load_model(path, device=device, threads=threads, batch_size=None)
        if self.model.device != device:
            raise RuntimeError(f"aetk.runtime runs {path.name} on {self.model.device}: {self.model.note}")
        self.input = self.model.input_names[0]
        self.output = self.model.output_names[0]

    def call(self, x):
        m = self.model
        return lambda: m.run(x)

    def overhead_ms(self, x) -> float | None:
        """What ``OnnxModel.run`` adds to onnxruntime's own ``session.run`` per call (input
        checks and conversion, output dict): ``run`` timed with a session that returns
        precomputed outputs. Single-threaded Python, so steadier than a difference of two
        timings. None with IOBinding (GPU), where run takes another path."""
        m = self.model
        if m.io_binding:
            return None
        outs = m.session.run(m.output_names, {self.input: x})

        class Canned:
            def run(self, names, feeds):
                return outs

        stub = copy.copy(m)
        stub.session = Canned()
        stub.run(x)
        number = max(1, math.ceil(MIN_RUN_MS / max(time_calls(lambda: stub.run(x), 1), 1e-3)))
        return statistics.median(time_calls(lambda: stub.run(x), number) for _ in range(5))

    def outputs(self, x):
        return self.model.run(x)[self.output]


def make_backend(name: str, prep: Prepared, graph: str, device: str, threads: int) -> Backend:
    if name in ("eager", "compile"):
        return TorchBackend(name, prep.model, graph, device)
    return OrtBackend(name, ExportDir(prep.export_dir).graph(graph, ORT_FILES[name]), device, threads)


# --------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------

def all_outputs(backend: Backend, images: np.ndarray, chunk: int) -> np.ndarray:
    """Outputs for every image, in batches of exactly ``chunk`` rows (the last one padded
    with copies of the first images, so a compiled graph sees no new shape)."""
    outs = []
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk]
        n = len(x)
        if n < chunk:
            x = np.concatenate([x, images[:chunk - n]] if len(images) >= chunk - n
                               else [x] + [images[:1]] * (chunk - n))
        outs.append(np.asarray(backend.outputs(np.ascontiguousarray(x)))[:n])
    return np.concatenate(outs)


def rel_rms(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = a.astype(np.float64), ref.astype(np.float64)
    scale = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    return float(np.sqrt(np.mean((a - ref) ** 2))) / scale


def reference_of(backend: str) -> str:
    """What a backend's accuracy is compared with: the float32 graph for lower precisions."""
    return "ort fp32" if backend in ("ort int8", "ort fp16") else "eager"


def accuracy(graph: str, outs: dict[str, np.ndarray], images: np.ndarray, data_range: float
             ) -> dict[str, dict[str, float]]:
    acc: dict[str, dict[str, float]] = {}
    for name, out in outs.items():
        ref = outs.get(reference_of(name)) if name != "eager" else None
        if graph == "autoencoder":
            acc[name] = {"psnr_db": psnr(out, images, data_range)}
        else:
            acc[name] = {}
        if name != "eager" and ref is None:
            acc[name]["no_reference"] = 1.0
        if ref is not None:
            if graph == "autoencoder":
                acc[name]["psnr_change_db"] = acc[name]["psnr_db"] - psnr(ref, images, data_range)
            acc[name]["rel_rms_diff"] = rel_rms(out, ref)
    return acc


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], number: int) -> float:
    """Milliseconds per call over ``number`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) * 1e3 / number


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:120] if text else ''}"


def time_case(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int
              ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, float], dict[str, str]]:
    """Warm each call up (the first call's time is kept: compile time), choose how many calls
    make one run, then time runs round-robin. Returns medians, samples, first-call seconds
    and failures."""
    failed: dict[str, str] = {}
    first_s: dict[str, float] = {}
    number: dict[str, int] = {}
    for name, fn in list(fns.items()):
        try:
            t0 = time.perf_counter()
            fn()
            first_s[name] = time.perf_counter() - t0
            for _ in range(warmup - 1):
                fn()
            one = time_calls(fn, 1)
            number[name] = max(1, min(1000, math.ceil(MIN_RUN_MS / max(one, 1e-3))))
        except Exception as exc:  # noqa: BLE001 - report it and time the others
            failed[name] = short_error(exc)
            del fns[name]
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(time_calls(fn, number[name]))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    return medians, samples, first_s, failed


def bench_block(prep: Prepared, graph: str, device: str, args, threads: int, status) -> list[dict]:
    """Every batch size of one (model, graph, device): timing first (so each compiled
    batch size's first call is its compile time), then accuracy on the test images."""
    torch._dynamo.reset()  # fresh compiled graphs for each model, graph and device
    backends: dict[str, Backend] = {}
    failed: dict[str, str] = {}
    compile_state: dict[str, str] = {}
    for name in (CPU_BACKENDS if device == "cpu" else GPU_BACKENDS):
        if name == "compile" and not args.compile:
            compile_state[name] = "skipped"
            continue
        try:
            backends[name] = make_backend(name, prep, graph, device, threads)
        except Exception as exc:  # noqa: BLE001 - footnote it, go on with the others
            failed[name] = short_error(exc)

    timings = {}
    for batch in args.batches:
        status.update(f"{prep.name} {graph} {device} batch {batch}: timing")
        x = np.ascontiguousarray(prep.images[np.arange(batch) % len(prep.images)])
        fns = {name: b.call(x) for name, b in backends.items()}
        repeats = args.repeats_large if batch >= LARGE_BATCH else args.repeats
        timing = time_case(fns, repeats, args.warmup)
        overhead = {}
        for name, b in backends.items():
            if name in fns:  # it ran
                with contextlib.suppress(Exception):
                    overhead[name] = b.overhead_ms(x)
        timings[batch] = (timing, overhead)

    status.update(f"{prep.name} {graph} {device}: accuracy on {len(prep.images):,} images")
    outs = {}
    for name, b in backends.items():
        try:
            outs[name] = all_outputs(b, prep.images, max(args.batches))
        except Exception as exc:  # noqa: BLE001
            failed.setdefault(name, short_error(exc))
    acc = accuracy(graph, outs, prep.images, prep.data_range)

    rows = []
    for batch, ((medians, samples, first_s, case_failed), overhead) in timings.items():
        rows += make_rows(prep.name, graph, batch, device,
                          (medians, samples, first_s, {**failed, **case_failed}), acc,
                          compile_state, overhead)
    return rows


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------

def paired_ratio(samples: dict[str, list[float]], ref: str, name: str) -> float | None:
    """Median over rounds of ref's time / name's time in the same round: speed-up of ``name``
    over ``ref``, robust to load that changes between rounds (each round times both)."""
    a, b = samples.get(ref), samples.get(name)
    if not a or not b or len(a) != len(b):
        return None
    return statistics.median(x / y for x, y in zip(a, b) if y > 0)


def target_for(row: dict) -> tuple[str, bool | None] | None:
    """The issue's target for a row, as (label, met), if one applies."""
    if row["device"] != "cpu":
        return None
    if row["backend"] == "ort fp32" and row["batch"] in ORT_VS_EAGER:
        need = ORT_VS_EAGER[row["batch"]]
        v = row["vs_eager"]
        return f"≥ {need:.1f}× eager", (None if v is None else v >= need)
    if row["backend"] == "ort int8":
        v = row["vs_fp32"]
        faster = None if v is None else v > 1.0
        if row["graph"] != "autoencoder":
            return "> ort fp32", faster
        change = (row["accuracy"] or {}).get("psnr_change_db")
        kept = None if change is None else change >= -INT8_MAX_PSNR_LOSS_DB
        met = None if faster is None or kept is None else faster and kept
        return f"> ort fp32, ≥ −{INT8_MAX_PSNR_LOSS_DB} dB", met
    return None


def make_rows(name: str, graph: str, batch: int, device: str, timing, acc, compile_s,
              overhead: dict[str, float | None]) -> list[dict]:
    medians, samples, first_s, failed = timing
    rows = []
    for backend in (CPU_BACKENDS if device == "cpu" else GPU_BACKENDS):
        if backend not in medians and backend not in failed and backend not in compile_s:
            continue
        ms = medians.get(backend)
        row = {
            "model": name, "graph": graph, "batch": batch, "device": device, "backend": backend,
            "latency_ms": ms, "throughput": batch / (ms * 1e-3) if ms else None,
            "vs_eager": paired_ratio(samples, "eager", backend),
            "vs_fp32": (paired_ratio(samples, "ort fp32", backend)
                        if backend in ("ort int8", "ort fp16") else None),
            "best_ms": min(samples[backend]) if samples.get(backend) else None,
            "accuracy": acc.get(backend), "failed": failed.get(backend),
            "first_call_s": first_s.get(backend), "runtime_overhead_ms": overhead.get(backend),
            "samples_ms": samples.get(backend), "compile_skipped": compile_s.get(backend) == "skipped",
        }
        target = target_for(row)
        row["target"], row["met"] = target if target else (None, None)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

def fmt_rate(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def fmt_accuracy(row: dict) -> str:
    acc = row["accuracy"]
    if acc is None:
        return "—"
    if row["graph"] == "autoencoder":
        text = f"{acc['psnr_db']:.2f} dB"
        if "psnr_change_db" in acc:
            text += f" ({acc['psnr_change_db']:+.2f})"
        return text
    if "no_reference" in acc:
        return "—"
    if "rel_rms_diff" not in acc:
        return "codes: reference"
    return f"Δz {acc['rel_rms_diff']:.1e} rms"


def fmt_notes(row: dict) -> str:
    parts = []
    if row["vs_fp32"] is not None:
        parts.append(f"{row['vs_fp32']:.2f}× ort fp32")
    if row["runtime_overhead_ms"] is not None and row["latency_ms"]:
        over = row["runtime_overhead_ms"]
        parts.append(f"aetk.runtime adds {over * 1e3:.0f} µs ({over / row['latency_ms']:.0%})")
    if row["backend"] == "compile" and row["first_call_s"] is not None:
        parts.append(f"compiled in {row['first_call_s']:.1f} s")
    return "; ".join(parts)


def render(rows: list[dict], console: Console) -> None:
    title = "aetk inference: latency (median per call), throughput and accuracy"
    table = Table(title=title, title_justify="left")
    for name in ("model", "graph"):
        table.add_column(name)
    table.add_column("batch", justify="right")
    if any(r["device"] != "cpu" for r in rows):
        table.add_column("device")
    table.add_column("backend")
    for name in ("latency ms", "best ms", "samples/s", "vs eager"):
        table.add_column(name, justify="right")
    table.add_column("accuracy (Δ)", justify="right")
    table.add_column("target")
    table.add_column("met?", justify="center")
    table.add_column("notes")
    footnotes: dict[str, int] = {}
    show_device = any(r["device"] != "cpu" for r in rows)
    previous = None
    for row in rows:
        case = (row["model"], row["graph"], row["batch"], row["device"])
        if previous is not None and case[:2] != previous[:2]:
            table.add_section()
        previous = case
        if row["failed"]:
            k = footnotes.setdefault(row["failed"], len(footnotes) + 1)
            ms = best = rate = f"n/a [{k}]"
        elif row["compile_skipped"]:
            ms = best = rate = "skipped"
        else:
            ms, best = fmt_ms(row["latency_ms"]), fmt_ms(row["best_ms"])
            rate = fmt_rate(row["throughput"])
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[row["met"]]
        cells = [row["model"], row["graph"], str(row["batch"])]
        if show_device:
            cells.append(row["device"])
        cells += [row["backend"], ms, best, rate, fmt_x(row["vs_eager"]), fmt_accuracy(row),
                  row["target"] or "—", met, fmt_notes(row)]
        table.add_row(*cells)
    console.print(table)
    for reason, k in footnotes.items():
        console.print(f"[{k}] n/a: {reason}", markup=False, highlight=False)


def summary(rows: list[dict], console: Console) -> None:
    checked = [r for r in rows if r["target"] is not None]
    if not checked:
        return
    met = [r for r in checked if r["met"]]
    missed = [r for r in checked if r["met"] is False]
    console.print(f"targets: {len(met)} of {len(checked)} met", highlight=False)
    for r in missed:
        why = f"{fmt_x(r['vs_eager'])} eager" if r["backend"] == "ort fp32" else (
            f"{fmt_x(r['vs_fp32'])} ort fp32, {fmt_accuracy(r)}")
        console.print(f"  missed: {r['model']} {r['graph']} batch {r['batch']} {r['backend']} "
                      f"({r['target']}): {why}", highlight=False)


# --------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------

class CpuShare:
    """How many CPU cores other processes kept busy between start() and stop(): all busy
    time in /proc/stat minus this process's own CPU time (None where /proc is missing)."""

    def __init__(self) -> None:
        self.start_state = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / hz  # all but idle and iowait
        t = os.times()
        return busy, t.user + t.system, time.monotonic()

    def others(self) -> float | None:
        end = self._now()
        if end is None or self.start_state is None or end[2] <= self.start_state[2]:
            return None
        busy, mine, wall = (e - s for e, s in zip(end, self.start_state))
        return max(0.0, (busy - mine) / wall)


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def gpu_state(args) -> tuple[bool, str]:
    """(whether GPU rows run, a line saying why or which GPU)."""
    if args.device == "cpu":
        return False, "GPU: not asked for (--device cpu): no fp16 or GPU rows"
    why = []
    if not torch.cuda.is_available():
        why.append("torch sees no CUDA GPU")
    try:
        rt.available_providers("cuda")
    except Exception as exc:  # noqa: BLE001 - ProviderUnavailableError, with its reason
        text = str(exc).splitlines()[0].split(". Use device=")[0]
        why.append(f"onnxruntime: {text.split(': ', 1)[-1]}")
    if why:
        return False, f"GPU: no CUDA GPU available ({'; '.join(why)}): no fp16 or GPU rows"
    return True, f"GPU: {torch.cuda.get_device_name()} (CUDA rows time host → device → host)"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU rows, plus GPU rows when a CUDA GPU works (default); "
                        "cuda: require it")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny training, few repeats and images, no torch.compile")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--graphs", nargs="+", choices=GRAPHS, default=list(GRAPHS))
    p.add_argument("--batches", nargs="+", type=int, default=list(DEFAULT_BATCHES))
    p.add_argument("--work", default="runs/bench_inference",
                   help="folder caching the trained runs and their exports (--quick: WORK/quick)")
    p.add_argument("--run-deep", metavar="RUN", help="an existing deep run folder (no training)")
    p.add_argument("--run-conv", metavar="RUN", help="an existing conv run folder (no training)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--images", type=int, help="test images for accuracy (default all, quick 512)")
    p.add_argument("--repeats-large", type=int,
                   help=f"timed runs at batch >= {LARGE_BATCH} (default 10, quick 2)")
    add_timing_options(p, threads_help="torch.set_num_threads and ORT intra-op threads")
    args = timing_defaults(p.parse_args(argv))
    args.repeats_large = args.repeats_large or (2 if args.quick else 10)
    args.images = args.images or (512 if args.quick else None)
    if any(b < 1 for b in args.batches):
        p.error("--batches must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=220)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(SEED)
    use_gpu, gpu_line = gpu_state(args)
    if args.device == "cuda" and not use_gpu:
        console.print(f"[red]error:[/] --device cuda: {gpu_line}")
        return 2
    devices = (["cpu"] if args.device != "cuda" else []) + (["cuda"] if use_gpu else [])

    import onnxruntime as ort

    load_start = load_average()
    preps = [prepare(name, args, console) for name in args.models]
    images = len(preps[0].images) if preps else 0

    meta = {
        "aetk": aetk.__version__, "torch": torch.__version__, "onnxruntime": ort.__version__,
        "python": platform.python_version(), "cpu": cpu_name(), "threads": threads,
        "gpu": gpu_line, "devices": devices, "repeats": args.repeats,
        "repeats_large": args.repeats_large, "warmup": args.warmup, "quick": args.quick,
        "compile": args.compile, "images": images, "load_average_start": load_start,
        "models": {p.name: {"run": str(p.run_dir), "export": str(p.export_dir), **p.how}
                   for p in preps},
    }
    console.print(f"aetk {meta['aetk']} · torch {meta['torch']} · onnxruntime "
                  f"{meta['onnxruntime']} · python {meta['python']}", highlight=False)
    env = " ".join(f"{k}={os.environ[k]}" for k in THREAD_ENV if os.environ.get(k))
    meta["env"] = env
    console.print(f"CPU: {meta['cpu']} · {threads} thread(s) for torch and ONNX Runtime (intra-op) "
                  f"· load average {load_start} at start" + (f" · {env}" if env else ""),
                  highlight=False)
    console.print(gpu_line, highlight=False)
    for p in preps:
        console.print(f"{p.name}: run {p.run_dir} ({p.how['run']}); export {p.export_dir} "
                      f"({p.how['export']})", highlight=False)
    console.print(f"median of {args.repeats} runs ({args.repeats_large} at batch ≥ {LARGE_BATCH}) "
                  f"after {args.warmup} warm-up, round-robin (vs eager: median of per-round "
                  f"ratios); torch.compile {'static shapes' if args.compile else 'skipped'}; "
                  f"ort = aetk.runtime.load_model(...).run", highlight=False)
    console.print(f"accuracy on {images:,} test images: autoencoder PSNR (Δ vs eager; int8/fp16 "
                  f"vs ort fp32), encoder Δz = relative RMS difference of the codes",
                  highlight=False)

    rows: list[dict] = []
    share = CpuShare()
    with console.status("") as status, torch.inference_mode():
        for prep in preps:
            for graph in args.graphs:
                for device in devices:
                    rows += bench_block(prep, graph, device, args, threads, status)
    meta["load_average_end"] = load_average()
    meta["other_processes_cores"] = others = share.others()
    render(rows, console)
    summary(rows, console)
    line = f"load average {meta['load_average_end']} at the end"
    if others is not None:
        line += (f"; other processes kept {others:.1f} of {os.cpu_count()} CPU cores busy "
                 f"during the measurements")
        if others >= 0.25:
            line += (" — medians are inflated by that load, most for multi-threaded eager "
                     "PyTorch at small batches (its threads wait for each other at every op); "
                     "'best ms' is the fastest run")
            if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
                line += ("; on a shared machine OMP_WAIT_POLICY=PASSIVE keeps PyTorch's "
                         "spinning OpenMP threads from starving each other")
    console.print(line, highlight=False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1, default=str)
        console.print(f"results written to {args.json}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
