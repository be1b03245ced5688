"""``aetk neighbors``: the stored items nearest to queries in code space, exactly.

A query is an image file (decoded with the codes' own preprocessing), an ``.npy`` of one
or more examples, any other data file or folder the readers take, or a stored item: its
number in the dataset, or an image path as listed in the manifest. Queries are encoded
with the encoder stored in CODES/model/.

The search streams shard by shard (each checked against its sha256) and keeps, per
query, the k best so far: distances are one matrix product per shard (float64), so
memory is one shard's codes however many are stored. Cosine distance is 1 - cos(q, z);
Euclidean is ||q - z||. Ties go to the lower item number. A stored item used as a query
is not its own neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aetk.compress.codes import Codes, shard_items
from aetk.compress.decode import source_scale
from aetk.compress.options import NeighborsOptions
from aetk.options import check, flag
from aetk.compress.errors import CompressError

METRICS = ("cosine", "euclidean")
MAX_QUERIES = 1024


@dataclass
class Match:
    item: int  # number of the item in the dataset
    id: str | int  # image path relative to the folder, or the item's row in its part
    part: str
    distance: float


@dataclass
class NeighborResult:
    query: str
    matches: list[Match] = field(default_factory=list)
    item: int | None = None  # when the query is a stored item
    raw: np.ndarray | None = field(default=None, repr=False)  # the query's data, when it was read


def _reader_config(codes: Codes, path: str):
    from aetk.data import DataConfig

    return DataConfig(path=path, **codes.job["preprocessing"]["reader"])


def _find_item(codes: Codes, query: str) -> tuple[int, dict, int]:
    """(item number, its shard record, its row there) of a stored item named by `query`."""
    records = codes.records
    if query.lstrip("-").isdigit():
        g = int(query)
        total = codes.manifest["totals"]["items"]
        if not 0 <= g < total:
            raise CompressError(f"QUERY {query!r}: item numbers run from 0 to {total - 1}")
        rec = next(r for r in records if r["start"] <= g < r["stop"])
        skipped = {int(s[0]): s[2] for s in rec["skipped"]}
        if g in skipped:
            raise CompressError(f"QUERY {query!r}: item {g} was skipped when compressing ({skipped[g]}), "
                                f"so it has no code")
        return g, rec, int(np.searchsorted(shard_items(rec), g))
    for rec in records:
        ids = rec.get("ids")
        if ids and query in ids:
            row = ids.index(query)
            return int(shard_items(rec)[row]), rec, row
    raise CompressError(f"QUERY {query!r} is neither a file nor a stored item: give an image or data "
                        f"file, an item number, or an image path relative to the compressed folder "
                        f"(as listed in {codes.folder}/manifest.json)")


def _read_queries(codes: Codes, query: str) -> list[tuple[str, np.ndarray, bool]]:
    """(label, raw example, whether it is an image read at the folder's depth) for each
    example in a query file or folder."""
    from aetk.data.imageio import IMAGE_SUFFIXES
    from aetk.data.images import decode_image

    path = Path(query).expanduser()
    shape = tuple(codes.job["preprocessing"]["input_shape"])
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        if len(shape) != 3:
            raise CompressError(f"QUERY {query!r} is an image, but the codes hold examples of shape "
                                f"{list(shape)}, not images")
        reader = codes.job["preprocessing"]["reader"]
        vmax = float(codes.parts[0].get("value_max", 255.0))
        return [(query, decode_image(str(path), shape[0], vmax, shape[1:], reader.get("resize", "resize")), True)]
    if path.is_file() and path.suffix.lower() == ".npy":
        a = np.load(path, allow_pickle=False)
        if tuple(a.shape) == shape:
            a = a[None]
        if tuple(a.shape[1:]) != shape:
            raise CompressError(f"QUERY {query!r} holds an array of shape {list(a.shape)}; expected "
                                f"{list(shape)} or (N, {', '.join(map(str, shape))})")
        return [(f"{query}[{i}]", np.asarray(r, np.float32), False) for i, r in enumerate(a[:MAX_QUERIES])]
    from aetk.data.stream import open_parts, read_range

    parts, _ = open_parts(str(path), _reader_config(codes, str(path)))
    out = []
    for p in parts:
        rows = read_range(p, 0, min(len(p), MAX_QUERIES - len(out)))
        out += [(f"{query}[{p.ident(int(i))}]", x, p.is_images) for i, x in zip(rows.index, rows.x)]
    return out


def _search(codes: Codes, q: np.ndarray, k: int, metric: str, exclude: list[int | None]
            ) -> list[list[tuple[int, float]]]:
    q = q.reshape(len(q), -1).astype(np.float64)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    q2 = (q ** 2).sum(1)[:, None]
    best_d = np.zeros((len(q), 0))
    best_i = np.zeros((len(q), 0), np.int64)
    excl = np.array([-1 if e is None else e for e in exclude], np.int64)[:, None]
    for rec in codes.records:
        z, items = codes.read(rec)
        if not len(z):
            continue
        z = z.reshape(len(z), -1).astype(np.float64)
        if metric == "cosine":
            z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            d = 1.0 - q @ z.T
        else:
            d = np.sqrt(np.maximum(q2 - 2.0 * (q @ z.T) + (z ** 2).sum(1)[None, :], 0.0))
        d = np.where(items[None, :] == excl, np.inf, d)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(items, d.shape)], axis=1)
        order = np.lexsort((all_i, all_d), axis=1)[:, :k]  # by distance, then item number
        best_d = np.take_along_axis(all_d, order, 1)
        best_i = np.take_along_axis(all_i, order, 1)
    return [[(int(i), float(d)) for i, d in zip(bi, bd) if np.isfinite(d)] for bi, bd in zip(best_i, best_d)]


def _item_info(codes: Codes) -> Any:
    def info(g: int) -> tuple[str, str | int]:
        rec = next(r for r in codes.records if r["start"] <= g < r["stop"])
        part = codes.part_of(rec)
        if rec.get("ids"):
            return part["name"], rec["ids"][int(np.searchsorted(shard_items(rec), g))]
        return part["name"], g - part["start"]
    return info


def neighbors(folder: str | Path, queries: list[str], options: NeighborsOptions = NeighborsOptions(),
              sheet: str | Path | None = None) -> list[NeighborResult]:
    """The k nearest stored items to each query (see the module doc); `sheet` also writes
    a contact sheet PNG: a row per query, the query first, then its neighbours."""
    k, metric, device = options.k, options.metric, options.device
    if metric not in METRICS:
        raise CompressError(f"{flag(options, 'metric')} {metric!r} is not one of {', '.join(METRICS)}")
    check(options, CompressError)
    if not queries:
        raise CompressError("give at least one QUERY")
    codes = Codes.open(folder)
    codes.check_model()  # the model's files and weights are the ones the codes were made with
    results: list[NeighborResult] = []
    vectors: list[np.ndarray] = []
    to_encode: list[tuple[int, np.ndarray]] = []
    for query in queries:
        if Path(query).expanduser().exists():
            for label, raw, image in _read_queries(codes, query):
                # images are read at the folder's depth; the encoder takes the model's units
                to_encode.append((len(results), raw / np.float32(source_scale(codes)) if image else raw))
                results.append(NeighborResult(label, raw=raw))
                vectors.append(np.zeros(0))
        else:
            g, rec, row = _find_item(codes, query)
            z, _ = codes.read(rec)
            results.append(NeighborResult(query, item=g))
            vectors.append(z[row])
    if to_encode:
        from aetk.runtime import load_export

        encoder = load_export(codes.model_dir, device=device, batch_size=256)
        z = encoder.encode(np.stack([raw for _, raw in to_encode]), raw=True)
        for (i, _), zi in zip(to_encode, z):
            vectors[i] = zi
    found = _search(codes, np.stack(vectors), k, metric, [r.item for r in results])
    info = _item_info(codes)
    for r, matches in zip(results, found):
        for g, d in matches:
            part, ident = info(g)
            r.matches.append(Match(g, ident, part, d))
    if sheet is not None:
        write_sheet(codes, results, Path(sheet), device)
    return results


# -- contact sheets ---------------------------------------------------------------------------------
def _stored_images(codes: Codes, items: list[int], device: str) -> dict[int, np.ndarray]:
    """Raw images of stored items: from the source when it is still readable, else decoded
    from their codes."""
    from aetk.data.stream import open_parts, read_range

    out: dict[int, np.ndarray] = {}
    try:
        parts, _ = open_parts(codes.job["source"]["data"], _reader_config(codes, codes.job["source"]["data"]))
        by_name = {p.name: p for p in parts}
        for g in sorted(set(items)):
            p = next(p for p in by_name.values() if p.start <= g < p.stop)
            rows = read_range(p, g - p.start, g - p.start + 1)
            if len(rows.x):
                out[g] = rows.x[0]
    except (OSError, ValueError):  # the source moved or changed: decode the codes instead
        pass
    missing = [g for g in items if g not in out]
    if missing:
        from aetk.compress.decode import decode_codes, open_decoder

        decoder = open_decoder(codes, device)
        for g in sorted(set(missing)):
            _, rec, row = _find_item(codes, str(g))
            z, _ = codes.read(rec)
            out[g] = decode_codes(decoder, z[row:row + 1], 1)[0] * np.float32(source_scale(codes))
    return out


def write_sheet(codes: Codes, results: list[NeighborResult], path: Path, device: str = "auto") -> Path:
    from PIL import Image

    from aetk.atomic import atomic_write_bytes

    shape = tuple(codes.job["preprocessing"]["input_shape"])
    if not (len(shape) == 3 and shape[0] in (1, 3)):
        raise CompressError(f"a contact sheet draws images, but the codes hold examples of shape {list(shape)}")
    stored = _stored_images(codes, [m.item for r in results for m in r.matches]
                            + [r.item for r in results if r.item is not None], device)
    rows = [[r.raw if r.raw is not None else stored[r.item]] + [stored[m.item] for m in r.matches]
            for r in results]
    dtype = np.dtype(codes.parts[0]["dtype"])
    if dtype.kind in "iu":
        peak = float(codes.parts[0].get("value_max", np.iinfo(dtype).max))
        lo, hi = 0.0, peak
    else:
        values = np.concatenate([np.ravel(a) for row in rows for a in row])
        lo, hi = float(values.min()), float(values.max())
    c, h, w = shape
    zoom = max(1, 64 // max(h, w))
    gap, wide = 4, 16  # between tiles; after the query column
    k = max(len(row) for row in rows)
    width = k * (w * zoom) + (k - 1) * gap + (wide - gap)
    height = len(rows) * (h * zoom) + (len(rows) - 1) * gap
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            t = np.clip((np.asarray(a, np.float64) - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255)
            t = np.rint(t).astype(np.uint8).transpose(1, 2, 0)
            t = np.repeat(np.repeat(t, zoom, 0), zoom, 1)
            if c == 1:
                t = np.repeat(t, 3, axis=2)
            y = i * (h * zoom + gap)
            x = j * (w * zoom + gap) + (wide - gap if j else 0)
            canvas[y:y + h * zoom, x:x + w * zoom] = t
    import io

    buf = io.BytesIO()
    Image.fromarray(canvas, "RGB").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["METRICS", "Match", "NeighborResult", "neighbors", "write_sheet"]
