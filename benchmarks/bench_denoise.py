"""Denoising quality and speed: noisy input, OpenCV's non-local means, BM3D and aetk's
shipped model, side by side, on grayscale photographs the model was not trained on.

    python benchmarks/bench_denoise.py             # sigma 15, 25, 50 on every test photo
    python benchmarks/bench_denoise.py --quick     # sigma 25 on two photos
    python benchmarks/bench_denoise.py --model out/autoencoder.onnx
    python benchmarks/bench_denoise.py --ensemble default,1,4 # also aetk averaged over 1 and 4 mirrorings/rotations

Noise: Gaussian of standard deviation sigma (0-255 scale), added to the clean photograph,
clipped to 0..255 and rounded to 8 bits, as a saved noisy image is. BM3D is given the true
sigma (it is not blind); non-local means gets h = HF * sigma with HF chosen on the
validation photo; aetk's model is blind. "aetk" is `aetk denoise` as it runs by default: the
shipped model once, or on images whose estimated noise level is light four passes shared
with its light-noise copy (aetk/denoise/denoiser.py); "aetk ×N" is N passes for every image. PSNR and SSIM are against the clean photograph;
time is wall-clock seconds per megapixel on this machine, every method on the same threads.

Needs: pip install opencv-python-headless bm3d   (the `bench` extra)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from aetk.denoise.demo import noisy_u8 as noisy_version
from aetk.evaluate.metrics import array_psnr as psnr

TARGETS = "aetk PSNR >= BM3D at sigma 25 and >= 10x faster than BM3D; aetk >= NLM + 1.5 dB at every sigma"


def ssim(x: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(x, ref, data_range=1.0))


def nlm(noisy_u8: np.ndarray, sigma: float, hf: float) -> np.ndarray:
    import cv2

    return cv2.fastNlMeansDenoising(noisy_u8, None, h=hf * sigma, templateWindowSize=7,
                                    searchWindowSize=21).astype(np.float32) / 255.0


def bm3d_denoise(noisy_u8: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d(noisy_u8.astype(np.float32) / 255.0, sigma_psd=sigma / 255.0), np.float32)


def pick_nlm_h(sigmas: list[float]) -> dict[float, float]:
    """h / sigma for non-local means per sigma, the best on the validation photograph."""
    from aetk.denoise.photos import VALIDATION, load_photo

    clean = load_photo(VALIDATION[0])
    ref = clean.astype(np.float32) / 255.0
    best = {}
    for s in sigmas:
        noisy = noisy_version(clean, s, seed=999)
        best[s] = max((0.6, 0.8, 1.0, 1.2, 1.4), key=lambda hf: psnr(nlm(noisy, s, hf), ref))
    return best


def timed(fn, *args) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sigma 25 on two photographs")
    ap.add_argument("--model", default=None, help="an exported model (default: the shipped one)")
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--ensemble", default="default", help="aetk's --ensemble values to measure, comma-separated: "
                                                        "default (as `aetk denoise` without --ensemble), 1, 2, 4 "
                                                        "or 8 (mirrored and rotated copies averaged)")
    ap.add_argument("--no-bm3d", action="store_true", help="skip BM3D (slow)")
    args = ap.parse_args()

    import cv2
    from rich.console import Console
    from rich.table import Table

    import aetk
    from aetk.denoise import load_denoiser
    from aetk.denoise.photos import TEST, load_photo

    threads = os.cpu_count() or 1
    cv2.setNumThreads(threads)
    sigmas = [25.0] if args.quick else [float(s) for s in args.sigmas.split(",")]
    names = list(TEST[:2] if args.quick else TEST)
    photos = {n: load_photo(n) for n in names}
    megapixels = sum(p.size for p in photos.values()) / 1e6
    ensembles = [None if e == "default" else int(e) for e in args.ensemble.split(",")]
    aetk_rows = {("aetk" if e is None else f"aetk ×{e}"): load_denoiser(args.model, device="cpu", threads=threads,
                                                                        ensemble=e) for e in ensembles}
    den = next(iter(aetk_rows.values()))
    console = Console()
    console.print(f"aetk {aetk.__version__} · {platform.processor() or platform.machine()} · {threads} thread(s) · "
                  f"{len(names)} test photographs ({', '.join(names)}), {megapixels:.2f} MP in all")
    console.print(f"model: {den.path} ({den.meta.kind}, blind={den.blind}); aetk ×N: averaged over N mirrorings/rotations; "
                  f"tiles of at most {den.tile} pixels")
    console.print(f"aetk: {den.describe()}")
    hf = pick_nlm_h(sigmas)
    console.print("non-local means h/sigma from the validation photo: " +
                  ", ".join(f"σ={s:g}: {v:g}" for s, v in hf.items()))

    table = Table(title="denoising: mean PSNR (dB) / SSIM over the test photographs, seconds per megapixel")
    for col in ("σ", "method", "PSNR dB", "SSIM", "s / MP", "vs BM3D time", "Δ PSNR vs NLM"):
        table.add_column(col, justify="left" if col == "method" else "right")
    results: dict[tuple[float, str], tuple[float, float, float]] = {}
    methods = ["noisy", "non-local means", *([] if args.no_bm3d else ["BM3D"]), *aetk_rows]
    for s in sigmas:
        scores: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
        seconds = {m: 0.0 for m in methods}
        for i, (name, clean) in enumerate(photos.items()):
            ref = clean.astype(np.float32) / 255.0
            noisy = noisy_version(clean, s, seed=i)
            outs = {"noisy": (noisy.astype(np.float32) / 255.0, 0.0)}
            outs["non-local means"] = timed(nlm, noisy, s, hf[s])
            if not args.no_bm3d:
                outs["BM3D"] = timed(bm3d_denoise, noisy, s)
            for label, d in aetk_rows.items():
                d.denoise(noisy[None, :64, :64].astype(np.float32) / 255.0)  # warm-up
                out, t = timed(d.denoise, noisy[None].astype(np.float32) / 255.0)
                outs[label] = (np.clip(out[0], 0, 1), t)
            for m, (img, t) in outs.items():
                scores[m].append((psnr(img, ref), ssim(img, ref)))
                seconds[m] += t
        for m in methods:
            p = float(np.mean([a for a, _ in scores[m]]))
            q = float(np.mean([b for _, b in scores[m]]))
            results[(s, m)] = (p, q, seconds[m] / megapixels)
        for m in methods:
            p, q, spm = results[(s, m)]
            vs_bm3d = "—"
            if m not in ("noisy", "BM3D") and (s, "BM3D") in results and spm > 0:
                vs_bm3d = f"{results[(s, 'BM3D')][2] / spm:.1f}× faster"
            d_nlm = "—" if m in ("noisy", "non-local means") else f"{p - results[(s, 'non-local means')][0]:+.2f}"
            table.add_row(f"{s:g}", m, f"{p:.2f}", f"{q:.4f}", "—" if m == "noisy" else f"{spm:.2f}", vs_bm3d, d_nlm)
        table.add_section()
    console.print(table)

    verdicts = []
    for label in aetk_rows:
        if not args.no_bm3d and (25.0, "BM3D") in results:
            a, b = results[(25.0, label)], results[(25.0, "BM3D")]
            verdicts.append((f"{label} PSNR >= BM3D at σ=25", a[0] >= b[0], f"{a[0]:.2f} vs {b[0]:.2f} dB"))
            speedup = b[2] / np.mean([results[(s, label)][2] for s in sigmas])
            verdicts.append((f"{label} >= 10× faster than BM3D", speedup >= 10, f"{speedup:.1f}×, all σ"))
        for s in sigmas:
            a, n = results[(s, label)][0], results[(s, "non-local means")][0]
            verdicts.append((f"{label} >= NLM + 1.5 dB at σ={s:g}", a - n >= 1.5, f"{a - n:+.2f} dB"))
    console.print(f"targets: {TARGETS}")
    for what, ok, detail in verdicts:
        console.print(f"  {'met' if ok else 'NOT met'}: {what} ({detail})")

    try:
        import aetk.runtime as rt

        rt.available_providers("cuda")
        gpu = load_denoiser(args.model, device="cuda")
        img = next(iter(photos.values())).astype(np.float32)[None] / 255.0
        gpu.denoise(img)
        t = time.perf_counter()
        for _ in range(5):
            gpu.denoise(img)
        console.print(f"GPU: {5 * img.size / 1e6 / (time.perf_counter() - t):.1f} MP/s with the CUDA provider")
    except Exception as exc:  # no GPU here: say so
        console.print(f"GPU: not measured ({str(exc).splitlines()[0][:120]})")


if __name__ == "__main__":
    main()
