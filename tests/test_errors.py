"""Errors are one line (issue 19 item 14): every command, driven through ``typer.testing``,
answers a bad path, bad data, a bad option and a full disk with one ``error: ...`` line on
stderr, no traceback, and the exit code of aetk/errors.py (documented in the README's "Exit
codes"); ``--debug`` (or AETK_DEBUG=1) shows the traceback; a bug exits 70 with it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetk.cli.main import app
from aetk.errors import EXIT_BUG, EXIT_FAILED, EXIT_OS, EXIT_USER_INPUT

README = Path(__file__).resolve().parents[1] / "README.md"


def invoke(*args, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_one_line(result, code: int, *texts: str) -> str:
    """Exit ``code``, one line on stderr starting with ``error:``, no traceback anywhere."""
    err = result.stderr.strip()
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in result.output
    for text in texts:
        assert text in err, (text, err)
    return err


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny trained run (digits, 1 epoch)."""
    folder = tmp_path_factory.mktemp("errors") / "run"
    r = invoke("train", "--model", "ae", "--data", "digits", "--epochs", "1", "--run-dir", folder,
               "model.code_size=4")
    assert r.exit_code == 0, r.output
    return folder


@pytest.fixture()
def full_disk(tmp_path):
    """A 256 KiB tmpfs, nearly filled: writes of more than a few KB fail with ENOSPC."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        with open(mnt / "filler", "wb") as f:
            try:
                f.write(b"\0" * (256 << 10))
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


# -- bad paths: exit 2, one line, nothing written ---------------------------------------------------
BAD_PATHS = {
    "train": (["train", "--model", "ae", "--data", "{nope}", "--epochs", "1", "--run-dir", "{out}"], "does not exist"),
    "eval": (["eval", "{nope}"], "does not exist"),
    "sample": (["sample", "{nope}"], "does not exist"),
    "export": (["export", "{nope}", "-o", "{out}"], "does not exist"),
    "classify": (["classify", "{nope}"], "does not exist"),
    "compress": (["compress", "{nope}", "--model", "{nope}", "-o", "{out}"], "does not exist"),
    "decompress": (["decompress", "{nope}", "-o", "{out}"], "does not exist"),
    "neighbors": (["neighbors", "{nope}", "0"], "does not exist"),
    "denoise": (["denoise", "{nope}", "-o", "{out}"], "does not exist"),
}


@pytest.mark.parametrize("command", sorted(BAD_PATHS))
def test_a_bad_path_is_one_line_and_exit_2(tmp_path, command):
    args, text = BAD_PATHS[command]
    args = [a.format(nope=tmp_path / "no such thing", out=tmp_path / "out") for a in args]
    assert_one_line(invoke(*args), EXIT_USER_INPUT, text, str(tmp_path / "no such thing"))
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["out"])  # nothing beyond an output folder
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.onnx"))


# -- bad options and bad data -----------------------------------------------------------------------------
def test_bad_options_are_one_line_and_exit_2(tmp_path, run):
    assert_one_line(invoke("eval", run, "--split", "nope"), EXIT_USER_INPUT, "--split")
    assert_one_line(invoke("denoise", tmp_path, "--quality", "500"), EXIT_USER_INPUT, "--quality")
    assert_one_line(invoke("denoise", tmp_path, "--format", "gif"), EXIT_USER_INPUT, "--format", "gif")
    assert_one_line(invoke("export", run), EXIT_USER_INPUT, "--out")  # a missing option
    assert_one_line(invoke("frobnicate"), EXIT_USER_INPUT, "No such command")
    assert_one_line(invoke("train", "--model", "ae", "--data", "digits", "--run-dir", tmp_path / "r", "train.lr=abc"),
                    EXIT_USER_INPUT, "train.lr")
    assert_one_line(invoke("sample", run), EXIT_USER_INPUT, "not generative")
    # a run folder that is not a denoiser: refused from its model.json, before it is exported
    assert_one_line(invoke("denoise", tmp_path, "--model", run), EXIT_USER_INPUT, "'ae' model, not a denoiser")


def test_bad_data_is_one_line_and_loses_nothing(tmp_path, run):
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"{i}.png").write_bytes(b"not an image at all")
    (tmp_path / "junk.npy").write_bytes(b"garbage, not an array")
    before = tree(tmp_path)
    assert_one_line(invoke("train", "--model", "ae", "--data", junk, "--epochs", "1", "--run-dir", tmp_path / "r1"),
                    EXIT_USER_INPUT, "no readable images", "not an image")
    assert_one_line(invoke("train", "--model", "ae", "--data", tmp_path / "junk.npy", "--epochs", "1",
                           "--run-dir", tmp_path / "r2"), EXIT_USER_INPUT, "is not a .npy or .npz file")
    # denoise goes on past each bad file, names each one, and exits 1 (some inputs failed)
    r = invoke("denoise", junk, "-o", tmp_path / "den")
    assert r.exit_code == EXIT_FAILED and "Traceback" not in r.output
    assert r.stderr.count("failed ") == 3 and "not an image Pillow can read" in r.stderr
    assert not (tmp_path / "den").exists() or not any((tmp_path / "den").iterdir())
    now = tree(tmp_path)
    assert {k: v for k, v in now.items() if k in before} == before  # the inputs are untouched


# -- a full disk: exit 4 (or 1 where other inputs went on), one line, no partial files -----------------
def test_a_full_disk_is_one_line(tmp_path, run, full_disk):
    err = assert_one_line(invoke("export", run, "-o", full_disk / "exp"), EXIT_OS, "No space left on device",
                          str(full_disk / "exp"))  # names where it was writing
    assert not list((full_disk / "exp").glob("*.onnx")) and not list((full_disk / "exp").glob("*.tmp")), err
    # denoise: each output that cannot be written is reported, the input stays as it was
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(src / "a.png")
    before = tree(src)
    r = invoke("denoise", src, "-o", full_disk / "den")
    assert r.exit_code == EXIT_FAILED and "Traceback" not in r.output, r.output
    assert "No space left on device" in r.stderr and "failed " in r.stderr
    assert tree(src) == before
    assert not [p for p in (full_disk / "den").rglob("*") if p.is_file()]  # no partial file left


# -- --debug and bugs --------------------------------------------------------------------------------------
def test_debug_shows_the_traceback(tmp_path):
    r = invoke("--debug", "eval", tmp_path / "nope")
    assert r.exit_code == EXIT_USER_INPUT
    assert "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error: ")
    r = invoke("eval", tmp_path / "nope", env={"AETK_DEBUG": "1"})
    assert r.exit_code == EXIT_USER_INPUT and "Traceback" in r.stderr


def test_a_bug_exits_70_with_its_traceback(tmp_path, monkeypatch):
    import aetk.evaluate

    def broken(*args, **kwargs):
        return {}["no such key"]  # a KeyError: a bug, not a user's mistake

    monkeypatch.setattr(aetk.evaluate, "evaluate_run", broken)
    r = invoke("eval", tmp_path)
    assert r.exit_code == EXIT_BUG
    assert "Traceback" in r.stderr and "internal error (a bug in aetk" in r.stderr


def test_readme_documents_the_exit_codes():
    from aetk import errors

    text = README.read_text()
    section = text[text.index("## Exit codes"):]
    section = section[:section.find("\n## ", 4) if "\n## " in section[4:] else len(section)]
    for name in ("EXIT_OK", "EXIT_FAILED", "EXIT_USER_INPUT", "EXIT_INTEGRITY", "EXIT_OS", "EXIT_BUG",
                 "EXIT_INTERRUPTED"):
        assert f"| {getattr(errors, name)} |" in section, name


def _library_modules():
    import pkgutil

    import aetk

    for info in pkgutil.walk_packages(aetk.__path__, "aetk."):
        if not info.name.startswith("aetk.cli"):
            yield info.name


def test_every_library_exception_derives_from_the_root():
    """One root: every exception class aetk defines (private control-flow ones aside) is an
    AetkError, so the CLI's one handler gives it one line and its exit code."""
    import importlib
    import inspect

    from aetk.errors import AetkError

    strays = []
    for name in _library_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == name and issubclass(cls, BaseException) and not cls_name.startswith("_")
                    and not issubclass(cls, AetkError)):
                strays.append(f"{name}.{cls_name}")
    assert not strays, f"exceptions outside the AetkError root: {strays}"


def test_no_command_catches_bare_errors():
    """Commands leave errors to the one handler (cli/_errors.py): no `except ValueError` (which
    would swallow bugs) or other builtin list of their own."""
    import re

    cli = Path(__file__).resolve().parents[1] / "cli"
    caught = [f"{p.name}:{i}" for p in cli.glob("*.py") if p.name != "_errors.py"
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"except\s*\(?\s*(ValueError|RuntimeError|TypeError|KeyError|Exception)\b", line)]
    assert not caught, caught
