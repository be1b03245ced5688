#!/usr/bin/env python3
"""A conv model's exported ONNX graph turned back into a run folder (aetk/export/from_onnx.py),
so ``train.init_from`` can start a bigger model from it.

    python tools/onnx_to_run.py aetk/denoise/models/gray.onnx runs/shipped \\
        features=48 depth=10 context=96 [--calibrate DATA --calibrate-examples N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from aetk.config import parse_value
    from aetk.export.from_onnx import rebuild_run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", type=Path, help="an exported autoencoder.onnx")
    ap.add_argument("run_dir", type=Path, help="folder to write model.safetensors + model.json into")
    ap.add_argument("config", nargs="*", help="the model's config as key=value (its kind's Config fields)")
    ap.add_argument("--calibrate", metavar="DATA", help="give the batch norms statistics measured on DATA "
                    "(what aetk train reads), so the model trains on from where it was")
    ap.add_argument("--calibrate-examples", type=int, default=2048, metavar="N",
                    help="how many of DATA's examples to measure on (default 2048)")
    args = ap.parse_args(argv)
    if args.calibrate_examples < 1:
        ap.error(f"--calibrate-examples must be at least 1, got {args.calibrate_examples}")
    params = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"config items are key=value, got {item!r}")
        params[key] = parse_value(value)
    try:
        kind, calibrated = rebuild_run(args.onnx, args.run_dir, params, args.calibrate, args.calibrate_examples)
    except ValueError as exc:  # a bad file, unknown config keys, a graph or data that does not fit
        ap.error(str(exc))
    if args.calibrate:
        print(f"calibrated {calibrated} batch norm(s) on {args.calibrate}")
    print(f"wrote {args.run_dir}/model.safetensors and model.json ({kind}, {json.dumps(params)})")


if __name__ == "__main__":
    main()
