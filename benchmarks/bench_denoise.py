"""Denoising against the field's tables and real peers, side by side, in one run: noisy input,
OpenCV's non-local means, BM3D / CBM3D, DnCNN-S and aetk, PSNR, SSIM and seconds per megapixel.

    python benchmarks/bench_denoise.py                   # everything (about an hour on 2 cores)
    python benchmarks/bench_denoise.py --limit 2         # two images per set: a quick look
    python benchmarks/bench_denoise.py --sets set12 --sigmas 25 --methods noisy,dncnn,aetk
    python benchmarks/bench_denoise.py --model out/      # an aetk export folder or ONNX denoiser
    python benchmarks/bench_denoise.py --methods noisy,aetk --reuse runs/baselines.json
                                                         # aetk again beside an earlier run's peers

Sets (from --data, default ../shared/data/denoise beside the repository; its README gives
each set's source and licence):
  set12, bsd68  grayscale, Gaussian noise at each --sigmas (15, 25, 50), beside the published
                table (DnCNN README, unclipped float noise);
  polyu         real camera noise: PolyU's Canon pairs, one shot (*_real.JPG) against the mean
                of many (*_mean.JPG);
  colour        Gaussian noise sigma 25 on colour photographs the shipped model was not trained
                on: the colour ones of aetk/denoise/photos.py's TEST split and the Debian
                wallpapers in TEST_WALLPAPERS (which training must leave out), downscaled as
                photos.py downscales wallpapers.

Protocols. "8-bit": the clean image plus seeded Gaussian noise, rounded and clipped to 8 bits,
as a user's noisy file is; every method gets the same file, and its output is clipped and
rounded to 8 bits, as the written file is. "float" (--float-methods, sigma 25 by default on
set12 and bsd68): the same noise draw unclipped and unrounded, through the Python API, output
clipped to [0, 1] but not rounded: the published protocol.

Methods. BM3D (`bm3d` package, the 2-stage "np" profile) and CBM3D are given the true sigma
on Gaussian noise. Non-local means (cv2.fastNlMeansDenoising / ...Colored, 7x7 patches, 21x21
search) gets h = hColor = f * sigma, f in 0.6..1.4 the best on the validation photograph
(photos.VALIDATION, never a test image) with Gaussian noise of that sigma. On real noise the
classical methods get sigma estimated from the noisy image: aetk.denoise.noise_level's Haar-MAD
estimate per RGB channel, averaged (JPEG and demosaicing make real noise spatially correlated,
so it reads the fine-scale part of it). DnCNN-S (benchmarks/peers/dncnn.py, the authors' sigma-25
weights) runs on sigma-25 rows only, on each colour channel as a gray image. aetk is blind: it
runs as `aetk denoise` does (aetk.denoise.load_denoiser), with --model if given.

PSNR and SSIM are aetk.denoise.report's, as `aetk denoise --report` prints them (SSIM: Wang et
al.'s 11x11 Gaussian window, sigma 1.5, as the published tables' MATLAB ssim; colour: the mean
over channels), against the clean image in [0, 1].
Time is wall-clock seconds per megapixel (height x width, any number of channels) on this
machine, every method given the same threads. Results go to --json (default
runs/bench_denoise.json), rewritten after every set, so a long run keeps what it finished.

Needs: pip install 'aetk[bench]' (opencv-python-headless, bm3d, scikit-image, scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aetk.denoise import report
from aetk.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "denoise"
DEFAULT_JSON = REPO / "runs" / "bench_denoise.json"
DNCNN_WEIGHTS = Path("peers") / "dncnn-s-sigma25.safetensors"
SETS = ("set12", "bsd68", "polyu", "colour")
GRAY_SETS = ("set12", "bsd68")
METHODS = ("noisy", "nlm", "bm3d", "dncnn", "aetk")
LABELS = {"noisy": "noisy", "nlm": "OpenCV NLM", "bm3d": "BM3D", "dncnn": "DnCNN-S", "aetk": "aetk"}
COLOUR_LABELS = {**LABELS, "nlm": "OpenCV NLM coloured", "bm3d": "CBM3D"}
COLOUR_SIGMA = 25.0
DNCNN_SIGMA = 25.0  # the only noise level of the published DnCNN-S weights we have
NLM_FACTORS = (0.6, 0.8, 1.0, 1.2, 1.4)
# The colour ones of aetk.denoise.photos.TEST (camera and coins are grayscale).
TEST_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "grace_hopper")
# Photographic Debian wallpapers held out for testing: neither shipped model trained or chose
# checkpoints on these (aetk.denoise.photos.WALLPAPERS, aetk.denoise.training_photos.WALLPAPERS
# and its validation; tests/test_bench_denoise.py checks). The other wallpapers in these
# packages are renderings. apt install plasma-workspace-wallpapers.
TEST_WALLPAPERS = {  # package -> {name: file}
    "plasma-workspace-wallpapers": {n: f"/usr/share/wallpapers/{n}/contents/images/2560x1600.jpg"
                                    for n in ("ColorfulCups", "Kite")},
}
WALLPAPER_SHORT_SIDE = 600  # as aetk.denoise.photos downscales its training wallpapers
# Published PSNR (dB), unclipped float noise: DnCNN's README (BSD68 at 15/25/50, Set12 at 25).
PUBLISHED = {
    ("bsd68", 15.0): {"BM3D": 31.07, "DnCNN-S": 31.73, "FFDNet": 31.63, "DRUNet": 31.91},
    ("bsd68", 25.0): {"BM3D": 28.57, "DnCNN-S": 29.23, "FFDNet": 29.19, "DRUNet": 29.48},
    ("bsd68", 50.0): {"BM3D": 25.62, "DnCNN-S": 26.23, "FFDNet": 26.29, "DRUNet": 26.59},
    ("set12", 25.0): {"BM3D": 29.97, "DnCNN-S": 30.44, "FFDNet": 30.43, "DRUNet": 30.94},
}
SPEEDUP_TARGET = 10.0
REAL_GAIN_TARGET = 1.0  # dB over the noisy input on real noise


# --- images, noise and scores ------------------------------------------------------------


@dataclass
class Image:
    name: str
    clean: np.ndarray  # uint8, (H, W) or (H, W, 3)
    noisy: np.ndarray | None = None  # uint8 real noisy shot, same shape (polyu)

    @property
    def megapixels(self) -> float:
        return self.clean.shape[0] * self.clean.shape[1] / 1e6


def _read(path: Path, mode: str) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return np.asarray(im.convert(mode))


def load_set(name: str, data: Path, limit: int | None = None) -> tuple[list[Image], list[str]]:
    """The images of one set, and notes on anything left out."""
    notes: list[str] = []
    if name in GRAY_SETS:
        folder = data / "test" / name
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp", ".tif"))
        if not files:
            raise UserInputError(f"--data {data}: no images in {folder} (expected the {name} test set)")
        images = [Image(p.stem, _read(p, "L")) for p in files[:limit]]
    elif name == "polyu":
        folder = data / "realnoise" / "polyu-canon"
        real = sorted(folder.glob("*_real.JPG"))
        if not real:
            raise UserInputError(f"--data {data}: no *_real.JPG in {folder} (expected PolyU's Canon pairs)")
        images = []
        for p in real[:limit]:
            mean = p.with_name(p.name.replace("_real.JPG", "_mean.JPG"))
            if not mean.is_file():
                raise UserInputError(f"{p} has no ground truth {mean.name} beside it")
            images.append(Image(p.name.replace("_real.JPG", ""), _read(mean, "RGB"), _read(p, "RGB")))
    elif name == "colour":
        from aetk.denoise.photos import load_photo

        images = [Image(n, load_photo(n, "RGB")) for n in TEST_PHOTOS]
        for package, files in TEST_WALLPAPERS.items():
            for wallpaper, f in files.items():
                if not Path(f).is_file():
                    notes.append(f"{f} left out: apt install {package}")
                    continue
                images.append(Image(wallpaper, downscaled_rgb(Path(f))))
        images = images[:limit]
    else:
        raise UserInputError(f"--sets: unknown set {name!r}; expected some of {', '.join(SETS)}")
    return images, notes


def downscaled_rgb(path: Path, short_side: int = WALLPAPER_SHORT_SIDE) -> np.ndarray:
    """An RGB photograph downscaled (Lanczos) to a ``short_side`` short side, which removes its
    JPEG artefacts and sensor noise: a clean reference."""
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im = im.convert("RGB")
        scale = short_side / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), PILImage.Resampling.LANCZOS)
        return np.asarray(im)


def gaussian_noise(shape: tuple[int, ...], sigma: float, seed: int, set_name: str, index: int) -> np.ndarray:
    """Standard-normal noise times ``sigma`` (0-255 scale), one seeded draw per (seed, set,
    sigma, image): both protocols of a row see the same draw."""
    key = [seed, SETS.index(set_name) if set_name in SETS else 99, int(round(sigma * 100)), index]
    return np.random.default_rng(key).standard_normal(shape) * sigma


def noisy_versions(clean: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(8-bit noisy file as uint8: rounded and clipped, float noisy image in [0, 1] units, unclipped)."""
    exact = clean.astype(np.float64) + noise
    return np.clip(np.rint(exact), 0, 255).astype(np.uint8), (exact / 255.0).astype(np.float32)


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR (dB) of images in [0, 1]."""
    return report.psnr(x, ref)


def ssim(x: np.ndarray, ref: np.ndarray) -> float:
    """SSIM of (H, W) or (H, W, 3) images in [0, 1] (colour: the mean over channels)."""
    if x.ndim == 3:
        x, ref = np.moveaxis(x, -1, 0), np.moveaxis(ref, -1, 0)
    return report.ssim(x, ref)


def as_written(x: np.ndarray, eight_bit: bool) -> np.ndarray:
    """A method's output clipped to [0, 1], and rounded to 8 bits for the 8-bit protocol."""
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.rint(x * 255.0) / 255.0 if eight_bit else x


REAL_NOISE_SCALES = (1, 2, 4)


def estimated_sigma(image: np.ndarray) -> float:
    """Noise level (0-255 scale) of a uint8 image, for the non-blind classical methods on real
    noise: the largest over scales k in REAL_NOISE_SCALES of k x (the Haar-MAD estimate on the
    image averaged over k x k blocks), each the mean over channels. For white noise every scale
    reads sigma; JPEG and demosaicing leave real noise spatially correlated, with little at the
    finest scale (PolyU reads 0-1.2 there, 3-17 at scale 4), and BM3D given the coarse reading
    removes more of it (CBM3D on six PolyU crops: +0.8 dB over the scale-2 reading, +0.6 over
    the true residual's standard deviation; PolyU is the validation set for real noise)."""
    from aetk.denoise.noise_level import estimate_sigma

    planes = (image[..., None] if image.ndim == 2 else image).astype(np.float32) / 255.0
    readings = []
    for k in REAL_NOISE_SCALES:
        h, w = planes.shape[0] // k * k, planes.shape[1] // k * k
        binned = planes[:h, :w].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))
        readings.append(k * float(np.mean([estimate_sigma(binned[..., c]) for c in range(binned.shape[-1])])))
    return max(readings)


# --- methods: (noisy in [0, 1] as (H, W) or (H, W, 3), its uint8 file or None, sigma) -> output


class Methods:
    def __init__(self, names: list[str], data: Path, model: str | None, threads: int):
        self.names, self.threads = names, threads
        self._nlm_factor: dict[tuple[bool, int], float] = {}
        self.dncnn = self.aetk = None
        if "nlm" in names:
            import cv2

            cv2.setNumThreads(threads)
        if "dncnn" in names:
            import torch

            from benchmarks.peers.dncnn import load_dncnn

            torch.set_num_threads(threads)
            weights = data / DNCNN_WEIGHTS
            if not weights.is_file():
                raise UserInputError(f"--data {data}: {weights} is missing (DnCNN-S's sigma-25 weights); "
                                     f"leave dncnn out of --methods to run without it")
            self.dncnn = load_dncnn(weights)
        if "aetk" in names:
            from aetk.denoise import load_denoiser

            self.aetk = load_denoiser(model, device="cpu", threads=threads)
        if "bm3d" in names:
            import bm3d  # noqa: F401  (fail here, before any work, if it is missing)

    def describe(self) -> str:
        if self.aetk is None:
            return "aetk: not run"
        describe = getattr(self.aetk, "describe", lambda: self.aetk.path.name)
        return f"aetk: {self.aetk.path} ({self.aetk.meta.kind}, blind={self.aetk.blind}): {describe()}"

    def applies(self, method: str, sigma: float | None) -> bool:
        """DnCNN-S only where its weights' noise level is the true one."""
        return method != "dncnn" or sigma == DNCNN_SIGMA

    def warm_up(self) -> None:
        x = np.full((48, 48), 0.5, np.float32)
        for m in ("dncnn", "aetk"):
            if m in self.names:
                self.run(m, x, None, DNCNN_SIGMA)

    def prepare(self, method: str, file: np.ndarray | None, sigma: float) -> None:
        """What a method chooses before it runs (NLM's h), outside its timing."""
        if method == "nlm":
            self.nlm_factor(file.ndim == 3, sigma)

    def run(self, method: str, z: np.ndarray, file: np.ndarray | None, sigma: float) -> np.ndarray:
        if method == "noisy":
            return z
        if method == "nlm":
            return self.nlm(file, sigma)
        if method == "bm3d":
            import bm3d

            fn = bm3d.bm3d_rgb if z.ndim == 3 else bm3d.bm3d
            return np.asarray(fn(z, sigma_psd=sigma / 255.0), np.float32)
        if method == "dncnn":
            import torch

            planes = z[None] if z.ndim == 2 else np.moveaxis(z, -1, 0)  # (C, H, W): each channel a gray image
            with torch.inference_mode():
                out = self.dncnn(torch.from_numpy(np.ascontiguousarray(planes, np.float32))[:, None])[:, 0].numpy()
            return out[0] if z.ndim == 2 else np.moveaxis(out, 0, -1)
        if method == "aetk":
            planes = z[None] if z.ndim == 2 else np.moveaxis(z, -1, 0)
            out = self.aetk.denoise(np.ascontiguousarray(planes, np.float32))
            return out[0] if z.ndim == 2 else np.moveaxis(out, 0, -1)
        raise UserInputError(f"--methods: unknown method {method!r}; expected some of {', '.join(METHODS)}")

    def nlm(self, file: np.ndarray, sigma: float) -> np.ndarray:
        import cv2

        h = self.nlm_factor(file.ndim == 3, sigma) * sigma
        if file.ndim == 2:
            out = cv2.fastNlMeansDenoising(file, None, h=h, templateWindowSize=7, searchWindowSize=21)
        else:  # OpenCV takes BGR (it works in CIELAB)
            out = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(file[..., ::-1]), None, h, h, 7, 21)[..., ::-1]
        return out.astype(np.float32) / 255.0

    def nlm_factor(self, colour: bool, sigma: float) -> float:
        """h / sigma for non-local means, the best on the validation photograph at this sigma
        (rounded to an integer; cached)."""
        key = (colour, max(1, int(round(sigma))))
        if key not in self._nlm_factor:
            import cv2

            from aetk.denoise.photos import VALIDATION, load_photo

            clean = load_photo(VALIDATION[0], "RGB" if colour else "L")
            noisy, _ = noisy_versions(clean, np.random.default_rng(999).standard_normal(clean.shape) * key[1])
            bgr = np.ascontiguousarray(noisy[..., ::-1]) if colour else noisy

            def score(f: float) -> float:
                h = f * key[1]
                out = (cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1] if colour else
                       cv2.fastNlMeansDenoising(bgr, None, h=h, templateWindowSize=7, searchWindowSize=21))
                return psnr(out / 255.0, clean / 255.0)

            self._nlm_factor[key] = max(NLM_FACTORS, key=score)
        return self._nlm_factor[key]


# --- one row: a set at a noise level, in one protocol, every method -------------------------


@dataclass
class Row:
    set: str
    noise: str  # "sigma 25" or "real"
    protocol: str  # "8-bit" or "float"
    sigma: float | None  # the true sigma (Gaussian) or None (real noise)
    methods: list[str]
    per_image: list[dict] = field(default_factory=list)
    means: dict[str, dict[str, float]] = field(default_factory=dict)

    def summarise(self, megapixels: float) -> None:
        for m in self.methods:
            rows = [r for r in self.per_image if r["method"] == m]
            self.means[m] = {"psnr": float(np.mean([r["psnr"] for r in rows])),
                             "ssim": float(np.mean([r["ssim"] for r in rows])),
                             "s_per_mp": float(sum(r["seconds"] for r in rows) / megapixels),
                             "images": len(rows)}

    def to_dict(self) -> dict:
        return {"set": self.set, "noise": self.noise, "protocol": self.protocol, "sigma": self.sigma,
                "means": self.means, "per_image": self.per_image}


def run_rows(set_name: str, images: list[Image], sigmas: list[float], methods: Methods,
             float_methods: list[str], seed: int, log: Callable[[str], None] = lambda s: None) -> list[Row]:
    """Every method on every image of one set: one Row per (noise level, protocol)."""
    rows: list[Row] = []
    megapixels = sum(im.megapixels for im in images)
    if set_name == "polyu":
        row = Row(set_name, "real", "8-bit", None, [m for m in methods.names if m != "dncnn"])
        for im in images:
            est = estimated_sigma(im.noisy)
            score_into(row, im, im.noisy.astype(np.float32) / 255.0, im.noisy, est, methods, {"sigma_estimate": est})
            log(f"{set_name} real {im.name}")
        row.summarise(megapixels)
        return [row]
    for sigma in sigmas:
        row = Row(set_name, f"sigma {sigma:g}", "8-bit", sigma, [m for m in methods.names if methods.applies(m, sigma)])
        protocols = [row]
        if set_name in GRAY_SETS and sigma == DNCNN_SIGMA:
            fm = [m for m in methods.names if m in float_methods and m != "nlm"]  # NLM takes 8-bit files only
            if [m for m in fm if m != "noisy"]:
                protocols.append(Row(set_name, f"sigma {sigma:g}", "float", sigma, fm))
        for i, im in enumerate(images):
            file, exact = noisy_versions(im.clean, gaussian_noise(im.clean.shape, sigma, seed, set_name, i))
            score_into(row, im, file.astype(np.float32) / 255.0, file, sigma, methods)
            for other in protocols[1:]:
                score_into(other, im, exact, None, sigma, methods)
            log(f"{set_name} sigma {sigma:g} {im.name}")
        for r in protocols:
            r.summarise(megapixels)
        rows += protocols
    return rows


def score_into(row: Row, im: Image, z: np.ndarray, file: np.ndarray | None, sigma: float, methods: Methods,
               extra: dict | None = None) -> None:
    ref = im.clean.astype(np.float32) / 255.0
    for m in row.methods:
        methods.prepare(m, file, sigma)
        t = time.perf_counter()
        out = methods.run(m, z, file, sigma)
        seconds = 0.0 if m == "noisy" else time.perf_counter() - t
        out = as_written(out, row.protocol == "8-bit")
        row.per_image.append({"image": im.name, "method": m, "psnr": psnr(out, ref), "ssim": ssim(out, ref),
                              "seconds": seconds, "megapixels": im.megapixels, **(extra or {})})


# --- tables and targets --------------------------------------------------------------------


def targets(rows: list[Row]) -> list[tuple[str, bool, str]]:
    """(what, met?, numbers) for each target that the rows measured."""
    out = []
    for r in rows:
        where = f"{r.set} {r.noise} {r.protocol}"
        a = r.means.get("aetk")
        if a is None:
            continue
        d = r.means.get("dncnn")
        if d is not None and r.set in GRAY_SETS and r.sigma == DNCNN_SIGMA:
            out.append((f"aetk >= DnCNN-S, {where}", a["psnr"] >= d["psnr"], f"{a['psnr']:.2f} vs {d['psnr']:.2f} dB"))
        b = r.means.get("bm3d")
        if b is not None:
            label = "CBM3D" if r.set in ("polyu", "colour") else "BM3D"
            out.append((f"aetk >= {label}, {where}", a["psnr"] >= b["psnr"], f"{a['psnr']:.2f} vs {b['psnr']:.2f} dB"))
            speedup = b["s_per_mp"] / a["s_per_mp"] if a["s_per_mp"] > 0 else float("inf")
            out.append((f"aetk >= {SPEEDUP_TARGET:g}x {label}'s speed, {where}", speedup >= SPEEDUP_TARGET,
                        f"{speedup:.1f}x: {a['s_per_mp']:.2f} vs {b['s_per_mp']:.2f} s/MP"))
        n = r.means.get("noisy")
        if n is not None and r.noise == "real":
            gain = a["psnr"] - n["psnr"]
            out.append((f"aetk >= noisy + {REAL_GAIN_TARGET:g} dB, {where}", gain >= REAL_GAIN_TARGET, f"{gain:+.2f} dB"))
    return out


@dataclass
class Reused:
    """An earlier run's --json, which lends this run the methods it does not run."""
    path: Path
    sets: dict
    environment: dict


def load_reused(path: Path, seed: int, loaded: dict[str, tuple[list[Image], list[str]]]) -> Reused:
    """The earlier run, checked before any work: its form, its seed, and for each set of this
    run, the same images (another --limit or data folder would pair other images)."""
    try:
        earlier = json.loads(path.read_text())
        sets, env = earlier["sets"], earlier["environment"]
        for name, entry in sets.items():
            for r in entry["rows"]:
                _ = (r["set"], r["noise"], r["protocol"], dict(r["means"]), list(r["per_image"]), entry["images"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserInputError(f"--reuse {path}: not a bench_denoise.py --json file ({type(exc).__name__}: {exc})") from exc
    if earlier.get("seed") != seed:
        raise UserInputError(f"--reuse {path}: its noise seed is {earlier.get('seed')}, this run's {seed}; "
                             f"the noisy files would differ")
    for name, (images, _notes) in loaded.items():
        if name in sets and sets[name]["images"] != [im.name for im in images]:
            raise UserInputError(f"--reuse {path}: its {name} rows are on other images "
                                 f"({len(sets[name]['images'])} against this run's {len(images)}); "
                                 f"give the same --data and --limit")
    return Reused(path, sets, dict(env))


def merge_reused(set_name: str, rows: list[Row], reused: Reused, running: set[str]) -> list[str]:
    """Adds to ``rows`` the methods this run does not run, from the earlier run's rows for the
    same set, noise and protocol; returns them as "method (noise, protocol)". Never aetk: the
    earlier run's may be another model (the shipped one changes), and it is what is measured."""
    earlier = reused.sets.get(set_name)
    if earlier is None:
        return []
    skip = running | {"aetk"}
    taken = []
    for r in rows:
        match = next((e for e in earlier["rows"] if (e["set"], e["noise"], e["protocol"]) == (r.set, r.noise, r.protocol)),
                     None)
        for m in [] if match is None else [m for m in match["means"] if m not in skip and m in METHODS]:
            r.means[m] = match["means"][m]
            r.per_image += [p for p in match["per_image"] if p["method"] == m]
            r.methods.append(m)
            taken.append(f"{LABELS[m]} ({r.noise}, {r.protocol})")
        r.methods.sort(key=METHODS.index)
    return taken


def table(set_name: str, rows: list[Row]):
    """One Rich table per set: per noise level, each method's mean PSNR, SSIM and s/MP in
    each protocol, then the published numbers (float noise) for that set and sigma."""
    from rich.table import Table

    labels = COLOUR_LABELS if set_name in ("polyu", "colour") else LABELS
    n_images = rows[0].means[rows[0].methods[0]]["images"]
    title = f"{set_name} ({n_images} images): mean PSNR / SSIM, seconds per megapixel"
    if rows[0].noise == "real":
        est = [p["sigma_estimate"] for p in rows[0].per_image if p["method"] == rows[0].methods[0]]
        title += f"; σ̂ for NLM and CBM3D {min(est):.1f}-{max(est):.1f}, mean {np.mean(est):.1f}"
    t = Table(title=title)
    for col in ("noise", "protocol", "method", "PSNR dB", "SSIM", "s / MP", "BM3D's s / this"):
        t.add_column(col, justify="left" if col in ("noise", "protocol", "method") else "right")
    for i, r in enumerate(rows):
        noise = r.noise.replace("sigma", "σ")
        b = r.means.get("bm3d")
        for m in r.methods:
            s = r.means[m]
            speed = "—" if m in ("noisy", "bm3d") or b is None or s["s_per_mp"] <= 0 else \
                f"{b['s_per_mp'] / s['s_per_mp']:.1f}×"
            t.add_row(noise, r.protocol, labels[m], f"{s['psnr']:.2f}", f"{s['ssim']:.4f}",
                      "—" if m == "noisy" else f"{s['s_per_mp']:.2f}", speed)
        last_of_sigma = i + 1 == len(rows) or rows[i + 1].sigma != r.sigma
        if last_of_sigma:
            for method, value in PUBLISHED.get((r.set, r.sigma), {}).items():
                t.add_row(noise, "published", method, f"{value:.2f}", "", "", "")
            t.add_section()
    return t


def environment(threads: int) -> dict:
    import aetk

    return {"aetk": aetk.__version__, "cpu": platform.processor() or platform.machine(), "threads": threads,
            "python": platform.python_version()}


def gpu_rate(model: str | None, images: list[Image]) -> str:
    """aetk's megapixels per second with ONNX Runtime's CUDA provider, or why not measured."""
    try:
        import aetk.runtime as rt
        from aetk.denoise import load_denoiser

        rt.available_providers("cuda")
        den = load_denoiser(model, device="cuda")
        planes = images[0].clean.astype(np.float32) / 255.0
        planes = planes[None] if planes.ndim == 2 else np.moveaxis(planes, -1, 0)
        den.denoise(planes)
        t = time.perf_counter()
        for _ in range(5):
            den.denoise(planes)
        return f"{5 * images[0].megapixels / (time.perf_counter() - t):.1f} MP/s with the CUDA provider"
    except Exception as exc:  # noqa: BLE001 (no GPU here: say why)
        return f"not measured ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"


def parse_list(value: str, allowed: tuple[str, ...], option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UserInputError(f"{option}: {', '.join(bad) or 'nothing'} given; expected a comma-separated "
                             f"list of {', '.join(allowed)}")
    return items


def parse_sigmas(value: str) -> list[float]:
    try:
        sigmas = [float(s) for s in value.split(",") if s.strip()]
    except ValueError:
        sigmas = []
    if not sigmas or any(not 0 < s <= 255 for s in sigmas):
        raise UserInputError(f"--sigmas: expected comma-separated noise levels in (0, 255], got {value!r}")
    return sigmas


def run(args: argparse.Namespace, print_fn: Callable = print) -> dict:
    """The whole benchmark for parsed arguments; returns (and writes to args.json) every number."""
    from aetk.atomic import atomic_write_text

    sets = parse_list(args.sets, SETS, "--sets")
    methods_named = parse_list(args.methods, METHODS, "--methods")
    float_methods = parse_list(args.float_methods, METHODS, "--float-methods") if args.float_methods else []
    sigmas = parse_sigmas(args.sigmas)
    if args.limit is not None and args.limit < 1:
        raise UserInputError(f"--limit: expected a positive number of images per set, got {args.limit}")
    data = Path(args.data)
    if not data.is_dir():
        raise UserInputError(f"--data {data} is not a folder (expected ../shared/data/denoise's layout)")
    loaded = {s: load_set(s, data, args.limit) for s in sets}  # every set found before any work
    reused = load_reused(Path(args.reuse), args.seed, loaded) if args.reuse else None
    threads = args.threads or os.cpu_count() or 1
    methods = Methods(methods_named, data, args.model, threads)
    methods.warm_up()
    result: dict = {"environment": environment(threads), "model": args.model or "shipped", "seed": args.seed,
                    "limit": args.limit, "sets": {}, "targets": [], "published": {f"{k[0]} sigma {k[1]:g}": v
                                                                                   for k, v in PUBLISHED.items()}}
    print_fn(f"aetk {result['environment']['aetk']} · {result['environment']['cpu']} · {threads} thread(s) · "
             f"{methods.describe()}")
    if reused is not None:
        result["reused_from"] = {"path": str(reused.path), "environment": reused.environment}
        other = {k: (reused.environment.get(k), v) for k, v in result["environment"].items()
                 if k in ("cpu", "threads") and reused.environment.get(k) != v}
        if other:  # its seconds were measured otherwise: the speed ratios compare unlike runs
            print_fn(f"note: --reuse {args.reuse} ran with " + ", ".join(f"{k} {a} (here {b})" for k, (a, b) in other.items()))
    all_rows: list[Row] = []
    json_path = Path(args.json)
    for s in sets:
        images, notes = loaded[s]
        for n in notes:
            print_fn(f"note: {n}")
        rows = run_rows(s, images, [COLOUR_SIGMA] if s == "colour" else sigmas, methods, float_methods, args.seed,
                        log=print_fn if args.verbose else (lambda _: None))
        taken = [] if reused is None else merge_reused(s, rows, reused, set(methods_named))
        if taken:
            print_fn(f"from --reuse {args.reuse}: {', '.join(taken)}")
        all_rows += rows
        result["sets"][s] = {"reused": taken, "images": [im.name for im in images], "megapixels": sum(im.megapixels for im in images),
                             "notes": notes, "rows": [r.to_dict() for r in rows]}
        if "nlm" in methods_named:
            result["nlm_h_over_sigma"] = {f"{'colour' if c else 'gray'} sigma {s_}": f
                                          for (c, s_), f in sorted(methods._nlm_factor.items())}
        result["targets"] = [{"target": w, "met": ok, "detail": d} for w, ok, d in targets(all_rows)]
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
        print_fn(table(s, rows))
    if "nlm" in methods_named:
        print_fn("non-local means h/sigma, chosen on the validation photograph: " +
                 ", ".join(f"{k}: {v:g}" for k, v in result["nlm_h_over_sigma"].items()))
    print_fn("targets:")
    for t in result["targets"]:
        print_fn(f"  {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['detail']})")
    if "aetk" in methods_named:
        result["gpu"] = gpu_rate(args.model, next(iter(loaded.values()))[0])
        print_fn(f"GPU: {result['gpu']}")
        atomic_write_text(json_path, json.dumps(result, indent=1) + "\n")
    print_fn(f"all numbers: {json_path}")
    return result


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="an aetk export folder, run folder or ONNX denoiser "
                                                  "(default: the shipped one)")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--sigmas", default="15,25,50", help="Gaussian noise levels (0-255) for set12 and bsd68; "
                                                         f"the colour set is always at {COLOUR_SIGMA:g}")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--float-methods", default="noisy,dncnn,aetk",
                    help="methods also run with unclipped float noise (the published protocol) at sigma 25 "
                         "on set12 and bsd68; empty for none")
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="an earlier run's --json: methods this run does not run (aetk never) are taken from its "
                         "rows for the same set, images, seed, noise and protocol (e.g. the hour of BM3D, run once)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per set (a quick run)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the denoising data folder (default: %(default)s)")
    ap.add_argument("--json", default=str(DEFAULT_JSON), help="where to write every number (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--threads", type=int, default=None, help="threads for every method (default: all CPUs)")
    ap.add_argument("--verbose", action="store_true", help="a line per image as it is done")
    return ap


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parser().parse_args(argv)
    console = Console()
    try:
        run(args, console.print)
    except UserInputError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # benchmarks.peers, run as a script from anywhere
    sys.exit(main())
