"""The map-style ``SourceDataset`` that normalizes a subset of a ``Source`` on access
(sources themselves, torch-free, are in ``aetk.data.source``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from aetk.data.source import CHUNK_BYTES, SPLIT_SEED, DataError, Source, _count  # noqa: F401 (re-exported)
from aetk.normalization import Normalization


def _writable(x: np.ndarray) -> np.ndarray:
    # Memory maps and frombuffer arrays are read-only; torch wants memory it may write.
    return np.require(x, np.float32, ["C", "W"])


class SourceDataset(Dataset):
    """Map-style dataset over `indices` of a source: items are (x float32 of input_shape,
    label int64 scalar, -1 when unknown), normalized on access."""

    def __init__(self, source: Source, indices: Sequence[int] | np.ndarray, normalization: Normalization):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.source.input_shape

    @property
    def labels(self) -> np.ndarray:
        """Labels of this split, in item order (-1 where unknown)."""
        return self.source.labels[self.indices]

    def _index(self, i: int) -> int:
        n = len(self.indices)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} examples")
        return int(self.indices[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = self._index(i)
        x = self.normalization.apply(self.source.get(j))
        return (torch.from_numpy(_writable(x)),
                torch.tensor(int(self.source.labels[j]), dtype=torch.int64))

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # DataLoader fetches a whole batch through this when present: array sources read
        # it with one fancy index instead of one call per example.
        idx = np.array([self._index(i) for i in items], dtype=np.int64)
        x = torch.from_numpy(_writable(self.normalization.apply(self.source.get_many(idx))))
        y = torch.from_numpy(self.source.labels[idx].astype(np.int64))
        return list(zip(x.unbind(0), y.unbind(0)))

    def __repr__(self) -> str:
        return (f"SourceDataset({self.source.name!r}, {len(self)} examples of shape "
                f"{self.input_shape}, {self.normalization.kind})")


def collect(ds: Dataset, limit: int | None = None, batch_size: int = 1024
            ) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``limit`` (default all) examples of a dataset: (x float32 CPU, labels int64)."""
    n = len(ds) if limit is None else min(int(limit), len(ds))
    sub = ds if n == len(ds) else Subset(ds, range(n))
    xs, ys = [], []
    for x, y in DataLoader(sub, batch_size=batch_size, shuffle=False):
        xs.append(x.float())
        ys.append(y.reshape(-1).long())
    if not xs:
        return torch.zeros((0, *ds[0][0].shape) if len(ds) else (0,)), np.zeros(0, np.int64)
    return torch.cat(xs), torch.cat(ys).numpy()
