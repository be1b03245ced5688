"""The layers of aetk hold (issue 21): `lint-imports` checks the contracts in .importlinter
(each layer imports only the layers below it; the runtime and the server import neither torch
nor the training code) against the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed (it is in the test extra: pip install -e '.[test]')"
    return [exe, "--config", str(ROOT / ".importlinter"), "--no-cache"]


def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the source tree, not an installed copy
    proc = subprocess.run(_lint_imports(), capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The contracts can fail: a copy of the tree where the model registry imports the
    trainer (a layer above it) is refused."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "aetk", tree / "aetk", ignore=shutil.ignore_patterns("*.so", "__pycache__", "cli"))
    shutil.copy(ROOT / ".importlinter", tree / ".importlinter")
    registry = tree / "aetk" / "models" / "registry.py"
    registry.write_text(registry.read_text() + "\nimport aetk.train.trainer  # noqa: E402,F401\n")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = _lint_imports()
    cmd[cmd.index("--config") + 1] = str(tree / ".importlinter")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree, env=env, timeout=600)
    assert proc.returncode != 0
    assert "aetk.models is not allowed to import aetk.train" in proc.stdout
