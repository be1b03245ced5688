"""A blind denoiser's second graph, with the noise level given instead of estimated:
``autoencoder-sigma.onnx`` beside an export's ``autoencoder.onnx`` (inputs ``x`` and ``sigma``
(batch, 1) on the 0-1 scale). ``aetk denoise --sigma S`` runs it when it is there.

Only models that can take a level write one (today ``resunet``, through its ``SigmaGraph``);
the recipe that ships the denoiser calls :func:`export_sigma_graph` after ``aetk export``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aetk.artifacts import ExportDir

ATOL = 1e-4  # float32 rounding of a 40-conv U-Net reaches ~1.5e-5 on random inputs


def export_sigma_graph(model, export_dir: Path) -> Path:
    """Write ``export_dir``'s sigma graph for ``model`` (a resunet in eval mode), with the
    autoencoder graph's metadata, after checking it against PyTorch in ONNX Runtime."""
    import onnx

    from aetk.atomic import atomic_path
    from aetk.export.exporter import DEFAULT_OPSET, to_onnx
    from aetk.export.graphs import GraphSpec
    from aetk.export.validate import validate_graph
    from aetk.models.resunet import SigmaGraph

    folder = ExportDir(export_dir)
    graph = SigmaGraph(model.eval())
    m = model.spatial_multiple
    x = torch.rand(2, model.channels, 2 * m, 3 * m)
    sigma = torch.tensor([[15 / 255], [40 / 255]])
    spec = GraphSpec("autoencoder", graph, {"x": x, "sigma": sigma}, ["x_hat"],
                     {"x": {0: "batch", 2: "height", 3: "width"}, "sigma": {0: "batch"}})
    proto = to_onnx(spec, DEFAULT_OPSET, m)
    source = onnx.load(str(folder.graph("autoencoder")), load_external_data=False)
    del proto.metadata_props[:]
    for prop in source.metadata_props:  # the same model: the denoiser checks this metadata
        proto.metadata_props.add(key=prop.key, value=prop.value)
    # two batches of other sizes and levels, each compared with PyTorch (names, shapes, values)
    batches = {"random": {"x": x, "sigma": sigma},
               "other": {"x": torch.rand(3, model.channels, 3 * m, 2 * m),
                         "sigma": torch.tensor([[0.0], [25 / 255], [50 / 255]])}}
    validate_graph(proto.SerializeToString(), graph, "autoencoder-sigma", ["x_hat"], batches, atol=ATOL)
    path = folder.sigma_graph
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


__all__ = ["export_sigma_graph"]
