"""What ``aetk denoise`` is asked to do: one frozen dataclass, its defaults and flags.

    summary = denoise_paths([Path("photos")], None, None, DenoiseOptions(device="cpu", ensemble=4))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aetk.data.imageguard import DEFAULT_MAX_PIXELS
from aetk.options import option


@dataclass(frozen=True)
class DenoiseOptions:
    sigma: Optional[float] = option(None, "--sigma", "Noise level (0-255 scale), for a non-blind model, or a blind one with an X-sigma.onnx "
                                    "sibling (run instead; the shipped default runs colour-sigma.onnx on every image).", min=0)
    device: str = option("auto", "--device", "auto, cpu or cuda.")
    batch_size: Optional[int] = option(None, "--batch-size", "Tiles per model call (default 4).", min=1)
    workers: int = option(2, "--workers", "Threads decoding and encoding files.", min=1)
    threads: Optional[int] = option(None, "--threads", "ONNX Runtime intra-op threads.", min=1)
    tile: Optional[int] = option(None, "--tile", "Largest tile side in pixels (default 512); images are cut into "
                                 "equal tiles.", min=8)
    overlap: Optional[int] = option(None, "--overlap", "Tile overlap in pixels (default 32).", min=0)
    ensemble: Optional[int] = option(None, "--ensemble", "Average the model over 1, 2, 4 or 8 mirrored and rotated "
                                     "copies of each tile: a little more quality for 2x, 4x or 8x the time (default 1).")
    format: Optional[str] = option(None, "--format", "Write this format instead of the input's: png, jpeg, tiff, "
                                   "bmp or webp.")
    quality: int = option(95, "--quality", "JPEG/WebP quality.", min=1, max=100)
    skip_existing: bool = option(False, "--skip-existing", "Skip images whose output exists (finishes an "
                                 "interrupted run).")
    dry_run: bool = option(False, "--dry-run", "List what would be written, and stop.")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "--max-pixels", "Refuse larger images (decompression-bomb guard; "
                             "decode memory is bounded too, see AETK_DECODE_MEMORY).", min=1)
    reference: Optional[Path] = option(None, "--reference", "Folder of clean images laid out like the inputs "
                                       "(same relative paths; any image suffix): score each output (PSNR/SSIM).")


__all__ = ["DenoiseOptions"]
