"""A conv model's trained weights read back from its exported ONNX graph.

For a model whose run folder is gone but whose graph is kept, like the shipped denoiser: the
graph becomes a run-folder model again, so ``train.init_from`` can start a bigger model from it
(e.g. a ``resconv`` given a refiner). Export folds each batch norm into the convolution before
it, so the folded convolution goes back into the conv and its bias into the batch norm's shift
(scale 1, running mean 0, running variance 1 - eps): in eval mode that computes the graph's
function exactly. Convolutions are matched in the order they run; the rebuilt model is checked
against ONNX Runtime on a random input before anything is written.

    python -m aetk.models.from_onnx aetk/denoise/models/blind-gaussian.onnx runs/shipped \\
        features=48 depth=10 context=96
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

CONVS = (nn.Conv2d, nn.ConvTranspose2d)
ONNX_CONVS = ("Conv", "ConvTranspose")


class OnnxImportError(ValueError):
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


def main(argv: list[str] | None = None) -> None:
    import aetk.runtime as rt
    from aetk.config import parse_value
    from aetk.models.registry import create_model
    from aetk.train.checkpoint import save_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="an exported autoencoder.onnx")
    ap.add_argument("run_dir", type=Path, help="folder to write model.safetensors + model.json into")
    ap.add_argument("config", nargs="*", help="the model's config as key=value (its kind's Config fields)")
    args = ap.parse_args(argv)
    params = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"config items are key=value, got {item!r}")
        params[key] = parse_value(value)
    try:
        session = rt.load_model(args.onnx, device="cpu")  # checks the file, reads its aetk metadata
        meta = session.metadata
        model = create_model(meta.kind, tuple(meta.input_shape), **params)
        load_onnx_weights(model, args.onnx, session)
    except ValueError as exc:  # a bad file, unknown config keys, a graph that does not fit
        ap.error(str(exc))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    save_model(args.run_dir, model, {"normalization": meta.normalization, "from_onnx": str(args.onnx)})
    print(f"wrote {args.run_dir}/model.safetensors and model.json ({meta.kind}, {json.dumps(params)})")


if __name__ == "__main__":
    main()
