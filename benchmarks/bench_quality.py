"""Quality and training speed of aetk's autoencoders on Fashion-MNIST.

What is measured (test set, 10,000 images in [0, 1]):

- summed squared error per test image of PCA with 30 components, of a 30-d ``conv``
  autoencoder and of a 784-1000-500-250-30 ``deep`` MLP (Hinton & Salakhutdinov's
  figure of merit; targets: conv <= 0.45 x PCA-30, deep <= 0.65 x PCA-30);
- VAE ELBO per image (Bernoulli likelihood) with 2-d and 20-d latents;
- denoising: PSNR of corrupted inputs vs reconstructions, masking 25% and Gaussian
  sigma = 0.3;
- sparse (KL to rho) and contractive models: their statistics;
- training throughput of aetk's trainer against a hand-written PyTorch loop training the
  same model on the same data (target: within 5%).

Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).

    .venv/bin/python benchmarks/bench_quality.py            # the full table (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench_quality.py --quick    # a smoke run on a subset
    .venv/bin/python benchmarks/bench_quality.py --only conv deep --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from aetk.config import load_config
from aetk.data import DataConfig, load_data
from aetk.artifacts import RunDir, train_run as train

RUNS = {
    # name: (overrides, epochs)
    "conv": (['model.kind="conv"', "model.code_size=30", 'model.loss="bce"'], 8),
    "deep": (['model.kind="deep"', "model.widths=[1000, 500, 250, 30]", 'model.loss="bce"',
              'model.output="sigmoid"'], 12),
    "vae2": (['model.kind="vae"', "model.latent_dim=2", 'model.likelihood="bernoulli"'], 10),
    "vae20": (['model.kind="vae"', "model.latent_dim=20", 'model.likelihood="bernoulli"'], 10),
    "dae_masking": (['model.kind="denoising"', 'model.base="conv"',
                     'model.base_params={code_size = 64, loss = "bce"}',
                     'model.corruption="masking"', "model.level=0.25"], 3),
    "dae_gaussian": (['model.kind="denoising"', 'model.base="conv"',
                      'model.base_params={code_size = 64, loss = "bce"}',
                      'model.corruption="gaussian"', "model.level=0.3"], 3),
    "sparse": (['model.kind="sparse"', "model.code_size=196", 'model.penalty="kl"',
                "model.rho=0.05", "model.beta=3.0", 'model.loss="bce"'], 5),
    "contractive": (['model.kind="contractive"', "model.code_size=256", "model.lam=0.1",
                     'model.loss="bce"'], 5),
}


def test_tensors(data, limit=None):
    xs = [data.test[i][0] for i in range(len(data.test) if limit is None else min(limit, len(data.test)))]
    return torch.stack(xs)


def pca_sse(train_x: torch.Tensor, test_x: torch.Tensor, k: int) -> float:
    a = train_x.reshape(len(train_x), -1).double()
    mean = a.mean(0)
    _, _, v = torch.linalg.svd(a - mean, full_matrices=False)
    basis = v[:k]
    t = test_x.reshape(len(test_x), -1).double() - mean
    rec = t @ basis.T @ basis
    return float(((rec - t) ** 2).sum(1).mean())


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, bs: int = 1000) -> torch.Tensor:
    return torch.cat([model.decode(model.encode(x[i:i + bs])) for i in range(0, len(x), bs)])


def sse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).reshape(len(a), -1).sum(1).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / mse)


def train_run(name, overrides, epochs, workdir: Path, common: list[str]) -> tuple[Path, float]:
    run = workdir / name
    cfg = load_config(None, common + overrides + [f"train.epochs={epochs}"])
    t0 = time.perf_counter()
    train(cfg, run)
    return run, time.perf_counter() - t0


@torch.no_grad()
def evaluate(name, run: Path, x: torch.Tensor) -> dict:
    model, meta = RunDir(run).load_model()
    out: dict = {"train_samples_per_s": meta["metrics"].get("samples_per_s")}
    if name.startswith("vae"):
        terms = [model(x[i:i + 1000]) for i in range(0, len(x), 1000)]
        n = [min(1000, len(x) - i) for i in range(0, len(x), 1000)]
        out["elbo"] = sum(float(t["elbo"]) * k for t, k in zip(terms, n)) / len(x)
        out["sse"] = sse(reconstruct(model, x), x)
    elif name.startswith("dae"):
        noisy = torch.cat([model.corrupt_input(x[i:i + 1000], step=10**9 + i)
                           for i in range(0, len(x), 1000)])
        model.eval()
        den = reconstruct(model, noisy)
        out["psnr_noisy"] = psnr(noisy, x)
        out["psnr_denoised"] = psnr(den, x)
        out["gain_db"] = out["psnr_denoised"] - out["psnr_noisy"]
    else:
        out["sse"] = sse(reconstruct(model, x), x)
        if name == "sparse":
            z = torch.cat([model.encode(x[i:i + 1000]) for i in range(0, len(x), 1000)])
            out["mean_activation"] = float(z.mean())
            out["frac_below_0.1"] = float((z < 0.1).float().mean())
        if name == "contractive":
            jn = torch.cat([model.jacobian_norm(x[i:i + 1000]) for i in range(0, len(x), 1000)])
            out["mean_jacobian_norm"] = float(jn.mean())
    return out


def throughput_vs_hand_loop(workdir: Path, common: list[str], steps: int) -> dict:
    """Same conv model, same data, same batch size: aetk's trainer vs a plain loop."""
    from aetk.models.registry import create_model

    data = load_data(DataConfig(path="fashion-mnist"))
    n = steps * 128
    cfg = load_config(None, common + RUNS["conv"][0] + ["train.epochs=1", f"data.limit={n}",
                                                        "train.val_fraction=0"])
    t0 = time.perf_counter()
    result = train(cfg, workdir / "speed")
    aetk_rate = result.history[-1]["samples_per_s"]
    wall = time.perf_counter() - t0

    # The loop a PyTorch user writes: tensors in memory, a shuffling DataLoader, Adam.
    torch.manual_seed(0)
    x = torch.stack([data.train[i][0] for i in range(n)])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=128,
                                         shuffle=True)
    model = create_model("conv", data.input_shape, code_size=30, loss="bce")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for (xb,) in loader:
        loss = model(xb)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    hand_rate = n / (time.perf_counter() - t0)
    return {"aetk_samples_per_s": aetk_rate, "hand_loop_samples_per_s": hand_rate,
            "ratio": aetk_rate / hand_rate, "aetk_wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a subset and 1 epoch each (smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help=f"runs to do: {', '.join(RUNS)}, speed")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--workdir", default=None, help="keep the run folders here")
    args = ap.parse_args(argv)

    try:
        data = load_data(DataConfig(path="fashion-mnist"))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common = ['data.path="fashion-mnist"', "train.batch_size=128", "train.progress=true",
              "train.val_fraction=0.05", "train.tensorboard=false"]
    if args.quick:
        common += ["data.limit=3000"]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aetk-quality-"))
    selected = args.only or [*RUNS, "speed"]
    x_test = test_tensors(data, 1000 if args.quick else None)
    train_x = torch.stack([data.train[i][0] for i in range(3000 if args.quick else len(data.train))])

    results: dict = {"pca30_sse": pca_sse(train_x, x_test, 30)}
    print(f"PCA-30: {results['pca30_sse']:.2f} summed squared error per test image")
    for name in selected:
        if name == "speed":
            continue
        overrides, epochs = RUNS[name]
        epochs = 1 if args.quick else max(1, round(epochs * args.epochs_scale))
        run, secs = train_run(name, overrides, epochs, workdir, common)
        results[name] = {"epochs": epochs, "train_s": secs, **evaluate(name, run, x_test)}
        print(name, json.dumps(results[name]))
    if "speed" in selected:
        results["speed"] = throughput_vs_hand_loop(workdir, common, 30 if args.quick else 150)
        print("speed", json.dumps(results["speed"]))

    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    pca = r["pca30_sse"]
    t = Table(title="aetk on Fashion-MNIST (test set)")
    for c in ("model", "epochs", "metric", "value", "vs PCA-30", "target", "met?"):
        t.add_column(c)
    t.add_row("PCA-30", "—", "SSE / image", f"{pca:.2f}", "1.00", "", "")
    targets = {"conv": 0.45, "deep": 0.65}
    for name, res in r.items():
        if not isinstance(res, dict) or name == "speed":
            continue
        ep = str(res.get("epochs", ""))
        if "sse" in res:
            ratio = res["sse"] / pca
            tgt = targets.get(name)
            t.add_row(name, ep, "SSE / image", f"{res['sse']:.2f}", f"{ratio:.2f}",
                      f"≤ {tgt} × PCA" if tgt else "", ("yes" if ratio <= tgt else "no") if tgt else "")
        if "elbo" in res:
            t.add_row(name, ep, "ELBO / image (nats)", f"{res['elbo']:.1f}", "", "", "")
        if "gain_db" in res:
            t.add_row(name, ep, "PSNR noisy → denoised",
                      f"{res['psnr_noisy']:.2f} → {res['psnr_denoised']:.2f} dB (+{res['gain_db']:.2f})",
                      "", "", "")
        if "mean_activation" in res:
            t.add_row(name, ep, "mean code activation", f"{res['mean_activation']:.3f}", "", "ρ = 0.05", "")
        if "mean_jacobian_norm" in res:
            t.add_row(name, ep, "mean ‖J‖²_F", f"{res['mean_jacobian_norm']:.3f}", "", "", "")
    if "speed" in r:
        s = r["speed"]
        t.add_row("conv (speed)", "", "samples/s aetk vs hand loop",
                  f"{s['aetk_samples_per_s']:.0f} vs {s['hand_loop_samples_per_s']:.0f}",
                  f"{s['ratio']:.2f}×", "≥ 0.95×", "yes" if s["ratio"] >= 0.95 else "no")
    Console(width=160).print(t)


if __name__ == "__main__":
    sys.exit(main())
