"""What data to train or evaluate on (the ``[data]`` table of a run config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aetk.settings import setting


@dataclass
class DataConfig:
    # A file or folder (IDX, image folder, .npy/.npz, .csv), or a built-in name:
    # "fashion-mnist" (Debian package dataset-fashion-mnist), "digits" (scikit-learn).
    path: str = setting("digits", pattern=r"(?s).*\S.*", what="a file, a folder or a built-in dataset name")
    format: str = setting("auto", choices=("auto", "idx", "images", "npy", "npz", "csv", "builtin"))
    test_path: str | None = None  # separate test set (else the reader's own split, if any)
    # [H, W] (or one int for a square): resize or crop images to this size
    image_size: list[int] | int | None = setting(None, min=1, length=2, what="[H, W] or one positive integer")
    resize: str = setting("resize", choices=("resize", "crop"))  # (center crop) when image_size is set
    channels: int | None = setting(None, choices=(1, 3), what="1 (grayscale) or 3 (RGB)")  # None keeps the data's own
    normalize: str = setting("auto", choices=("auto", "unit", "standardize", "none"))
    label_column: str | None = None  # CSV: column holding labels, excluded from features
    sequence_length: int | None = setting(None, min=1)  # CSV/npy time series: window length for the lstm model
    limit: int | None = setting(None, min=1)  # use at most this many training examples
    test_fraction: float = setting(0.0, min=0, below=1)  # hold out this fraction as test set when there is none
    extra: dict = field(default_factory=dict)
