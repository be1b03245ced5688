"""Entry point of one training process under torch.distributed.run (see distributed.py)."""

from __future__ import annotations

import argparse
import sys

from aetk.config import load_config, resume_config
from aetk.train.trainer import train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aetk.train.worker")
    ap.add_argument("--config", default=None)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args(argv)
    cfg = (resume_config(args.run_dir, args.config, args.overrides) if args.resume
           else load_config(args.config, args.overrides))
    train(cfg, args.run_dir, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
