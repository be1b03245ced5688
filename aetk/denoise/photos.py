"""Natural photographs that install offline, split once into training, validation and test.

Sources: scikit-image's bundled images, scikit-learn's two sample photos and matplotlib's
portrait of Grace Hopper. The split is by photograph (never by region of one photo), and
the stereo pair motorcycle_left/right stays on one side, so the test images are photographs
the shipped model never saw. With --wallpapers, the photographic wallpapers of two Debian
packages join the training set (apt install mate-backgrounds lomiri-wallpapers-16.04),
downscaled so their shorter side is 600 pixels: that removes their JPEG artefacts and
sensor noise (the targets must be clean) and brings them to the scale of the test photos.

    python tools/denoise_patches.py patches.npz --wallpapers   # the shipped model's patches
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aetk.data.imageguard import guarded_image
from aetk.dihedral import patch_view, symmetry

# name -> (package, file inside the package's image folder)
PHOTOS = {
    "astronaut": ("skimage", "astronaut.png"),
    "camera": ("skimage", "camera.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "coins": ("skimage", "coins.png"),
    "moon": ("skimage", "moon.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "motorcycle_right.png"),
    "hubble_deep_field": ("skimage", "hubble_deep_field.jpg"),
    "retina": ("skimage", "retina.jpg"),
    "ihc": ("skimage", "ihc.png"),
    "brick": ("skimage", "brick.png"),
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "page": ("skimage", "page.png"),
    "text": ("skimage", "text.png"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
# Photographs (not the abstract renderings) among Debian's wallpaper packages.
WALLPAPER_FOLDER = Path("/usr/share/backgrounds")
WALLPAPERS = {
    "lomiri-wallpapers-16.04": (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "life_by_Aitzol_Berasategi.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
        "sunset_by_Aitzol_Berasategi.jpg"),
    "mate-backgrounds": tuple(f"mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
        "Storm", "TwoWings", "Wood", "YellowFlower")),
}
WALLPAPER_SHORT_SIDE = 600
TEST = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grace_hopper", "coins")
VALIDATION = ("flower",)
TRAIN = tuple(n for n in PHOTOS if n not in TEST + VALIDATION)


def photo_path(name: str) -> Path:
    package, file = PHOTOS[name]
    try:
        __import__(package)
    except ImportError as exc:
        raise ImportError(f"photograph {name!r} comes with {package}, which is not installed: "
                          f"pip install 'aetk[photos]'") from exc
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / file
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / file
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / file


def load_photo(name: str, mode: str = "L") -> np.ndarray:
    """A photograph as uint8, (H, W) for mode "L" or (H, W, 3) for "RGB"."""
    with guarded_image(photo_path(name), None) as im:
        return np.asarray(im.convert(mode))


def wallpaper_paths() -> list[Path]:
    """The wallpaper photographs, or an error naming the Debian package that is missing."""
    paths = []
    for package, files in WALLPAPERS.items():
        for file in files:
            path = WALLPAPER_FOLDER / file
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: apt install {package}")
            paths.append(path)
    return paths


def grayscale_planes(name: str | Path) -> list[np.ndarray]:
    """The luminance of a photo (a name in PHOTOS, or a wallpaper's path: downscaled to a
    WALLPAPER_SHORT_SIDE short side) and, for colour photos, each colour channel: the
    denoiser works on one channel at a time, so every channel is a training image."""
    from PIL import Image

    wallpaper = isinstance(name, Path)
    with guarded_image(name if wallpaper else photo_path(name), None) as im:
        if wallpaper:
            im = im.convert("RGB")
            scale = WALLPAPER_SHORT_SIDE / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        rgb, luminance = np.asarray(im.convert("RGB")), np.asarray(im.convert("L"))
    planes = [luminance]
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        planes += [np.ascontiguousarray(rgb[..., c]) for c in range(3)]
    return planes


def patches(names: Sequence[str | Path], size: int = 64, stride: int = 32) -> np.ndarray:
    """Overlapping size x size patches of every plane of the named photos, with their 8
    flips and rotations spread over the patches (one per patch, by position): (N, 1, size, size)."""
    out = []
    k = 0
    for name in names:
        for plane in grayscale_planes(name):
            h, w = plane.shape
            for y in range(0, h - size + 1, stride):
                for x in range(0, w - size + 1, stride):
                    p = plane[y:y + size, x:x + size]
                    out.append(np.ascontiguousarray(symmetry(p, patch_view(k))))
                    k += 1
    return np.stack(out)[:, None]
