"""``aetk denoise``: batch-denoise images with an exported model (the shipped one by default).

| module         | what                                                                  |
|----------------|-----------------------------------------------------------------------|
| files.py       | which files to denoise and where each output goes, safely             |
| imagefiles.py  | images to float planes and back, in the input's mode and bit depth   |
| tiling.py      | overlapping tiles blended with a smooth window                        |
| denoiser.py    | the model (aetk.runtime) on tiles, per channel or per colour image    |
| noise_level.py | how noisy an image is (sigma for classical peers on real noise)      |
| pipeline.py    | worker threads for decoding and encoding around the model             |
| modelcheck.py  | what --model accepts: a denoiser, fully convolutional, 1 or 3 channels |
| report.py      | PSNR/SSIM against clean references (--report; benchmarks)             |
| photos.py      | the offline photographs the shipped model is trained and tested on    |

The shipped default is a pair chosen by the image's channels (denoiser.py): colour images go
through ``models/colour.onnx``, a blind ``resunet`` (aetk/models/resunet.py) trained on synthetic
camera noise, JPEG and Gaussian noise (recipes/denoiser.py), with ``models/colour-sigma.onnx``
beside it for ``--sigma``; grayscale images through ``models/gray.onnx``, a blind ``resconv``
(aetk/models/resconv.py) for Gaussian noise, sigma 0-55 (recipes/blind_gaussian.py).
"""

from aetk.denoise.denoiser import SHIPPED_MODEL, Denoiser, DenoiserError, load_denoiser
from aetk.denoise.files import DenoiseInputError
from aetk.denoise.options import DenoiseOptions
from aetk.denoise.pipeline import Summary, denoise_paths

__all__ = ["SHIPPED_MODEL", "DenoiseInputError", "DenoiseOptions", "Denoiser", "DenoiserError", "Summary", "denoise_paths",
           "load_denoiser"]
