"""The recipe of the blind colour denoiser (model kind ``resunet``, issue 20), as one resumable
script. Runs live in runs/ (git-ignored). See recipes/README.md for the design and numbers.

    python recipes/denoiser.py data                 # runs/denoiser-data/{train,validation}.npz
    python recipes/denoiser.py train                # starts (or resumes) training in the background
    python recipes/denoiser.py status               # progress: steps, losses, validation PSNR
    python recipes/denoiser.py validate [MODEL]     # PSNR of a run folder on the validation sets
    python recipes/denoiser.py export               # the selected checkpoint -> runs/denoiser/export
    python recipes/denoiser.py ship                 # that export -> aetk/denoise/models/colour*.onnx

``train`` builds the data if missing, then runs ``aetk train`` on CONFIG under ``nice -n 19``
with 2 torch threads, logging to runs/denoiser/log.txt, and a watcher beside it
(``watch``) that validates every new epoch's model.safetensors on the held-out photographs
(synthetic noise, fixed seeds) and the PolyU Canon real pairs, appends the scores to
runs/denoiser/validation.csv, and copies the best (by SCORE) to runs/denoiser/selected/. A
run that exists is resumed (``aetk train --resume``): kill it any time, the last checkpoint
(every CHECKPOINT_EVERY steps) is at most a few minutes old. Nothing here reads Set12 or BSD68.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "denoiser"
DATA = ROOT / "runs" / "denoiser-data"
CHECKPOINT_EVERY = 100  # steps (~1-3 minutes on this CPU)
THREADS = 2
CONFIG = {
    "data": {"path": str(DATA / "train.npz"), "normalize": "unit"},
    "model": {"kind": "resunet", "width": 32, "blocks": 2, "scales": 4},
    "train": {"epochs": 45, "batch_size": 16, "lr": 2e-4, "schedule": "cosine", "warmup_steps": 300,
              "val_fraction": 0.0,  # validation is by photograph, done by `watch`, not a random split
              "flips": True, "checkpoint_every": CHECKPOINT_EVERY, "seed": 0,
              "tensorboard": False, "progress": False, "log_every": 50},
}
# Validation: synthetic noise on the held-out photographs at these settings (fixed seeds),
# and PolyU Canon's real noise. SCORE = the mean PSNR over all of them (equal weight per set).
VAL_AWGN = (15, 25, 50)  # PolyU: centre 256x256 crops (validation_sets)
VAL_SEED = 12345


def python() -> list[str]:
    return [sys.executable]


def env() -> dict[str, str]:
    # PASSIVE: OpenMP threads sleep instead of spinning at barriers. On this 2-core machine shared
    # with other jobs, spinning took 5.3 CPU-s per training step against 1.5 (and 3x the wall time).
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
                OMP_WAIT_POLICY="PASSIVE")


def cmd_data(args) -> None:
    from aetk.denoise.training_photos import build

    if (DATA / "train.npz").is_file() and (DATA / "validation.npz").is_file() and not args.force:
        print(f"{DATA} exists (use --force to rebuild)")
        return
    print(build(DATA))


def write_config(run: Path) -> Path:
    from aetk.config import dumps_toml

    path = run.parent / f"{run.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_toml(CONFIG))
    return path


def alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def cmd_train(args) -> None:
    run = Path(args.run)
    if not (DATA / "train.npz").is_file():
        cmd_data(argparse.Namespace(force=False))
    if alive(run / "train.pid"):
        sys.exit(f"training already runs in {run} (pid {(run / 'train.pid').read_text().strip()})")
    config = write_config(run)
    from aetk.artifacts import RunDir

    resume = RunDir(run).has_checkpoint()
    cmd = ["nice", "-n", "19", *python(), "-m", "aetk.cli.main", "train", str(config), "-o", str(run),
           *(["--resume"] if resume else [])]
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "log.txt", "a")
    log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'}: {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=not args.foreground)
    (run / "train.pid").write_text(str(proc.pid))
    watch = ["nice", "-n", "19", *python(), str(Path(__file__).resolve()), "watch", "--run", str(run)]
    wproc = subprocess.Popen(watch, cwd=ROOT, env=dict(env(), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"),
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=not args.foreground)
    (run / "watch.pid").write_text(str(wproc.pid))
    print(f"{'resumed' if resume else 'started'} training in {run} (pid {proc.pid}, watcher {wproc.pid}); "
          f"log: {run / 'log.txt'}")
    if args.foreground:
        proc.wait()
        wproc.send_signal(signal.SIGTERM)


# -- validation ---------------------------------------------------------------------------------
def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def validation_sets():
    """name -> (noisy, clean) float32 arrays (N, 3, H, W) in [0, 1]: the held-out photographs
    with synthetic noise (fixed seeds), and PolyU Canon's real pairs."""
    import numpy as np
    import torch

    from aetk.data.noise_synthesis import SynthesisConfig, synthesize

    v = np.load(DATA / "validation.npz")
    sets = {}
    for kind in ("colour", "gray"):
        clean = torch.from_numpy(v[kind].astype(np.float32) / 255)
        for s in VAL_AWGN:  # 8-bit noisy files; gray noise on the gray photographs
            n = np.random.default_rng(VAL_SEED + s).standard_normal(clean.shape).astype(np.float32)
            if kind == "gray":
                n[:, 1:] = n[:, :1]
            noisy = torch.round((clean + s / 255 * torch.from_numpy(n)).clamp(0, 1) * 255) / 255
            sets[f"{kind}-awgn{s}"] = (noisy.numpy(), clean.numpy())
        cam = synthesize(clean, VAL_SEED, 0, SynthesisConfig(awgn=0, camera=1, correlated=0))
        sets[f"{kind}-camera"] = (cam.numpy(), clean.numpy())
    # PolyU: the centre 256x256 of each 512x512 pair (a quarter of the time per epoch)
    c = slice(128, 384)
    sets["polyu-canon"] = (v["polyu_noisy"][:, :, c, c].astype(np.float32) / 255,
                           v["polyu_clean"][:, :, c, c].astype(np.float32) / 255)
    return sets


def load_for_eval(path: Path):
    """(model in eval mode, step) from a run folder's model, or, for a checkpoint's stem (not a
    folder, e.g. runs/denoiser/checkpoints/last), from that training checkpoint (mid-epoch)."""
    from aetk.artifacts import RunDir
    from aetk.train.checkpoint import load_checkpoint, unflatten_state

    if not path.is_dir():
        from aetk.models import create_model

        tensors, info = load_checkpoint(path)
        model = create_model(CONFIG["model"]["kind"], (3, 128, 128),
                             **{k: v for k, v in CONFIG["model"].items() if k != "kind"})
        model.load_state_dict(unflatten_state(info["skeleton"]["model"], tensors))
        return model.eval(), info["state"]["step"]
    model, meta = RunDir(path).load_model()
    return model, meta.get("step")


def evaluate(model_dir: Path, sets=None, crop: int | None = None) -> dict[str, float]:
    """Mean PSNR of the run folder's model.safetensors on each validation set (and the noisy
    input's, as ``<set>:noisy``), through PyTorch on whole images."""
    import numpy as np
    import torch

    from aetk.padding import pad_to_multiple

    sets = sets or validation_sets()
    model, _step = load_for_eval(Path(model_dir))
    out = {}
    with torch.no_grad():
        for name, (noisy, clean) in sets.items():
            scores, before = [], []
            for n, c in zip(noisy, clean):
                if crop:
                    n, c = n[:, :crop, :crop], c[:, :crop, :crop]
                h, w = n.shape[1:]
                x = torch.from_numpy(pad_to_multiple(n[None], (2, 3), model.spatial_multiple))
                y = model.decode(model.encode(x))[0, :, :h, :w].clamp(0, 1).numpy()
                y = np.round(y * 255) / 255
                scores.append(psnr(y, c))
                before.append(psnr(n, c))
            out[name] = float(np.mean(scores))
            out[f"{name}:noisy"] = float(np.mean(before))
    out["score"] = float(np.mean([v for k, v in out.items() if ":" not in k]))
    return out


def cmd_validate(args) -> None:
    res = evaluate(Path(args.model or RUN), crop=args.crop)
    for k, v in res.items():
        print(f"{k:24s} {v:6.2f}")


def cmd_watch(args) -> None:
    """Validate each new epoch's model (model.safetensors) while training runs; keep the best."""
    import torch

    from aetk.artifacts import RunDir

    torch.set_num_threads(1)
    run = Path(args.run)
    rd = RunDir(run)
    csv_path, seen = run / "validation.csv", None
    sets = validation_sets()
    while True:
        training = alive(run / "train.pid")
        weights = rd.weights_file
        if weights.is_file():
            key = weights.stat().st_mtime
            if key != seen:
                seen = key
                snapshot = run / ".validating"
                shutil.rmtree(snapshot, ignore_errors=True)
                snapshot.mkdir()
                for f in (rd.info_file, rd.weights_file, rd.config_file):
                    if f.is_file():
                        shutil.copy2(f, snapshot / f.name)
                try:
                    res = evaluate(snapshot, sets)
                except Exception as exc:  # a model file caught mid-write: try again next time
                    print(f"watch: could not validate ({exc}); retrying", flush=True)
                    seen = None
                    time.sleep(30)
                    continue
                step = RunDir(snapshot).load_weights()[1].get("step", "")
                new = not csv_path.is_file()
                with open(csv_path, "a", newline="") as f:
                    w = csv.writer(f)
                    if new:
                        w.writerow(["time", "step", *res])
                    w.writerow([time.strftime("%Y-%m-%d %H:%M:%S"), step, *(f"{v:.3f}" for v in res.values())])
                best = run / "selected" / "score.json"
                if not best.is_file() or json.loads(best.read_text())["score"] < res["score"]:
                    shutil.rmtree(run / "selected", ignore_errors=True)
                    snapshot.rename(run / "selected")
                    (run / "selected" / "score.json").write_text(json.dumps({"step": step, **res}, indent=1))
                print(f"watch: step {step}: score {res['score']:.2f} dB, polyu {res['polyu-canon']:.2f} dB "
                      f"(noisy {res['polyu-canon:noisy']:.2f}), colour-awgn25 {res['colour-awgn25']:.2f}",
                      flush=True)
        if not training:
            return
        time.sleep(60)


def cmd_status(args) -> None:
    run = Path(args.run)
    print(f"training {'running' if alive(run / 'train.pid') else 'not running'}; "
          f"watcher {'running' if alive(run / 'watch.pid') else 'not running'}")
    from aetk.artifacts import RunDir

    if RunDir(run).has_checkpoint():
        st = RunDir(run).load_checkpoint()[1].get("state", {})
        n = st.get("epoch_count") or 0
        losses = ", ".join(f"{k} {v / n:.3f}" for k, v in (st.get("epoch_sums") or {}).items()) if n else ""
        print(f"last checkpoint: epoch {st.get('epoch')}, step {st.get('step')}, batch {st.get('batch')}"
              + (f"; this epoch so far: {losses}" if losses else ""))
    for p in (RunDir(run).metrics_file, run / "validation.csv"):
        if p.is_file():
            lines = p.read_text().splitlines()
            print(f"{p.name}:\n  " + "\n  ".join([lines[0], *lines[-5:]] if len(lines) > 6 else lines))


def cmd_export(args) -> None:
    from aetk.export import ExportOptions, export_run
    from aetk.export.sigma_graph import export_sigma_graph

    src = Path(args.model) if args.model else RUN / "selected"
    out = Path(args.out) if args.out else RUN / "export"
    # atol 1e-4: the decoder check feeds N(0, 1) codes (images far outside [0, 1]), where the
    # 40-conv U-Net's float32 rounding reached 1.5e-5 against the default 1e-5
    res = export_run(src, out, ExportOptions(atol=1e-4))
    model, _step = load_for_eval(src)
    sigma = export_sigma_graph(model, out)  # autoencoder-sigma.onnx: what --sigma runs
    print(f"exported {src} to {out}: {', '.join(res.files.values())}, {sigma.name} (--sigma override)")


def cmd_ship(args) -> None:
    """The export's blind graph and its --sigma sibling, weights stored as float16 (half the
    file, float32 arithmetic; tools/float16_storage.py checks each), as the shipped colour
    model: written beside the shipped files first, checked to be one model's (the check
    `aetk denoise --sigma` makes), then swapped in."""
    import tempfile

    from aetk.artifacts import ExportDir
    from aetk.artifacts.export_dir import sigma_graph_beside
    from aetk.denoise.denoiser import SHIPPED_MODEL, Denoiser, DenoiserError, check_sibling

    export = Path(args.export)
    blind_graph = ExportDir(export).graph("autoencoder")
    pairs = [(blind_graph, SHIPPED_MODEL), (sigma_graph_beside(blind_graph), sigma_graph_beside(SHIPPED_MODEL))]
    for src, _dst in pairs:
        if not src.is_file():
            raise SystemExit(f"{src} is missing: run `python recipes/denoiser.py export` first")
    with tempfile.TemporaryDirectory(prefix=".ship-", dir=SHIPPED_MODEL.parent) as tmp:
        staged = [(Path(tmp) / dst.name, dst) for _src, dst in pairs]
        for (src, _dst), (tmp_file, _) in zip(pairs, staged):
            subprocess.run([*python(), str(ROOT / "tools" / "float16_storage.py"), str(src), str(tmp_file)],
                           env=env(), check=True)
        try:
            given = check_sibling(Denoiser(staged[1][0], device="cpu", sigma=25), staged[0][0])
        except DenoiserError as exc:
            raise SystemExit(f"{export}: {exc}") from exc
        for tmp_file, dst in staged:
            os.replace(tmp_file, dst)
    step = ""
    if (export.parent / "selected" / "score.json").is_file():
        step = f", step {json.loads((export.parent / 'selected' / 'score.json').read_text())['step']}"
    print(f"shipped {SHIPPED_MODEL} and {sigma_graph_beside(SHIPPED_MODEL)} ({SHIPPED_MODEL.stat().st_size / 1e6:.1f} "
          f"MB each; weights {given.meta.weights_sha256[:12]}{step})")


def cmd_preview(args) -> None:
    """A PNG of noisy | denoised | clean crops (PolyU real noise; a held-out colour photo with
    sigma 25; a held-out gray photo with the camera pipeline) from a run folder's model."""
    import numpy as np
    import torch
    from PIL import Image

    model, step = load_for_eval(Path(args.model or RUN))
    sets = validation_sets()
    rows = []
    for name, i in (("polyu-canon", args.index), ("colour-awgn25", 0), ("gray-camera", 0)):
        noisy, clean = (a[i % len(a), :, :128, :128] for a in sets[name])
        with torch.no_grad():
            y = model.decode(model.encode(torch.from_numpy(noisy)[None]))[0].clamp(0, 1).numpy()
        rows.append(np.concatenate([noisy, y, clean], axis=2))
        print(f"{name}[{i}]: noisy {psnr(noisy, clean):.2f} dB -> {psnr(np.round(y * 255) / 255, clean):.2f} dB")
    img = (np.concatenate(rows, axis=1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
    out = Path(args.out)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.Resampling.NEAREST).save(out)
    print(f"wrote {out} (model at step {step})")


def cmd_speed(args) -> None:
    """Seconds per megapixel through ``aetk denoise``'s Denoiser (ONNX Runtime, 2 threads,
    default tiles) on a 1600x1000 photograph, in colour and as gray (the shipped default runs
    colour.onnx on one and gray.onnx on the other); min of --repeat."""
    import numpy as np

    from aetk.denoise.denoiser import Denoiser, load_denoiser
    from aetk.denoise.training_photos import load_rgb, wallpaper_paths

    img = load_rgb(wallpaper_paths()[0], None)[:, :1000, :1600].astype(np.float32) / 255
    den = Denoiser(Path(args.model), threads=THREADS) if args.model else load_denoiser(threads=THREADS)
    mp = img.shape[1] * img.shape[2] / 1e6
    for label, planes in (("colour", img), ("gray", img.mean(axis=0, keepdims=True))):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            den.denoise(planes)
            times.append(time.perf_counter() - t)
        print(f"{args.model or 'shipped default'}: {min(times) / mp:.2f} s/MP "
              f"(runs: {', '.join(f'{t / mp:.2f}' for t in times)}) on a {img.shape[2]}x{img.shape[1]} {label} photo")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data", help="build runs/denoiser-data")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_data)
    for name, fn in (("train", cmd_train), ("watch", cmd_watch), ("status", cmd_status)):
        p = sub.add_parser(name)
        p.add_argument("--run", default=str(RUN))
        if name == "train":
            p.add_argument("--foreground", action="store_true", help="wait for training to end")
        p.set_defaults(fn=fn)
    p = sub.add_parser("validate")
    p.add_argument("model", nargs="?", help="a run folder (default: runs/denoiser), or "
                   "runs/denoiser/checkpoints/last for the latest checkpoint")
    p.add_argument("--crop", type=int, default=None, help="validate on the top-left CROP pixels only (quick)")
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser("export")
    p.add_argument("model", nargs="?", help="a run folder (default: runs/denoiser/selected)")
    p.add_argument("--out", default=None)
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("ship", help="the export -> the shipped colour model (float16 storage)")
    p.add_argument("--export", default=str(RUN / "export"))
    p.set_defaults(fn=cmd_ship)
    p = sub.add_parser("preview", help="a PNG of noisy | denoised | clean validation crops")
    p.add_argument("model", nargs="?", help="a run folder (default: runs/denoiser), or "
                   "runs/denoiser/checkpoints/last for the latest checkpoint")
    p.add_argument("--out", default=str(RUN / "preview.png"))
    p.add_argument("--index", type=int, default=0, help="which PolyU pair")
    p.set_defaults(fn=cmd_preview)
    p = sub.add_parser("speed", help="s/MP of an exported model (default: the shipped one)")
    p.add_argument("model", nargs="?", help="an .onnx file")
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(fn=cmd_speed)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
