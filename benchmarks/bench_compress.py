"""Speed and memory of ``aetk compress`` against a straightforward PyTorch script.

What is measured (each side in its own process: wall time, and peak resident memory from
``os.wait4``'s rusage of that process alone, started by a small launcher):

- Fashion-MNIST, all 70,000 images (train + t10k), a ``conv`` autoencoder (30-d code):
  samples/s end to end (read -> encode -> write) for ``aetk compress`` (ONNX Runtime,
  float32 .npy shards + manifest) and for a PyTorch script that loads the data with aetk's
  readers, encodes in batches of 256 under ``torch.inference_mode`` and saves one .npy.
  Targets: aetk >= 2x the script's samples/s, and a lower peak memory.
- decompress: ``aetk decompress`` of the same codes (wall time against compress's), and of an
  image folder of 2,000 PNG files, where each output is a file of its own.
- flat memory: aetk compress of a memory-mapped uint8 .npy of N and of 10 N images;
  target: peak memory of the larger run within 10% of the smaller's.
- the codes: bytes per sample, ratios against raw pixels and PNG, reconstruction PSNR
  (``--eval``), and that aetk's codes equal the script's.
- on a machine with a CUDA GPU, the same two sides on the GPU.

    .venv/bin/python benchmarks/bench_compress.py                 # trains a conv model first (1 epoch)
    .venv/bin/python benchmarks/bench_compress.py --run runs/conv # or takes a trained one
    .venv/bin/python benchmarks/bench_compress.py --quick         # smaller model training and N

Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TORCH_SCRIPT = '''
import sys
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader
from aetk.data import DataConfig, load_data
from aetk.artifacts import RunDir

run, out, device = sys.argv[1], sys.argv[2], sys.argv[3]
model, _ = RunDir(run).load_model(device=device)
data = load_data(DataConfig(path="fashion-mnist"))
codes = []
with torch.inference_mode():
    for x, _ in DataLoader(ConcatDataset([data.train, data.test]), batch_size=256):
        codes.append(model.encode(x.to(device)).cpu().numpy())
np.save(out, np.concatenate(codes))
'''


# Started from this (large) process, a child's ru_maxrss would count this process's memory
# too (Linux carries the parent's resident set through fork/exec into the child's peak), so
# a small launcher starts the command and reports its rusage alone.
LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - t0,
               "peak_rss_mib": usage.ru_maxrss / 1024}, f)  # ru_maxrss: KiB on Linux
"""


def measure(cmd: list[str], log: Path) -> dict:
    """Run cmd; its wall time and peak resident memory (that process alone)."""
    result = log.with_suffix(".rusage.json")
    with open(log, "w") as out:  # run outside the repository: the installed aetk, never the source tree
        subprocess.run([sys.executable, "-c", LAUNCHER, str(result), *cmd], stdout=out,
                       stderr=subprocess.STDOUT, cwd=log.parent, check=False)
    r = json.loads(result.read_text())
    if r["rc"] != 0:
        sys.exit(f"failed ({r['rc']}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]}


def aetk_command() -> str:
    """The installed ``aetk`` console script (beside this Python, else on PATH)."""
    exe = shutil.which("aetk", path=os.path.dirname(sys.executable)) or shutil.which("aetk")
    if not exe:
        sys.exit("the aetk command is not installed: run `make install` (or pip install .) first")
    return exe


def best_of(n: int, cmd: list[str], log: Path, before=None) -> dict:
    """The fastest of n runs (the machine may be shared), with that run's memory."""
    runs = []
    for _ in range(n):
        if before:
            before()
        runs.append(measure(cmd, log))
    return min(runs, key=lambda r: r["wall_s"])


def train_conv(run: Path, epochs: int, limit: int | None) -> Path:
    from aetk.config import load_config
    from aetk.artifacts import RunDir, train_run as train  # noqa: F401

    over = ['model.kind="conv"', 'data.path="fashion-mnist"', "model.code_size=30", f"train.epochs={epochs}",
            "train.progress=false"]
    if limit:
        over.append(f"data.limit={limit}")
    print(f"training a conv autoencoder on Fashion-MNIST ({epochs} epoch(s)) ...", flush=True)
    train(load_config(None, over), run)
    return run


def write_pixels(path: Path, n: int) -> None:
    """n smooth-ish 28x28 uint8 images, written in chunks (never all in memory)."""
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    rng = np.random.default_rng(0)
    for a in range(0, n, 10000):
        b = min(a + 10000, n)
        base = rng.integers(0, 256, (b - a, 1, 7, 7), dtype=np.uint8)
        x[a:b] = np.repeat(np.repeat(base, 4, axis=2), 4, axis=3)
    x.flush()
    del x


def write_pngs(folder: Path, n: int) -> None:
    """n 28x28 8-bit PNG files (smooth-ish, like write_pixels)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for k in range(n):
        base = rng.integers(0, 256, (7, 7), dtype=np.uint8)
        Image.fromarray(np.repeat(np.repeat(base, 4, axis=0), 4, axis=1)).save(folder / f"{k:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a trained conv run folder (default: train one)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs when training (default 1)")
    ap.add_argument("--flat-n", type=int, default=30000, help="N of the flat-memory check (and 10 N)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--quick", action="store_true", help="train on 5,000 images, N = 5,000, one run each")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    if args.quick:
        args.flat_n, args.repeat = 5000, 1

    import onnxruntime
    import torch

    from aetk.export import ensure_export
    from aetk.runtime import probe_cuda

    work = args.work or Path(tempfile.mkdtemp(prefix="aetk-bench-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run = args.run or train_conv(work / "run", args.epochs, 5000 if args.quick else None)
        print("exporting to ONNX (once per trained run) ...", flush=True)
        export = ensure_export(run).path
        (work / "torch_script.py").write_text(TORCH_SCRIPT)
        aetk = [aetk_command(), "compress"]
        devices = ["cpu"] + (["cuda"] if probe_cuda().ok and torch.cuda.is_available() else [])
        results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                         "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
        for device in devices:
            print(f"Fashion-MNIST, 70,000 images, {device}: aetk compress ...", flush=True)
            codes = work / f"codes-{device}"
            a = best_of(args.repeat, aetk + ["fashion-mnist", "-m", str(export), "-o", str(codes), "--json", "-q",
                                            "--device", device, "--overwrite"], work / "aetk.log")
            print(f"Fashion-MNIST, 70,000 images, {device}: PyTorch script ...", flush=True)
            t = best_of(args.repeat, [sys.executable, str(work / "torch_script.py"), str(run),
                                      str(work / "torch-codes.npy"), device], work / "torch.log")
            print(f"Fashion-MNIST, 70,000 images, {device}: aetk decompress ...", flush=True)
            restored = work / f"restored-{device}"
            d = best_of(args.repeat, [aetk_command(), "decompress", str(codes), "-o",
                                      str(restored), "-q", "--device", device, "--overwrite"], work / "decompress.log")
            results[device] = {"aetk": a, "torch": t, "decompress": d}
        # decompress of an image folder: one file per item (where an fsync per file cost 10x)
        folder = work / "pngs"
        write_pngs(folder, 2000)
        ci = measure(aetk + [str(folder), "-m", str(export), "-o", str(work / "codes-png"), "-q", "--png-sample",
                             "0", "--device", "cpu", "--overwrite"], work / "png.log")
        di = measure([aetk_command(), "decompress", str(work / "codes-png"), "-o",
                      str(work / "restored-png"), "-q", "--device", "cpu", "--overwrite"], work / "png.log")
        results["png_folder"] = {"items": 2000, "compress": ci, "decompress": di}
        # the codes: sizes, PSNR (from the finished folder: nothing is encoded again), agreement
        ev = measure(aetk + ["fashion-mnist", "-m", str(export), "-o", str(work / "codes-cpu"), "--json", "-q",
                             "--eval"], work / "eval.log")
        report = json.loads((work / "eval.log").read_text()[(work / "eval.log").read_text().index("{"):])["report"]
        from aetk.compress import Codes

        c = Codes.open(work / "codes-cpu")
        mine = np.concatenate([c.read(r)[0] for r in c.records])
        theirs = np.load(work / "torch-codes.npy")
        results["codes"] = {**report, "max_abs_diff_vs_torch": float(np.abs(mine - theirs).max()),
                            "eval_wall_s": ev["wall_s"]}
        # flat memory
        flat = {}
        for n in (args.flat_n, 10 * args.flat_n):
            data = work / f"pixels-{n}.npy"
            print(f"flat memory: {n:,} memory-mapped images ...", flush=True)
            write_pixels(data, n)
            flat[n] = measure(aetk + [str(data), "-m", str(export), "-o", str(work / f"flat-{n}"), "-q",
                                      "--png-sample", "0", "--device", "cpu"], work / "flat.log")
            flat[n]["items_per_s"] = n / flat[n]["wall_s"]
            data.unlink()
            shutil.rmtree(work / f"flat-{n}", ignore_errors=True)
        results["flat"] = {str(k): v for k, v in flat.items()}
        print_table(results, args.flat_n)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def print_table(r: dict, n: int) -> None:
    print()
    print(f"aetk compress vs a PyTorch script -- Fashion-MNIST, 70,000 images, conv (30-d codes); "
          f"{r['machine']}, onnxruntime {r['onnxruntime']}, torch {r['torch']}")
    print(f"{'':28}{'samples/s':>12}{'wall s':>10}{'peak RSS MiB':>15}")
    for device in ("cpu", "cuda"):
        if device not in r:
            continue
        a, t = r[device]["aetk"], r[device]["torch"]
        for name, m in ((f"aetk compress ({device})", a), (f"PyTorch script ({device})", t)):
            print(f"{name:28}{70000 / m['wall_s']:>12,.0f}{m['wall_s']:>10.2f}{m['peak_rss_mib']:>15.0f}")
        if "decompress" in r[device]:
            d = r[device]["decompress"]
            print(f"{f'aetk decompress ({device})':28}{70000 / d['wall_s']:>12,.0f}{d['wall_s']:>10.2f}"
                  f"{d['peak_rss_mib']:>15.0f}   ({d['wall_s'] / a['wall_s']:.1f}x compress's time)")
        speed = t["wall_s"] / a["wall_s"]
        mem = a["peak_rss_mib"] / t["peak_rss_mib"]
        print(f"{'aetk / script':28}{speed:>11.2f}x{'':>10}{mem:>14.2f}x")
        print(f"  targets ({device}): >= 2x samples/s: {'met' if speed >= 2 else 'NOT met'}; "
              f"peak memory below the script's: {'met' if mem < 1 else 'NOT met'}")
    if "cuda" not in r:
        print("  GPU: none on this machine (no CUDA device for onnxruntime/torch), so no GPU numbers")
    if "png_folder" in r:
        pf = r["png_folder"]
        print(f"image folder, {pf['items']:,} PNG files (cpu): compress {pf['compress']['wall_s']:.2f} s, decompress "
              f"{pf['decompress']['wall_s']:.2f} s ({pf['decompress']['wall_s'] / pf['compress']['wall_s']:.1f}x)")
    c = r["codes"]
    ev = c.get("eval", {})
    print(f"codes: {c['rows']:,} x 30 float32 in {c['shards']} shards, {c['bytes_per_sample']:.1f} B/sample; "
          f"raw {c['raw_bytes_per_sample']:.0f} B/sample ({c['ratio_vs_raw']:.2f}x), PNG "
          f"{c['png_bytes_per_sample']:.0f} B/sample ({c['ratio_vs_png']:.2f}x, {c['png_sample']} measured); "
          f"PSNR {ev.get('psnr_db')} dB (peak {ev.get('peak')}); max |aetk - torch| = "
          f"{c['max_abs_diff_vs_torch']:.2g}")
    f = r["flat"]
    small, big = f[str(n)], f[str(10 * n)]
    growth = big["peak_rss_mib"] / small["peak_rss_mib"] - 1
    print(f"flat memory: {n:,} images -> {small['peak_rss_mib']:.0f} MiB ({small['items_per_s']:,.0f}/s), "
          f"{10 * n:,} -> {big['peak_rss_mib']:.0f} MiB ({big['items_per_s']:,.0f}/s): {growth:+.1%} "
          f"(target within 10%: {'met' if abs(growth) <= 0.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
