"""Benchmark of aetk's fused ops against the PyTorch a user would write.

What is measured
----------------
For each op and size, the forward pass alone ("fwd") and forward plus backward
("fwd+bwd"), four ways:

- eager    the op written as plain PyTorch, the way a user would (``eager_*`` below);
- compile  ``torch.compile`` of that same function (compiled once, warmed up, then timed;
           "n/a" with the reason if it fails here, "skipped" under ``--quick``);
- aetk     the fused custom op from ``aetk.ops``;
- memcpy   ``dst.copy_(src)`` over the bytes an ideal fused kernel must move: read its
           inputs and write its outputs once (for fwd+bwd, also read the incoming
           gradient and write the input gradients; the additive corruptions' backward is
           the identity and moves nothing). No kernel can beat it.

Backward passes: corrupt -> gradient to x; reparameterize -> gradients to mu and logvar
from random gradients of z and kl; contractive penalty -> gradients to the encoder's
W and b.

The contractive penalty is timed inside a sigmoid encoder h = sigmoid(x W^T + b) whose
output feeds an MSE loss (a stand-in for the rest of the network): "eager" is encoder +
the eager analytic penalty, "compile" is that compiled, "aetk" is encoder + the fused
penalty; the notes give how much each penalty adds to the encoder alone.

Each time is the median over ``--repeats`` calls after warm-up, measured with
``time.perf_counter`` (CUDA events on GPU). Variants are timed round-robin, one call of
each per round, so changes in machine load hit them alike. Inputs stay fixed; every
aetk call gets a new offset, so each call draws new noise, as torch's generator does.

Targets (the issue's, where they apply): on CPU at >= the default sizes, aetk over eager
fwd of masking >= 8x, gaussian >= 6x, salt_pepper >= 10x; reparameterize+KL fwd+bwd >= 4x;
contractive penalty adding <= 25% to the encoder's fwd+bwd. On a GPU: >= 70% of the DRAM
bandwidth (measured as a large device-to-device copy) at >= 64M elements.

Run (from the repository root, with aetk installed in .venv):

    .venv/bin/python benchmarks/bench_ops.py                  # full run, CPU
    .venv/bin/python benchmarks/bench_ops.py --quick          # well under a minute (make demo)
    .venv/bin/python benchmarks/bench_ops.py --device cuda    # 64M elements, GB/s, % of peak
    .venv/bin/python benchmarks/bench_ops.py --threads 2 --json results.json
    .venv/bin/python benchmarks/bench_ops.py --sizes 16M 2048x4096 --contractive-sizes 512x784x1000
    .venv/bin/python benchmarks/bench_ops.py --ops masking reparameterize

Run it as a script path: ``python -m`` from the repository root would import the source
tree's ``aetk/``, which lacks the compiled extension.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import aetk
from aetk import native
from aetk.ops import CORRUPTION_KINDS, contractive_penalty, corrupt, reparameterize

Fn = Callable[[int], Any]  # one timed call; its argument is a fresh call index (aetk's offset)

SEED = 1234
LEVELS = {"masking": 0.25, "masking_exact": 0.25, "gaussian": 0.1, "salt_pepper": 0.1,
          "uniform": 0.1}
LO, HI = 0.0, 1.0  # pepper and salt
CAE_LAMBDA = 0.1
MI = 2**20
OPS = (*CORRUPTION_KINDS, "reparameterize", "contractive")
PASSES = ("fwd", "fwd+bwd")

DEFAULT_SIZES = {  # (rows, cols) of corrupt and reparameterize, per device
    "cpu": {"corrupt": [(4096, 1024)], "reparameterize": [(4096, 256)]},
    "cuda": {"corrupt": [(65536, 1024)], "reparameterize": [(65536, 1024)]},
}
DEFAULT_CAE_SIZES = [(256, 784, 1000)]  # (batch, inputs, hidden)

# The targets.
CPU_SPEEDUP_TARGETS = {("masking", "fwd"): 8.0, ("gaussian", "fwd"): 6.0,
                       ("salt_pepper", "fwd"): 10.0, ("reparameterize", "fwd+bwd"): 4.0}
CPU_TARGET_MIN_NUMEL = {"corrupt": 4096 * 1024, "reparameterize": 4096 * 256}
CAE_MAX_OVERHEAD = 0.25
GPU_MIN_PEAK_FRACTION = 0.70
GPU_TARGET_MIN_NUMEL = 64 * MI

_CALLS = itertools.count()  # never reused, so no two aetk calls share an offset


# --------------------------------------------------------------------------------------
# The ops as a PyTorch user would write them (also what torch.compile gets)
# --------------------------------------------------------------------------------------

def eager_corrupt(kind: str, level: float) -> Callable:
    if kind == "masking":
        def masking(x):
            return x * (torch.rand_like(x) >= level)
        return masking
    if kind == "gaussian":
        def gaussian(x):
            return x + level * torch.randn_like(x)
        return gaussian
    if kind == "uniform":
        def uniform(x):
            return x + (torch.rand_like(x) * 2 - 1) * level
        return uniform
    if kind == "salt_pepper":
        def salt_pepper(x):
            hit = torch.rand_like(x) < level
            salt = torch.rand_like(x) < 0.5
            return torch.where(hit, torch.where(salt, HI, LO), x)
        return salt_pepper
    if kind == "masking_exact":
        def masking_exact(x):  # zero exactly k random components of each row
            k = math.floor(level * x.shape[1] + 0.5)
            drop = torch.rand_like(x).topk(k, dim=1).indices
            return x.scatter(1, drop, 0.0)
        return masking_exact
    raise ValueError(f"unknown corruption kind {kind!r}")


def eager_reparameterize(mu, logvar):
    eps = torch.randn_like(mu)
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)
    return z, kl


def encoder(x, W, b):
    return torch.sigmoid(x @ W.T + b)


def cae_encoder_only(x, W, b, target):
    return F.mse_loss(encoder(x, W, b), target)


def cae_eager(x, W, b, target):
    h = encoder(x, W, b)
    penalty = ((h * (1 - h)) ** 2 * (W**2).sum(1)).sum()
    return F.mse_loss(h, target) + CAE_LAMBDA * penalty


# --------------------------------------------------------------------------------------
# The same with aetk; each takes the call index first and uses it as the offset
# --------------------------------------------------------------------------------------

def aetk_corrupt(kind: str, level: float) -> Callable:
    def run(i, x):
        return corrupt(x, kind, level, SEED, i, lo=LO, hi=HI)
    return run


def aetk_reparameterize(i, mu, logvar):
    return reparameterize(mu, logvar, SEED, i)


def cae_aetk(i, x, W, b, target):
    h = encoder(x, W, b)
    return F.mse_loss(h, target) + CAE_LAMBDA * contractive_penalty(h, W, reduction="sum")


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------

@dataclass
class Case:
    family: str  # corrupt, reparameterize or contractive
    op: str
    size: str
    numel: int
    pass_: str
    bytes_moved: int  # by an ideal fused kernel: the memcpy lower bound
    make: Callable[[Callable], Fn]  # forward(i, *inputs) -> one timed call (fwd or fwd+bwd)
    eager: dict[str, Callable]  # variant name -> plain-PyTorch forward(*inputs)
    aetk: Callable  # forward(i, *inputs)


def timed_call(inputs: tuple, pass_: str, wrt: tuple = (), grads=None) -> Callable[[Callable], Fn]:
    """How one call of a forward(i, *inputs) runs: alone, or followed by its backward to wrt."""
    def make(forward: Callable) -> Fn:
        if pass_ == "fwd":
            return lambda i: forward(i, *inputs)
        return lambda i: torch.autograd.grad(forward(i, *inputs), wrt, grads)
    return make


def size_label(rows: int, cols: int) -> str:
    n = rows * cols
    return f"{rows}×{cols} ({n // MI}M)" if n % MI == 0 else f"{rows}×{cols} ({n:,})"


def corrupt_case(kind: str, rows: int, cols: int, pass_: str, device: str) -> Case:
    level = LEVELS[kind]
    x = torch.rand(rows, cols, device=device)
    n, itemsize = x.numel(), x.element_size()
    moved = 2 * n * itemsize  # read x, write y
    if pass_ == "fwd":
        make = timed_call((x,), pass_)
    else:
        x.requires_grad_(True)
        make = timed_call((x,), pass_, wrt=(x,), grads=torch.randn_like(x))
        if kind not in ("gaussian", "uniform"):  # additive noise: grad_x is grad_y itself
            moved += 2 * n * itemsize  # read grad_y, write grad_x
    return Case("corrupt", kind, size_label(rows, cols), n, pass_, moved, make,
                {"eager": eager_corrupt(kind, level)}, aetk_corrupt(kind, level))


def reparameterize_case(rows: int, cols: int, pass_: str, device: str) -> Case:
    mu = 0.5 * torch.randn(rows, cols, device=device)
    logvar = 0.5 * torch.randn(rows, cols, device=device) - 1.0
    n, itemsize = mu.numel(), mu.element_size()
    moved = (3 * n + rows) * itemsize  # read mu, logvar; write z, kl
    if pass_ == "fwd":
        make = timed_call((mu, logvar), pass_)
    else:
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
        grads = (torch.randn_like(mu), torch.randn(rows, device=device))
        make = timed_call((mu, logvar), pass_, wrt=(mu, logvar), grads=grads)
        moved += (5 * n + rows) * itemsize  # read mu, logvar, grad_z, grad_kl; write 2 grads
    return Case("reparameterize", "reparameterize", size_label(rows, cols), n, pass_, moved,
                make, {"eager": eager_reparameterize}, aetk_reparameterize)


def contractive_case(batch: int, inputs: int, hidden: int, pass_: str, device: str) -> Case:
    x = torch.rand(batch, inputs, device=device)
    W = 0.01 * torch.randn(hidden, inputs, device=device)
    b = torch.zeros(hidden, device=device)
    target = torch.rand(batch, hidden, device=device)
    penalty_bytes = (batch * hidden + hidden * inputs) * x.element_size()  # h and W once
    if pass_ == "fwd":
        make = timed_call((x, W, b, target), pass_)
        moved = penalty_bytes
    else:
        W.requires_grad_(True)
        b.requires_grad_(True)
        make = timed_call((x, W, b, target), pass_, wrt=(W, b))
        moved = 3 * penalty_bytes  # fwd reads h, W; bwd reads them again, writes their grads
    return Case("contractive", "contractive", f"{batch}×{inputs}→{hidden}", batch * hidden,
                pass_, moved, make, {"eager": cae_eager, "base_eager": cae_encoder_only},
                cae_aetk)


def build_cases(ops, sizes, cae_sizes, device) -> list[Callable[[], Case]]:
    """Case factories, so that each case's tensors exist only while it runs."""
    factories = []
    for op in ops:
        if op in CORRUPTION_KINDS:
            factories += [lambda op=op, r=r, c=c, p=p: corrupt_case(op, r, c, p, device)
                          for r, c in sizes["corrupt"] for p in PASSES]
        elif op == "reparameterize":
            factories += [lambda r=r, c=c, p=p: reparameterize_case(r, c, p, device)
                          for r, c in sizes["reparameterize"] for p in PASSES]
        else:
            factories += [lambda s=s, p=p: contractive_case(*s, p, device)
                          for s in cae_sizes for p in PASSES]
    return factories


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Fn, device: str) -> float:
    """Milliseconds of one call, on an idle device."""
    i = next(_CALLS)
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn(i)
    return (time.perf_counter() - t0) * 1e3


def memcpy_call(nbytes: int, device: str) -> Fn:
    """A copy that reads nbytes / 2 and writes nbytes / 2."""
    src = torch.ones(max(1, nbytes // 8), device=device)  # written, so its pages are real
    dst = torch.zeros_like(src)
    return lambda i: dst.copy_(src)


def short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:100]}"


def compile_variants(case: Case, failed: dict[str, str]) -> dict[str, Fn]:
    """torch.compile of each eager forward (compilation itself runs at the first call)."""
    torch._dynamo.reset()  # fresh, static-shape graphs for each case
    out = {}
    for name, forward in case.eager.items():
        name = name.replace("eager", "compile")
        try:
            compiled = torch.compile(forward)
        except Exception as exc:  # noqa: BLE001 - e.g. an unsupported Python version
            failed[name] = short_error(exc)
            continue
        out[name] = case.make(lambda i, *a, f=compiled: f(*a))
    return out


def run_case(case: Case, args) -> dict:
    """Warm every variant up (dropping those that fail), then time them round-robin."""
    failed: dict[str, str] = {}  # variant -> why it could not run
    variants: dict[str, Fn] = {
        name: case.make(lambda i, *a, f=forward: f(*a)) for name, forward in case.eager.items()
    }
    if args.compile:
        variants.update(compile_variants(case, failed))
    variants["aetk"] = case.make(case.aetk)
    variants["memcpy"] = memcpy_call(case.bytes_moved, args.device)

    first_call_s = {}
    for name, fn in list(variants.items()):
        try:
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                fn(next(_CALLS))
                sync(args.device)
                first_call_s.setdefault(name, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            failed[name] = short_error(exc)
            del variants[name]

    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            samples[name].append(time_call(fn, args.device))
    compile_s = {k: round(v, 2) for k, v in first_call_s.items() if "compile" in k}
    return {"ms": {k: statistics.median(v) for k, v in samples.items()}, "samples_ms": samples,
            "failed": failed, "compile_s": compile_s}


def measure_peak_gbps(device: str, repeats: int) -> float | None:
    """DRAM bandwidth as a large device-to-device copy (bytes read + written per second)."""
    if device != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info()
    n = min(2**28, free // 16)  # up to 1 GiB each way
    fn = memcpy_call(8 * n, device)
    for _ in range(3):
        fn(0)
    sync(device)
    ms = statistics.median(time_call(fn, device) for _ in range(max(repeats, 10)))
    return 8 * n / (ms * 1e-3) / 1e9


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def overheads(ms: dict) -> dict[str, float | None]:
    """What each penalty adds to the encoder's own time (aetk's encoder is the eager one)."""
    def added(total, base):
        r = ratio(ms.get(total), ms.get(base))
        return None if r is None else r - 1

    return {"eager": added("eager", "base_eager"), "compile": added("compile", "base_compile"),
            "aetk": added("aetk", "base_eager")}


def target_for(case: Case, device: str) -> tuple[str, Callable[[dict], bool | None]] | None:
    """The issue's target for this row, as (label, check of the row), if one applies."""
    if device == "cpu":
        need = CPU_SPEEDUP_TARGETS.get((case.op, case.pass_))
        if need and case.numel >= CPU_TARGET_MIN_NUMEL[case.family]:
            return f"≥ {need:g}× eager", lambda row: _at_least(row["aetk_vs_eager"], need)
        if case.family == "contractive" and case.pass_ == "fwd+bwd":
            label = f"≤ +{CAE_MAX_OVERHEAD:.0%} encoder"
            return label, lambda row: _at_most(row["overhead"]["aetk"], CAE_MAX_OVERHEAD)
        return None
    if case.family != "contractive" and case.numel >= GPU_TARGET_MIN_NUMEL:
        label = f"≥ {GPU_MIN_PEAK_FRACTION:.0%} DRAM BW"
        return label, lambda row: _at_least(row["aetk_peak_fraction"], GPU_MIN_PEAK_FRACTION)
    return None


def _at_least(value, bound):
    return None if value is None else value >= bound


def _at_most(value, bound):
    return None if value is None else value <= bound


def make_row(case: Case, timing: dict, args, peak_gbps: float | None) -> dict:
    ms = timing["ms"]
    aetk_ms, memcpy_ms = ms.get("aetk"), ms.get("memcpy")
    aetk_gbps = case.bytes_moved / (aetk_ms * 1e-3) / 1e9 if aetk_ms else None
    row = {
        "op": case.op, "size": case.size, "numel": case.numel, "pass": case.pass_,
        "eager_ms": ms.get("eager"), "compile_ms": ms.get("compile"), "aetk_ms": aetk_ms,
        "memcpy_ms": memcpy_ms, "aetk_vs_eager": ratio(ms.get("eager"), aetk_ms),
        "aetk_vs_compile": ratio(ms.get("compile"), aetk_ms),
        "bytes_moved": case.bytes_moved, "aetk_gbps": aetk_gbps,
        "aetk_vs_memcpy": ratio(memcpy_ms, aetk_ms),
        "aetk_peak_fraction": ratio(aetk_gbps, peak_gbps),
        "overhead": overheads(ms) if case.family == "contractive" else None,
        **timing,
    }
    target = target_for(case, args.device)
    row["target"], row["met"] = (target[0], target[1](row)) if target else (None, None)
    return row


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def fmt_x(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}×"


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v:+.0%}"


def notes(row: dict) -> str:
    if row["overhead"] is not None:
        o = row["overhead"]
        return (f"penalty adds: eager {fmt_pct(o['eager'])}, compile {fmt_pct(o['compile'])}, "
                f"aetk {fmt_pct(o['aetk'])}")
    if row["aetk_gbps"] is None:
        return ""
    if row["aetk_peak_fraction"] is not None:
        return f"aetk {row['aetk_gbps']:.0f} GB/s = {row['aetk_peak_fraction']:.0%} of peak"
    vs_copy = f" = {row['aetk_vs_memcpy']:.0%} of copy" if row["aetk_vs_memcpy"] else ""
    return f"aetk {row['aetk_gbps']:.1f} GB/s{vs_copy}"


def ms_cell(row: dict, name: str, footnote: int | None, args) -> str:
    if name in row["failed"]:
        return f"n/a [{footnote}]"
    if name == "compile" and not args.compile:
        return "skipped"
    return fmt_ms(row[f"{name}_ms"])


def render(rows: list[dict], args, console: Console) -> None:
    table = Table(title="aetk fused ops vs PyTorch (median ms)", title_justify="left")
    for name in ("op", "size", "pass"):
        table.add_column(name)
    for name in ("eager ms", "compile ms", "aetk ms", "memcpy ms", "aetk vs eager",
                 "aetk vs compile"):
        table.add_column(name, justify="right")
    table.add_column("target")
    table.add_column("met?", justify="center")
    table.add_column("notes")
    footnotes: dict[str, int] = {}  # reason -> its number; a reason shared by rows prints once
    for row in rows:
        footnote = None
        if row["failed"]:
            reason = "; ".join(sorted(set(row["failed"].values())))
            footnote = footnotes.setdefault(reason, len(footnotes) + 1)
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[row["met"]]
        cells = [ms_cell(row, name, footnote, args) for name in ("eager", "compile", "aetk", "memcpy")]
        table.add_row(row["op"], row["size"], row["pass"], *cells, fmt_x(row["aetk_vs_eager"]),
                      fmt_x(row["aetk_vs_compile"]), row["target"] or "—", met, notes(row))
    console.print(table)
    for reason, k in footnotes.items():
        console.print(f"[{k}] n/a: {reason}", markup=False, highlight=False)


def header(args, peak_gbps: float | None) -> dict:
    meta = {
        "aetk": aetk.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": args.device, "cpu": cpu_name(), "simd_path": native.simd_path(),
        "cuda_kernels_built": native.cuda_built(), "threads": torch.get_num_threads(),
        "repeats": args.repeats, "warmup": args.warmup, "quick": args.quick,
        "compile": args.compile, "seed": SEED, "levels": LEVELS,
    }
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
        meta["peak_gbps"] = peak_gbps
    return meta


def print_header(meta: dict, console: Console) -> None:
    console.print(f"aetk {meta['aetk']} · torch {meta['torch']} · python {meta['python']}",
                  highlight=False)
    console.print(f"CPU: {meta['cpu']} · SIMD path {meta['simd_path']} · "
                  f"{meta['threads']} thread(s)", highlight=False)
    if meta["device"] == "cuda":
        console.print(f"GPU: {meta['gpu']} · peak (device copy) {meta['peak_gbps']:.0f} GB/s",
                      highlight=False)
    console.print(f"median of {meta['repeats']} runs after {meta['warmup']} warm-up; "
                  f"torch.compile {'on' if meta['compile'] else 'skipped'}; memcpy = "
                  "copy of the bytes an ideal fused kernel moves", highlight=False)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    """ROWSxCOLS, or an element count such as 16M (rows of 1024)."""
    t = text.lower().replace("×", "x")
    if "x" in t:
        rows, cols = (int(p) for p in t.split("x"))
        return rows, cols
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(t[-1], 1)
    n = int(t[:-1] if t[-1] in "kmg" else t) * scale
    if n % 1024:
        raise argparse.ArgumentTypeError(f"{text}: an element count must be a multiple of 1024")
    return n // 1024, 1024


def parse_cae_size(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text}: expected BATCHxINPUTSxHIDDEN, e.g. 256x784x1000")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="few repeats, no torch.compile: the full table in well under a minute")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[], metavar="SIZE",
                   help="more corrupt/reparameterize sizes: ROWSxCOLS or a count like 16M")
    p.add_argument("--contractive-sizes", nargs="+", type=parse_cae_size, default=[],
                   metavar="BxINxHID", help="more contractive sizes, e.g. 512x784x1000")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    add_timing_options(p, threads_help="torch.set_num_threads (also the aetk kernels')")
    return timing_defaults(p.parse_args(argv))


def add_timing_options(p: argparse.ArgumentParser, threads_help: str) -> None:
    """The timing options the benchmark scripts share (their defaults: timing_defaults)."""
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="time torch.compile too (default: yes, except under --quick)")
    p.add_argument("--repeats", type=int, help="timed calls per row (default 25, quick 5)")
    p.add_argument("--warmup", type=int, help="untimed calls first (default 3, quick 1)")
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--json", metavar="PATH", help="write every result, with raw samples")


def timing_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in what add_timing_options left unset, by --quick."""
    args.compile = not args.quick if args.compile is None else args.compile
    args.repeats = args.repeats or (5 if args.quick else 25)
    args.warmup = max(1, args.warmup or (1 if args.quick else 3))
    return args


def check_environment(args) -> str | None:
    if not native.is_built():
        return ("aetk's native extension is not importable: install aetk (make install) and "
                "run this file as a script path, not with python -m from the repository root")
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA GPU is visible to torch"
    if args.device == "cuda" and not native.cuda_built():
        return "--device cuda: aetk was built without its CUDA kernels (no nvcc at build time)"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    problem = check_environment(args)
    if problem:
        console.print(f"[red]error:[/] {problem}")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    sizes = {fam: DEFAULT_SIZES[args.device][fam] + args.sizes for fam in ("corrupt", "reparameterize")}
    peak = measure_peak_gbps(args.device, args.repeats)
    meta = header(args, peak)
    print_header(meta, console)

    rows = []
    factories = build_cases(args.ops, sizes, DEFAULT_CAE_SIZES + args.contractive_sizes,
                            args.device)
    with console.status("") as status:
        for k, factory in enumerate(factories, 1):
            case = factory()
            status.update(f"[{k}/{len(factories)}] {case.op} {case.size} {case.pass_}")
            rows.append(make_row(case, run_case(case, args), args, peak))
            del case
    render(rows, args, console)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
        console.print(f"results written to {args.json}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
