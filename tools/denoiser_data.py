#!/usr/bin/env python3
"""The denoiser recipe's data (aetk/denoise/training_photos.py): train.npz and validation.npz.

    python tools/denoiser_data.py runs/denoiser-data [--shared ../shared/data/denoise]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aetk.denoise.training_photos import build


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for train.npz and validation.npz")
    ap.add_argument("--shared", type=Path, default=None, help="the denoising data folder (../shared/data/denoise)")
    args = ap.parse_args(argv)
    counts = build(args.out, args.shared)
    print(", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
