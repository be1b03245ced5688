"""A blind denoiser's second graph, with the noise level given instead of estimated:
``autoencoder-sigma.onnx`` beside an export's ``autoencoder.onnx`` (inputs ``x`` and ``sigma``
(batch, 1) on the 0-1 scale). ``aetk denoise --sigma S`` runs it when it is there.

Only models that can take a level write one (today ``resunet``, through its ``SigmaGraph``);
the recipe that ships the denoiser calls :func:`export_sigma_graph` after ``aetk export``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aetk.artifacts import ExportDir
from aetk.export.errors import ExportValidationError

ATOL = 1e-4  # float32 rounding of a 40-conv U-Net reaches ~1.5e-5 on random inputs


def export_sigma_graph(model, export_dir: Path) -> Path:
    """Write ``export_dir``'s sigma graph for ``model`` (a resunet in eval mode), with the
    autoencoder graph's metadata, after checking it against PyTorch in ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    from aetk.atomic import atomic_path
    from aetk.export.exporter import DEFAULT_OPSET, to_onnx
    from aetk.export.graphs import GraphSpec
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
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x2 = torch.rand(3, model.channels, 3 * m, 2 * m)
    s2 = torch.tensor([[0.0], [25 / 255], [50 / 255]])
    for xs, ss in ((x, sigma), (x2, s2)):
        with torch.no_grad():
            want = graph(xs, ss).numpy()
        got = session.run(None, {"x": xs.numpy(), "sigma": ss.numpy()})[0]
        if not np.allclose(got, want, atol=ATOL):
            raise ExportValidationError(f"the sigma graph differs from PyTorch by {np.abs(got - want).max():.2e}",
                                        graph="autoencoder-sigma", output="x_hat")
    path = folder.sigma_graph
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


__all__ = ["export_sigma_graph"]
