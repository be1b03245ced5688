"""Golden expected-output tests, in the CompressAI style (its ``tests/expected/``): the JSON that
``aetk eval``, ``aetk export`` and ``aetk compress`` write for a small fixed-seed run is compared
with the file of the same name in tests/expected/.

    AETK_REGENERATE_EXPECTED=1 pytest tests/test_expected.py   # rewrite tests/expected/*.json

The runs: a ``deep`` autoencoder (widths 16, 4) trained 2 epochs on 300 digits (8 x 8) with the
default seed, on the CPU; eval on the first 100 test digits; export; compress every digit in
shards of 100. And a ``vae`` (latent 2) trained 1 epoch on 200 digits and exported: the
variational traits (mean/logvar encoder, the ``sample`` graph, a sigmoid output). About a
minute.

Normalization (:func:`normalize`, applied to both sides before comparing; see
tests/expected/README.md):

- values that change with no change of behaviour become ``"<volatile>"`` (the key stays, so
  its presence is still checked): hashes of weights, ONNX files, shards and the manifest (float
  output of a training run is equal only to rounding across CPUs and library versions), the
  aetk version, and the ONNX Runtime-vs-PyTorch ``max_abs_diff`` of export validation (a
  rounding error; its bound, atol/rtol, is kept);
- the test's temporary folder in any string becomes ``<tmp>``;
- floats are compared with a relative tolerance of 1e-3 (absolute 1e-6): the metrics of a
  2-epoch run move with the rounding of a different CPU's kernels, not more.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aetk.cli.main import app

EXPECTED = Path(__file__).parent / "expected"
REGENERATE = os.environ.get("AETK_REGENERATE_EXPECTED", "") not in ("", "0")
VOLATILE = "<volatile>"
# Keys whose values are volatile wherever they appear (see the module docstring).
VOLATILE_KEYS = {"weights_sha256", "aetk.weights_sha256", "sha256", "manifest_sha256", "aetk_version",
                 "aetk.version", "max_abs_diff"}
# Keys whose every value is volatile (a file name -> its hash).
VOLATILE_MAPS = {"model_files"}
REL, ABS = 1e-3, 1e-6

COMMON = ['data.path="digits"', "train.batch_size=32", "train.progress=false", "train.tensorboard=false"]
TRAIN = COMMON + ["data.limit=300", 'model.kind="deep"', "model.widths=[16, 4]", "train.epochs=2"]
TRAIN_VAE = COMMON + ["data.limit=200", 'model.kind="vae"', "model.latent_dim=2", "model.hidden=[16]",
                      "train.epochs=1"]


def normalize(obj: Any, tmp: str) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE_KEYS:
                out[k] = VOLATILE
            elif k in VOLATILE_MAPS and isinstance(v, dict):
                out[k] = {name: VOLATILE for name in v}
            else:
                out[k] = normalize(v, tmp)
        return out
    if isinstance(obj, list):
        return [normalize(v, tmp) for v in obj]
    if isinstance(obj, str) and tmp:
        return obj.replace(tmp, "<tmp>")
    return obj


def differences(got: Any, want: Any, where: str = "$") -> list[str]:
    """Every place where ``got`` differs from ``want`` (floats within REL/ABS are equal)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}: missing key {k!r}" for k in want if k not in got]
        out += [f"{where}: unexpected key {k!r}" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(got[k], want[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items, expected {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(want, float) and isinstance(got, numbers) and not isinstance(got, bool):
        if math.isclose(got, want, rel_tol=REL, abs_tol=ABS) or (math.isnan(got) and math.isnan(want)):
            return []
        return [f"{where}: {got!r}, expected {want!r} (rel {REL:g}, abs {ABS:g})"]
    if type(got) is not type(want) or got != want:
        return [f"{where}: {got!r}, expected {want!r}"]
    return []


def check_expected(name: str, path: Path, tmp: Path) -> None:
    got = normalize(json.loads(path.read_text()), str(tmp))
    expected = EXPECTED / f"{name}.json"
    if REGENERATE:
        EXPECTED.mkdir(exist_ok=True)
        expected.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert expected.is_file(), f"{expected} is missing: run with AETK_REGENERATE_EXPECTED=1 to write it"
    diffs = differences(got, json.loads(expected.read_text()))
    assert not diffs, (f"{path} differs from {expected} (AETK_REGENERATE_EXPECTED=1 rewrites it "
                       f"when the change is meant):\n" + "\n".join(diffs[:40]))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """run/ (trained), run/eval/metrics.json, export/export.json, codes/{manifest,report}.json;
    vae/ (trained) and vae-export/export.json."""
    root = tmp_path_factory.mktemp("expected")
    here = Path.cwd()
    os.chdir(root)  # relative paths: what the commands record stays the same on every machine
    try:
        runner = CliRunner()
        for args in (["train", *TRAIN, "--run-dir", "run"],
                     ["eval", "run", "--limit", "100", "--device", "cpu"],
                     ["export", "run", "-o", "export"],
                     ["compress", "digits", "-m", "export", "-o", "codes", "--shard-size", "100",
                      "--device", "cpu", "--threads", "1"],
                     ["train", *TRAIN_VAE, "--run-dir", "vae"],
                     ["export", "vae", "-o", "vae-export"]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, f"aetk {' '.join(args)}:\n{result.output}"
    finally:
        os.chdir(here)
    return root


# expected file name -> the output it holds (relative to the runs' folder)
GOLDEN = {
    "eval_deep_digits": "run/eval/metrics.json",
    "export_deep_digits": "export/export.json",
    "compress_deep_digits_manifest": "codes/manifest.json",
    "compress_deep_digits_report": "codes/report.json",
    "export_vae_digits": "vae-export/export.json",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_output_matches_the_expected_file(outputs, name):
    check_expected(name, outputs / GOLDEN[name], outputs)


def test_every_expected_file_is_checked():
    """A golden file no test compares is stale: remove it (or add its output to GOLDEN)."""
    assert sorted(p.stem for p in EXPECTED.glob("*.json")) == sorted(GOLDEN)


def test_the_comparison_catches_a_change_and_allows_rounding():
    want = {"a": 1.0, "b": [1, "x"], "c": {"d": 0.5}}
    assert differences({"a": 1.0 + 1e-5, "b": [1, "x"], "c": {"d": 0.5}}, want) == []
    assert differences({"a": 1.01, "b": [1, "x"], "c": {"d": 0.5}}, want) == [
        "$.a: 1.01, expected 1.0 (rel 0.001, abs 1e-06)"]
    assert differences({"a": 1.0, "b": [1, "y"], "c": {}}, want) == [
        "$.b[1]: 'y', expected 'x'", "$.c: missing key 'd'"]
    assert differences({"a": 1.0, "b": [1, "x"], "c": {"d": 0.5}, "e": 0}, want) == ["$: unexpected key 'e'"]


def test_normalization_keeps_keys_and_hides_only_volatile_values():
    raw = {"weights_sha256": "ab12", "model_files": {"encoder.onnx": "cd34"}, "run": "/tmp/x/run",
           "validation": {"z": {"max_abs_diff": 3e-8, "atol": 1e-5}}, "psnr_db": 6.3}
    assert normalize(raw, "/tmp/x") == {
        "weights_sha256": VOLATILE, "model_files": {"encoder.onnx": VOLATILE}, "run": "<tmp>/run",
        "validation": {"z": {"max_abs_diff": VOLATILE, "atol": 1e-5}}, "psnr_db": 6.3}
