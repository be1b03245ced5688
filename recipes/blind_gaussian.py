"""The recipe of the shipped gray denoiser, ``aetk/denoise/models/gray.onnx`` (model kind
``resconv``, blind Gaussian noise), as one resumable script.

    python recipes/blind_gaussian.py            # every step not done yet, in order
    python recipes/blind_gaussian.py --list     # the steps and the commands they run
    python recipes/blind_gaussian.py --from joint   # skip the steps before one

Runs live in runs/ (git-ignored); each step is skipped when what it makes is there, and a
training step whose run folder holds a checkpoint resumes it, so the script can be killed and
rerun at any time. Run it from the repository root. On 2 CPU cores it takes about a day.

The steps (the README's "Denoise" section says what the model is):

1. ``patches``: 48-pixel-stride patches of the photographs that install offline (scikit-image,
   scikit-learn and matplotlib's; the photographic wallpapers of mate-backgrounds and
   lomiri-wallpapers-16.04), the test photographs held out.
2. ``trunk``: the first stage (48 features, 10 hidden layers), a 12-epoch cosine schedule, then
   a warm restart to 18 epochs.
3. ``context``: the trunk grown with the context branch (``model.context=96``, the branch
   starting at zero) and each example's loss weighted by 30/(sigma+5) (``model.balance_levels``):
   3 epochs of a 13-epoch cosine schedule, then the rest of an 11-epoch one.
4. ``context2``: a second cosine cycle of 10 epochs at a lower learning rate with fresh noise.
5. ``base``: that first stage exported and rebuilt from its graph (``tools/onnx_to_run.py``): the
   refiner trains on the rebuilt model, whose batch norms are folded into its convolutions.
6. ``refine`` and ``refine2``: the refiner (48 features, 6 hidden layers) on the frozen first
   stage (``model.freeze_base``), with random mirrorings and rotations (``train.flips``): 10
   epochs, then a second cosine cycle of 8 at a lower learning rate with fresh noise.
7. ``cascade``: the cascade exported and rebuilt from its graph, as in step 5.
8. ``joint``: the whole cascade fine-tuned 5 epochs at a low learning rate, every batch norm on
   its running statistics (``model.freeze_norms``); exported with float16-stored weights as
   ``gray.onnx``.

(Until issue 20 a copy fine-tuned on sigma 0-30 ran beside it four times on lightly noisy
images; that slow path broke the 1.5 s/MP budget and was dropped: recipes/README.md.)

Exports validate against PyTorch with ``--atol 1e-4`` (the cascade's code is 2e-4 of float32
rounding).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RUNS = Path("runs")
PATCHES = RUNS / "denoise-patches.npz"
SHIPPED = Path("aetk/denoise/models")
TOOLS = Path("tools")  # the command-line front ends (run from the repository root, as RUNS is)
COMMON = ["train.batch_size=16", "train.schedule=\"cosine\""]
TRUNK = ["model.features=48", "model.depth=10"]
CONTEXT = TRUNK + ["model.context=96", "model.balance_levels=true"]
REFINER = CONTEXT + ["model.refine=48", "model.refine_depth=6"]
CONTEXT_CUT = 3  # epochs of the 13-epoch schedule the context stage trains before the shorter one


def aetk(*args: str) -> list[str]:
    return [sys.executable, "-m", "aetk.cli.main", *args]


def train_cmd(run: str, epochs: int, overrides: list[str], init_from: str | None = None) -> list[str]:
    more = [f'train.init_from="{RUNS / init_from}"'] if init_from else []
    return aetk("train", "--model", "resconv", "--data", str(PATCHES), "--epochs", str(epochs),
                "--run-dir", str(RUNS / run), *COMMON, *overrides, *more)


def resume_cmd(run: str, epochs: int) -> list[str]:
    return aetk("train", "--run-dir", str(RUNS / run), "--resume", "--epochs", str(epochs))


def export_cmd(run: str, out: str) -> list[str]:
    return aetk("export", str(RUNS / run), "-o", str(RUNS / out), "--atol", "1e-4")


def rebuild_cmd(export: str, run: str, params: list[str]) -> list[str]:
    from aetk.artifacts import ExportDir

    graph = ExportDir(RUNS / export).graph("autoencoder")
    return [sys.executable, str(TOOLS / "onnx_to_run.py"), str(graph), str(RUNS / run),
            *(p.removeprefix("model.") for p in params)]


def float16_cmd(export: str, shipped: str) -> list[str]:
    from aetk.artifacts import ExportDir

    graph = ExportDir(RUNS / export).graph("autoencoder")
    return [sys.executable, str(TOOLS / "float16_storage.py"), str(graph), str(SHIPPED / shipped)]


def epochs_done(run: str) -> int:
    """Epochs the run's last checkpoint has finished (0: none)."""
    from aetk.artifacts import RunDir

    rd = RunDir(RUNS / run)
    if not rd.has_checkpoint():
        return 0
    return int((rd.load_checkpoint()[1].get("state") or {}).get("epoch") or 0)


def trained(run: str, epochs: int) -> Callable[[], bool]:
    return lambda: epochs_done(run) >= epochs


def exported(folder: str) -> Callable[[], bool]:
    from aetk.artifacts import ExportDir

    return lambda: ExportDir(RUNS / folder).is_export()


def rebuilt(run: str) -> Callable[[], bool]:
    from aetk.artifacts import RunDir

    return lambda: RunDir(RUNS / run).is_run()


def train_or_resume(run: str, epochs: int, overrides: list[str], init_from: str | None = None) -> list[str]:
    return resume_cmd(run, epochs) if epochs_done(run) else train_cmd(run, epochs, overrides, init_from)


def cut_context_schedule() -> None:
    """The context stage's first part: a 13-epoch cosine schedule stopped after CONTEXT_CUT
    epochs (the checkpoint at that step is what the 11-epoch schedule resumes from)."""
    from aetk.artifacts import RunDir, train_run
    from aetk.config import load_config
    from aetk.train.trainer import TrainingInterrupted

    with open(RunDir(RUNS / "denoiser").metrics_file, newline="") as f:
        steps_per_epoch = int(next(csv.DictReader(f))["step"])  # the same data and batch size
    overrides = ["model.kind=\"resconv\"", f'data.path="{PATCHES}"', "train.epochs=13", *COMMON,
                 "train.lr=5e-4", "train.warmup_steps=200", "train.seed=0", *CONTEXT,
                 f'train.init_from="{RUNS / "denoiser"}"']
    try:
        train_run(load_config(None, overrides), RUNS / "denoiser-ctx", stop_at_step=CONTEXT_CUT * steps_per_epoch)
    except TrainingInterrupted:
        pass


@dataclass
class Step:
    name: str
    done: Callable[[], bool]
    commands: Callable[[], list[list[str]]]
    call: Callable[[], None] | None = None  # a step run through the library, not the CLI
    note: list[str] = field(default_factory=list)


STEPS = [
    Step("patches", lambda: PATCHES.is_file(),
         lambda: [[sys.executable, str(TOOLS / "denoise_patches.py"), str(PATCHES), "--wallpapers", "--stride", "48"]]),
    Step("trunk", trained("denoiser", 12),
         lambda: [train_or_resume("denoiser", 12, ["train.lr=1e-3", "train.seed=0", *TRUNK])]),
    Step("trunk-restart", trained("denoiser", 18), lambda: [resume_cmd("denoiser", 18)]),
    Step("context-cut", lambda: epochs_done("denoiser-ctx") >= CONTEXT_CUT, lambda: [],
         call=cut_context_schedule, note=["13-epoch schedule, stopped after epoch 3 (library: stop_at_step)"]),
    Step("context", trained("denoiser-ctx", 11), lambda: [resume_cmd("denoiser-ctx", 11)]),
    Step("context2", trained("denoiser-ctx2", 10), lambda: [train_or_resume(
        "denoiser-ctx2", 10, ["train.lr=2e-4", "train.warmup_steps=300", "train.seed=1", *CONTEXT], "denoiser-ctx")]),
    Step("base", rebuilt("denoiser-base"), lambda: [
        *([] if exported("denoiser-ctx2-onnx")() else [export_cmd("denoiser-ctx2", "denoiser-ctx2-onnx")]),
        rebuild_cmd("denoiser-ctx2-onnx", "denoiser-base", TRUNK + ["model.context=96"])]),
    Step("refine", trained("denoiser-refine", 10), lambda: [train_or_resume(
        "denoiser-refine", 10, ["train.lr=1e-3", "train.warmup_steps=200", "train.seed=0", "train.flips=true",
                                *REFINER, "model.freeze_base=true"], "denoiser-base")]),
    Step("refine2", trained("denoiser-refine2", 8), lambda: [train_or_resume(
        "denoiser-refine2", 8, ["train.lr=3e-4", "train.warmup_steps=200", "train.seed=1", "train.flips=true",
                                *REFINER, "model.freeze_base=true"], "denoiser-refine")]),
    Step("cascade", rebuilt("denoiser-cascade"), lambda: [
        *([] if exported("denoiser-cascade-onnx")() else [export_cmd("denoiser-refine2", "denoiser-cascade-onnx")]),
        rebuild_cmd("denoiser-cascade-onnx", "denoiser-cascade", REFINER)]),
    Step("joint", exported("denoiser-onnx"), lambda: [
        *([] if trained("denoiser-joint", 5)() else [train_or_resume(
            "denoiser-joint", 5, ["train.lr=5e-5", "train.warmup_steps=300", "train.seed=3", "train.flips=true",
                                  *REFINER, "model.freeze_norms=true"], "denoiser-cascade")]),
        export_cmd("denoiser-joint", "denoiser-onnx"),
        float16_cmd("denoiser-onnx", "gray.onnx")]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the steps and their commands, run nothing")
    ap.add_argument("--from", dest="start", choices=[s.name for s in STEPS], help="skip the steps before this one")
    args = ap.parse_args(argv)
    names = [s.name for s in STEPS]
    first = names.index(args.start) if args.start else 0
    for step in STEPS[first:]:
        if args.list:
            print(f"# {step.name}" + ("  (done)" if step.done() else ""))
            for line in step.note:
                print(f"#   {line}")
            for cmd in step.commands():
                print("  " + " ".join(cmd))
            continue
        if step.done():
            print(f"{step.name}: done")
            continue
        print(f"{step.name}: running", flush=True)
        if step.call is not None:
            step.call()
        for cmd in step.commands():
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
