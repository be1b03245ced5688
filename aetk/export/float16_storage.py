"""A float32 graph with its weights stored as float16, each cast back to float32 where it is
used: half the file, float32 arithmetic, and as fast (ONNX Runtime folds the casts when it
loads the graph); the weights lose their low bits. The shipped denoisers are stored so.

    python -m aetk.export.float16_storage IN.onnx OUT.onnx

(A module of its own, not imported by ``aetk.export``, so ``python -m`` runs it cleanly.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    from aetk.atomic import atomic_write_bytes
    from aetk.export.validate import cpu_session, run_session
    from aetk.export.variants import accuracy_change

    ap = argparse.ArgumentParser(prog="python -m aetk.export.float16_storage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, metavar="IN", help="an exported float32 .onnx graph")
    ap.add_argument("dst", type=Path, metavar="OUT", help="the .onnx to write, weights stored as float16")
    args = ap.parse_args(argv)
    src, dst = args.src, args.dst
    if not src.is_file():
        raise SystemExit(f"IN {src} is not a file (expected an exported .onnx graph)")
    if dst.resolve() == src.resolve():
        raise SystemExit(f"OUT {dst} is IN: write the variant to another file")
    try:
        proto = onnx.load(str(src))
        variant = to_float16_storage(proto)
    except ExportError as exc:
        raise SystemExit(f"IN {src}: {exc}") from exc
    except Exception as exc:  # not an ONNX file: protobuf's decode error
        raise SystemExit(f"IN {src} is not an ONNX graph ({type(exc).__name__}: {str(exc)[:200]})") from exc
    onnx.checker.check_model(variant)
    data = variant.SerializeToString()
    # Same outputs as the float32 graph up to the weights' rounding, on a random input.
    session = cpu_session(proto.SerializeToString())
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.random([d if isinstance(d, int) else 64 for d in i.shape], dtype=np.float32)
             for i in session.get_inputs()}
    change = accuracy_change(data, run_session(session, feeds), feeds, graph="", data_range=None)
    atomic_write_bytes(dst, data)
    print(f"wrote {dst} ({len(data) / 1e6:.1f} MB, was {src.stat().st_size / 1e6:.1f} MB); largest output "
          f"change on a random input: {max(c['max_abs_diff'] for c in change.values()):.2g}")


if __name__ == "__main__":
    main()


__all__ = ["STORAGE_KEY", "main", "to_float16_storage"]
