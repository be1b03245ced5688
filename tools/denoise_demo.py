"""The denoising part of ``make demo``: noisy test photographs, then a PSNR table.

    python tools/denoise_demo.py noisy runs/demo-denoise --sigma 25    # clean/ and noisy/ PNGs
    python tools/denoise_demo.py score runs/demo-denoise noisy shipped small   # PSNR per folder
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def noisy_u8(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``clean`` (uint8) plus Gaussian noise of ``sigma`` (0-255), clipped and rounded to 8
    bits, as a saved noisy image is."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8)


def write_noisy(root: Path, sigma: float, names: tuple[str, ...] | None = None) -> list[str]:
    """Grayscale test photographs (never trained on) as root/clean/*.png and, with Gaussian
    noise of ``sigma`` (0-255) clipped and rounded to 8 bits, as root/noisy/*.png."""
    from PIL import Image

    from aetk.denoise.photos import TEST, load_photo

    names = names or TEST
    for sub in ("clean", "noisy"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        clean = load_photo(name)
        Image.fromarray(clean).save(root / "clean" / f"{name}.png")
        Image.fromarray(noisy_u8(clean, sigma, seed=i)).save(root / "noisy" / f"{name}.png")
    return list(names)


def score(root: Path, folders: list[str]) -> dict[str, dict[str, float]]:
    """PSNR (dB) of every image in root/<folder>/ against root/clean/, per folder."""
    from PIL import Image

    from aetk.evaluate.metrics import array_psnr

    out: dict[str, dict[str, float]] = {}
    for folder in folders:
        out[folder] = {}
        for ref in sorted((root / "clean").glob("*.png")):
            with Image.open(ref) as a, Image.open(root / folder / ref.name) as b:
                out[folder][ref.stem] = array_psnr(np.asarray(b), np.asarray(a), 255.0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("noisy")
    a.add_argument("root", type=Path)
    a.add_argument("--sigma", type=float, default=25.0)
    b = sub.add_parser("score")
    b.add_argument("root", type=Path)
    b.add_argument("folders", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "noisy":
        names = write_noisy(args.root, args.sigma)
        print(f"wrote {len(names)} clean and noisy (sigma {args.sigma:g}) photographs to {args.root}")
        return
    from rich.console import Console
    from rich.table import Table

    scores = score(args.root, args.folders)
    table = Table(title=f"PSNR (dB) against the clean photographs in {args.root}/clean")
    table.add_column("photograph")
    for f in args.folders:
        table.add_column(f, justify="right")
    for name in next(iter(scores.values())):
        table.add_row(name, *(f"{scores[f][name]:.2f}" for f in args.folders))
    table.add_section()
    table.add_row("mean", *(f"{np.mean(list(scores[f].values())):.2f}" for f in args.folders))
    Console().print(table)


if __name__ == "__main__":
    main()
