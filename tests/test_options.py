"""One frozen options dataclass per job: the defaults live there only, the CLI's options are
built from its fields, and library errors name an option by the flag its field declares."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.compress.options import CompressOptions, DecompressOptions, NeighborsOptions, Ray, ReaderOptions
from aetk.denoise.options import DenoiseOptions
from aetk.export.options import ExportOptions, TritonOptions
from aetk.options import FLAG, check, flag, flagged_fields
from aetk.train.options import ClassifyOptions, TrainOptions

ROOT = Path(__file__).resolve().parents[1]
# command -> the options classes its flags come from
COMMANDS = {
    "compress": (CompressOptions, Ray, ReaderOptions),
    "decompress": (DecompressOptions,),
    "neighbors": (NeighborsOptions,),
    "denoise": (DenoiseOptions,),
    "export": (ExportOptions, TritonOptions),
    "train": (TrainOptions,),
    "classify": (ClassifyOptions,),
}
ALL = sorted({c for classes in COMMANDS.values() for c in classes}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_options_are_frozen_and_every_flag_is_declared(cls):
    options = cls()
    field = dataclasses.fields(cls)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(options, field.name, getattr(options, field.name))
    for f in flagged_fields(cls):
        assert re.fullmatch(r"--[a-z0-9]+(-[a-z0-9]+)*", f.metadata[FLAG]), f.name
        assert f.metadata["help"], f"{cls.__name__}.{f.name} has no help text"


def _click_options(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]
    return {opt: p for p in cmd.params for opt in p.opts}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_cli_takes_each_default_from_the_options_class(command):
    """Each flagged field is a CLI option of its command, with the field's default."""
    options = _click_options(command)
    for cls in COMMANDS[command]:
        for f in flagged_fields(cls):
            if cls is ReaderOptions and f.name == "image_size":
                continue  # HxW text, parsed by the command
            param = options[f.metadata[FLAG]]
            assert param.default == f.default, (command, f.name, param.default, f.default)


def test_denoise_help_shows_the_library_default():
    out = CliRunner().invoke(app, ["denoise", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    line = next(ln for ln in out.splitlines() if "--max-pixels" in ln or "89478485" in ln)
    assert DenoiseOptions().max_pixels == 89_478_485
    assert "89478485" in out, line
    export = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert f"[default: {ExportOptions().opset}]" in export and "[default: 1e-05]" in export


def test_library_errors_name_the_flag_from_the_field():
    from aetk.compress import CompressError

    with pytest.raises(CompressError, match="^--shard-size must be a positive integer, got 0$"):
        check(CompressOptions(shard_size=0), CompressError)
    with pytest.raises(ValueError, match="--triton-kind must be one of"):
        check(TritonOptions(kind="tpu"))
    assert flag(DenoiseOptions, "format") == "--format" and flag(ExportOptions(), "opset") == "--opset"


def test_library_code_does_not_hard_code_option_flags():
    """A flag that belongs to an options field is written once, in its field: library code
    names it through aetk.options.flag(), so renaming a flag cannot leave a stale message."""
    jobs = {"compress": COMMANDS["compress"] + COMMANDS["decompress"] + COMMANDS["neighbors"],
            "denoise": COMMANDS["denoise"], "export": COMMANDS["export"], "train": COMMANDS["train"]}
    found = []
    for package, classes in jobs.items():
        flags = {f.metadata[FLAG] for cls in classes for f in flagged_fields(cls)}
        found += _hard_coded(ROOT / "aetk" / package, flags)
    assert not found, "\n".join(found)


def _hard_coded(folder: Path, flags: set[str]) -> list[str]:
    """Messages (strings with a space: not argv items) in ``folder`` that spell one of ``flags``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        if path.name == "options.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # prose, not messages
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and " " in node.value):
                for hit in re.findall(r"--[a-z0-9]+(?:-[a-z0-9]+)*", node.value):
                    if hit in flags:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {hit}")
    return found
