"""The `aetk` command: the Typer app in-process and the installed console script."""

import json
import os
import shutil
import subprocess
import sys

from typer.testing import CliRunner

from aetk.cli.main import app


def test_info_json():
    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["native extension"] is True
    assert facts["CPU kernels"] in ("avx512", "avx2", "baseline")
    assert isinstance(facts["CUDA kernels"], bool)
    assert facts["torch"] and facts["onnxruntime"]
    assert "CPUExecutionProvider" in facts["execution providers"]


def test_info_table_and_help():
    runner = CliRunner()
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0 and "native extension" in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.output


def test_unknown_command_fails_cleanly():
    result = CliRunner().invoke(app, ["frobnicate"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_console_script_is_installed():
    exe = shutil.which("aetk", path=os.path.dirname(sys.executable)) or shutil.which("aetk")
    assert exe, "the aetk console script is not on PATH"
    out = subprocess.run([exe, "info", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["aetk"]


def test_cli_is_not_a_top_level_package():
    from importlib.metadata import files

    installed = [str(f) for f in files("aetk")]
    assert any(f.startswith("aetk/cli/") for f in installed)
    assert not any(f.startswith("cli/") for f in installed)
