"""aetk.artifacts: resolve() of every kind of saved folder and of wrong things, ensure_export's
cache (reused, redone after retraining), and that no module outside aetk/artifacts names a
file inside those folders."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aetk.artifacts import ArtifactError, CodesDir, ExportDir, RunDir, resolve, train_run
from aetk.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("art") / "run"
    train_run(_cfg(1), run)
    return run


@pytest.fixture(autouse=True)
def _own_tempdir(tmp_path, monkeypatch):
    """ensure_export's fallback cache lives in the temporary folder: one of the test's own."""
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)


def _cfg(epochs: int, seed: int = 0):
    from aetk.config import load_config

    return load_config(None, ['model.kind="conv"', 'data.path="digits"', f"train.epochs={epochs}",
                              "model.channels=[4, 8]", "model.code_size=6", "train.progress=false",
                              "train.tensorboard=false", f"train.seed={seed}"])


# -- resolve ------------------------------------------------------------------------------------------
def test_resolve_each_kind(trained, tmp_path):
    from aetk.export import ensure_export

    run = resolve(trained)
    assert isinstance(run, RunDir) and run.path == trained and run.is_run()
    assert resolve(str(trained), RunDir) == run and resolve(run) is run
    export = ensure_export(run)
    assert resolve(export.path) == export and isinstance(resolve(export.path), ExportDir)
    codes = tmp_path / "codes"
    CodesDir(codes).progress_dir.mkdir(parents=True)  # a compress run in flight
    assert isinstance(resolve(codes), CodesDir)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder"),
    ("empty", "is an empty folder"),
    ("half", "is a run folder without a saved model"),
    ("other", "is neither a run folder"),
])
def test_resolve_wrong_things(tmp_path, case, message):
    path = tmp_path / case
    if case == "file":
        path.write_text("x")
    elif case == "empty":
        path.mkdir()
    elif case == "half":  # killed before its first epoch ended: a config, no model
        path.mkdir()
        RunDir(path).config_file.write_text("[train]\n")
    elif case == "other":
        path.mkdir()
        (path / "notes.txt").write_text("x")
    with pytest.raises(ArtifactError, match=message) as info:
        resolve(path, RunDir, ExportDir, what="-m")
    assert isinstance(info.value, UserInputError)
    text = str(info.value)
    assert f"-m {path}" in text and "a run folder from `aetk train`" in text
    assert "an export folder from `aetk export`" in text


def test_resolve_refuses_the_wrong_kind(trained):
    with pytest.raises(ArtifactError, match=r"is a run folder from `aetk train`.*expected an export folder"):
        resolve(trained, ExportDir)


def test_paths_need_no_torch(tmp_path):
    code = ("import sys; from aetk.artifacts import resolve, RunDir, ExportDir, CodesDir; "
            "import aetk.runtime; "
            f"RunDir({str(tmp_path)!r}).is_run(); ExportDir({str(tmp_path)!r}).graphs(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- ensure_export ------------------------------------------------------------------------------------
def test_ensure_export_caches_and_reexports_after_retraining(tmp_path):
    import aetk.export.exporter as exporter
    from aetk.export import ensure_export

    run = tmp_path / "run"
    train_run(_cfg(1), run)
    calls = []
    real = exporter.export_run

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    exporter.export_run = counting
    try:
        first = ensure_export(run)
        assert first.path == RunDir(run).export_cache and first.is_export() and len(calls) == 1
        assert first.weights_sha256() == RunDir(run).weights_sha256()
        stamp = first.graph("encoder").stat().st_mtime_ns
        again = ensure_export(RunDir(run))
        assert again == first and len(calls) == 1  # cached: no second export
        assert again.graph("encoder").stat().st_mtime_ns == stamp
        train_run(_cfg(2), run, resume=True)  # retrained: new weights
        third = ensure_export(run)
        assert len(calls) == 2 and third.path == first.path
        assert third.weights_sha256() == RunDir(run).weights_sha256() != None  # noqa: E711
        assert not [p for p in run.iterdir() if p.name.startswith(".")
                    and p.name != RunDir(run).lock_file.name]  # no staging folder left behind
    finally:
        exporter.export_run = real
    import aetk.runtime as rt

    model = rt.load_export(third, device="cpu")  # an ExportDir is path-like
    assert model.metadata.weights_sha256 == RunDir(run).weights_sha256()


def test_ensure_export_leaves_a_foreign_folder_alone(trained, tmp_path):
    from aetk.export import ensure_export

    run = RunDir(tmp_path / "copy")
    run.path.mkdir()
    for f in (RunDir(trained).weights_file, RunDir(trained).info_file, RunDir(trained).config_file):
        (run.path / f.name).write_bytes(f.read_bytes())
    run.export_cache.mkdir()
    (run.export_cache / "mine.txt").write_text("keep")
    export = ensure_export(run)  # the run folder's cache name is taken: the temporary folder's
    assert export.path.is_relative_to(tmp_path / "tmp") and export.is_export()
    assert (run.export_cache / "mine.txt").read_text() == "keep"


def test_ensure_export_refuses_a_half_written_run(tmp_path):
    from aetk.export import ensure_export

    half = tmp_path / "half"
    half.mkdir()
    RunDir(half).config_file.write_text("[train]\n")
    with pytest.raises(ArtifactError, match="without a saved model"):
        ensure_export(half)


# -- codes folders --------------------------------------------------------------------------------------
def test_codes_dir_manifest_and_verify(tmp_path):
    from aetk.artifacts.codes_dir import FORMAT, FORMAT_VERSION, shard_name
    from aetk.compress.errors import IncompleteCodesError, UnsafeManifestError

    codes = CodesDir(tmp_path / "codes")
    codes.path.mkdir()
    with pytest.raises(IncompleteCodesError):
        codes.read_manifest()
    shard = codes.path / shard_name(0, "npy", "none")
    shard.write_bytes(b"abc")
    import hashlib

    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "job": {}, "totals": {}, "code_shape": [2],
         "model_files": {}, "shards": [{"file": shard.name, "bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}]}
    codes.write_manifest(m)
    assert codes.read_manifest() == m and codes.verify() == [] and resolve(codes.path) == codes
    shard.write_bytes(b"abd")
    assert codes.verify() == [f"{shard.name}: does not match its sha256 in the manifest (changed or damaged)"]
    raw = json.loads(codes.manifest_file.read_text())
    raw["totals"] = {"edited": True}
    codes.manifest_file.write_text(json.dumps(raw))
    with pytest.raises(UnsafeManifestError, match="manifest_sha256"):
        codes.read_manifest()


# -- nobody else names the files ------------------------------------------------------------------------
# Whole string constants that are a file or folder inside a saved folder.
FILE_NAMES = {
    "config.toml", "model.json", "model.safetensors", "checkpoints/last", "last.safetensors", "last.json",
    ".aetk-train.lock", "metrics.csv", "classifier.json", "manifest.json", "report.json", ".progress", "job.json",
    "run.json", "encoder.onnx", "decoder.onnx", "autoencoder.onnx", "sample.onnx", "export.json", "model.onnx",
    "config.pbtxt", "model.onnx.data",
}
# Names that are files only when joined to a folder (path / "model"): as plain strings they are
# also dictionary keys and words.
JOINED_NAMES = FILE_NAMES | {"model", "checkpoints", "last", "tb", "eval", "classifier", "export-cache"}
GRAPH_FRAGMENT = {".onnx", ".fp16.onnx", ".int8.onnx", ".onnx.data"}  # f"{graph}.onnx"
ROOTS = ("aetk", "cli", "benchmarks", "recipes")
# (file, name): a use that is not about a saved folder's layout.
ALLOW: set[tuple[str, str]] = {
    ("aetk/evaluate/classify.py", "classifier.json"),  # its result file, written into RunDir.eval_dir
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _named_files(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in JOINED_NAMES:
                    found.append((node.lineno, side.value))
        elif isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.Constant) and part.value in GRAPH_FRAGMENT:
                    found.append((node.lineno, f"{{graph}}{part.value}"))
                skip.add(id(part))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if node.value.strip().lstrip("/") in FILE_NAMES:
                found.append((node.lineno, node.value))
    return found


def test_no_module_outside_artifacts_names_their_files():
    offenders = []
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("aetk/artifacts/") or rel.startswith("aetk/cli/"):
                continue  # the owner; aetk/cli is a link to cli/ in a dev checkout
            for line, name in _named_files(path):
                if (rel, name) not in ALLOW:
                    offenders.append(f"{rel}:{line}: {name!r}")
    assert not offenders, "file names of saved folders outside aetk/artifacts:\n" + "\n".join(offenders)


def test_the_grep_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('from pathlib import Path\n'
                   'def f(run, g):\n'
                   '    """model.json is fine in a docstring."""\n'
                   '    a = run / "model"\n'
                   '    b = Path(run, "config.toml")\n'
                   '    c = f"{g}.int8.onnx"\n'
                   '    d = {"model": 1}["model"]\n'
                   '    return a, b, c, d, "see model.json for more"\n')
    assert sorted(n for _, n in _named_files(bad)) == ["config.toml", "model", "{graph}.int8.onnx"]


def test_train_layer_does_not_import_artifacts():
    """The layers: aetk.train sits below aetk.artifacts and never imports it."""
    for path in sorted((REPO / "aetk" / "train").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                assert not mod.startswith(("aetk.artifacts", "aetk.export", "aetk.evaluate", "aetk.compress",
                                           "aetk.denoise")), f"{path}: imports {mod}"
