"""``sample_run``: a grid of generated examples.

A VAE (or a denoising VAE) draws z ~ N(0, I) and shows the decoder means
(``model.sample(n, seed)``). Any other autoencoder is not a generative model, and is refused
(NotGenerativeError): its decoder on random codes draws noise. ``fitted_codes=True`` asks for
a look at its code space instead: codes drawn from a Gaussian fitted to its training codes
(full covariance up to FULL_COV_MAX code values, else diagonal), decoded; the picture's title
says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aetk.checks import positive_int
from aetk.errors import UserInputError
from aetk.evaluate.loading import collect, encode_all, eval_dir, load_run, pixel_range

FIT_MAX = 20_000  # training examples encoded to fit the code Gaussian
FULL_COV_MAX = 1024  # code values up to which the Gaussian has a full covariance


class NotGenerativeError(UserInputError):
    """``aetk sample`` of a model that cannot generate (not a VAE)."""


def gaussian_codes(codes: torch.Tensor, n: int, seed: int) -> tuple[np.ndarray, str]:
    """n draws from a Gaussian fitted to ``codes`` (m, ...), flattened; and its description."""
    flat = codes.reshape(len(codes), -1).double().numpy()
    m, dim = flat.shape
    mean = flat.mean(axis=0)
    rng = np.random.default_rng(seed)
    if dim <= FULL_COV_MAX and m > dim:
        cov = np.atleast_2d(np.cov(flat, rowvar=False))
        z = rng.multivariate_normal(mean, cov, size=n, method="eigh")
        how = "full covariance"
    else:
        z = mean + flat.std(axis=0) * rng.standard_normal((n, dim))
        how = "diagonal covariance"
    return z, how


@torch.no_grad()
def sample_run(run_dir: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None,
               *, device: str = "cpu", fitted_codes: bool = False) -> Path:
    """Write a grid of ``n`` generated examples to ``out`` (default ``run_dir/eval/samples.png``;
    a folder means ``folder/samples.png``) and return its path."""
    from aetk.evaluate import plots

    n, seed = positive_int("n", n, what="a positive number of samples"), int(seed)
    run = load_run(run_dir, device)
    model = run.model
    kind = run.kind
    if model.traits.generator:
        x = model.sample(n, seed=seed).float().cpu()
        title = f"{kind}: {n} samples, decoder means at z ~ N(0, I) (seed {seed})"
    elif not fitted_codes:
        raise NotGenerativeError(
            f"{run_dir} is a {kind!r} model, which is not generative: its decoder on random codes "
            f"draws noise, not data. Sample from a VAE (model.kind = 'vae'), or pass --fitted-codes "
            f"to decode codes drawn from a Gaussian fitted to its training codes")
    else:
        x_train, _ = collect(run.data.train, limit=FIT_MAX)
        codes = encode_all(model, x_train, run.device)
        z, how = gaussian_codes(codes, n, seed)
        z_t = torch.from_numpy(z).float().reshape(n, *codes.shape[1:]).to(run.device)
        x = model.decode(z_t).float().cpu()
        title = (f"{kind}: {n} decodings of codes drawn from a Gaussian ({how}) fitted to "
                 f"{len(codes)} training codes\n(a {kind} autoencoder is not a generative "
                 f"model; seed {seed})")
    if out is None:
        path = eval_dir(run, None) / "samples.png"
    else:
        path = Path(out)
        if path.is_dir() or path.suffix == "":
            path = path / "samples.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    display = plots.Display(run.input_shape, run.normalization, pixel_range(run))
    fig = plots.examples_figure(x, display, title)
    return plots.save_figure(fig, path)


__all__ = ["NotGenerativeError", "gaussian_codes", "sample_run"]
