"""Validation of an exported graph: the ONNX checker (full check), strict shape inference,
then ONNX Runtime against PyTorch, per output: names, then shapes, then values.

Values match when |ort - torch| <= atol + rtol * |torch| everywhere (atol = rtol = 1e-5 in
float32); the report keeps the max absolute difference of every output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch

from aetk.export.errors import OnnxCheckError, OutputNameMismatch, OutputShapeMismatch, OutputValueMismatch
from aetk.export.options import ExportOptions
from aetk.options import flag

# default tolerances (ExportOptions); deep conv nets may need a larger atol (float32 rounding adds up)
ATOL, RTOL = ExportOptions.atol, ExportOptions.rtol


def check_model(model: onnx.ModelProto | str, graph: str) -> None:
    """onnx.checker with full_check, and shape inference in strict mode. ``model`` is a path
    for files with external data (the checker reads the weights from beside it)."""
    try:
        onnx.checker.check_model(model, full_check=True)
        if isinstance(model, onnx.ModelProto):  # a path was shape-checked by full_check already
            onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxCheckError(f"{graph}.onnx fails the ONNX checker: {exc}", graph) from exc


def cpu_session(model: bytes | str, threads: int | None = None):
    """An ONNX Runtime session on the CPU, quiet, with all graph optimizations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def run_session(sess, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    feeds = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
             for k, v in inputs.items()}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def compare_outputs(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], graph: str,
                    batch: str, atol: float = ATOL, rtol: float = RTOL) -> dict[str, dict[str, Any]]:
    """Names, then shapes, then values; a typed error at the first mismatch, else a report."""
    if list(got) != list(expected):
        raise OutputNameMismatch(
            f"{graph}.onnx outputs {list(got)} but the PyTorch graph outputs {list(expected)}", graph)
    report: dict[str, dict[str, Any]] = {}
    for name, want in expected.items():
        have = got[name]
        if tuple(have.shape) != tuple(want.shape):
            raise OutputShapeMismatch(
                f"{graph}.onnx output '{name}' on the {batch} batch has shape {tuple(have.shape)}, "
                f"PyTorch gives {tuple(want.shape)}", graph, name)
        diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
        max_diff = float(diff.max()) if diff.size else 0.0
        bad = ~(diff <= atol + rtol * np.abs(want.astype(np.float64)))  # NaN counts as a mismatch
        if bad.any():
            raise OutputValueMismatch(
                f"{graph}.onnx output '{name}' on the {batch} batch differs from PyTorch by up to "
                f"{max_diff:.3g} (atol {atol:g}, rtol {rtol:g}) at {int(bad.sum())} of {diff.size} values "
                f"(if a few values of a deep model are off by float32 rounding, `aetk export {flag(ExportOptions, 'atol')}` raises the tolerance)",
                graph, name, max_diff, atol)
        report[name] = {"max_abs_diff": max_diff, "atol": atol, "rtol": rtol, "shape": list(want.shape)}
    return report


def torch_outputs(module: torch.nn.Module, inputs: dict[str, torch.Tensor], names: list[str]
                  ) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(*inputs.values())
    out = out if isinstance(out, tuple) else (out,)
    return {n: o.detach().float().cpu().numpy() for n, o in zip(names, out)}


def validate_graph(model_bytes: bytes, module: torch.nn.Module, graph: str, outputs: list[str],
                   batches: dict[str, dict[str, torch.Tensor]], atol: float = ATOL, rtol: float = RTOL
                   ) -> dict[str, Any]:
    """Run the file in ONNX Runtime on each batch ("random", "real") and compare with PyTorch."""
    sess = cpu_session(model_bytes)
    report = {}
    for batch_name, inputs in batches.items():
        want = torch_outputs(module, inputs, outputs)
        got = run_session(sess, inputs)
        report[batch_name] = compare_outputs(got, want, graph, batch_name, atol, rtol)
    return report


__all__ = ["check_model", "compare_outputs", "cpu_session", "run_session", "torch_outputs",
           "validate_graph"]
