"""A float32 graph with its weights stored as float16, each cast back to float32 where it is
used: half the file, float32 arithmetic, and as fast (ONNX Runtime folds the casts when it
loads the graph); the weights lose their low bits. The shipped denoisers are stored so.

    python tools/float16_storage.py IN.onnx OUT.onnx     # the command-line front end
"""

from __future__ import annotations


import numpy as np
import onnx

from aetk.export.errors import ExportError

STORAGE_KEY = "aetk.weights_storage"  # metadata: how the weights are stored, when not as computed


def to_float16_storage(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with every float32 initializer stored as float16 and cast back to float32."""
    from onnx import TensorProto, helper, numpy_helper

    limit = float(np.finfo(np.float16).max)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    names = ({n for node in graph.node for n in node.output} | {i.name for i in graph.initializer}
             | {i.name for i in graph.input})
    kept, halves, casts = [], [], []
    for t in graph.initializer:
        if t.data_type != TensorProto.FLOAT or t.data_location == TensorProto.EXTERNAL:
            kept.append(t)
            continue
        w = numpy_helper.to_array(t)
        if w.size and float(np.abs(w).max()) > limit:
            raise ExportError(f"initializer {t.name!r} holds {float(np.abs(w).max()):.3g}, beyond float16's "
                              f"range ({limit:g}): it cannot be stored as float16")
        half = t.name + "_float16"
        while half in names:
            half += "_"
        names.add(half)
        halves.append(numpy_helper.from_array(w.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [t.name], to=TensorProto.FLOAT, name=half + "_cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept + halves)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    entry = next((p for p in out.metadata_props if p.key == STORAGE_KEY), None) or out.metadata_props.add()
    entry.key, entry.value = STORAGE_KEY, "float16"
    return out


__all__ = ["STORAGE_KEY", "to_float16_storage"]
