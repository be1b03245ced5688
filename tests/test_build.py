"""The CMake build's CUDA switch: AETK_CUDA=ON without nvcc fails loudly, bad values are
refused. (Configure only: a few seconds, no compiling.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake", path=os.path.dirname(sys.executable)) or shutil.which("cmake")
NINJA = shutil.which("ninja", path=os.path.dirname(sys.executable)) or shutil.which("ninja")

pytestmark = pytest.mark.skipif(
    not (CMAKE and NINJA and (ROOT / "CMakeLists.txt").is_file()),
    reason="needs cmake and ninja (installed by make test) and the source tree")


def configure(tmp_path, aetk_cuda: str) -> subprocess.CompletedProcess:
    import pybind11

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AETK_CUDA": aetk_cuda}  # no nvcc on PATH
    return subprocess.run(
        [CMAKE, str(ROOT), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={NINJA}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
         "-DCMAKE_CUDA_COMPILER=", "-DCUDAToolkit_ROOT=/nonexistent"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_cuda_on_without_nvcc_fails_loudly(tmp_path):
    if Path("/usr/bin/nvcc").exists():
        pytest.skip("nvcc is on the system PATH")
    r = configure(tmp_path, "ON")
    assert r.returncode != 0
    assert "AETK_CUDA=ON but no CUDA compiler was found" in " ".join(r.stderr.split())


def test_cuda_auto_without_nvcc_builds_cpu_only(tmp_path):
    if Path("/usr/bin/nvcc").exists():
        pytest.skip("nvcc is on the system PATH")
    r = configure(tmp_path, "AUTO")
    assert r.returncode == 0, r.stderr
    assert "building the CPU kernels only" in r.stdout


def test_bad_aetk_cuda_value_is_refused(tmp_path):
    r = configure(tmp_path, "maybe")
    assert r.returncode != 0
    assert "AETK_CUDA must be AUTO, ON or OFF, got 'maybe'" in r.stderr
