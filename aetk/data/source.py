"""What every reader produces: a ``Source`` of raw examples addressed by index.

Readers never normalize: ``load_data`` fits the normalization on the training indices
and hands the same ``Normalization`` to the train and test datasets. This module needs
numpy only, so ``aetk compress`` streams sources without importing torch; the torch
``SourceDataset`` lives in ``aetk.data.base``.
"""

from __future__ import annotations

import numpy as np

from aetk.errors import UserInputError

# Seed of the held-out split and of the `limit` subset: the same data and options always
# give the same examples, on every machine.
SPLIT_SEED = 0

# Bytes of raw float32 examples read at once when computing statistics.
CHUNK_BYTES = 32 << 20


class DataError(UserInputError):
    """Data that cannot be read as asked: the message names the file or option at fault."""


class DataPathError(DataError, FileNotFoundError):
    """A data path that does not exist (or a dataset that is not installed): a user's
    mistake (exit 2), and still a FileNotFoundError for callers that catch that."""


class Source:
    """Raw (un-normalized) examples of one file or folder.

    Subclasses set the attributes below and implement ``get``; ``labels`` is an int64
    array with -1 where an example has no label.
    """

    name: str  # file or folder, for messages
    input_shape: tuple[int, ...]
    labels: np.ndarray
    classes: list[str] | None = None  # label id -> name, when labels come from names
    num_classes: int | None = None
    skipped: list[tuple[str, str]]
    auto_norm: str = "unit"  # what normalize="auto" means for this data
    unit_scale: float = 1.0  # the raw value that unit scaling maps to 1.0
    # True when unit_scale is the data's nominal maximum (bit depth), not a measured one:
    # then unscaled values are known to lie in [0, unit_scale].
    nominal_scale: bool = False
    raw_min: float = 0.0  # smallest raw value (nominal or measured)
    # Where the examples came from, so that `aetk decompress` can write them back in kind:
    # {"format": "idx" | "npy" | "npz" | "csv", "file": file name, ...}; None for built-ins
    # held in memory. Image folders answer with their paths instead.
    origin: dict | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, i: int) -> np.ndarray:
        """Example i as float32 raw values of ``input_shape``."""
        raise NotImplementedError

    def get_many(self, idx: np.ndarray) -> np.ndarray:
        return np.stack([self.get(int(i)) for i in idx]) if len(idx) else \
            np.zeros((0, *self.input_shape), np.float32)

    @property
    def stat_shape(self) -> tuple[int, ...]:
        """Shape of per-feature statistics: per value for flat rows, per last-axis feature
        for (T, F) sequences, per channel for (C, H, W) images."""
        s = self.input_shape
        if len(s) <= 1:
            return s
        if len(s) == 2:
            return (1, s[1])
        return (s[0],) + (1,) * (len(s) - 1)

    def stat_view(self, idx: np.ndarray) -> tuple[Source, np.ndarray]:
        """Where per-feature statistics of the examples `idx` are computed: here, by default."""
        return self, idx

    def split(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) indices: a seeded random held-out fraction, both sorted so that
        files and memory maps are read in order."""
        n = len(self)
        n_test = _count(fraction, n, self.name)
        perm = np.random.default_rng(SPLIT_SEED).permutation(n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])

    def limit(self, idx: np.ndarray, limit: int | None) -> np.ndarray:
        """At most `limit` of the training indices: a seeded random subset, so that folders
        sorted by class keep every class."""
        if limit is None or limit >= len(idx):
            return idx
        pick = np.random.default_rng(SPLIT_SEED).permutation(len(idx))[:limit]
        return idx[np.sort(pick)]


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """Up to k distinct indices spread evenly over range(n), first and last included: a sample
    that sees every part of data stored one source (or one series) after another."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _count(fraction: float, n: int, name: str) -> int:
    n_test = int(round(fraction * n))
    n_test = max(n_test, 1)  # a positive fraction always holds something out
    if n_test >= n:
        raise DataError(f"data.test_fraction={fraction} of the {n} examples in {name} leaves "
                        f"no training examples; use a smaller fraction or more data")
    return n_test
