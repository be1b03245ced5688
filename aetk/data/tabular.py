"""CSV (and TSV) tables: a header row, numeric feature columns, optionally a label column.

Every column except ``data.label_column`` is a feature and must hold numbers. Labels that
are non-negative integers are class ids; any other labels are class names, numbered in
sorted order. With ``data.sequence_length = T`` the rows are a time series and each
example is a window of T consecutive rows, shape (T, F).

The delimiter is "," (tab for .tsv/.tab files); ``data.extra["delimiter"]`` overrides it.

With ``stream=True`` (``aetk compress``) the table is read front to back in chunks: one
pass counts the rows, labels are not read, and a row with a bad cell or a wrong number of
fields comes back as NaN with the reason in ``ForwardArray.problems`` instead of failing
the whole file.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from aetk.data.arrays import array_source
from aetk.data.source import DataError, Source
from aetk.data.config import DataConfig


def _bad_cell(path: Path, rows: list[list[str]], lines: list[int], names: list[str],
              hint: str, first: int = 1) -> DataError:
    """The error for the first cell that is not a finite number (`first`: the data row
    number of rows[0])."""
    for r, row in enumerate(rows):
        for name, cell in zip(names, row):
            try:
                v = float(cell)
            except ValueError:
                what = "is empty" if cell == "" else f"holds {cell!r}, not a number"
                return DataError(f"{path}, line {lines[r]} (data row {r + first}), column {name!r} "
                                 f"{what}; feature columns must be numeric{hint}")
            if not math.isfinite(v):
                return DataError(f"{path}, line {lines[r]} (data row {r + first}), column {name!r} "
                                 f"holds a {'NaN' if math.isnan(v) else 'infinite'} value "
                                 f"({cell!r}); expected finite numbers (drop or fill that row)")
    return DataError(f"{path}: feature columns must hold finite numbers")


def _table_rows(path: Path, delimiter: str):
    """(line number, fields) of each non-blank row, the header first."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop a BOM (Excel)
        reader = csv.reader(f, delimiter=delimiter)
        for row in reader:
            if any(c.strip() for c in row):
                yield reader.line_num, row


def _header(path: Path, cfg: DataConfig, rows) -> tuple[list[str], int | None, list[int], list[str]]:
    """(header, label column index or None, feature column indices, feature names)."""
    first = next(rows, None)
    if first is None:
        raise DataError(f"no examples found in {path} (the file is empty)")
    header = [h.strip() for h in first[1]]
    label_col = None
    if cfg.label_column is not None:
        if header.count(cfg.label_column) != 1:
            found = "twice" if cfg.label_column in header else "not"
            raise DataError(f"data.label_column={cfg.label_column!r} is {found} in the header "
                            f"of {path}; its columns are {header}")
        label_col = header.index(cfg.label_column)
    features = [j for j in range(len(header)) if j != label_col]
    if not features:
        raise DataError(f"{path} has no feature columns besides the label column "
                        f"{cfg.label_column!r}")
    return header, label_col, features, [header[j] for j in features]


def read_csv(path: Path, cfg: DataConfig, like: Source | None, stream: bool = False
             ) -> tuple[Source, None]:
    delimiter = cfg.extra.get("delimiter") or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    if stream and cfg.sequence_length is None:  # windows overlap: those are read whole
        return _stream_csv(path, cfg, like, delimiter), None
    rows = _table_rows(path, delimiter)
    header, label_col, features, names = _header(path, cfg, rows)
    cells: list[list[str]] = []
    labels: list[str] = []
    lines: list[int] = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, but the header "
                            f"names {len(header)} columns (delimiter {delimiter!r})")
        cells.append([row[j].strip() for j in features])
        if label_col is not None:
            labels.append(row[label_col].strip())
        lines.append(line)
    if not cells:
        raise DataError(f"no examples found in {path} (a header but no data rows)")
    if like is not None and getattr(like, "columns", None) not in (None, names):
        raise DataError(f"the feature columns of {path} ({names}) differ from the training "
                        f"data's ({like.columns})")
    hint = "" if cfg.label_column else " (set data.label_column if this column holds labels)"
    try:
        # One vectorized conversion; the slow search for the culprit runs only on failure.
        x = np.array(cells, dtype=str).astype(np.float64)
    except ValueError:
        raise _bad_cell(path, cells, lines, names, hint) from None
    if not np.all(np.isfinite(x)):
        raise _bad_cell(path, cells, lines, names, hint)
    y = np.array(labels, dtype=object) if label_col is not None else None
    src = array_source(x, y, str(path), cfg, like)
    src.auto_norm = "standardize"
    src.columns = names
    src.origin = {"format": "csv", "file": path.name, "columns": names, "delimiter": delimiter}
    return src, None


def _stream_csv(path: Path, cfg: DataConfig, like: Source | None, delimiter: str) -> Source:
    from aetk.data.arrays import stream_bounds
    from aetk.data.forward import ForwardArray

    rows = _table_rows(path, delimiter)
    header, label_col, features, names = _header(path, cfg, rows)
    n = sum(1 for _ in rows)  # a counting pass: the row count fixes the shards up front
    if n == 0:
        raise DataError(f"no examples found in {path} (a header but no data rows)")
    if like is not None and getattr(like, "columns", None) not in (None, names):
        raise DataError(f"the feature columns of {path} ({names}) differ from the training "
                        f"data's ({like.columns})")
    x: ForwardArray

    class CsvRows:
        def __init__(self) -> None:
            self.rows = _table_rows(path, delimiter)
            next(self.rows)
            self.index = 0  # data rows read so far

        def skip(self, k: int) -> None:
            for _ in range(k):
                next(self.rows)
            self.index += k

        def read(self, k: int) -> np.ndarray:
            out = np.full((k, len(features)), np.nan)
            for r in range(k):
                line, row = next(self.rows)
                i = self.index + r
                if len(row) != len(header):
                    x.problems[i] = (f"{path}, line {line}: {len(row)} fields, but the header "
                                     f"names {len(header)} columns (delimiter {delimiter!r})")
                    continue
                cells = [row[j].strip() for j in features]
                try:
                    out[r] = np.array(cells, dtype=str).astype(np.float64)
                except ValueError:
                    pass
                if not np.all(np.isfinite(out[r])):
                    out[r] = np.nan
                    x.problems[i] = str(_bad_cell(path, [cells], [line], names, "", first=i + 1))
            self.index += k
            return out

        def close(self) -> None:
            self.rows.close()

    x = ForwardArray(CsvRows, (n, len(features)), np.float64, str(path))
    src = array_source(x, None, str(path), cfg, like, value_bounds=stream_bounds(x.dtype))
    src.auto_norm = "standardize"
    src.columns = names
    src.origin = {"format": "csv", "file": path.name, "columns": names, "delimiter": delimiter}
    return src
