#!/usr/bin/env python3
"""A float32 ONNX graph rewritten with its weights stored as float16 (half the file, float32
arithmetic; see aetk/export/float16_storage.py), checked against the original on a random input.

    python tools/float16_storage.py IN.onnx OUT.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from aetk.export.errors import ExportError
from aetk.export.float16_storage import to_float16_storage


def main(argv: list[str] | None = None) -> None:
    from aetk.atomic import atomic_write_bytes
    from aetk.export.validate import cpu_session, run_session
    from aetk.export.variants import accuracy_change

    ap = argparse.ArgumentParser(description=__doc__,
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
