"""A conv model's trained weights read back from its exported ONNX graph.

For a model whose run folder is gone but whose graph is kept, like the shipped denoiser: the
graph becomes a run-folder model again, so ``train.init_from`` can start a bigger model from it
(e.g. a ``resconv`` given a refiner). Export folds each batch norm into the convolution before
it, so the folded convolution goes back into the conv and its bias into the batch norm's shift
(scale 1, running mean 0, running variance 1 - eps): in eval mode that computes the graph's
function exactly. Convolutions are matched in the order they run; the rebuilt model is checked
against ONNX Runtime on a random input before anything is written.

    python tools/onnx_to_run.py aetk/denoise/models/gray.onnx runs/shipped \\
        features=48 depth=10 context=96

A folded batch norm computes the graph's function in eval mode only: in training it would
normalise by batch statistics the folded convolution never had. ``--calibrate DATA`` gives
the batch norms back statistics measured on DATA (anything ``aetk train`` reads), so that
training mode computes about the same function and the rebuilt model can train on from
where it was (not only grow new layers around a frozen copy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from aetk.errors import UserInputError

CONVS = (nn.Conv2d, nn.ConvTranspose2d)
ONNX_CONVS = ("Conv", "ConvTranspose")


class OnnxImportError(UserInputError):
    """The graph does not hold this model's weights."""


def _execution_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules() if isinstance(m, CONVS)]
    try:
        with torch.no_grad():
            model.decode(model.encode(example))
    finally:
        for h in hooks:
            h.remove()
    return order


def _batchnorm_after(model: nn.Module) -> dict[nn.Module, nn.BatchNorm2d]:
    """Each conv directly followed by a batch norm in its Sequential -> that batch norm."""
    after = {}
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            mods = list(seq)
            for a, b in zip(mods, mods[1:]):
                if isinstance(a, CONVS) and isinstance(b, nn.BatchNorm2d):
                    after[a] = b
    return after


def load_onnx_weights(model, onnx_path: str | Path, session=None, atol: float = 1e-4) -> None:
    """Set ``model``'s weights (an aetk conv autoencoder, built with the exported model's
    config) from the graph at ``onnx_path``; OnnxImportError when they do not fit. ``session``:
    the graph already opened with ``aetk.runtime.load_model`` (else it is opened here)."""
    import onnx
    from onnx import numpy_helper

    import aetk.runtime as rt

    path = Path(onnx_path)
    session = session or rt.load_model(path, device="cpu")
    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # Weights stored in float16 and cast to float32 where used (aetk.export.float16_storage).
    weights.update({n.output[0]: weights[n.input[0]].astype(np.float32) for n in graph.node
                    if n.op_type == "Cast" and n.input[0] in weights})
    nodes = [n for n in graph.node if n.op_type in ONNX_CONVS]
    h, w = 64, 64
    example = torch.rand(1, *model.input_shape[:-2], h, w) if len(model.input_shape) == 3 else torch.rand(1, h, w)
    model.eval()
    convs = _execution_order(model, example)
    if len(convs) != len(nodes):
        raise OnnxImportError(f"{path} has {len(nodes)} convolutions, this {model.kind} model {len(convs)}: "
                              f"build it with the exported model's config")
    after = _batchnorm_after(model)
    with torch.no_grad():
        for i, (conv, node) in enumerate(zip(convs, nodes)):
            if node.input[1] not in weights:
                raise OnnxImportError(f"{path}: convolution {i} ({node.name}) has computed weights, not stored ones")
            weight = torch.from_numpy(weights[node.input[1]].copy())
            bias = torch.from_numpy(weights[node.input[2]].copy()) if len(node.input) > 2 and node.input[2] \
                else torch.zeros(conv.weight.shape[1 if isinstance(conv, nn.ConvTranspose2d) else 0])
            if weight.shape != conv.weight.shape:
                raise OnnxImportError(f"{path}: convolution {i} ({node.name}) is {tuple(weight.shape)}, this "
                                      f"model's is {tuple(conv.weight.shape)}: build it with the exported config")
            conv.weight.copy_(weight)
            if conv.bias is not None:
                conv.bias.copy_(bias)
            elif conv in after:  # a folded batch norm: its shift is the folded bias
                bn = after[conv]
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif bias.abs().max() > 0:
                raise OnnxImportError(f"{path}: convolution {i} ({node.name}) has a bias this model has no place for")
    expected = session.run(example.numpy())[session.output_names[0]]
    with torch.no_grad():
        got = model.decode(model.encode(example)).numpy()
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not diff <= atol:
        raise OnnxImportError(f"the model rebuilt from {path} differs from the graph by {diff:.3g} "
                              f"(more than {atol:g}): it is not this model")


@torch.no_grad()
def calibrate_batchnorms(model, batches) -> int:
    """The batch norms of a model rebuilt by ``load_onnx_weights`` (scale 1, shift b, mean 0,
    variance 1 - eps) given statistics: each one's input is measured over ``batches`` (run in
    eval mode, through the model's own corruption, as training sees them), mean m and variance v,
    then mean m, variance v, scale sqrt(v + eps), shift b + m (in general: scale and shift that
    keep the eval-mode function). Eval mode computes exactly what it did; training mode,
    normalising by batch statistics close to (m, v), about the same.
    Returns how many batch norms were calibrated."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {bn: [0.0, 0.0, 0] for bn in norms}

    def measure(bn, inputs, _):
        x = inputs[0].double()
        s = sums[bn]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    hooks = [bn.register_forward_hook(measure) for bn in norms]
    try:
        model.eval()
        for step, x in enumerate(batches):
            model(x, step=step)
    finally:
        for h in hooks:
            h.remove()
    for bn, (total, squares, n) in sums.items():
        if not n:
            raise ValueError("calibration data never reached a batch norm")
        mean = (total / n).float()
        var = (squares / n).float() - mean * mean
        var = var.clamp_min(0)
        gain = bn.weight * (bn.running_var + bn.eps).rsqrt()  # what eval mode multiplies by now
        bn.bias.add_((mean - bn.running_mean) * gain)
        bn.weight.copy_((var + bn.eps).sqrt() * gain)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return len(norms)


def rebuild_run(onnx_path: Path, run_dir: Path, params: dict, calibrate: str | None = None,
                calibrate_examples: int = 2048) -> tuple[str, int]:
    """The graph at ``onnx_path`` as a run folder at ``run_dir`` (its model, written by
    ``RunDir.save_model``), built with ``params`` (its kind's Config fields); with
    ``calibrate`` (data ``aetk train`` reads), the batch norms get statistics measured on
    ``calibrate_examples`` of its examples. Nothing is written when anything does not fit.
    Returns the model kind and the number of batch norms calibrated."""
    import aetk.runtime as rt
    from aetk.models.registry import create_model
    from aetk.artifacts import RunDir  # this tool writes a run folder (see the report of issue 21)

    session = rt.load_model(onnx_path, device="cpu")  # checks the file, reads its aetk metadata
    meta = session.metadata
    model = create_model(meta.kind, tuple(meta.input_shape), **params)
    load_onnx_weights(model, onnx_path, session)
    calibrated = 0
    if calibrate:
        batches = _calibration_batches(calibrate, calibrate_examples, tuple(model.input_shape))
        calibrated = calibrate_batchnorms(model, batches)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    RunDir(run_dir).save_model(model, {"normalization": meta.normalization, "from_onnx": str(onnx_path)})
    return meta.kind, calibrated


def _calibration_batches(path: str, examples: int, shape: tuple[int, ...], batch_size: int = 64):
    from torch.utils.data import Subset

    from aetk.data import DataConfig, load_data
    from aetk.data.source import evenly_spaced
    from aetk.data.base import collect

    loaded = load_data(DataConfig(path=path))
    if tuple(loaded.input_shape) != shape:
        raise ValueError(f"--calibrate {path}: its examples have shape {tuple(loaded.input_shape)}, "
                         f"the model takes {shape}")
    x, _ = collect(Subset(loaded.train, evenly_spaced(len(loaded.train), examples).tolist()))
    return x.split(batch_size)
