"""A Triton Inference Server model repository from an export folder.

    REPO/<name>_encoder/config.pbtxt      onnxruntime backend, dynamic batching, instance group
    REPO/<name>_encoder/1/model.onnx      the float32 graph (its .data file too, if any)
    REPO/<name>_decoder/...  REPO/<name>_autoencoder/...  (REPO/<name>_sample/... for VAEs)

Input and output names, types and dims come from the ONNX file itself (the batch axis is
Triton's, so dims leave it out; dynamic height and width are -1). The aetk metadata goes into
the config's ``parameters`` so clients can read the preprocessing from Triton's model API.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx

from aetk.artifacts.export_dir import GRAPH_NAMES as GRAPHS, ExportDir, data_file_name
from aetk.checks import positive_int
from aetk.export.errors import ExportError
from aetk.runtime.metadata import PREFIX

KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}
TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64", onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT8: "TYPE_INT8", onnx.TensorProto.BOOL: "TYPE_BOOL",
}
# Metadata passed on to Triton clients (the rest stays in the ONNX file).
PARAMETERS = ("kind", "graph", "input_shape", "layout", "code_shape", "normalization", "value_range",
              "weights_sha256", "version")


def _tensor_config(value: onnx.ValueInfoProto, source: Path) -> str:
    t = value.type.tensor_type
    if t.elem_type not in TRITON_TYPES:
        raise ExportError(f"{source}: {value.name} has ONNX type {t.elem_type}, which aetk does not map to Triton")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim][1:]  # batch: Triton's
    return (f'  {{\n    name: "{value.name}"\n    data_type: {TRITON_TYPES[t.elem_type]}\n'
            f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}')


def _quote(s: str) -> str:
    return json.dumps(s)  # a protobuf text-format string: double quotes, backslash escapes


def triton_config(model_path: Path, name: str, max_batch_size: int = 1024, kind: str = "auto",
                  instances: int = 1, max_queue_delay_us: int = 500) -> str:
    """The config.pbtxt text for one ONNX file."""
    if kind not in KINDS:
        raise ExportError(f"triton instance kind must be one of {', '.join(KINDS)}, got {kind!r}")
    positive_int("triton max batch size", max_batch_size, error=ExportError)
    proto = onnx.load(str(model_path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    inputs = ",\n".join(_tensor_config(v, model_path) for v in proto.graph.input)
    outputs = ",\n".join(_tensor_config(v, model_path) for v in proto.graph.output)
    params = "\n".join(
        f"parameters {{\n  key: {_quote(PREFIX + k)}\n  value {{ string_value: {_quote(props[PREFIX + k])} }}\n}}"
        for k in PARAMETERS if PREFIX + k in props)
    return (
        f'name: "{name}"\n'
        f'backend: "onnxruntime"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n}}\n"
        f"instance_group [\n  {{\n    count: {int(instances)}\n    kind: {KINDS[kind]}\n  }}\n]\n"
        f"{params}\n"
    )


def write_triton_repo(export_dir: Path, repo: Path, name: str, max_batch_size: int = 1024,
                      kind: str = "auto", instances: int = 1) -> Path:
    """Add this export's float32 graphs to the model repository ``repo`` (made if missing)."""
    from aetk.atomic import atomic_write_bytes, atomic_write_text

    export = ExportDir(export_dir)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"triton model name {name!r} may hold only letters, digits, '_', '.' and '-'")
    found = list(export.graphs())
    if not found:
        raise ExportError(f"{export_dir} holds no exported graphs ({export.graph(GRAPHS[0]).name}, ...) "
                          f"for the Triton repository")
    try:
        repo.mkdir(parents=True, exist_ok=True)
        for graph in found:
            src = export.graph(graph)
            model_name = ExportDir.triton_model_dir(repo, name, graph).name
            config_file, model_file = ExportDir.triton_files(repo, name, graph)
            model_file.parent.mkdir(parents=True, exist_ok=True)
            if export.graph_data(graph).is_file():  # external weights: Triton loads them from beside the model
                proto = onnx.load(str(src), load_external_data=True)
                onnx.save_model(proto, str(model_file), save_as_external_data=True,
                                all_tensors_to_one_file=True, location=data_file_name(model_file.name))
            else:
                atomic_write_bytes(model_file, src.read_bytes())
            config = triton_config(src, model_name, max_batch_size, kind, instances)
            atomic_write_text(config_file, config)
    except OSError as exc:
        raise ExportError(f"cannot write the Triton repository {repo}: {exc.strerror or exc}") from exc
    return repo


__all__ = ["triton_config", "write_triton_repo"]
