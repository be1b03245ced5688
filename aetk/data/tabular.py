"""CSV (and TSV) tables: a header row, numeric feature columns, optionally a label column.

Every column except ``data.label_column`` is a feature and must hold numbers. Labels that
are non-negative integers are class ids; any other labels are class names, numbered in
sorted order. With ``data.sequence_length = T`` the rows are a time series and each
example is a window of T consecutive rows, shape (T, F).

The delimiter is "," (tab for .tsv/.tab files); ``data.extra["delimiter"]`` overrides it.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from aetk.data.arrays import array_source
from aetk.data.base import DataError, Source
from aetk.data.config import DataConfig


def _bad_cell(path: Path, rows: list[list[str]], lines: list[int], names: list[str],
              hint: str) -> DataError:
    """The error for the first cell that is not a finite number."""
    for r, row in enumerate(rows):
        for name, cell in zip(names, row):
            try:
                v = float(cell)
            except ValueError:
                what = "is empty" if cell == "" else f"holds {cell!r}, not a number"
                return DataError(f"{path}, line {lines[r]} (data row {r + 1}), column {name!r} "
                                 f"{what}; feature columns must be numeric{hint}")
            if not math.isfinite(v):
                return DataError(f"{path}, line {lines[r]} (data row {r + 1}), column {name!r} "
                                 f"holds a {'NaN' if math.isnan(v) else 'infinite'} value "
                                 f"({cell!r}); expected finite numbers (drop or fill that row)")
    return DataError(f"{path}: feature columns must hold finite numbers")


def read_csv(path: Path, cfg: DataConfig, like: Source | None) -> tuple[Source, None]:
    delimiter = cfg.extra.get("delimiter") or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop a BOM (Excel)
        reader = csv.reader(f, delimiter=delimiter)
        header = next((row for row in reader if any(c.strip() for c in row)), None)
        if header is None:
            raise DataError(f"no examples found in {path} (the file is empty)")
        header = [h.strip() for h in header]
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
        names = [header[j] for j in features]
        cells: list[list[str]] = []
        labels: list[str] = []
        lines: list[int] = []
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # blank line
            if len(row) != len(header):
                raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header "
                                f"names {len(header)} columns (delimiter {delimiter!r})")
            cells.append([row[j].strip() for j in features])
            if label_col is not None:
                labels.append(row[label_col].strip())
            lines.append(reader.line_num)
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
    return src, None
