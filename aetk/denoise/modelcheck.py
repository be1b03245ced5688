"""What ``aetk denoise --model`` accepts, checked from the model's metadata before any work:
a denoiser (trained on corrupted inputs), fully convolutional (any H x W, so a photo is
tiled instead of being cut into the training size), with 1 or 3 colour channels.

    check_denoiser_metadata(meta, "out/autoencoder.onnx")   # DenoiserError naming what is wrong
    check_run_folder("runs/conv")                            # the same from a run's model.json

Torch-free: it reads only the ONNX metadata (aetk.runtime.metadata) or the run's model.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aetk.errors import UserInputError

# Kinds trained to map a corrupted input to the clean one (aetk/models/__init__.py has the
# table); a ``denoising`` wrapper around any other kind records that kind as base_kind.
DENOISER_KINDS = ("denoising", "resconv", "resunet")
CHANNELS = (1, 3)


class ModelCheckError(UserInputError):
    """A --model that aetk denoise cannot use (not a denoiser, not fully convolutional, ...)."""


def _why_not(kind: str, base_kind: str, graph: str, layout: str, input_shape: list[int],
             dynamic_spatial: bool | None) -> str | None:
    if graph and graph != "autoencoder":
        return f"it is the {graph} graph; denoising needs the autoencoder graph"
    if kind not in DENOISER_KINDS and not base_kind:
        return (f"it is a {kind!r} model, not a denoiser (denoisers are {', '.join(DENOISER_KINDS)}, "
                f"or any kind trained with model.kind = 'denoising'); it would paste its "
                f"reconstructions over the photo")
    if layout not in ("NCHW", "NHW"):
        return f"it is a model for {layout} data, not images"
    channels = int(input_shape[0]) if layout == "NCHW" else 1
    if channels not in CHANNELS:
        return f"it takes {channels}-channel images; aetk denoise feeds 1 (gray) or 3 (RGB) channels"
    if dynamic_spatial is False:
        h, w = input_shape[-2:]
        return (f"it is not fully convolutional: it takes only {h}x{w} inputs, so a photo would "
                f"come back as a mosaic of {h}x{w} tiles; export a convolutional denoiser")
    return None


def check_denoiser_metadata(meta: Any, source: str | Path) -> None:
    """``meta``: aetk.runtime.metadata.ModelMetadata of the graph at ``source``."""
    why = _why_not(meta.kind, meta.base_kind, meta.graph, meta.layout, list(meta.input_shape),
                   bool(meta.dynamic_spatial))
    if why:
        raise ModelCheckError(f"--model {source} cannot denoise photographs: {why}")


def check_run_folder(run: str | Path) -> None:
    """The same check for an ``aetk train`` run folder, from its model.json (before the
    folder is exported); whether it is fully convolutional is checked after the export."""
    from aetk.artifacts import RunDir

    try:
        info = RunDir(run).model_info()
    except UserInputError as exc:
        raise ModelCheckError(f"--model {run}: {exc}") from exc
    kind = str(info.get("kind", ""))
    params = info.get("hyperparameters") or info.get("config") or {}
    base = str(params.get("base", "")) if kind == "denoising" and isinstance(params, dict) else ""
    shape = info.get("input_shape") or [0]
    layout = "NCHW" if len(shape) == 3 else ("NHW" if len(shape) == 2 else "NF")
    why = _why_not(kind, base, "", layout, list(shape), None)
    if why:
        raise ModelCheckError(f"--model {run} cannot denoise photographs: {why}")


__all__ = ["CHANNELS", "DENOISER_KINDS", "ModelCheckError", "check_denoiser_metadata", "check_run_folder"]
