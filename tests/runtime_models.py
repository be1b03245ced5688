"""Small hand-built ONNX models with aetk metadata, and numpy references for them, so the
runtime and deploy tests need neither torch nor the exporter. Each ``*_graphs`` function
returns {graph name: onnx.ModelProto}; ``write_export`` saves them as an export folder.

    dense   NCHW (1, 4, 4) images -> 3-d codes: Flatten, MatMul+Add, Tanh / MatMul+Add, Sigmoid
    vae     NF 6-vectors -> 2-d (mean, logvar); linear decoder; sample graph
    conv    NCHW (1, H, W), H and W multiples of 4: stride-4 Conv / ConvTranspose + Sigmoid
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from aetk.runtime.metadata import ModelMetadata

OPSET = 17
IR_VERSION = 8
_ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}
_SUFFIX = {"float32": "", "float16": ".fp16", "int8": ".int8"}

rng = np.random.default_rng(1234)
DENSE = {"W1": rng.normal(0, 0.3, (16, 3)), "b1": rng.normal(0, 0.1, 3),
         "W2": rng.normal(0, 0.5, (3, 16)), "b2": rng.normal(0, 0.1, 16)}
VAE = {"Wm": rng.normal(0, 0.5, (6, 2)), "bm": rng.normal(0, 0.1, 2),
       "Wl": rng.normal(0, 0.2, (6, 2)), "bl": rng.normal(0, 0.1, 2),
       "Wd": rng.normal(0, 0.5, (2, 6)), "bd": rng.normal(0, 0.1, 6)}
CONV = {"We": rng.normal(0, 0.3, (2, 1, 4, 4)), "be": rng.normal(0, 0.1, 2),
        "Wd": rng.normal(0, 0.5, (2, 1, 4, 4)), "bd": rng.normal(0, 0.1, 1)}
VAE_MEAN, VAE_STD = np.arange(6) * 0.5, np.linspace(1.0, 2.0, 6)


def metadata(graph: str, kind: str, precision: str = "float32", **kw) -> ModelMetadata:
    base = {
        "dense": dict(input_shape=[1, 4, 4], layout="NCHW", code_shape=[3],
                      normalization={"kind": "unit", "scale": 255.0, "value_range": [0.0, 1.0]},
                      value_range=[0.0, 1.0], output_activation="sigmoid"),
        "vae": dict(input_shape=[6], layout="NF", code_shape=[2], variational=True,
                    normalization={"kind": "standardize", "mean": VAE_MEAN.tolist(),
                                   "std": VAE_STD.tolist(), "shape": [6]}),
        "conv": dict(input_shape=[1, 8, 8], layout="NCHW", code_shape=[2, 2, 2], dynamic_spatial=True,
                     spatial_multiple=4, normalization={"kind": "unit", "scale": 255.0},
                     value_range=[0.0, 1.0], output_activation="sigmoid"),
    }[kind]
    return ModelMetadata(kind=kind, graph=graph, precision=precision, weights_sha256="ab" * 32,
                         aetk_version="0.1.0", **(base | kw))


def _model(nodes, inputs, outputs, weights: dict, meta: ModelMetadata | None, dtype) -> onnx.ModelProto:
    t = _ONNX_TYPE[dtype]
    inits = [numpy_helper.from_array(np.asarray(v, dtype if k != "shape" else np.int64), k)
             for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, s in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="aetk-tests")
    model.ir_version = IR_VERSION
    if meta is not None:
        helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    return model


def _n(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


def dense_graphs(precision: str = "float32", dtype=np.float32) -> dict[str, onnx.ModelProto]:
    w = DENSE
    enc = [_n("Flatten", ["x"], ["f"], axis=1), _n("MatMul", ["f", "W1"], ["h"]),
           _n("Add", ["h", "b1"], ["a"]), _n("Tanh", ["a"], ["z"])]
    dec = [_n("MatMul", ["z", "W2"], ["g"]), _n("Add", ["g", "b2"], ["o"]), _n("Sigmoid", ["o"], ["s"]),
           _n("Reshape", ["s", "shape"], ["x_hat"])]
    x, z, xh = ("x", ["batch", 1, 4, 4]), ("z", ["batch", 3]), ("x_hat", ["batch", 1, 4, 4])
    shape = {"shape": np.array([-1, 1, 4, 4])}
    return {
        "encoder": _model(enc, [x], [z], {"W1": w["W1"], "b1": w["b1"]},
                          metadata("encoder", "dense", precision), dtype),
        "decoder": _model(dec, [z], [xh], {"W2": w["W2"], "b2": w["b2"]} | shape,
                          metadata("decoder", "dense", precision), dtype),
        "autoencoder": _model(enc + dec, [x], [xh], w | shape, metadata("autoencoder", "dense", precision),
                              dtype),
    }


def dense_ref(x):
    z = np.tanh(np.asarray(x, np.float64).reshape(len(x), 16) @ DENSE["W1"] + DENSE["b1"])
    return z, dense_decode_ref(z)


def dense_decode_ref(z):
    y = 1 / (1 + np.exp(-(np.asarray(z, np.float64) @ DENSE["W2"] + DENSE["b2"])))
    return y.reshape(len(z), 1, 4, 4)


def vae_graphs(precision: str = "float32") -> dict[str, onnx.ModelProto]:
    w, f = VAE, np.float32
    enc = [_n("MatMul", ["x", "Wm"], ["m0"]), _n("Add", ["m0", "bm"], ["mean"]),
           _n("MatMul", ["x", "Wl"], ["l0"]), _n("Add", ["l0", "bl"], ["logvar"])]
    dec = [_n("MatMul", ["z", "Wd"], ["d0"]), _n("Add", ["d0", "bd"], ["x_hat"])]
    ae = enc[:2] + [_n("MatMul", ["mean", "Wd"], ["d0"]), _n("Add", ["d0", "bd"], ["x_hat"])]
    smp = [_n("Mul", ["logvar", "half"], ["hl"]), _n("Exp", ["hl"], ["sd"]), _n("Mul", ["sd", "eps"], ["se"]),
           _n("Add", ["mean", "se"], ["z"])]
    x, xh = ("x", ["batch", 6]), ("x_hat", ["batch", 6])
    code = lambda n: (n, ["batch", 2])  # noqa: E731
    meta = lambda g: metadata(g, "vae", precision)  # noqa: E731
    return {
        "encoder": _model(enc, [x], [code("mean"), code("logvar")],
                          {k: w[k] for k in ("Wm", "bm", "Wl", "bl")}, meta("encoder"), f),
        "decoder": _model(dec, [code("z")], [xh], {"Wd": w["Wd"], "bd": w["bd"]}, meta("decoder"), f),
        "autoencoder": _model(ae, [x], [xh], {k: w[k] for k in ("Wm", "bm", "Wd", "bd")},
                              meta("autoencoder"), f),
        "sample": _model(smp, [code("mean"), code("logvar"), code("eps")], [code("z")],
                         {"half": np.array(0.5)}, meta("sample"), f),
    }


def vae_ref(x):
    x = np.asarray(x, np.float64)
    mean, logvar = x @ VAE["Wm"] + VAE["bm"], x @ VAE["Wl"] + VAE["bl"]
    return mean, logvar, mean @ VAE["Wd"] + VAE["bd"]


def conv_graphs(precision: str = "float32") -> dict[str, onnx.ModelProto]:
    w, f = CONV, np.float32
    enc = [_n("Conv", ["x", "We", "be"], ["z"], kernel_shape=[4, 4], strides=[4, 4])]
    dec = [_n("ConvTranspose", ["z", "Wd", "bd"], ["t"], kernel_shape=[4, 4], strides=[4, 4]),
           _n("Sigmoid", ["t"], ["x_hat"])]
    x, z, xh = ("x", ["batch", 1, "H", "W"]), ("z", ["batch", 2, "h", "w"]), ("x_hat", ["batch", 1, "H", "W"])
    meta = lambda g: metadata(g, "conv", precision)  # noqa: E731
    return {
        "encoder": _model(enc, [x], [z], {"We": w["We"], "be": w["be"]}, meta("encoder"), f),
        "decoder": _model(dec, [z], [xh], {"Wd": w["Wd"], "bd": w["bd"]}, meta("decoder"), f),
        "autoencoder": _model(enc + dec, [x], [xh], w, meta("autoencoder"), f),
    }


def conv_encode_ref(x):
    x = np.asarray(x, np.float64)
    n, _, hh, ww = x.shape
    xr = x.reshape(n, 1, hh // 4, 4, ww // 4, 4)
    return np.einsum("nkiajb,ckab->ncij", xr, CONV["We"]) + CONV["be"][None, :, None, None]


def conv_decode_ref(z):
    z = np.asarray(z, np.float64)
    n, _, h, w = z.shape
    y = np.einsum("ncij,coab->noiajb", z, CONV["Wd"]).reshape(n, 1, h * 4, w * 4) + CONV["bd"][0]
    return 1 / (1 + np.exp(-y))


GRAPHS = {"dense": dense_graphs, "vae": vae_graphs, "conv": conv_graphs}


def save(model: onnx.ModelProto, path: Path, external: str | None = None) -> Path:
    """Save ``model``; with ``external``, every initializer goes to that file next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        (path.parent / external).parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external, size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def write_export(folder: Path, kind: str = "dense", precisions=("float32",)) -> Path:
    """An export folder like `aetk export` writes: <graph>[.fp16|.int8].onnx per precision.
    float16 files of the dense model have float16 inputs and outputs; the int8 files are
    float32 graphs labelled int8 (the runtime only reads the label)."""
    folder = Path(folder)
    for precision in precisions:
        if precision == "float16":
            graphs = dense_graphs("float16", np.float16)
        else:
            graphs = GRAPHS[kind](precision) if kind != "dense" else dense_graphs(precision)
        for name, model in graphs.items():
            save(model, folder / f"{name}{_SUFFIX[precision]}.onnx")
    return folder


def set_external_location(path: Path, location: str) -> None:
    """Rewrite every external-data location in ``path`` (to forge malicious files)."""
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))
