"""aetk serve on real exports: every graph of every kind in the export test matrix
(tests/test_export.py's KIND_CASES), served from its export folder and from one Triton model
repository holding them all, driven by tritonclient.http with JSON and with binary tensors,
and compared with ONNX Runtime on the same file. The servers run uvicorn in a thread on a
free port; the exports are made once for the module, by two processes side by side."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import aetk
from aetk.runtime.metadata import ModelMetadata

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")
ort = pytest.importorskip("onnxruntime")

SOURCE = Path(aetk.__file__).resolve().parents[1]
TEST_EXPORT = Path(__file__).with_name("test_export.py")
_spec = importlib.util.spec_from_file_location("aetk_test_export_cases", TEST_EXPORT)
_te = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_te)
KINDS = sorted(_te.KIND_CASES)

EXPORT = """
import importlib.util, sys
from pathlib import Path
import torch
spec = importlib.util.spec_from_file_location("te", sys.argv[1]); te = importlib.util.module_from_spec(spec)
spec.loader.exec_module(te)
from aetk.export import export_model
from aetk.export.triton import write_triton_repo
out, repo = Path(sys.argv[2]), Path(sys.argv[3])
for kind in sys.argv[4:]:
    torch.manual_seed(1)
    export_model(te._model(kind), out / kind, real_batch=torch.rand(4, *te.KIND_CASES[kind][0]))
    write_triton_repo(out / kind, repo, kind, max_batch_size=16)
"""


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    base = tmp_path_factory.mktemp("matrix")
    out, repo = base / "exports", base / "repo"
    env = os.environ | {"PYTHONPATH": str(SOURCE)}
    procs = [subprocess.Popen([sys.executable, "-c", EXPORT, str(TEST_EXPORT), str(out), str(repo), *KINDS[i::2]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for p in procs:
        log = p.communicate(timeout=1200)[0]
        assert p.returncode == 0, log[-3000:]
    return out, repo


@contextlib.contextmanager
def thread_server(folder: Path, **kw):
    import uvicorn

    from aetk.serve.app import create_app
    from aetk.serve.options import ServeOptions
    from aetk.serve.server import bind, uvicorn_config

    options = ServeOptions(folder, port=0, device="cpu", access_log=False, **kw)
    app = create_app(options)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the in-thread server did not start"
        time.sleep(0.02)
    try:
        yield httpclient.InferenceServerClient(f"127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _feeds(path: Path, rows: int = 3) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_props(sess.get_modelmeta().custom_metadata_map, str(path))
    shape = meta.input_shape if meta.graph in ("encoder", "autoencoder") else meta.code_shape
    rng = np.random.default_rng(len(str(path)))
    return {i.name: rng.random((rows, *shape), dtype=np.float32) for i in sess.get_inputs()}


def _reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _check(client, model: str, path: Path) -> None:
    feeds = _feeds(path)
    want = _reference(path, feeds)
    meta = client.get_model_metadata(model)
    assert [i["name"] for i in meta["inputs"]] == list(feeds) and [o["name"] for o in meta["outputs"]] == list(want)
    assert all(i["shape"][0] == -1 for i in meta["inputs"])
    for binary in (True, False):
        inputs = []
        for name, arr in feeds.items():
            inputs.append(httpclient.InferInput(name, list(arr.shape), "FP32"))
            inputs[-1].set_data_from_numpy(arr, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in want]
        result = client.infer(model, inputs, outputs=outputs)
        for name, ref in want.items():
            got = result.as_numpy(name)
            assert got.shape == ref.shape and got.dtype == ref.dtype, (model, name)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, err_msg=f"{model} {name} binary={binary}")


@pytest.mark.parametrize("kind", KINDS)
def test_every_graph_of_an_export_folder(matrix, kind):
    folder = matrix[0] / kind
    graphs = sorted(p.stem for p in folder.glob("*.onnx"))
    assert graphs == sorted(["autoencoder", "decoder", "encoder"] + (["sample"] if kind == "vae" else []))
    with thread_server(folder) as client:
        assert sorted(m["name"] for m in client.get_model_repository_index()) == graphs
        for graph in graphs:
            _check(client, graph, folder / f"{graph}.onnx")


def test_a_triton_repository_with_every_kind(matrix):
    repo = matrix[1]
    models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert len(models) == 3 * len(KINDS) + 1  # the VAE has a sample graph
    with thread_server(repo, max_batch=64) as client:
        assert client.is_server_ready()
        assert sorted(m["name"] for m in client.get_model_repository_index()) == models
        assert client.get_model_config("conv_encoder")["max_batch_size"] == 16  # the repository's cap
        for model in models:
            assert client.is_model_ready(model, "1")
            _check(client, model, repo / model / "1" / "model.onnx")
