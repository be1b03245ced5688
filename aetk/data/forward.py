"""Arrays read front to back, for data that cannot be memory-mapped: gzipped IDX files,
``.npz`` members and CSV text. ``read_source(..., stream=True)`` puts one of these where
the training readers would hold the whole array in memory, so a pass over the data keeps
only the rows asked for (``aetk compress`` streams datasets of any size this way).

``ForwardArray`` offers the part of numpy's interface the array sources use (``shape``,
``dtype``, ``len``, ``x[i]``, ``x[a:b]``, ``x[sorted indices]``). Reading on from the
last row read is cheap; going back re-opens the stream and skips forward.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np


class RowReader(Protocol):
    def read(self, n: int) -> np.ndarray:
        """The next n rows as an (n, *row_shape) array."""

    def skip(self, n: int) -> None:
        """Pass over the next n rows."""

    def close(self) -> None: ...


class BinaryRows:
    """Rows of fixed-size values from a binary file object positioned at the first row."""

    def __init__(self, f: Any, dtype: np.dtype, row_shape: tuple[int, ...], name: str):
        self.f, self.dtype, self.row_shape, self.name = f, np.dtype(dtype), row_shape, name
        self.row_bytes = self.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))

    def _bytes(self, n: int) -> bytes:
        want = n * self.row_bytes
        data = self.f.read(want)
        if len(data) != want:
            from aetk.data.source import DataError

            raise DataError(f"{self.name} ended early: {len(data)} of {want} bytes read; the "
                            f"file is truncated")
        return data

    def read(self, n: int) -> np.ndarray:
        return np.frombuffer(self._bytes(n), self.dtype).reshape(n, *self.row_shape)

    def skip(self, n: int) -> None:
        step = max(1, (8 << 20) // max(1, self.row_bytes))  # skip in bounded reads
        while n > 0:
            k = min(n, step)
            self._bytes(k)
            n -= k

    def close(self) -> None:
        self.f.close()


class ForwardArray:
    """A read-only (N, ...) array whose rows come from ``open_rows()`` in order."""

    def __init__(self, open_rows: Callable[[], RowReader], shape: tuple[int, ...], dtype: Any,
                 name: str):
        self._open = open_rows
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self._reader: RowReader | None = None
        self._pos = 0
        # Row -> why it could not be read (CSV rows with bad cells come back as NaN rows);
        # a streaming reader pops the reasons as it passes the rows.
        self.problems: dict[int, str] = {}

    # -- what numpy code looks at -------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"ForwardArray({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def reshape(self, *shape: Any) -> ForwardArray:
        """Only (N, ...) -> (N or -1, ...) reshapes of each row, e.g. (N,) -> (N, 1)."""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        n = self.shape[0]
        row = tuple(int(s) for s in shape[1:])
        if shape[0] not in (-1, n) or int(np.prod(row, dtype=np.int64)) != int(np.prod(self.shape[1:], dtype=np.int64)):
            raise ValueError(f"{self.name}: a forward-read array only reshapes its rows, not {self.shape} -> {shape}")
        outer = self

        class _Reshaped:
            def __init__(self) -> None:
                self.inner = outer._open()

            def read(self, k: int) -> np.ndarray:
                return self.inner.read(k).reshape(k, *row)

            def skip(self, k: int) -> None:
                self.inner.skip(k)

            def close(self) -> None:
                self.inner.close()

        out = ForwardArray(_Reshaped, (n, *row), self.dtype, self.name)
        out.problems = self.problems
        return out

    # -- reading --------------------------------------------------------------------------
    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._pos = None, 0

    def _rows(self, start: int, stop: int) -> np.ndarray:
        n = self.shape[0]
        if not 0 <= start <= stop <= n:
            raise IndexError(f"rows {start}:{stop} out of range for {n} rows of {self.name}")
        if self._reader is None or start < self._pos:
            self.close()
            self._reader = self._open()
        if start > self._pos:
            self._reader.skip(start - self._pos)
        out = self._reader.read(stop - start) if stop > start else \
            np.zeros((0, *self.shape[1:]), self.dtype)
        self._pos = stop
        if stop == n:  # done: release the file
            self.close()
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} out of range for {n} rows of {self.name}")
            return self._rows(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self._rows(start, max(start, stop))[::step] if stop > start else self._rows(0, 0)
            return self._rows(start, max(start, stop))
        idx = np.asarray(key)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TypeError(f"{self.name}: a forward-read array takes an int, a slice or a 1-D "
                            f"array of row indices, not {key!r}")
        if len(idx) == 0:
            return self._rows(0, 0)
        idx = np.where(idx < 0, idx + n, idx)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return self._rows(lo, hi)[idx - lo]


__all__ = ["BinaryRows", "ForwardArray", "RowReader"]
