"""Reduced-precision variants of an exported float32 graph, each with its accuracy change.

- float16 (for GPUs): weights and activations in half precision; the inputs and outputs stay
  float32 so callers need not change (``keep_io_types``).
- float16 storage (for shipping; float16_storage.py): float32 arithmetic, half the file.
- int8 (ONNX Runtime quantization): static QDQ with per-channel weights for convolutional
  models, calibrated on training data; dynamic (weights int8, activations quantized on the
  fly) for MLPs and LSTMs, where static activation ranges buy little.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from aetk.evaluate.metrics import array_psnr
from aetk.export.errors import ExportError
from aetk.export.validate import cpu_session, run_session


def to_float16(proto: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
    topological_sort(half.graph)  # the converter appends its input casts at the end
    return half


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder the nodes so each comes after the producers of its inputs (in place)."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, order = list(range(len(graph.node))), []
    while pending:
        ready = [i for i in pending if all(x in known for x in graph.node[i].input)]
        if not ready:
            raise ExportError(f"graph {graph.name!r} has a cycle or an input nobody produces: "
                              f"{sorted({x for i in pending for x in graph.node[i].input} - known)[:5]}")
        for i in ready:
            known.update(graph.node[i].output)
        order += ready
        done = set(ready)
        pending = [i for i in pending if i not in done]
    nodes = [onnx.NodeProto() for _ in order]
    for node, i in zip(nodes, order):
        node.CopyFrom(graph.node[i])
    del graph.node[:]
    graph.node.extend(nodes)


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def to_int8(proto: onnx.ModelProto, static: bool, calibration: list[dict[str, np.ndarray]] | None
            ) -> onnx.ModelProto:
    """Quantize through temporary files (the quantizer's interface is file based)."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="aetk-int8-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("float32.onnx", "pre.onnx", "int8.onnx"))  # scratch files
        clean = onnx.ModelProto()
        clean.CopyFrom(proto)
        # The exporter's intermediate shapes can clash with the quantizer's own inference.
        del clean.graph.value_info[:]
        onnx.save(clean, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if static:
            if not calibration:
                raise ExportError("static int8 quantization needs calibration data (the run's training set)")
            from onnxruntime.quantization.registry import QDQRegistry

            # reduce_range (7-bit weights): AVX2 CPUs without VNNI saturate 16-bit sums of
            # 8-bit products (measured: -0.13..-0.38 dB with 8 bits, -0.01 dB with 7).
            # ConvTranspose stays float: ONNX Runtime's CPU provider has no int8 kernel for it,
            # so quantizing it only adds dequantize/quantize steps (benchmarks/bench_inference.py).
            ops = [op for op in QDQRegistry if op != "ConvTranspose"]
            quantize_static(str(pre), str(dst), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            op_types_to_quantize=ops)
        else:
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=False)
        return onnx.load(str(dst))


def accuracy_change(variant: bytes, ref: dict[str, np.ndarray], inputs: dict[str, np.ndarray], graph: str,
                    data_range: float | None) -> dict[str, Any]:
    """The variant against the float32 graph's outputs ``ref`` on the same inputs, per output:
    max and relative RMS difference; for the autoencoder also the PSNR of its reconstructions
    and the change."""
    got = run_session(cpu_session(variant), inputs)
    report: dict[str, Any] = {}
    for name, r in ref.items():
        g = got[name].astype(np.float64)
        r64 = r.astype(np.float64)
        rms = float(np.sqrt(np.mean(r64 ** 2))) or 1.0
        report[name] = {"max_abs_diff": float(np.abs(g - r64).max()) if g.size else 0.0,
                        "rel_rms_diff": float(np.sqrt(np.mean((g - r64) ** 2)) / rms) if g.size else 0.0}
    if graph == "autoencoder" and "x" in inputs:
        x = inputs["x"]
        rng = data_range or float(x.max() - x.min()) or 1.0
        p32, pv = array_psnr(ref["x_hat"], x, rng), array_psnr(got["x_hat"], x, rng)
        report["psnr_db"] = {"float32": p32, "variant": pv, "change": pv - p32}
    return report


__all__ = ["accuracy_change", "to_float16", "to_int8"]
