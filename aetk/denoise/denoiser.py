"""The denoising model behind ``aetk denoise``: an exported autoencoder graph run through
``aetk.runtime`` on overlapping tiles.

    den = load_denoiser()                      # the shipped pair: colour.onnx, gray.onnx for gray images
    den = load_denoiser("out/")                # an export folder, an .onnx file or a run folder
    clean = den.denoise(planes)                # (C, H, W) float32 in [0, 1] -> same shape

Models with one input channel denoise each colour channel as its own grayscale image; models
with C channels take C-channel images (a grayscale image is repeated C times and the result
averaged back). A model with a second input named ``sigma`` is non-blind: it gets the noise
level (``--sigma``, on the 0-255 scale) as a (batch, 1) input. ``ensemble=2``, ``4`` or ``8``
averages the model's outputs on mirrored tiles (left-right, then up-down too, then all four
again transposed, i.e. rotated): a little more quality for 2x, 4x or 8x the time.

The shipped default is two blind models, one pass each, chosen by the image's channels:
``models/colour.onnx`` (a ``resunet``, recipes/denoiser.py) for colour images, trained on
synthetic camera noise, JPEG and Gaussian noise, and ``models/gray.onnx`` (a ``resconv``,
recipes/blind_gaussian.py) for grayscale ones, trained on Gaussian noise. The gray sibling was
chosen on the validation photographs: on gray images it scores 0.4-0.6 dB above the colour
model on Gaussian noise and 0.8 dB below it on synthetic camera noise, 0.17 dB above it on the
mean (recipes/README.md). ``--sigma`` runs ``colour-sigma.onnx`` for every image.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from aetk import dihedral
from aetk.errors import UserInputError
from aetk.denoise.tiling import Blender, pad_to, tile_shape
from aetk.denoise.options import DenoiseOptions
from aetk.options import flag

MODELS = Path(__file__).parent / "models"
SHIPPED_MODEL = MODELS / "colour.onnx"  # what --sigma's colour-sigma.onnx sits beside
SHIPPED_GRAY_MODEL = MODELS / "gray.onnx"
# A photo of up to about 512 pixels a side is one tile; larger images run as evenly sized
# tiles (tiling.tile_shape). Four 512-pixel tiles a call peak at about 1.3 GB on a
# 12-megapixel colour photo (colour.onnx: 1.34 GB peak RSS for the whole command).
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
DEFAULT_BATCH = 4
# The eight symmetries of a square (aetk.dihedral), in the order used: --ensemble N averages
# the first N. Mirrorings first, then the same on the transposed tile (90-degree rotations):
# each transposition adds more diversity than a further flip.
ENSEMBLE_TRANSFORMS = tuple(range(dihedral.COUNT))
ENSEMBLE_SIZES = (1, 2, 4, 8)


class DenoiserError(UserInputError):
    """A model that cannot denoise images as asked."""


def ensemble_transforms(ensemble: int, first: int = 0) -> tuple:
    if ensemble not in ENSEMBLE_SIZES:
        raise DenoiserError(f"{flag(DenoiseOptions, 'ensemble')} must be 1, 2, 4 or 8 (mirrored and rotated copies averaged), got {ensemble}")
    if not 0 <= first <= len(ENSEMBLE_TRANSFORMS) - ensemble:
        raise DenoiserError(f"mirrorings {first} to {first + ensemble - 1} asked for; there are "
                            f"{len(ENSEMBLE_TRANSFORMS)} (0 to {len(ENSEMBLE_TRANSFORMS) - 1})")
    return ENSEMBLE_TRANSFORMS[first:first + ensemble]


def model_path(model: str | Path | None) -> Path:
    """The autoencoder .onnx to run (the shipped model, a file, an export folder's), or a run
    folder, which :func:`load_denoiser` exports once (aetk.export.ensure_export, needs torch)."""
    from aetk.artifacts import ArtifactError, ExportDir, RunDir, resolve

    if model is None:
        if not SHIPPED_MODEL.is_file():
            raise DenoiserError(f"the shipped model {SHIPPED_MODEL} is missing from this installation")
        return SHIPPED_MODEL
    p = Path(model)
    if p.is_file():
        return p
    try:
        found = resolve(p, ExportDir, RunDir, what="--model")
    except ArtifactError as exc:
        raise DenoiserError(f"{exc} (or an .onnx file)") from exc
    if isinstance(found, RunDir):
        return p  # a run folder: load_denoiser exports it
    if not found.graph("autoencoder").is_file():
        raise DenoiserError(f"--model {p} is an export folder without {found.graph('autoencoder').name}")
    return found.graph("autoencoder")


class Denoiser:
    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, batch_size: int = DEFAULT_BATCH,
                 tile: int | None = None, overlap: int | None = None, sigma: float | None = None,
                 ensemble: int = 1):
        import aetk.runtime as rt

        self.transforms = ensemble_transforms(ensemble)

        self.path = path
        self.session = rt.load_model(path, device=device, threads=threads, batch_size=batch_size)
        meta = self.session.metadata
        if meta.graph != "autoencoder":
            raise DenoiserError(f"{path} is the {meta.graph} graph; denoising needs the autoencoder graph")
        if meta.layout not in ("NCHW", "NHW"):
            raise DenoiserError(f"{path} is a {meta.kind} model for {meta.layout} data, not images")
        from aetk.denoise.modelcheck import check_denoiser_metadata

        check_denoiser_metadata(meta, path)  # a denoiser, fully convolutional, 1 or 3 channels
        self.meta = meta
        self.channels = meta.input_shape[0] if meta.layout == "NCHW" else 1
        self.multiple = meta.spatial_multiple if meta.dynamic_spatial else 0
        fixed = None if meta.dynamic_spatial else tuple(meta.input_shape[-2:])
        # Defaults the model can take, so that no option the user did not pass can fail.
        if tile is None:
            tile = -(-DEFAULT_TILE // (self.multiple or 1)) * (self.multiple or 1)
        if overlap is None:
            overlap = min(DEFAULT_OVERLAP, (fixed[0] if fixed else tile) // 4)
        if fixed is not None:
            tile = fixed[0]
            if fixed[0] != fixed[1]:
                raise DenoiserError(f"{path} takes only {fixed[0]}x{fixed[1]} inputs; aetk tiles with square tiles")
        elif tile % self.multiple:
            raise DenoiserError(f"{flag(DenoiseOptions, 'tile')} must be a multiple of {self.multiple} for this model, got {tile}")
        if not 0 <= overlap < tile // 2 + 1:
            raise DenoiserError(f"{flag(DenoiseOptions, 'overlap')} must be between 0 and half the tile ({tile // 2}), got {overlap}")
        self.fixed, self.tile, self.overlap = fixed, int(tile), int(overlap)
        self.batch_size = int(batch_size)
        self.non_blind = "sigma" in self.session.input_names
        if self.non_blind and sigma is None:
            raise DenoiserError(f"{path} is a non-blind model: give the noise level with {flag(DenoiseOptions, 'sigma')}")
        self.sigma = None if sigma is None else float(sigma)
        from aetk.normalization import Normalization

        self.norm = Normalization.from_dict(meta.normalization)
        # Pixels in [0, 1] -> the model's raw data scale (8-bit data for standardized models).
        self.raw_scale = self.norm.scale if self.norm.kind == "unit" else (255.0 if self.norm.kind == "standardize" else 1.0)

    def describe(self) -> str:
        return f"{self.path.name} ×{len(self.transforms)}"

    def with_ensemble(self, ensemble: int, first: int = 0) -> Denoiser:
        """The same model (one ONNX Runtime session) averaged over ``ensemble`` mirrorings,
        from the ``first``th of ENSEMBLE_TRANSFORMS on."""
        other = copy.copy(self)
        other.transforms = ensemble_transforms(ensemble, first)
        return other

    @property
    def blind(self) -> bool:
        return not self.non_blind

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if len(self.transforms) == 1:
            return self._run_once(batch)
        out = sum(dihedral.symmetry(self._run_once(np.ascontiguousarray(dihedral.symmetry(batch, k))),
                                    dihedral.inverse(k)) for k in self.transforms)
        return out / len(self.transforms)

    def _run_once(self, batch: np.ndarray) -> np.ndarray:
        x = self.norm.apply(batch * self.raw_scale).astype(np.float32)
        if self.meta.layout == "NHW":
            x = x[:, 0]
        feeds: dict[str, Any] = {self.session.input_names[0]: x}
        if self.non_blind:
            feeds["sigma"] = np.full((len(x), 1), self.sigma / 255.0, np.float32)
        y = self.session.run(feeds)[self.session.output_names[0]]
        if self.meta.layout == "NHW":
            y = y[:, None]
        return self.norm.invert(y) / self.raw_scale

    def denoise(self, planes: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 in [0, 1] -> denoised, same shape."""
        c, h, w = planes.shape
        if self.channels == 1:
            images = planes[:, None]  # each channel its own grayscale image
        elif c == self.channels:
            images = planes[None]
        elif c == 1:
            images = np.repeat(planes[None], self.channels, axis=1)
        else:
            raise DenoiserError(f"{self.path} takes {self.channels}-channel images; this image has {c}")
        th, tw = self.fixed or tile_shape((h, w), self.tile, self.multiple or 1, self.overlap)
        padded = pad_to(images, (max(h, th), max(w, tw)))
        ph, pw = padded.shape[-2:]
        blend = Blender(images.shape[0] * images.shape[1], (ph, pw), (th, tw), self.overlap)
        positions = blend.positions()
        n_img = images.shape[0]
        # Tiles of all channels at all positions, a batch at a time: memory bounded by the batch.
        work = [(i, y, x) for (y, x) in positions for i in range(n_img)]
        for s in range(0, len(work), self.batch_size):
            chunk = work[s:s + self.batch_size]
            batch = np.stack([padded[i, :, y:y + th, x:x + tw] for i, y, x in chunk])
            out = self._run(batch)
            for (i, y, x), o in zip(chunk, out):
                blend.add(slice(i * self.channels, (i + 1) * self.channels), y, x, o)
        result = blend.result().reshape(n_img, images.shape[1], ph, pw)[..., :h, :w]
        if self.channels == 1:
            return result[:, 0]
        if c == 1 and self.channels > 1:
            return result[0].mean(axis=0, keepdims=True)
        return result[0]


class ShippedDenoiser:
    """The shipped pair behind one ``denoise`` (module docstring): ``gray`` for one-channel
    images, ``colour`` for the rest. Otherwise it reads as ``colour`` (path, metadata, tile)."""

    def __init__(self, colour: Denoiser, gray: Denoiser | None):
        self.colour, self.gray = colour, gray
        self.path, self.meta, self.tile, self.blind = colour.path, colour.meta, colour.tile, colour.blind

    def describe(self) -> str:
        if self.gray is None:
            return self.colour.describe()
        return f"colour images: {self.colour.describe()}; gray images: {self.gray.describe()}"

    def pick(self, planes: np.ndarray) -> Denoiser:
        return self.gray if planes.shape[0] == 1 and self.gray is not None else self.colour

    def denoise(self, planes: np.ndarray) -> np.ndarray:
        return self.pick(planes).denoise(planes)


def shipped_denoiser(device: str = "auto", ensemble: int | None = None, **kwargs) -> ShippedDenoiser:
    """The shipped pair (module docstring), ``ensemble`` passes each (default 1). An
    installation without gray.onnx runs gray images through the colour model."""
    colour = Denoiser(SHIPPED_MODEL, device=device, ensemble=ensemble or 1, **kwargs)
    if not SHIPPED_GRAY_MODEL.is_file():
        return ShippedDenoiser(colour, None)
    return ShippedDenoiser(colour, Denoiser(SHIPPED_GRAY_MODEL, device=device, ensemble=ensemble or 1, **kwargs))


def with_noise_level(path: Path, sigma: float | None) -> Path | None:
    """With ``--sigma``, the blind model's sibling that takes the noise level as an input
    (``X.onnx`` -> ``X-sigma.onnx``, aetk.export.sigma_graph) when there is one; else None
    (a blind model without it ignores --sigma, and the command says so)."""
    from aetk.artifacts.export_dir import SIGMA_SUFFIX, sigma_graph_beside

    if sigma is None or path.is_dir() or path.stem.endswith(SIGMA_SUFFIX):
        return None
    sibling = sigma_graph_beside(path)
    return sibling if sibling.is_file() else None


def check_sibling(den: Denoiser, blind: Path) -> Denoiser:
    """``den`` (the graph with_noise_level found) if it was exported from ``blind``'s model;
    else DenoiserError: ``aetk export`` over a folder keeps an older model's sigma graph."""
    import aetk.runtime as rt

    own = rt.load_model(blind, device="cpu", threads=1, batch_size=None).metadata
    if (own.weights_sha256, own.graph) != (den.meta.weights_sha256, den.meta.graph):
        raise DenoiserError(f"{den.path.name} is not the {flag(DenoiseOptions, 'sigma')} graph of {blind.name}: it "
                            f"was exported from another model; export it again for this one "
                            f"(aetk.export.sigma_graph) or remove it")
    return den


def load_denoiser(model: str | Path | None = None, device: str = "auto", ensemble: int | None = None,
                  **kwargs) -> Denoiser | ShippedDenoiser:
    """The denoiser for ``--model`` (see model_path), averaged over ``ensemble`` mirrorings
    (default 1); with no model, the shipped one (shipped_denoiser). Given ``sigma``, a blind
    model's sibling that takes the level is run instead (with_noise_level)."""
    path = model_path(model)
    given = with_noise_level(path, kwargs.get("sigma"))
    if given is not None:  # --sigma, and the model has a graph that takes it
        return check_sibling(Denoiser(given, device=device, ensemble=ensemble or 1, **kwargs), path)
    if model is None:
        return shipped_denoiser(device=device, ensemble=ensemble, **kwargs)
    kwargs["ensemble"] = ensemble or 1
    if not path.is_dir():
        return Denoiser(path, device=device, **kwargs)
    from aetk.artifacts import RunDir
    from aetk.denoise.modelcheck import check_run_folder
    from aetk.export import ensure_export  # a run folder (needs torch)

    check_run_folder(path)  # a denoiser? from its model.json, before exporting
    return Denoiser(ensure_export(RunDir(path)).graph("autoencoder"), device=device, **kwargs)


__all__ = ["DEFAULT_BATCH", "DEFAULT_OVERLAP", "DEFAULT_TILE", "ENSEMBLE_SIZES", "ENSEMBLE_TRANSFORMS", "MODELS",
           "SHIPPED_GRAY_MODEL", "SHIPPED_MODEL", "Denoiser", "DenoiserError", "ShippedDenoiser",
           "check_sibling", "load_denoiser", "model_path", "shipped_denoiser",
           "with_noise_level"]
