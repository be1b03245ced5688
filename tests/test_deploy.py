"""deploy/server.py: the real server as a subprocess on 127.0.0.1 (port 0), spoken to over
HTTP. The subprocess runs with stub ``torch`` and ``onnx`` packages that refuse to import,
so every test here also shows the service needs neither."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import aetk.runtime as rt

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "deploy" / "server.py"
_spec = importlib.util.spec_from_file_location("aetk_runtime_test_models", Path(__file__).with_name("runtime_models.py"))
rm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm)
JSON_HEADERS = {"Content-Type": "application/json"}


# -- starting and stopping servers -------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    blockers = tmp_path_factory.mktemp("blockers")
    for name in ("torch", "onnx"):
        (blockers / name).mkdir()
        (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in the deploy tests')\n")
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(blockers), str(ROOT)])}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return {kind: rm.write_export(base / kind, kind) for kind in ("dense", "vae", "conv")}


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def post(self, path: str, payload) -> tuple[int, dict]:
        status, _, data = self.call("POST", path, json.dumps(payload).encode(), JSON_HEADERS)
        return status, json.loads(data)

    def get(self, path: str) -> tuple[int, dict]:
        status, _, data = self.call("GET", path)
        return status, json.loads(data)


@contextlib.contextmanager
def serve(folder: Path, env: dict, log: Path, *args: str):
    """Start deploy/server.py on a free port; always stop it."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(SERVER), str(folder), "--host", "127.0.0.1", "--port", "0",
                                 "--quiet", *args], stdout=subprocess.PIPE, stderr=err, env=env, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, f"server did not start: {line!r}\n{log.read_text()}"
        yield Server(proc, int(match.group(1)), log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _server_fixture(kind: str, *args: str):
    @pytest.fixture(scope="module")
    def fixture(exports, env, tmp_path_factory):
        with serve(exports[kind], env, tmp_path_factory.mktemp("logs") / f"{kind}.log", *args) as server:
            yield server
    return fixture


dense_server = _server_fixture("dense", "--max-body-mb", "0.05")
batching_server = _server_fixture("dense", "--max-batch", "8", "--max-wait-ms", "300")
vae_server = _server_fixture("vae")
conv_server = _server_fixture("conv", "--max-wait-ms", "200")


@pytest.fixture(scope="module")
def dense(exports):
    return rt.load_export(exports["dense"], device="cpu")


def images(n, seed=0, h=4, w=4):
    return np.random.default_rng(seed).random((n, 1, h, w)).astype(np.float32)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=1e-6, atol=1e-7)


# -- serving ---------------------------------------------------------------------------------
def test_health_and_ready(dense_server):
    status, doc = dense_server.get("/health")
    assert status == 200 and doc["status"] == "ok"
    model = doc["model"]
    assert model["kind"] == "dense" and model["variational"] is False and model["device"] == "cpu"
    assert model["graphs"] == ["autoencoder", "decoder", "encoder"]
    assert model["endpoints"] == ["/decode", "/encode", "/reconstruct"]
    assert model["input_shape"] == [1, 4, 4] and model["code_shape"] == [3]
    assert dense_server.get("/ready") == (200, {"ready": True})


def test_json_endpoints_match_the_runtime(dense_server, dense):
    x = images(5, seed=1)
    status, doc = dense_server.post("/encode", {"inputs": x.tolist()})
    assert status == 200
    close(doc["outputs"], dense.encode(x))
    z = dense.encode(x)
    status, doc = dense_server.post("/decode", {"inputs": z.tolist(), "raw": False})
    assert status == 200
    close(doc["outputs"], dense.decode(z))
    status, doc = dense_server.post("/reconstruct", {"inputs": x.tolist()})
    assert status == 200
    close(doc["outputs"], dense.reconstruct(x))
    # raw pixel values: normalized on the way in, mapped back to pixel units on the way out
    raw = (x * 255).round().astype(int)
    status, doc = dense_server.post("/reconstruct", {"inputs": raw.tolist(), "raw": True})
    assert status == 200
    np.testing.assert_allclose(doc["outputs"], dense.reconstruct(raw, raw=True), rtol=1e-5)
    status, doc = dense_server.post("/encode", {"inputs": raw.tolist(), "raw": True})
    close(doc["outputs"], dense.encode(raw, raw=True))
    status, doc = dense_server.post("/decode", {"inputs": z.tolist(), "raw": True})
    np.testing.assert_allclose(doc["outputs"], dense.decode(z) * 255, rtol=1e-5)


def test_vae_encode_returns_mean_and_logvar(vae_server, exports):
    vae = rt.load_export(exports["vae"], device="cpu")
    x = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    status, doc = vae_server.post("/encode", {"inputs": x.tolist()})
    assert status == 200 and sorted(doc["outputs"]) == ["logvar", "mean"]
    mean, logvar = vae.encode_stats(x)
    close(doc["outputs"]["mean"], mean)
    close(doc["outputs"]["logvar"], logvar)
    status, _, body = vae_server.call("POST", "/encode?raw=true", _npy(x), {"Content-Type": "application/x-npy"})
    assert status == 200
    archive = np.load(io.BytesIO(body))
    close(archive["mean"], vae.encode_stats(x, raw=True)[0])
    close(archive["logvar"], vae.encode_stats(x, raw=True)[1])


def _npy(a, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_npy_bodies(dense_server, dense):
    x = images(4, seed=3)
    status, headers, body = dense_server.call("POST", "/reconstruct", _npy(x), {"Content-Type": "application/x-npy"})
    assert status == 200 and headers["content-type"] == "application/x-npy"
    y = np.load(io.BytesIO(body))
    assert y.dtype == np.float32
    close(y, dense.reconstruct(x))
    status, headers, body = dense_server.call("POST", "/encode", _npy(x), {"Content-Type": "application/x-npy",
                                                                         "Accept": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json"
    close(json.loads(body)["outputs"], dense.encode(x))
    status, headers, body = dense_server.call("POST", "/encode", json.dumps({"inputs": x.tolist()}).encode(),
                                              JSON_HEADERS | {"Accept": "application/x-npy"})
    close(np.load(io.BytesIO(body)), dense.encode(x))


def _concurrently(fn, args_list):
    results = [None] * len(args_list)
    barrier = threading.Barrier(len(args_list))

    def worker(i, args):
        barrier.wait()
        results[i] = fn(*args)

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_requests_are_batched(batching_server, dense):
    def stats():
        return batching_server.get("/health")[1]["stats"]["encode"]

    before = stats()
    inputs = [images(1 + i % 3, seed=10 + i) for i in range(20)]  # 39 rows, --max-batch 8
    results = _concurrently(lambda x: batching_server.post("/encode", {"inputs": x.tolist()}), [(x,) for x in inputs])
    for x, (status, doc) in zip(inputs, results):
        assert status == 200, doc
        close(doc["outputs"], dense.encode(x))  # each request gets its own rows back
    after = stats()
    assert after["requests"] - before["requests"] == 20
    assert after["rows"] - before["rows"] == sum(len(x) for x in inputs) == 39
    calls = after["calls"] - before["calls"]
    assert 5 <= calls < 20  # merged, but never more than 8 rows per call
    assert 1 < after["max_rows_per_call"] <= 8
    # a request larger than --max-batch runs on its own (the runtime splits it into 8-row chunks)
    big = images(19, seed=99)
    status, doc = batching_server.post("/encode", {"inputs": big.tolist()})
    assert status == 200
    close(doc["outputs"], dense.encode(big))
    assert stats()["max_rows_per_call"] == 19


def test_mixed_sizes_on_a_dynamic_model(conv_server, exports):
    conv = rt.load_export(exports["conv"], device="cpu")
    sizes = [(8, 8), (10, 7), (8, 8), (12, 16), (10, 7), (8, 8)]
    inputs = [images(2, seed=i, h=h, w=w) for i, (h, w) in enumerate(sizes)]
    results = _concurrently(lambda x: conv_server.post("/reconstruct", {"inputs": x.tolist()}),
                            [(x,) for x in inputs])
    for x, (status, doc) in zip(inputs, results):
        assert status == 200, doc
        assert np.asarray(doc["outputs"]).shape == x.shape  # padded and cropped back
        close(doc["outputs"], conv.reconstruct(x))
    stats = conv_server.get("/health")[1]["stats"]["reconstruct"]
    assert stats["calls"] < len(inputs) and stats["max_rows_per_call"] <= 6
    status, doc = conv_server.post("/encode", {"inputs": images(1, h=10, w=7).tolist()})
    assert status == 400 and "multiples of 4" in doc["error"]


# -- bad requests ------------------------------------------------------------------------------
def _good(server, dense):
    x = images(2, seed=42)
    status, doc = server.post("/encode", {"inputs": x.tolist()})
    assert status == 200
    close(doc["outputs"], dense.encode(x))


BAD = [
    ("POST", "/encode", {"inputs": [[1.0, 2.0]]}, 400, r"input 'x' expects shape \(batch, 1, 4, 4\), got \(1, 2\)"),
    ("POST", "/encode", {"inputs": [[[["a"] * 4] * 4]]}, 400, r"real numeric array \(the graph takes float32\)"),
    ("POST", "/encode", {"inputs": [[[[1, None, 2, 3]] * 4]]}, 400, r"real numeric array"),
    ("POST", "/encode", {"inputs": [[[[1, 2, 3, 4]] * 4], [[[1, 2]] * 4]]}, 400, "rectangular"),
    ("POST", "/encode", {"inputs": "hello"}, 400, "'inputs' must be a \\(nested\\) list of numbers, got str"),
    ("POST", "/encode", {"inputs": {"x": 1}}, 400, "got dict"),
    ("POST", "/encode", {"input": [1]}, 400, r'must be an object \{"inputs"'),
    ("POST", "/encode", [1, 2], 400, r'must be an object \{"inputs"'),
    ("POST", "/encode", {"inputs": [1], "extra": 1}, 400, r"unknown keys \['extra'\]"),
    ("POST", "/encode", {"inputs": images(1).tolist(), "raw": "maybe"}, 400, "'raw' must be true or false"),
    ("POST", "/encode", b"{not json", 400, "invalid JSON"),
    ("POST", "/encode", b"\xff\xfe", 400, "invalid JSON"),
    ("POST", "/decode", {"inputs": [[1.0, 2.0, 3.0, 4.0]]}, 400, r"input 'z' expects shape \(batch, 3\)"),
    ("POST", "/nowhere", {"inputs": [1]}, 404, "no endpoint /nowhere"),
    ("GET", "/nowhere", None, 404, "no endpoint /nowhere"),
    ("GET", "/encode", None, 405, "GET /encode is not allowed; use POST"),
    ("POST", "/health", {"inputs": [1]}, 405, "POST /health is not allowed; use GET"),
    ("PUT", "/encode", {"inputs": [1]}, 405, "PUT /encode is not allowed"),
    ("DELETE", "/reconstruct", None, 405, "DELETE /reconstruct is not allowed"),
]


@pytest.mark.parametrize("method,path,payload,status,message", BAD, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_clear_4xx_answers(dense_server, dense, method, path, payload, status, message):
    body = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
    got, headers, data = dense_server.call(method, path, body, JSON_HEADERS if body is not None else {})
    assert got == status, data
    assert headers["content-type"] == "application/json"
    doc = json.loads(data)
    assert re.search(message, doc["error"]), doc["error"]
    if status == 405:
        assert headers["allow"] in ("GET", "POST")
    _good(dense_server, dense)


def test_bad_binary_and_media_types(dense_server, dense):
    cases = [
        (b"not an npy file", {"Content-Type": "application/x-npy"}, 400, "not a valid .npy"),
        (_npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), {"Content-Type": "application/x-npy"}, 400, "not a valid .npy"),
        (_npy(np.zeros((1, 1, 4, 4), complex)), {"Content-Type": "application/x-npy"}, 400, "real numeric"),
        (_npy(images(1)), {"Content-Type": "text/csv"}, 415, "Content-Type 'text/csv' is not supported"),
    ]
    for body, headers, status, message in cases:
        got, _, data = dense_server.call("POST", "/encode", body, headers)
        assert got == status and message in json.loads(data)["error"], data
        _good(dense_server, dense)
    got, _, data = dense_server.call("POST", "/encode?raw=perhaps", _npy(images(1)), {"Content-Type": "application/x-npy"})
    assert got == 400 and "query parameter raw" in json.loads(data)["error"]
    _good(dense_server, dense)


def _raw_exchange(port: int, data: bytes) -> tuple[bytes, float]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def test_oversized_body_is_refused_without_reading_it(dense_server, dense):
    head = (b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    answer, seconds = _raw_exchange(dense_server.port, head + b'{"inputs": [' + b"1.0, " * 2000)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"Connection: close" in answer and b"exceeds the limit of 52428 bytes" in answer
    assert seconds < 5  # answered at once, not after a gigabyte that never comes
    _good(dense_server, dense)
    # just over the limit through a normal client, too
    body = json.dumps({"inputs": images(300).tolist()}).encode()
    assert len(body) > 52428
    status, _, data = dense_server.call("POST", "/encode", body, JSON_HEADERS)
    assert status == 413 and "--max-body-mb" in json.loads(data)["error"]
    _good(dense_server, dense)


def test_length_required_and_truncated_bodies(dense_server, dense):
    answer, _ = _raw_exchange(dense_server.port, b"POST /encode HTTP/1.1\r\nHost: x\r\n"
                                                 b"Content-Type: application/json\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in answer
    answer, _ = _raw_exchange(dense_server.port, b"POST /encode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                                 b"Content-Type: application/json\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and b"chunked" in answer
    answer, _ = _raw_exchange(dense_server.port, b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    # a client that announces 100 bytes and hangs up after 10
    with socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) as s:
        s.sendall(b"POST /encode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ") and b"body ended after 10 of 100 bytes" in answer
    _good(dense_server, dense)


def test_keep_alive_connection_survives_errors(dense_server, dense):
    conn = http.client.HTTPConnection("127.0.0.1", dense_server.port, timeout=30)
    try:
        for payload, status in (({"inputs": images(1).tolist()}, 200), ({"inputs": [[1.0]]}, 400),
                                ({"inputs": images(2).tolist()}, 200)):
            conn.request("POST", "/reconstruct", json.dumps(payload).encode(), JSON_HEADERS)
            r = conn.getresponse()
            r.read()
            assert r.status == status
    finally:
        conn.close()


# -- process lifecycle -----------------------------------------------------------------------
def test_terminate_shuts_down_cleanly(exports, env, tmp_path):
    with serve(exports["vae"], env, tmp_path / "log") as server:
        assert server.get("/ready")[0] == 200
        server.proc.terminate()
        assert server.proc.wait(timeout=10) == 0


def test_unservable_folder_exits_with_a_message(env, tmp_path):
    out = subprocess.run([sys.executable, str(SERVER), str(tmp_path / "missing"), "--port", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cannot serve" in out.stderr and "missing does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, str(SERVER), str(tmp_path), "--max-batch", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--max-batch must be >= 1" in out.stderr
