"""``load_data``: pick the reader for ``data.path``, split, fit the normalization on the
training examples, and wrap both splits as map-style datasets.

Order of operations: the test set is the source's own (IDX t10k, built-ins, npz
``x_test``), else ``data.test_path``'s, else a held-out ``data.test_fraction``; then
``data.limit`` caps the training examples; then the normalization is fitted on exactly
the examples the model trains on and applied to both splits.
"""

from __future__ import annotations

import dataclasses
import gzip
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from aetk.checks import positive_int
from aetk.data.builtin import BUILTINS, builtin_name
from aetk.data.config import DataConfig
from aetk.data.source import CHUNK_BYTES, DataError, DataPathError, Source
from aetk.normalization import Moments, Normalization

if TYPE_CHECKING:  # torch is imported by load_data only: read_source serves torch-free code
    from torch.utils.data import Dataset

FORMATS = ("auto", "idx", "images", "npy", "npz", "csv", "builtin")
NORMALIZE = ("auto", "unit", "standardize", "none")
RESIZE = ("resize", "crop")


@dataclass
class LoadedData:
    train: Dataset
    test: Dataset | None
    input_shape: tuple[int, ...]
    normalization: Normalization
    num_classes: int | None
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)
    value_range: tuple[float, float] | None = None  # of normalized values, when known
    classes: list[str] | None = None  # label id -> name, when labels come from names

    def describe(self) -> str:
        """One line, e.g. "digits: 1438 train + 359 test examples of shape (1, 8, 8), ..."."""
        parts = [f"{self.source}: {len(self.train)} train"
                 + (f" + {len(self.test)} test" if self.test is not None else "")
                 + f" examples of shape {tuple(self.input_shape)}"]
        if self.num_classes:
            parts.append(f"{self.num_classes} classes")
        parts.append(self.normalization.describe())
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (first: {self.skipped[0][0]}: {self.skipped[0][1]})")
        return ", ".join(parts)


def check_config(cfg: DataConfig) -> DataConfig:
    """Validated copy of cfg (image_size as [H, W]); errors name the option and valid values."""
    if not isinstance(cfg.path, str) or not cfg.path.strip():
        raise DataError(f"data.path must name a file, a folder or a built-in dataset "
                         f"({', '.join(BUILTINS)}), got {cfg.path!r}")
    for opt, value, valid in (("format", cfg.format, FORMATS), ("normalize", cfg.normalize, NORMALIZE),
                              ("resize", cfg.resize, RESIZE)):
        if value not in valid:
            raise DataError(f"data.{opt}={value!r} is not one of {', '.join(valid)}")
    if cfg.channels not in (None, 1, 3) or isinstance(cfg.channels, bool):
        raise DataError(f"data.channels must be 1 (grayscale), 3 (RGB) or None (the data's own), "
                         f"got {cfg.channels!r}")
    size = cfg.image_size
    if size is not None:
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = [size, size]
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise DataError(f"data.image_size must be [H, W] (or one int for a square), got {size!r}")
        size = [positive_int("each of data.image_size", s, error=DataError) for s in size]
    positive_int("data.sequence_length", cfg.sequence_length, error=DataError, allow_none=True)
    positive_int("data.limit", cfg.limit, error=DataError, allow_none=True)
    tf = cfg.test_fraction
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 <= tf < 1:
        raise DataError(f"data.test_fraction must be a number in [0, 1), got {tf!r}")
    if not isinstance(cfg.extra, dict):
        raise DataError(f"data.extra must be a table (dict), got {type(cfg.extra).__name__}")
    return dataclasses.replace(cfg, image_size=size)


def _readers():
    from aetk.data.arrays import read_arrays
    from aetk.data.idx import read_idx_data
    from aetk.data.images import read_image_folder
    from aetk.data.tabular import read_csv
    return {"idx": read_idx_data, "images": read_image_folder, "npy": read_arrays,
            "npz": read_arrays, "csv": read_csv}


def detect_format(path: Path) -> str:
    """The reader for a path, from folder contents, file name or first bytes."""
    from aetk.data.idx import IDX_NAME, IDX_TYPES, is_gzip, is_idx_folder
    from aetk.data.imageio import IMAGE_SUFFIXES

    if path.is_dir():
        return "idx" if is_idx_folder(path) else "images"
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return "npy"
    if suffix in (".csv", ".tsv", ".tab"):
        return "csv"
    if suffix == ".idx" or IDX_NAME.search(path.name):
        return "idx"
    if suffix in IMAGE_SUFFIXES:
        raise DataError(f"data.path={str(path)!r} is a single image; point it at the folder "
                        f"holding the images")
    try:  # an IDX file under another name?
        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as f:
            head = f.read(4)
        if len(head) == 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPES and head[3] > 0:
            return "idx"
    except (OSError, EOFError):
        pass
    raise DataError(f"cannot tell the format of {path} from its name (suffix {suffix!r}); "
                    f"set data.format to one of {', '.join(f for f in FORMATS if f != 'auto')}")


def read_source(path: str, cfg: DataConfig, like: Source | None = None, what: str = "data.path",
                stream: bool = False) -> tuple[Source, Source | None, str]:
    """(source, the source's own test split or None, a description of where it came from).

    ``stream=True`` is for one pass in order over data of any size (``aetk compress``):
    arrays that cannot be memory-mapped (gzipped IDX, .npz members, CSV) are read front to
    back instead of loaded whole, and values are not scanned for their range."""
    p = Path(path).expanduser()
    name = builtin_name(path) if cfg.format in ("auto", "builtin") else None
    if name is not None and not p.exists():
        train, test = BUILTINS[name](cfg, like, stream)
        return train, test, name
    if cfg.format == "builtin":
        raise DataError(f"{what}={path!r} is not a built-in dataset; those are {', '.join(BUILTINS)}")
    if not p.exists():
        raise DataPathError(f"{what}={path!r} does not exist; expected a file, a folder, or "
                                f"a built-in dataset name ({', '.join(BUILTINS)})")
    if not p.is_dir():
        from aetk.data.imageguard import regular_file_problem

        if problem := regular_file_problem(p):  # a FIFO would block the reader forever
            raise DataError(f"{what}={path!r} is {problem.removesuffix(': skipped')}; expected a data "
                            f"file or folder")
    fmt = detect_format(p) if cfg.format == "auto" else cfg.format
    if p.is_dir() and fmt in ("npy", "npz", "csv"):
        raise DataError(f"{what}={path!r} is a folder, but data.format={fmt!r} reads one file")
    if p.is_file() and fmt == "images":
        raise DataError(f"{what}={path!r} is a file, but data.format='images' reads a folder of images")
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"no examples found in {p} (the file is empty)")
    train, test = _readers()[fmt](p, cfg, like, stream)
    return train, test, f"{'npy' if fmt == 'npz' else fmt} {p}"


def fit_normalization(kind: str, src: Source, idx: np.ndarray) -> Normalization:
    """The normalization `kind` ("auto" resolved by the source) fitted on src[idx]."""
    if kind == "auto":
        kind = src.auto_norm
    if kind == "none":
        known = src.nominal_scale and src.raw_min >= 0
        return Normalization.none((0.0, float(src.unit_scale)) if known else None)
    if kind == "unit":
        return Normalization.unit(src.unit_scale, (0.0, 1.0) if src.raw_min >= 0 else (-1.0, 1.0))
    target = src.stat_shape
    src, idx = src.stat_view(idx)
    shape, stat = src.input_shape, src.stat_shape
    axes = (0,) + tuple(k + 1 for k, (s, t) in enumerate(zip(shape, stat)) if t == 1 and s != 1)
    step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape))))
    m = Moments()
    for start in range(0, len(idx), step):  # chunked: memory maps and folders stay on disk
        m.update(src.get_many(idx[start:start + step]), axes)
    mean, std = m.result()
    return Normalization.standardize(mean, std, shape=target)


def load_data(cfg: DataConfig) -> LoadedData:
    """Read cfg.path (and cfg.test_path) into normalized train/test datasets."""
    from aetk.data.base import SourceDataset

    cfg = check_config(cfg)
    train_src, test_src, source = read_source(cfg.path, cfg)
    skipped = list(train_src.skipped)
    train_idx = np.arange(len(train_src))
    if cfg.test_path:
        test_src, _, _ = read_source(cfg.test_path, cfg, like=train_src, what="data.test_path")
    if test_src is not None:
        if tuple(test_src.input_shape) != tuple(train_src.input_shape):
            raise DataError(f"test examples in {test_src.name} have shape {test_src.input_shape} "
                            f"but training examples in {train_src.name} have "
                            f"{train_src.input_shape}; they must match (see data.image_size)")
        test_idx = np.arange(len(test_src))
        skipped += test_src.skipped
    elif cfg.test_fraction > 0:
        train_idx, test_idx = train_src.split(cfg.test_fraction)
        test_src = train_src
    train_idx = train_src.limit(train_idx, cfg.limit)
    norm = fit_normalization(cfg.normalize, train_src, train_idx)
    return LoadedData(
        train=SourceDataset(train_src, train_idx, norm),
        test=SourceDataset(test_src, test_idx, norm) if test_src is not None else None,
        input_shape=tuple(int(s) for s in train_src.input_shape),
        normalization=norm,
        num_classes=train_src.num_classes,
        source=source,
        skipped=skipped,
        value_range=norm.value_range,
        classes=train_src.classes,
    )
