#!/usr/bin/env python3
"""Training and validation patches of the offline photographs (aetk/denoise/photos.py) as one .npz.

    python tools/denoise_patches.py patches.npz --wallpapers --stride 48
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aetk.atomic import atomic_open
from aetk.denoise.photos import TRAIN, VALIDATION, patches, wallpaper_paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the .npz to write (x: training patches, x_test: validation)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--stride", type=int, default=32)
    ap.add_argument("--wallpapers", action="store_true",
                    help="add the photographic wallpapers of Debian's mate-backgrounds and "
                         "lomiri-wallpapers-16.04 to the training photographs")
    args = ap.parse_args(argv)
    train_photos = [*TRAIN, *(wallpaper_paths() if args.wallpapers else [])]
    train = patches(train_photos, args.size, args.stride)
    val = patches(VALIDATION, args.size, args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out, "wb") as f:  # whole or not at all, with the umask's mode
        np.savez(f, x=train, x_test=val)
    print(f"wrote {len(train)} training and {len(val)} validation patches of {args.size}x{args.size} "
          f"from {len(train_photos)} + {len(VALIDATION)} photographs to {args.out}")


if __name__ == "__main__":
    main()
