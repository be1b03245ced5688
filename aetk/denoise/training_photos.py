"""Clean colour and grayscale photographs for training the ``resunet`` denoiser, split by
photograph into training and validation, and PolyU's real noisy/clean pairs for validation.

Sources (all install offline; licences from each package's /usr/share/doc/*/copyright):

- BSD400 (``../shared/data/denoise/train/bsd400``, DnCNN's 400 grayscale 180x180 training
  images; BSDS licence, research use): grayscale, stored replicated to 3 channels;
- the photographs among scikit-image's, scikit-learn's and matplotlib's bundled images
  (``aetk.denoise.photos.TRAIN``, colour and gray);
- the photographs (not the abstract renderings, chosen by eye) among the wallpapers of the
  Debian packages plasma-workspace-wallpapers (GPL-2+), lomiri-wallpapers-16.04 and -20.04
  (CC-BY-4.0 / CC-BY-SA / CC0), mate-backgrounds (GPL-2+); ukui-wallpapers and
  gnome-backgrounds (CC-BY-SA / CC-BY-SA) hold only renderings, so none is used.
  ``apt-get install plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
  mate-backgrounds``. Each is downscaled (Lanczos) to a 600-pixel short side: a 2560x1600
  JPEG shrunk 2.7x keeps its detail and loses its own sensor noise and JPEG blocks, so the
  targets are clean.

Held out: ``aetk.denoise.photos.TEST`` (camera, astronaut, coffee, chelsea, rocket,
grace_hopper, coins: never used here), the public test sets Set12/BSD68 (never read here), and
the validation photographs VALIDATION_WALLPAPERS, ``photos.VALIDATION`` (flower) and every
20th BSD400 image (BSD400_VALIDATION_EVERY), split by photograph.

    python tools/denoiser_data.py runs/denoiser-data    # train.npz, validation.npz

writes ``train.npz`` (x: uint8 patches (N, 3, 128, 128), stride 64, one symmetry each) and
``validation.npz`` (x: uint8 256x256 centre crops (M, 3, 256, 256) of the validation photos,
and ``polyu_noisy``/``polyu_clean``: the PolyU Canon pairs, 55 x (3, 512, 512) uint8).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aetk.data.imageguard import guarded_image
from aetk.denoise import photos
from aetk.dihedral import patch_view, symmetry
from aetk.errors import UserInputError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "denoise"
BSD400 = Path("train/bsd400")
POLYU = Path("realnoise/polyu-canon")
PLASMA = Path("/usr/share/wallpapers")
BACKGROUNDS = Path("/usr/share/backgrounds")
# package -> photographs (paths under /usr/share/wallpapers or /usr/share/backgrounds).
WALLPAPERS = {
    "plasma-workspace-wallpapers": tuple(
        PLASMA / f"{name}/contents/images/{size}.jpg" for name, size in (
            ("BytheWater", "2560x1600"), ("ColdRipple", "2560x1600"), ("DarkestHour", "2560x1600"),
            ("EveningGlow", "2560x1600"), ("FallenLeaf", "2560x1600"), ("Grey", "2560x1600"),
            ("OneStandsOut", "2560x1600"), ("Path", "2560x1600"), ("summer_1am", "2560x1600"))),
    "lomiri-wallpapers-20.04": (BACKGROUNDS / "Infinite-Sea_by_Aury88.jpg",
                                BACKGROUNDS / "Kleiber_by_Lukas_Baubkus.jpg"),
    "lomiri-wallpapers-16.04": tuple(BACKGROUNDS / n for n in photos.WALLPAPERS["lomiri-wallpapers-16.04"]),
    "mate-backgrounds": tuple(BACKGROUNDS / n for n in photos.WALLPAPERS["mate-backgrounds"]),
}
VALIDATION_WALLPAPERS = ("EveningGlow", "Garden", "picosdeeuropa_by_Aitzol_Berasategi")
BSD400_VALIDATION_EVERY = 20  # test_020, test_040, ...: 20 images
SHORT_SIDE = 600
PATCH, STRIDE, VAL_CROP = 128, 64, 256


def shared_data(root: Path | None = None) -> Path:
    root = Path(root) if root else SHARED
    if not (root / BSD400).is_dir():
        raise UserInputError(f"{root / BSD400} is missing: the denoising data lives in ../shared/data/denoise "
                             f"(see its README); pass --shared DIR")
    return root


def wallpaper_paths() -> list[Path]:
    paths = []
    for package, files in WALLPAPERS.items():
        for path in files:
            if not path.is_file():
                raise UserInputError(f"{path} is missing: apt-get install {package}")
            paths.append(path)
    return paths


def is_validation(path: Path) -> bool:
    return any(name in str(path) for name in VALIDATION_WALLPAPERS)


def load_rgb(path: Path, short_side: int | None = SHORT_SIDE) -> np.ndarray:
    """(3, H, W) uint8, downscaled to ``short_side`` if larger."""
    from PIL import Image

    with guarded_image(path, None) as im:
        im = im.convert("RGB")
        scale = short_side / min(im.size) if short_side else 1.0
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        return np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))


def bsd400(root: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training, validation) BSD400 images as (3, H, W) uint8, gray replicated."""
    files = sorted((root / BSD400).glob("*.png"))
    if len(files) != 400:
        raise UserInputError(f"{root / BSD400} holds {len(files)} PNGs, expected BSD400's 400")
    train, val = [], []
    for i, f in enumerate(files, start=1):
        with guarded_image(f, None) as im:
            g = np.asarray(im.convert("L"))
        (val if i % BSD400_VALIDATION_EVERY == 0 else train).append(np.repeat(g[None], 3, axis=0))
    return train, val


def patches(images: list[np.ndarray], size: int = PATCH, stride: int = STRIDE) -> np.ndarray:
    """Overlapping size x size patches (N, 3, size, size) of (3, H, W) images, each turned by one
    of the 8 symmetries of the square in turn (more views before train.flips adds its own)."""
    out, k = [], 0
    for img in images:
        _, h, w = img.shape
        ys = list(range(0, h - size + 1, stride)) or [0]
        xs = list(range(0, w - size + 1, stride)) or [0]
        if h - size not in ys and h > size:
            ys.append(h - size)  # reach the bottom and right edges too
        if w - size not in xs and w > size:
            xs.append(w - size)
        for y in ys:
            for x in xs:
                p = img[:, y:y + size, x:x + size]
                if p.shape[1:] != (size, size):
                    continue
                out.append(np.ascontiguousarray(symmetry(p, patch_view(k))))
                k += 1
    return np.stack(out)


def centre_crop(img: np.ndarray, size: int = VAL_CROP) -> np.ndarray:
    _, h, w = img.shape
    s = min(size, h, w) // 32 * 32
    y, x = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(img[:, y:y + s, x:x + s])


def polyu_pairs(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PolyU Canon (noisy, clean, names): (N, 3, 512, 512) uint8 each, sorted by name."""
    folder = root / POLYU
    noisy_files = sorted(folder.glob("*_real.JPG"))
    if not noisy_files:
        raise UserInputError(f"no *_real.JPG pairs in {folder}")
    noisy, clean, names = [], [], []
    for f in noisy_files:
        mean = f.with_name(f.name.replace("_real.JPG", "_mean.JPG"))
        if not mean.is_file():
            raise UserInputError(f"{f} has no ground truth {mean.name}")
        noisy.append(load_rgb(f, None))
        clean.append(load_rgb(mean, None))
        names.append(f.name.replace("_real.JPG", ""))
    return np.stack(noisy), np.stack(clean), names


def build(out: Path, root: Path | None = None) -> dict[str, int]:
    """Write out/train.npz and out/validation.npz (module docstring); returns counts."""
    from aetk.atomic import atomic_path

    root = shared_data(root)
    walls = wallpaper_paths()
    train_imgs, val_imgs = bsd400(root)
    n_bsd_train, n_bsd_val = len(train_imgs), len(val_imgs)
    colour_train = [load_rgb(photos.photo_path(n), None) for n in photos.TRAIN]
    colour_train += [load_rgb(p) for p in walls if not is_validation(p)]
    colour_val = [load_rgb(photos.photo_path(n), None) for n in photos.VALIDATION]
    colour_val += [load_rgb(p) for p in walls if is_validation(p)]
    x = patches(train_imgs + colour_train)
    # Validation crops of one size: 256 for colour photos, 160 (BSD400 is 180x180) for gray.
    val_colour = np.stack([centre_crop(i, VAL_CROP) for i in colour_val])
    val_gray = np.stack([centre_crop(i, 160) for i in val_imgs])
    noisy, clean, names = polyu_pairs(root)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "train.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x)
    with atomic_path(out / "validation.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, colour=val_colour, gray=val_gray, polyu_noisy=noisy, polyu_clean=clean,
                     polyu_names=np.array(names))
    return {"train_patches": len(x), "bsd400_train": n_bsd_train, "colour_train_photos": len(colour_train),
            "bsd400_validation": n_bsd_val, "colour_validation_photos": len(colour_val),
            "polyu_pairs": len(names)}
