"""Pictures of a run: image grids (de-normalized with the run's Normalization, so they look
like the data), line plots for sequences and tabular rows, training curves, 2-d codes,
a VAE's latent grid.

matplotlib's object API only (``Figure``, rendered by Agg): no pyplot, no global state,
no display needed. PNGs are written atomically.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from aetk.normalization import Normalization

MAX_LINE_FEATURES = 4  # features of a (T, F) sequence drawn per panel
LINE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def is_image_shape(shape: Sequence[int]) -> bool:
    """(C, H, W) with C = 1 (grayscale) or 3 (RGB): shown as images, else as line plots."""
    return len(shape) == 3 and int(shape[0]) in (1, 3)


@dataclass
class Display:
    """How model-space values (normalized) become something to look at.

    ``pixel_range`` is the raw (de-normalized) range mapped to [0, 1] for images;
    None means unknown: then each batch is scaled by its own min and max.
    """

    shape: tuple[int, ...]
    normalization: Normalization
    pixel_range: tuple[float, float] | None = None

    @property
    def is_image(self) -> bool:
        return is_image_shape(self.shape)

    def to_unit(self, x) -> np.ndarray:
        """Normalized values (n, *shape) -> de-normalized, scaled to [0, 1] and clipped."""
        x = _numpy(x).reshape(-1, *self.shape)
        raw = np.asarray(self.normalization.invert(x.astype(np.float64)), dtype=np.float64)
        if self.pixel_range is not None and self.pixel_range[1] > self.pixel_range[0]:
            lo, hi = self.pixel_range
        else:
            lo, hi = float(np.nanmin(raw)) if raw.size else 0.0, float(np.nanmax(raw)) if raw.size else 1.0
            if hi <= lo:
                hi = lo + 1.0
        return np.clip((raw - lo) / (hi - lo), 0.0, 1.0)


def _numpy(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().float().cpu().numpy()
    except ImportError:
        pass
    return np.asarray(x)


# -- image grids -----------------------------------------------------------------------------
def mosaic(images: np.ndarray, ncol: int, pad: int = 1, pad_value: float = 0.5) -> np.ndarray:
    """Images (n, C, H, W) in [0, 1] -> one (rows, cols) grayscale or (rows, cols, 3) RGB array
    with ``pad`` pixels of ``pad_value`` between them; empty cells are ``pad_value``."""
    images = np.asarray(images, dtype=np.float64)
    n, c, h, w = images.shape
    ncol = max(1, min(int(ncol), n)) if n else 1
    nrow = max(1, math.ceil(n / ncol))
    out = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), pad_value)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = \
            images[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def _imshow(ax, grid: np.ndarray) -> None:
    kw = {"cmap": "gray"} if grid.ndim == 2 else {}
    ax.imshow(grid, vmin=0.0, vmax=1.0, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _plot_example(ax, x: np.ndarray, shape: Sequence[int], *, color: str, lw: float = 1.2,
                  alpha: float = 1.0, label: str | None = None) -> None:
    """One example as lines: (T, F) sequences one line per feature (first few), anything
    else flattened against its index."""
    if len(shape) == 2:
        seq = x.reshape(shape)
        for f in range(min(seq.shape[1], MAX_LINE_FEATURES)):
            ax.plot(seq[:, f], color=color, lw=lw, alpha=alpha * (1.0 if f == 0 else 0.6),
                    label=label if f == 0 else None)
    else:
        ax.plot(x.reshape(-1), color=color, lw=lw, alpha=alpha, label=label)


def _wrap(title: str, width_in: float, fontsize: float = 10) -> str:
    """Break title lines that would not fit a figure ``width_in`` inches wide."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.58 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))


def _suptitle(fig, title: str, fontsize: float = 10) -> None:
    fig.suptitle(_wrap(title, fig.get_figwidth(), fontsize), fontsize=fontsize)


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def reconstruction_figure(rows: list[tuple[str, np.ndarray]], display: Display, title: str):
    """rows: (label, batch of n examples in model space); the first row is the originals.
    Images: one strip per row. Sequences/tabular: a panel per example, the original drawn
    in gray behind every later row."""
    n = len(rows[0][1])
    if display.is_image:
        fig = _figure(max(6.0, 0.75 * n + 2.2), 0.85 * len(rows) + 0.9)
        axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
        for ax, (label, x) in zip(axes, rows):
            _imshow(ax, mosaic(display.to_unit(x), ncol=n))
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        _suptitle(fig, title)
        return fig
    fig = _figure(max(6.0, 1.9 * n), 1.5 * len(rows) + 0.8)
    axes = fig.subplots(len(rows), n, squeeze=False, sharex=True, sharey=True)
    original = _numpy(rows[0][1]).reshape(n, -1)
    for r, (label, x) in enumerate(rows):
        x = _numpy(x).reshape(n, -1)
        for i in range(n):
            ax = axes[r, i]
            if r > 0:
                _plot_example(ax, original[i], display.shape, color="0.7", lw=1.0)
            _plot_example(ax, x[i], display.shape, color=LINE_COLORS[r % len(LINE_COLORS)])
            ax.tick_params(labelsize=7)
        axes[r, 0].set_ylabel(label, fontsize=9)
    for i in range(n):
        axes[-1, i].set_xlabel("time step" if len(display.shape) == 2 else "feature", fontsize=8)
    _suptitle(fig, title + "\n(gray: the original; values in the model's normalized space)")
    return fig


def examples_figure(x: np.ndarray, display: Display, title: str, ncol: int | None = None):
    """A grid of examples (samples, decoded codes)."""
    x = _numpy(x)
    n = len(x)
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = max(1, math.ceil(n / ncol))
    if display.is_image:
        h, w = display.shape[1:]
        scale = 0.55 if max(h, w) <= 16 else 0.8
        fig = _figure(max(4.0, ncol * scale + 0.6), nrow * scale * h / w + 0.8)
        ax = fig.subplots()
        _imshow(ax, mosaic(display.to_unit(x), ncol=ncol))
        _suptitle(fig, title)
        return fig
    fig = _figure(max(6.0, 1.6 * ncol), 1.2 * nrow + 0.8)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True, sharey=True)
    flat = x.reshape(n, -1)
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            _plot_example(ax, flat[i], display.shape, color=LINE_COLORS[0])
            ax.tick_params(labelsize=6)
        else:
            ax.set_axis_off()
    _suptitle(fig, title + "\n(values in the model's normalized space)")
    return fig


def latent_grid_figure(decoded: np.ndarray, values: np.ndarray, display: Display, title: str):
    """decoded: (g*g, *shape) for z = (values[j], values[g-1-i]) at row i, column j."""
    g = len(values)
    if not display.is_image:
        fig = examples_figure(decoded, display, title, ncol=g)
        return fig
    h, w = display.shape[1:]
    # Seamless, as in Kingma & Welling's figures, when images have margins of their own;
    # tiny ones (8 x 8 digits fill their frame) need a separating line.
    pad = 1 if max(h, w) < 20 else 0
    grid = mosaic(display.to_unit(decoded), ncol=g, pad=pad, pad_value=0.3)
    size = min(11.0, max(6.0, 0.45 * g * max(h, w) / 8))
    fig = _figure(size + 0.8, size + 0.8)
    ax = fig.subplots()
    _imshow(ax, grid)
    step = max(1, g // 7)
    ticks = list(range(0, g, step))
    ax.set_xticks([j * (w + pad) + (w - 1) / 2 for j in ticks])
    ax.set_xticklabels([f"{values[j]:.2g}" for j in ticks], fontsize=8)
    ax.set_yticks([i * (h + pad) + (h - 1) / 2 for i in ticks])
    ax.set_yticklabels([f"{values[g - 1 - i]:.2g}" for i in ticks], fontsize=8)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(_wrap(title, fig.get_figwidth()), fontsize=10)
    return fig


# -- curves and codes ------------------------------------------------------------------------
def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def curves_figure(history: list[dict[str, object]], title: str):
    """Per-epoch train/val curves of every term in a metrics.csv (loss first), plus the
    learning rate when it changes. None when there is nothing to draw."""
    from matplotlib.ticker import MaxNLocator

    if not history:
        return None
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    terms: list[str] = []
    for k in keys:
        for prefix in ("train_", "val_"):
            if k.startswith(prefix) and k[len(prefix):] not in terms:
                terms.append(k[len(prefix):])
    terms.sort(key=lambda t: (t != "loss", t != "recon", keys.index(f"train_{t}") if f"train_{t}" in keys
                              else len(keys)))
    epochs = [_float(r.get("epoch")) for r in history]
    if any(math.isnan(e) for e in epochs):
        epochs = list(range(1, len(history) + 1))
    lrs = [_float(r.get("lr")) for r in history]
    panels = terms + (["lr"] if len({v for v in lrs if not math.isnan(v)}) > 1 else [])
    if not panels:
        return None
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = _figure(4.2 * ncol, 3.0 * nrow + 0.4)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, name in zip(axes.ravel(), panels):
        if name == "lr":
            ax.plot(epochs, lrs, "o-", color="tab:gray", ms=4)
            ax.set_title("learning rate", fontsize=10)
        else:
            for prefix, style, color in (("train", "o-", "tab:blue"), ("val", "s--", "tab:orange")):
                ys = [_float(r.get(f"{prefix}_{name}")) for r in history]
                if any(not math.isnan(y) for y in ys):
                    ax.plot(epochs, ys, style, color=color, ms=4, label=prefix)
            ax.set_title(name, fontsize=10)
            ax.legend(fontsize=8)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    _suptitle(fig, title, 11)
    return fig


def codes_figure(panels: list[tuple[str, np.ndarray]], labels: np.ndarray | None,
                 classes: Sequence[str] | None, title: str):
    """Side-by-side scatter plots of 2-d codes, coloured by label when there are labels."""
    import matplotlib as mpl

    fig = _figure(5.0 * len(panels) + 1.6, 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = None if labels is None else np.asarray(labels)
    has_labels = labels is not None and labels.size and np.any(labels >= 0)
    uniq = sorted(int(v) for v in np.unique(labels) if v >= 0) if has_labels else []
    cmap = mpl.colormaps["tab10" if len(uniq) <= 10 else "tab20"]
    handles = []
    for ax, (name, z) in zip(axes, panels):
        z = _numpy(z).reshape(len(z), -1)
        if has_labels:
            for j, c in enumerate(uniq):
                m = labels == c
                name_c = classes[c] if classes is not None and 0 <= c < len(classes) else str(c)
                h = ax.scatter(z[m, 0], z[m, 1], s=9, alpha=0.8, color=cmap(j % cmap.N),
                               label=name_c, edgecolors="none")
                if ax is axes[0]:
                    handles.append(h)
            if np.any(labels < 0):
                m = labels < 0
                ax.scatter(z[m, 0], z[m, 1], s=9, alpha=0.5, color="0.6", edgecolors="none")
        else:
            ax.scatter(z[:, 0], z[:, 1], s=9, alpha=0.7, color="tab:blue", edgecolors="none")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("code[0]", fontsize=9)
        ax.set_ylabel("code[1]", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    if handles:
        fig.legend(handles=handles, loc="outside right center", fontsize=8, markerscale=1.6,
                   title="label", title_fontsize=9)
    _suptitle(fig, title, 11)
    return fig


def save_figure(fig, path: Path) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    from aetk.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


__all__ = ["Display", "codes_figure", "curves_figure", "examples_figure", "is_image_shape",
           "latent_grid_figure", "mosaic", "reconstruction_figure", "save_figure"]
