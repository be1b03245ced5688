"""What a compress, decompress or neighbors job is asked to do, one frozen dataclass each.

    options = CompressOptions(precision="int8", zstd=True, engine=Ray(workers=8))
    compress("photos/", "runs/conv", "codes/", options, progress)

The defaults live here only (the CLI builds its options from these fields); the Ray engine
ships the options object whole to its actors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from aetk.options import option

DEVICE_HELP = "auto, cpu, cuda or cuda:N."


@dataclass(frozen=True)
class Local:
    """Encode in this process: reader and writer threads around one ONNX Runtime session."""

    name = "local"


@dataclass(frozen=True)
class Ray:
    """Encode on Ray Data: an actor pool, one session per actor (aetk/compress/ray_engine.py)."""

    name = "ray"
    address: Optional[str] = option(None, "--ray-address", "A running Ray cluster (auto, ray://host:10001); "
                                    "default: a local one.")
    workers: Optional[int] = option(None, "--workers", "Ray actors (default: one per --cpus-per-worker CPUs).",
                                    min=1)
    cpus_per_worker: float = option(1.0, "--cpus-per-worker", "CPUs per Ray actor (more than 0).")
    gpus_per_worker: float = option(0.0, "--gpus-per-worker", "GPUs per Ray actor.", min=0)


ENGINES = {"local": Local, "ray": Ray}


@dataclass(frozen=True)
class ReaderOptions:
    """How the data is read (the readers of ``aetk train``); None: the reader's (or the run's) own."""

    format: Optional[str] = option(None, "--data-format", "auto, idx, images, npy, csv, builtin.")
    image_size: Optional[tuple[int, int]] = option(None, "--image-size", "Resize (or crop) images to HxW.")
    resize: Optional[str] = option(None, "--resize", "resize or crop, with --image-size.")
    channels: Optional[int] = option(None, "--channels", "1 (gray) or 3 (RGB).")
    label_column: Optional[str] = option(None, "--label-column", "CSV: the label column (not a feature).")
    sequence_length: Optional[int] = option(None, "--sequence-length", "CSV/npy time series: window length.",
                                            min=1)
    delimiter: Optional[str] = option(None, "--delimiter", "CSV delimiter.")

    def given(self) -> dict[str, Any]:
        """The options set, as aetk.data.DataConfig's reader fields."""
        out = {k: getattr(self, k) for k in ("format", "resize", "channels", "label_column", "sequence_length")}
        out["image_size"] = list(self.image_size) if self.image_size is not None else None
        out["extra"] = {"delimiter": self.delimiter} if self.delimiter else None
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class CompressOptions:
    precision: str = option("float32", "--precision", "float32, float16, or int8 (per-dimension scale and offset).")
    shard_format: str = option("npy", "--shard-format", "npy or parquet.")
    zstd: bool = option(False, "--zstd", "zstd-compress the shards.")
    zstd_level: int = option(3, "--zstd-level", "zstd level.", min=1, max=22)
    shard_size: int = option(16384, "--shard-size", "Items per shard.", min=1)
    batch_size: int = option(512, "--batch-size", "Items per encoder call.", min=1)
    device: str = option("auto", "--device", DEVICE_HELP)
    threads: Optional[int] = option(None, "--threads", "ONNX Runtime intra-op threads.", min=1)
    overwrite: bool = option(False, "--overwrite", "Replace codes of another job (changed model, preprocessing "
                             "or settings) instead of refusing.")
    evaluate: bool = option(False, "--eval", "Decompress again and report reconstruction PSNR.")
    png_sample: int = option(256, "--png-sample", "Images saved as PNG to compare sizes against (0: none).",
                             min=0, what="a non-negative integer")
    engine: Union[Local, Ray] = field(default_factory=Local)
    reader: ReaderOptions = field(default_factory=ReaderOptions)

    @property
    def compression(self) -> str:
        return "zstd" if self.zstd else "none"


@dataclass(frozen=True)
class DecompressOptions:
    arrays: bool = option(False, "--arrays", "Write OUT/<part>.npy arrays instead of the sources' formats.")
    device: str = option("auto", "--device", DEVICE_HELP)
    batch_size: int = option(512, "--batch-size", "Codes per decoder call.", min=1)
    overwrite: bool = option(False, "--overwrite", "Replace files that exist in OUT (never the source the "
                             "codes were made from).")


@dataclass(frozen=True)
class NeighborsOptions:
    k: int = option(5, "--k", "Neighbours per query.", short="-k", min=1)
    metric: str = option("cosine", "--metric", "cosine or euclidean.")
    device: str = option("auto", "--device", DEVICE_HELP)


__all__ = ["CompressOptions", "DecompressOptions", "ENGINES", "Local", "NeighborsOptions", "Ray",
           "ReaderOptions"]
