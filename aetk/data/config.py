"""What data to train or evaluate on (the ``[data]`` table of a run config)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    # A file or folder (IDX, image folder, .npy/.npz, .csv), or a built-in name:
    # "fashion-mnist" (Debian package dataset-fashion-mnist), "digits" (scikit-learn).
    path: str = "digits"
    format: str = "auto"  # auto | idx | images | npy | csv
    test_path: str | None = None  # separate test set (else the reader's own split, if any)
    image_size: list[int] | None = None  # [H, W]: resize or crop images to this size
    resize: str = "resize"  # resize | crop (center crop) when image_size is set
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None keeps the data's own
    normalize: str = "auto"  # auto | unit | standardize | none
    label_column: str | None = None  # CSV: column holding labels, excluded from features
    sequence_length: int | None = None  # CSV/npy time series: window length for the lstm model
    limit: int | None = None  # use at most this many training examples
    test_fraction: float = 0.0  # hold out this fraction as test set when there is none
    extra: dict = field(default_factory=dict)
