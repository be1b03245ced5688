"""Examples held in arrays: ``.npy`` (memory-mapped, so large files are never loaded
whole) and ``.npz`` files, plus the array source the IDX, CSV and built-in readers share,
and sliding windows over rows for time series.

An ``.npz`` names its arrays: ``x`` (or ``X``, ``data``, ``x_train``), optional labels
``y`` (or ``labels``, ``Y``, ``y_train``, ``targets``) and an optional test split
``x_test``/``y_test``. A single unnamed array is taken as ``x``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aetk.data.source import CHUNK_BYTES, DataError, Source, _count
from aetk.data.config import DataConfig

X_KEYS = ("x", "X", "data", "x_train", "X_train")
Y_KEYS = ("y", "labels", "Y", "y_train", "Y_train", "targets")
X_TEST_KEYS = ("x_test", "X_test")
Y_TEST_KEYS = ("y_test", "Y_test", "labels_test")


class ArraySource(Source):
    """Examples x[i] of an (N, ...) array (in memory or memory-mapped), read as float32.

    ``example_shape`` reshapes each example (e.g. (H, W) -> (1, H, W)); ``transform``
    (an images.ImageTransform) converts channels and size of image-like examples.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, *, name: str,
                 example_shape: tuple[int, ...] | None = None, transform: Any = None,
                 classes: list[str] | None = None, num_classes: int | None = None,
                 value_bounds: tuple[float, float] | None = None):
        self.x = x
        self.labels = labels
        self.name = name
        self.example_shape = tuple(example_shape) if example_shape is not None else tuple(x.shape[1:])
        self.transform = transform
        self.input_shape = transform.output_shape(self.example_shape) if transform else self.example_shape
        self.classes, self.num_classes = classes, num_classes
        self.skipped: list[tuple[str, str]] = []  # an array has no unreadable items
        lo, hi = value_bounds if value_bounds is not None else check_values(x, name)
        self.raw_min, self.raw_max = lo, hi
        self.auto_norm, self.unit_scale, self.nominal_scale = unit_scale_for(x.dtype, lo, hi)

    def get(self, i: int) -> np.ndarray:
        # np.array copies: an item must never alias the source (callers may edit it in place).
        a = np.array(self.x[i], dtype=np.float32).reshape(self.example_shape)
        return self.transform(a) if self.transform else a

    def get_many(self, idx: np.ndarray) -> np.ndarray:
        a = np.asarray(self.x[np.asarray(idx)], dtype=np.float32).reshape(len(idx), *self.example_shape)
        if self.transform:
            return np.stack([self.transform(e) for e in a]) if len(a) else \
                np.zeros((0, *self.input_shape), np.float32)
        return a


class WindowSource(Source):
    """Sliding windows of T consecutive rows (stride 1) over a (rows, F) source: example i
    is rows i..i+T-1, labelled with the label of its last row."""

    def __init__(self, rows: ArraySource, length: int):
        if len(rows.example_shape) != 1:
            raise DataError(f"data.sequence_length needs rows of features, but {rows.name} has "
                            f"examples of shape {rows.example_shape}")
        n_rows = len(rows)
        if length > n_rows:
            raise DataError(f"data.sequence_length={length} is longer than the {n_rows} rows of "
                            f"{rows.name}; use at most {n_rows}")
        self.rows, self.length = rows, length
        self.name = rows.name
        self.input_shape = (length, rows.example_shape[0])
        self.labels = rows.labels[length - 1:]
        for attr in ("classes", "num_classes", "skipped", "auto_norm", "unit_scale",
                     "nominal_scale", "raw_min", "raw_max"):
            setattr(self, attr, getattr(rows, attr))

    def get(self, i: int) -> np.ndarray:
        return np.array(self.rows.x[i:i + self.length], dtype=np.float32)  # a copy, not a view

    def get_many(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        return np.asarray(self.rows.x[idx[:, None] + np.arange(self.length)], dtype=np.float32)

    def split(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        # A time series is held out at its end; windows straddling the boundary are dropped
        # so that no test row is ever seen in training.
        n_rows = len(self.rows)
        n_test = _count(fraction, n_rows, self.name)
        boundary = n_rows - n_test
        if n_test < self.length or boundary < self.length:
            raise DataError(f"data.test_fraction={fraction} splits the {n_rows} rows of {self.name} "
                            f"into {boundary} + {n_test}, and each part needs at least "
                            f"data.sequence_length={self.length} rows")
        return np.arange(0, boundary - self.length + 1), np.arange(boundary, n_rows - self.length + 1)

    def stat_view(self, idx: np.ndarray) -> tuple[Source, np.ndarray]:
        # Statistics of the rows the windows cover, each row counted once (windows would
        # count the rows near the ends of the series fewer times).
        n_rows = len(self.rows)
        cover = np.zeros(n_rows + 1, np.int64)
        np.add.at(cover, idx, 1)
        np.add.at(cover, np.minimum(idx + self.length, n_rows), -1)
        return self.rows, np.flatnonzero(np.cumsum(cover)[:n_rows] > 0)

    def limit(self, idx: np.ndarray, limit: int | None) -> np.ndarray:
        # The first windows in time order: a random subset of overlapping windows would
        # hardly save any rows.
        return idx if limit is None else idx[:limit]


def check_values(x: np.ndarray, name: str) -> tuple[float, float]:
    """Smallest and largest value of x, read in chunks (memory maps stay unloaded); a NaN or
    infinite value is an error naming the first bad example."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} holds {x.dtype} values; expected numbers (bool, integer or float)")
    if len(x) == 0 or x.size == 0:
        raise DataError(f"no examples found in {name} (its array has shape {x.shape})")
    if x.dtype in (np.bool_, np.uint8):
        # Their scaling does not depend on the values: spare a pass over a large file.
        return 0.0, (1.0 if x.dtype == np.bool_ else 255.0)
    row_bytes = max(1, x[:1].nbytes)
    step = max(1, CHUNK_BYTES // row_bytes)
    lo, hi = np.inf, -np.inf
    for start in range(0, len(x), step):
        c = np.asarray(x[start:start + step])
        if c.dtype.kind == "f":
            bad = ~np.isfinite(c)
            if bad.any():
                r = int(np.argmax(bad.reshape(len(c), -1).any(axis=1)))
                v = c[r].ravel()[np.argmax(bad[r].ravel())]
                raise DataError(f"{name}: example {start + r} (counting from 0) holds a "
                                f"{'NaN' if np.isnan(v) else 'infinite'} value; expected finite "
                                f"numbers (drop or fill that example)")
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
    return lo, hi


def stream_bounds(dtype: np.dtype) -> tuple[float, float]:
    """Value bounds that stand in for ``check_values`` on streamed data (a full pass that
    also rejects NaN): the nominal range of bool, uint8 and uint16 data, else [0, 1]. A
    stream's reader takes its normalization from a model, not from these bounds, and
    skips non-finite rows itself."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0.0, 1.0
    if dtype.kind == "u" and dtype.itemsize <= 2:
        return 0.0, float(np.iinfo(dtype).max)
    return 0.0, 1.0


def unit_scale_for(dtype: np.dtype, lo: float, hi: float) -> tuple[str, float, bool]:
    """(what normalize="auto" means, the unit-scaling divisor, whether that divisor is the
    data's nominal maximum) for values of `dtype` within [lo, hi]."""
    if dtype == np.bool_:
        return "unit", 1.0, True
    if dtype == np.uint8:  # 8-bit pixels, whatever their observed maximum
        return "unit", 255.0, True
    if lo >= 0 and hi <= 1:
        return "unit", 1.0, True
    if dtype == np.uint16:
        return "standardize", 65535.0, True
    return "standardize", max(abs(lo), abs(hi)) or 1.0, False


def labels_to_ids(y: np.ndarray | None, n: int, name: str, classes: list[str] | None = None
                  ) -> tuple[np.ndarray, list[str] | None, int | None]:
    """(int64 ids with -1 for none, class names or None, number of classes or None).

    Non-negative integers are ids as they are; any other labels are class names, given ids
    in sorted order -- or in the order of `classes` (the training set's) when given.
    """
    if y is None:
        return np.full(n, -1, np.int64), None, None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels in {name} have shape {y.shape}; expected ({n},), one per example")
    if y.dtype.kind in "biu" and classes is None:
        ids = y.astype(np.int64)
    elif y.dtype.kind == "f" and classes is None and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        ids = y.astype(np.int64)
    else:
        text = np.array([str(v).strip() for v in y.tolist()], dtype=object)
        if classes is None and all(t.isdigit() or t == "" for t in text):
            ids = np.array([int(t) if t else -1 for t in text], np.int64)
        else:
            names = classes if classes is not None else sorted({t for t in text if t})
            lookup = {c: k for k, c in enumerate(names)}
            unknown = sorted({t for t in text if t and t not in lookup})
            if unknown:
                raise DataError(f"labels {unknown[:5]} in {name} are not among the training "
                                f"classes {names}")
            ids = np.array([lookup[t] if t else -1 for t in text], np.int64)
            return ids, list(names), len(names)
    if np.any(ids < -1):
        raise DataError(f"labels in {name} must be class ids >= 0 (or -1 for none); found {int(ids.min())}")
    if classes is not None:
        return ids, list(classes), len(classes)
    return ids, None, (int(ids.max()) + 1 if np.any(ids >= 0) else None)


def image_layout(shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """(C, H, W) for an example shape read as an image: (H, W) gray or (C, H, W), C in 1, 3."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return tuple(shape)
    raise DataError(f"data.image_size/data.channels apply to images, but {name} has examples "
                    f"of shape {shape}; expected (H, W) or (C, H, W) with C = 1 or 3")


def array_source(x: np.ndarray, y: np.ndarray | None, name: str, cfg: DataConfig,
                 like: Source | None, *, image: bool = False,
                 value_bounds: tuple[float, float] | None = None) -> Source:
    """An ArraySource (or WindowSource with data.sequence_length) for x and labels y;
    `image` marks data that is images by nature (IDX, built-ins); `value_bounds` spares
    the scan of x for its range (streamed data)."""
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if len(x) == 0:
        raise DataError(f"no examples found in {name} (its array has shape {x.shape})")
    labels, classes, num_classes = labels_to_ids(y, len(x), name, like.classes if like else None)
    shape = tuple(x.shape[1:])
    transform = None
    if image or cfg.image_size is not None or cfg.channels is not None:
        shape = image_layout(shape, name)
        from aetk.data.images import ImageTransform
        channels = cfg.channels if like is None else like.input_shape[0]
        transform = ImageTransform.make(shape, channels, cfg.image_size, cfg.resize, name)
    if cfg.sequence_length is not None and not image:
        if x.ndim == 3:
            if x.shape[1] != cfg.sequence_length:
                raise DataError(f"{name} holds sequences of length {x.shape[1]} (shape {x.shape}), "
                                f"but data.sequence_length={cfg.sequence_length}")
        elif x.ndim == 2:
            rows = ArraySource(x, labels, name=name, classes=classes, num_classes=num_classes,
                               value_bounds=value_bounds)
            return WindowSource(rows, cfg.sequence_length)
        else:
            raise DataError(f"data.sequence_length needs (rows, features) or (N, T, F) data, but "
                            f"{name} has shape {x.shape}")
    return ArraySource(x, labels, name=name, example_shape=shape, transform=transform,
                       classes=classes, num_classes=num_classes, value_bounds=value_bounds)


def _load(path: Path, **kw) -> Any:
    from aetk.data.imageguard import open_regular

    with open_regular(path) as f:  # a FIFO is refused, never waited on
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        # np.load hands anything else to pickle, and reports "pickled data" for any garbage
        raise DataError(f"{path} is not a .npy or .npz file (it does not start with NumPy's header "
                        f"or a zip archive's)")
    try:
        return np.load(path, allow_pickle=False, **kw)  # never unpickle: data files are untrusted
    except ValueError as exc:
        if "pickle" in str(exc) or "Python objects" in str(exc):
            raise DataError(f"{path} holds Python objects (pickled data), which aetk never loads; "
                            f"save a numeric array instead") from exc
        raise DataError(f"{path} is not a readable .npy/.npz file: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npy/.npz file: {exc}") from exc


def _pick(keys: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((k for k in wanted if k in keys), None)


def _forward_member(path: Path, key: str) -> Any:
    """The .npz member `key` read front to back (a ForwardArray), or None when it cannot
    be (Fortran order, non-numeric values): then it is loaded whole."""
    from aetk.data.forward import BinaryRows, ForwardArray

    def open_member() -> tuple[zipfile.ZipFile, Any, tuple, bool, np.dtype]:
        zf = zipfile.ZipFile(path)
        try:
            f = zf.open(key + ".npy")
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except Exception:
            zf.close()
            raise
        return zf, f, shape, fortran, dtype

    try:
        zf, f, shape, fortran, dtype = open_member()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    zf.close()
    if fortran or dtype.hasobject or dtype.kind not in "biuf" or len(shape) == 0:
        return None
    name = f"{path}[{key}]"

    def open_rows() -> BinaryRows:
        zf, f, *_ = open_member()
        rows = BinaryRows(f, dtype, tuple(shape[1:]), name)
        rows.close = lambda: (f.close(), zf.close())  # the member, then its archive
        return rows

    return ForwardArray(open_rows, shape, dtype, name)


def read_arrays(path: Path, cfg: DataConfig, like: Source | None, stream: bool = False
                ) -> tuple[Source, Source | None]:
    """.npy (memory-mapped) or .npz (arrays named as in the module doc); with `stream`,
    .npz examples are read front to back instead of loaded whole."""
    name = str(path)
    if path.suffix.lower() != ".npz":
        x = _load(path, mmap_mode="r")
        src = array_source(x, None, name, cfg, like,
                           value_bounds=stream_bounds(x.dtype) if stream else None)
        src.origin = {"format": "npy", "file": path.name}
        return src, None
    with _load(path) as npz:
        keys = list(npz.files)
        if not keys:
            raise DataError(f"no examples found in {name} (the .npz holds no arrays)")
        xk = _pick(keys, X_KEYS) or (keys[0] if len(keys) == 1 else None)
        if xk is None:
            raise DataError(f"{name} holds arrays {keys}; name the examples one of "
                            f"{', '.join(X_KEYS)} (labels: {', '.join(Y_KEYS)})")
        yk, xtk, ytk = _pick(keys, Y_KEYS), _pick(keys, X_TEST_KEYS), _pick(keys, Y_TEST_KEYS)
        # .npz members are (usually compressed) zip entries: they cannot be memory-mapped.
        member = (lambda k: _forward_member(path, k) or npz[k]) if stream else (lambda k: npz[k])
        x, y = member(xk), (npz[yk] if yk else None)
        xt, yt = (member(xtk), npz[ytk] if ytk else None) if xtk else (None, None)

    def source(a: Any, labels: Any, key: str, like: Source | None) -> Source:
        src = array_source(a, labels, f"{name}[{key}]", cfg, like,
                           value_bounds=stream_bounds(a.dtype) if stream else None)
        src.origin = {"format": "npz", "file": path.name, "key": key}
        return src

    train = source(x, y, xk, like)
    test = source(xt, yt, xtk, like or train) if xt is not None else None
    return train, test
