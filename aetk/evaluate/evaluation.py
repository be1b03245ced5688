"""``evaluate_run``: score a trained run on its test data, side by side with PCA of the same
code size, and draw the pictures a person would rather look at than read.

    metrics = evaluate_run("runs/deep")          # also writes runs/deep/eval/*.png, metrics.json
    metrics["model"]["sse_per_example"], metrics["pca"]["sse_per_example"]

The returned dict (the content of eval/metrics.json; non-finite numbers become null):

    run, kind, base, corruption, data, split, examples, train_examples, pca_fit_examples,
    input_shape, code_shape, code_dim, pca_components, pca_explained_variance_ratio,
    normalization, data_range, data_range_from, pixel_range, warnings, notes
    model: {metric: value}   the autoencoder (see METRIC_LABELS for every key)
    pca:   {metric: value}   PCA with the same code size, fitted on the training data
    terms: {term: value}     the model's own loss terms on this split (eval mode)
    files: {name: path}      metrics.json and the PNGs written

Reconstructions are ``decode(encode(x))`` in eval mode (a VAE's posterior mean, a denoising
model's clean input). Metrics are computed in the model's normalized input space; the
``*_pixel`` ones on de-normalized data mapped to [0, 1] (see ``pixel_range``).

A denoiser (``model.traits.corruption``: ``corrupt_input(x, step)`` is its own seeded
corruption) is judged on what it is for: ``denoising`` holds the noisy inputs and the denoised
outputs, each against the clean target (and PCA's projection of the noisy inputs when PCA
has fewer components than the data has values: with as many, PCA is the identity and
reconstructs anything exactly, which says nothing).

    denoising: {noisy: {metric: value}, denoised: {...}, pca: {...} or absent, space}
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from aetk.checks import positive_int
from aetk.data.source import evenly_spaced
from aetk.artifacts import RunDir
from aetk.evaluate.loading import (
    EvaluationError,
    LoadedRun,
    collect,
    eval_dir,
    load_run,
    pixel_range,
)
from aetk.evaluate.metrics import flat64, psnr, reconstruction_metrics
from aetk.evaluate.pca import PCA
from aetk.train.checkpoint import atomic_write_text
from aetk.progress import Progress, or_null

SPLITS = ("test", "train")
SHOW = 10  # examples in reconstructions.png
LATENT_GRID = 15  # latent_grid.png is LATENT_GRID x LATENT_GRID decodings
PCA_FIT_MAX = 100_000  # PCA is fitted on at most this many training examples (seeded subset)
BATCH = 256

# Every metric key, in display order, with a label for tables.
METRIC_LABELS: dict[str, str] = {
    "sse_per_example": "SSE per example",
    "mse_per_element": "MSE per element",
    "psnr_db": "PSNR (dB)",
    "sse_per_example_pixel": "SSE per example, [0,1] pixels",
    "mse_per_element_pixel": "MSE per element, [0,1] pixels",
    "psnr_db_pixel": "PSNR (dB), [0,1] pixels",
    "bce_per_example": "BCE per example",
    "elbo_per_example": "ELBO per example",
    "recon_nll_per_example": "reconstruction NLL per example",
    "kl_per_example": "KL per example",
    "mean_code_activation": "mean code activation",
    "mean_jacobian_norm": "mean Jacobian norm ||J||_F",
    "mean_jacobian_norm_sq": "mean ||J||_F^2",
    "denoise_psnr_corrupted_db": "PSNR, corrupted inputs (dB)",
    "denoise_psnr_reconstructed_db": "PSNR, denoised (dB)",
    "denoise_gain_db": "denoising gain (dB)",
    "denoise_sse_per_example": "SSE per example, denoised",
}


# -- helpers -----------------------------------------------------------------------------------
def _clean(obj: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _pick_examples(labels: np.ndarray, n: int, k: int = SHOW) -> np.ndarray:
    """Up to k indices: the first example of each label (in label order) topped up with the
    first ones not picked yet; without labels, k evenly spaced examples (consecutive windows
    of a time series would all look alike)."""
    k = min(k, n)
    if not (labels.size and np.any(labels >= 0)):
        return evenly_spaced(n, k)
    picked = [int(np.argmax(labels == c)) for c in sorted(set(int(v) for v in labels if v >= 0))]
    chosen = set(picked)
    picked += [i for i in range(n) if i not in chosen][:max(0, k - len(picked))]
    return np.array(picked[:k], dtype=np.int64)


def _data_range(run: LoadedRun, x_train: torch.Tensor) -> tuple[float, str]:
    vr = run.normalization.value_range
    if vr is not None and vr[1] > vr[0]:
        return float(vr[1] - vr[0]), "normalization"
    if x_train.numel():
        r = float(x_train.max() - x_train.min())
        if r > 0:
            return r, "training data (max - min)"
    return 1.0, "default"


def _unit_range(run: LoadedRun) -> bool:
    vr = run.normalization.value_range
    return vr is not None and vr[0] >= 0.0 and vr[1] <= 1.0


def _read_history(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []


# -- the model's pass --------------------------------------------------------------------------
def corrupter(model):
    """The model's own seeded corruption ``f(x, step) -> noisy x``, or None for a model that
    is not a denoiser (``traits.corruption``)."""
    return model.corrupt_input if model.traits.corruption else None


@torch.no_grad()
def model_pass(model, x: torch.Tensor, device: torch.device, *, corrupt: Any = False,
               jacobian: bool = False, batch_size: int = BATCH,
               progress: Progress | None = None) -> dict[str, Any]:
    """Codes, reconstructions and loss terms of x in eval mode, on the CPU.

    Batch b uses step=b for anything stochastic (a VAE's z sample in the loss terms, a
    denoising model's corruption), so results are reproducible.
    """
    model.eval()
    corrupt_fn = (corrupter(model) if corrupt is True else corrupt) or None
    codes, recons, corrupted, denoised, jac = [], [], [], [], []
    sums: dict[str, float] = {}
    n = 0
    for b, s in enumerate(range(0, len(x), batch_size)):
        xb = x[s:s + batch_size].to(device)
        z = model.encode(xb)
        codes.append(z.float().cpu())
        recons.append(model.decode(z).float().cpu())
        out = model(xb, step=b)
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.dim() == 0:
                sums[k] = sums.get(k, 0.0) + float(v) * xb.shape[0]
        if corrupt_fn is not None:
            xt = corrupt_fn(xb, step=b)
            corrupted.append(xt.float().cpu())
            denoised.append(model.decode(model.encode(xt)).float().cpu())
        if jacobian:
            jac.append(model.jacobian_norm(xb).float().reshape(-1).cpu())
        n += xb.shape[0]
        if progress is not None:
            progress.advance(xb.shape[0])
    cat = (lambda t: torch.cat(t) if t else None)
    return {"codes": cat(codes), "recons": cat(recons), "corrupted": cat(corrupted),
            "denoised": cat(denoised), "jacobian_sq": cat(jac),
            "terms": {k: v / max(n, 1) for k, v in sums.items()}}


# -- evaluate_run ------------------------------------------------------------------------------
def evaluate_run(run_dir: str | Path, *, split: str = "test", limit: int | None = None,
                 device: str = "cpu", out_dir: str | Path | None = None,
                 plots: bool = True, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate a run folder on its ``split`` ("test", falling back to the training data when
    the data has no test set, or "train"), the first ``limit`` examples of it when given.

    Writes ``metrics.json`` (atomically) and the PNGs into ``out_dir`` (default
    ``run_dir/eval``) and returns the metrics (see the module docstring). ``progress`` (an
    aetk.progress.Progress) starts a stage as the work goes: loading the run, reading
    examples, fitting PCA, running the model (advanced per example), drawing pictures.
    """
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    positive_int("limit", limit, error=EvaluationError, allow_none=True, what="a positive number of examples")
    progress = or_null(progress)
    try:
        return _evaluate_run(run_dir, split, limit, device, out_dir, plots, progress)
    finally:
        progress.finish()


def _evaluate_run(run_dir: str | Path, split: str, limit: int | None, device: str, out_dir: str | Path | None,
                  plots: bool, progress: Progress) -> dict[str, Any]:
    progress.start("loading the run")
    run = load_run(run_dir, device)
    progress.start("reading examples")
    notes: list[str] = []
    x, labels, used = _examples(run, split, limit, notes)
    x_train = _pca_fit_examples(run, notes)
    d, code_dim = int(np.prod(run.input_shape)), run.code_dim
    k = min(code_dim, len(x_train), d)
    if k < code_dim:
        notes.append(f"PCA capped at {k} components (the code has {code_dim} values)")
    progress.start("fitting PCA")
    pca = PCA(k).fit(flat64(x_train))
    if k >= d:
        notes.append(f"PCA with {k} components of {d}-value examples is the identity (exact on any input, "
                     f"so no baseline): the tables leave it out")

    model, traits = run.model, run.model.traits
    corrupt_fn = corrupter(model)
    progress.start("running the model", total=len(x))
    mp = model_pass(model, x, run.device, corrupt=corrupt_fn or False, jacobian=traits.contractive,
                    progress=progress)
    x64, rec = flat64(x), flat64(mp["recons"])
    pca_rec = pca.reconstruct(x64)
    R, range_source = _data_range(run, x_train)
    bce = _unit_range(run)
    m_model = reconstruction_metrics(rec, x64, R, bce=bce)
    m_pca = reconstruction_metrics(pca_rec, x64, R, bce=bce)
    prange = pixel_range(run, x_train)
    to_pixels = None if prange is None else _pixel_scaler(run, prange)
    if to_pixels is not None:
        x_pix = to_pixels(x64)
        m_model.update(reconstruction_metrics(to_pixels(rec), x_pix, 1.0, suffix="_pixel"))
        m_pca.update(reconstruction_metrics(to_pixels(pca_rec), x_pix, 1.0, suffix="_pixel"))
    _model_terms(m_model, m_pca, mp, traits, k, notes)
    denoising = None
    if corrupt_fn is not None:
        denoising = _denoising_metrics(flat64(mp["corrupted"]), flat64(mp["denoised"]), x64, pca, k < d, R,
                                       to_pixels)
        _denoise_gains(m_model, m_pca, mp, pca, x64, R)

    result: dict[str, Any] = {
        "run": str(run.run_dir),
        "kind": run.kind,
        "base": traits.base_kind or None,
        "corruption": model.describe_corruption() if corrupt_fn is not None else None,
        "data": run.data.source,
        "split": used,
        "examples": len(x),
        "train_examples": len(run.data.train),
        "pca_fit_examples": len(x_train),
        "input_shape": list(run.input_shape),
        "code_shape": list(run.code_shape),
        "code_dim": code_dim,
        "pca_components": k,
        "pca_identity": k >= d,
        "pca_explained_variance_ratio": float(np.sum(pca.explained_variance_ratio_)),
        "normalization": run.normalization.describe(),
        "data_range": R,
        "data_range_from": range_source,
        "pixel_range": list(prange) if prange is not None else None,
        "model": _in_label_order(m_model),
        "pca": _in_label_order(m_pca),
        "terms": mp["terms"],
        "denoising": denoising,
        "warnings": list(run.warnings),
        "notes": notes,
    }
    out = eval_dir(run, out_dir)
    progress.start("drawing pictures")
    files = _draw(run, out, x, labels, mp, pca, pca_rec, result) if plots else {}
    files["metrics"] = str(out / "metrics.json")
    result["files"] = files
    result = _clean(result)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    return result


def _examples(run: LoadedRun, split: str, limit: int | None, notes: list[str]):
    """(examples, labels, the split used) of the split asked for, the first ``limit`` of them."""
    data = run.data
    ds, used = (data.test, "test") if split == "test" and data.test is not None else (data.train, "train")
    if split == "test" and data.test is None:
        notes.append("the data has no test split: evaluated on the training data")
    x, labels = collect(ds, limit)
    if len(x) == 0:
        raise EvaluationError(f"no {used} examples to evaluate in {data.source}")
    return x, labels, used


def _pca_fit_examples(run: LoadedRun, notes: list[str]) -> torch.Tensor:
    """The training examples PCA is fitted on (a seeded subset of PCA_FIT_MAX when there are more)."""
    train_ds = run.data.train
    if len(train_ds) > PCA_FIT_MAX:
        keep = np.sort(np.random.default_rng(0).permutation(len(train_ds))[:PCA_FIT_MAX])
        train_ds = Subset(train_ds, keep.tolist())
        notes.append(f"PCA fitted on a seeded subset of {PCA_FIT_MAX} training examples")
    return collect(train_ds)[0]


def _pixel_scaler(run: LoadedRun, prange: tuple[float, float]):
    """Flat model inputs -> flat raw pixels scaled to [0, 1] by the data's pixel range."""
    lo, hi = prange
    shape = run.input_shape

    def to_pixels(a: np.ndarray) -> np.ndarray:
        raw = np.asarray(run.normalization.invert(a.reshape(len(a), *shape)), np.float64)
        return ((raw - lo) / (hi - lo)).reshape(len(a), -1)
    return to_pixels


def _model_terms(m_model: dict, m_pca: dict, mp: dict[str, Any], traits, k: int, notes: list[str]) -> None:
    """The model's own terms beside the reconstruction: ELBO, code activation, Jacobian norm
    (and PCA's, which is exact: its encoder's rows are orthonormal)."""
    terms = mp["terms"]
    if traits.variational and "kl" in terms and "recon" in terms:
        m_model["recon_nll_per_example"] = terms["recon"]
        m_model["kl_per_example"] = terms["kl"]
        m_model["elbo_per_example"] = -(terms["recon"] + terms["kl"])
        notes.append("ELBO: one posterior sample per example")
    if "mean_activation" in terms:
        m_model["mean_code_activation"] = terms["mean_activation"]
    if traits.contractive and mp["jacobian_sq"] is not None:
        j2 = mp["jacobian_sq"].double()
        m_model["mean_jacobian_norm_sq"] = float(j2.mean())
        m_model["mean_jacobian_norm"] = float(j2.clamp(min=0).sqrt().mean())
        # PCA's encoder is x -> V (x - mean): J = V, orthonormal rows, ||J||_F^2 = k.
        m_pca["mean_jacobian_norm_sq"] = float(k)
        m_pca["mean_jacobian_norm"] = math.sqrt(k)


def _denoise_gains(m_model: dict, m_pca: dict, mp: dict[str, Any], pca: PCA, x64: np.ndarray, R: float) -> None:
    """PSNR of the corrupted input and of each method's denoised output against the clean one."""
    xt = flat64(mp["corrupted"])
    d = x64.shape[1]
    mse_corrupted = float(((xt - x64) ** 2).mean())
    for m, den in ((m_model, flat64(mp["denoised"])), (m_pca, pca.reconstruct(xt))):
        sse = ((den - x64) ** 2).sum(axis=1)
        p_in, p_out = psnr(mse_corrupted, R), psnr(float(sse.mean()) / d, R)
        m["denoise_psnr_corrupted_db"] = p_in
        m["denoise_psnr_reconstructed_db"] = p_out
        m["denoise_gain_db"] = p_out - p_in
        m["denoise_sse_per_example"] = float(sse.mean())


def _in_label_order(metrics: dict[str, Any]) -> dict[str, Any]:
    order = list(METRIC_LABELS)
    return {key: metrics[key] for key in sorted(metrics, key=lambda s: order.index(s) if s in order else len(order))}


def _denoising_metrics(noisy: np.ndarray, denoised: np.ndarray, clean: np.ndarray, pca: PCA, with_pca: bool,
                       data_range: float, to_pixels: Any) -> dict[str, Any]:
    """Noisy inputs and denoised outputs (and PCA's projection of the noisy inputs when it is
    not the identity) against the clean targets: in [0, 1] pixels when known, else in the
    model's space."""
    outs = {"noisy": noisy, "denoised": denoised}
    if with_pca:
        outs["pca"] = pca.reconstruct(noisy)
    if to_pixels is not None:
        target = to_pixels(clean)
        return {"space": "[0,1] pixels", **{name: reconstruction_metrics(to_pixels(a), target, 1.0)
                                             for name, a in outs.items()}}
    return {"space": "model inputs", **{name: reconstruction_metrics(a, clean, data_range) for name, a in outs.items()}}


# -- pictures ---------------------------------------------------------------------------------
def _draw(run: LoadedRun, out: Path, x: torch.Tensor, labels: np.ndarray, mp: dict[str, Any],
          pca: PCA, pca_rec: np.ndarray, result: dict[str, Any]) -> dict[str, str]:
    from aetk.evaluate import plots

    shape = run.input_shape
    display = plots.Display(shape, run.normalization,
                            tuple(result["pixel_range"]) if result["pixel_range"] else None)
    files: dict[str, str] = {}
    k = result["pca_components"]
    kind = run.kind + (f" ({result['base']})" if result.get("base") else "")
    where = f"{result['data']}, {result['split']}"
    mm, pm = result["model"], result["pca"]

    # reconstructions.png
    idx = _pick_examples(labels, len(x))
    t_idx = torch.from_numpy(idx)
    sse_m = ((flat64(mp["recons"][t_idx]) - flat64(x[t_idx])) ** 2).sum(1).mean()
    sse_p = ((pca_rec[idx] - flat64(x[t_idx])) ** 2).sum(1).mean()
    rows = [("original", x[t_idx])]
    if mp["corrupted"] is not None:
        rows.append((f"corrupted\n({result['corruption']})", mp["corrupted"][t_idx]))
        den = mp["denoised"][t_idx]
        sse_d = ((flat64(den) - flat64(x[t_idx])) ** 2).sum(1).mean()
        rows.append((f"{run.kind}\nfrom corrupted\nSSE {sse_d:.3g}", den))
        rows.append((f"{run.kind}\nfrom clean\nSSE {sse_m:.3g}", mp["recons"][t_idx]))
    else:
        rows.append((f"{run.kind}\nSSE {sse_m:.3g}", mp["recons"][t_idx]))
    rows.append((f"PCA, {k} comp.\nSSE {sse_p:.3g}", pca_rec[idx].reshape(len(idx), *shape)))
    title = (f"{kind} on {where}: reconstructions (code size {result['code_dim']})\n"
             f"mean SSE per example over {result['examples']}: {_fmt(mm.get('sse_per_example'))} "
             f"vs PCA {_fmt(pm.get('sse_per_example'))}; "
             f"PSNR {_fmt(mm.get('psnr_db'))} vs {_fmt(pm.get('psnr_db'))} dB "
             f"(row labels: mean SSE of the {len(idx)} shown)")
    fig = plots.reconstruction_figure(rows, display, title)
    files["reconstructions"] = str(plots.save_figure(fig, out / "reconstructions.png"))

    # training_curves.png
    metrics_file = RunDir(run.run_dir).metrics_file
    history = _read_history(metrics_file)
    fig = plots.curves_figure(history, f"{kind}: training curves ({run.run_dir.name}/{metrics_file.name})")
    if fig is not None:
        files["training_curves"] = str(plots.save_figure(fig, out / "training_curves.png"))

    # codes_2d.png
    if result["code_dim"] == 2:
        z = mp["codes"].reshape(len(x), 2).numpy()
        zp = pca.transform(flat64(x))
        if zp.shape[1] == 2:
            classes = run.data.classes
            fig = plots.codes_figure(
                [(f"{run.kind} codes", z), ("PCA, 2 components", zp)], labels, classes,
                f"2-d codes of {len(x)} {result['split']} examples ({result['data']})")
            files["codes_2d"] = str(plots.save_figure(fig, out / "codes_2d.png"))

    # latent_grid.png
    if run.model.traits.variational and result["code_dim"] == 2:
        g = LATENT_GRID
        p = torch.linspace(0.05, 0.95, g, dtype=torch.float64)
        values = torch.special.ndtri(p)
        zz = torch.stack([values.repeat(g), values.flip(0).repeat_interleave(g)], dim=1)
        with torch.no_grad():
            dec = run.model.decode(zz.float().to(run.device)).float().cpu()
        fig = plots.latent_grid_figure(
            dec, values.numpy(), display,
            f"{kind}: decoder means over the latent plane\n"
            f"(z at the {g} x {g} normal quantiles 0.05 ... 0.95)")
        files["latent_grid"] = str(plots.save_figure(fig, out / "latent_grid.png"))
    return files


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}"


__all__ = ["METRIC_LABELS", "SPLITS", "corrupter", "evaluate_run", "model_pass"]
