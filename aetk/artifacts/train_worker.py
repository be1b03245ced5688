"""Entry point of one training process under torch.distributed.run (aetk.train.distributed):
the run folder named by --run-dir, trained into through a RunDir. It lives here, not in
``aetk.train``, because turning a path into a run folder is this layer's job."""

from __future__ import annotations

import argparse
import sys

from aetk.artifacts.run_dir import RunDir
from aetk.config import load_config
from aetk.train.trainer import train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="aetk.artifacts.train_worker")
    ap.add_argument("--config", default=None)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args(argv)
    run = RunDir(args.run_dir)
    cfg = (run.resume_config(args.config, args.overrides) if args.resume
           else load_config(args.config, args.overrides))
    train(cfg, run, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
