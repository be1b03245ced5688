"""Named datasets: ``fashion-mnist`` (the Debian package dataset-fashion-mnist, read as
IDX) and ``digits`` (scikit-learn's 8x8 digits, shipped with scikit-learn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetk.data.arrays import array_source
from aetk.data.source import SPLIT_SEED, DataError, DataPathError, Source
from aetk.data.config import DataConfig

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGITS_TEST_FRACTION = 0.2


def fashion_mnist(cfg: DataConfig, like: Source | None, stream: bool = False) -> tuple[Source, Source]:
    from aetk.data.idx import read_idx_data

    folder = FASHION_MNIST_DIR
    missing = [f for f in FASHION_MNIST_FILES if not (folder / f).is_file()]
    if missing:
        raise DataPathError(
            f"Fashion-MNIST is not installed: {', '.join(missing)} missing in {folder}; install it "
            f"with `apt-get install dataset-fashion-mnist` (or point data.path at a folder holding "
            f"the four IDX files)")
    train, test = read_idx_data(folder, cfg, like, stream)
    for s in (train, test):
        s.classes, s.num_classes = list(FASHION_MNIST_CLASSES), len(FASHION_MNIST_CLASSES)
    train.name, test.name = "fashion-mnist (train)", "fashion-mnist (t10k)"
    return train, test


def digits(cfg: DataConfig, like: Source | None, stream: bool = False) -> tuple[Source, Source]:
    # `stream` changes nothing: 1797 8x8 images are held in memory.
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("the built-in dataset 'digits' needs scikit-learn: "
                        "`pip install scikit-learn`") from exc
    d = load_digits()
    x = d.images.astype(np.float32)  # (1797, 8, 8), values 0..16
    y = d.target.astype(np.int64)
    n = len(x)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(round(DIGITS_TEST_FRACTION * n))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    classes = [str(c) for c in d.target_names]
    train = array_source(x[train_idx], y[train_idx], "digits (train)", cfg, like, image=True)
    test = array_source(x[test_idx], y[test_idx], "digits (test)", cfg, like or train, image=True)
    for s in (train, test):
        # 4-bit gray levels: unit scaling divides by their nominal maximum, 16.
        s.auto_norm, s.unit_scale, s.nominal_scale = "unit", 16.0, True
        s.classes, s.num_classes = classes, len(classes)
    return train, test


BUILTINS = {"fashion-mnist": fashion_mnist, "digits": digits}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def builtin_name(path: str) -> str | None:
    key = path.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in BUILTINS else None
