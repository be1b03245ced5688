"""aetk serve: the real server as a subprocess on 127.0.0.1 (port 0), driven by tritonclient.http
and by raw sockets. The subprocess runs with stub ``torch`` and ``onnx`` packages that refuse
to import, so every test here also shows the served process needs neither.

Every fault of the old deploy/server.py (issue 22) is a test here: it asserts the 4xx answer
and that the next good request is served."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import importlib.util
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import aetk
import aetk.runtime as rt
from aetk.serve.protocol import decode_infer_response, encode_infer_request

httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402

_spec = importlib.util.spec_from_file_location("aetk_runtime_test_models", Path(__file__).with_name("runtime_models.py"))
rm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm)
SOURCE = Path(aetk.__file__).resolve().parents[1]  # the aetk this test process imports
ROOT = Path(__file__).resolve().parents[1]  # the repository (deploy/, cli/)


# -- starting and stopping servers -------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    blockers = tmp_path_factory.mktemp("blockers")
    for name in ("torch", "onnx"):
        (blockers / name).mkdir()
        (blockers / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in the serve tests')\n")
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(blockers), str(SOURCE)]), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    return {kind: rm.write_export(base / kind, kind) for kind in ("dense", "vae", "conv")}


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"127.0.0.1:{port}"

    def client(self, **kw) -> "httpclient.InferenceServerClient":
        return httpclient.InferenceServerClient(self.url, **kw)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def infer(self, model: str, inputs: dict, binary: bool = True, headers: dict | None = None):
        body, hl = encode_infer_request(inputs, binary=binary, binary_output=binary)
        h = dict(headers or {})
        if hl is not None:
            h["Inference-Header-Content-Length"] = str(hl)
        status, head, data = self.call("POST", f"/v2/models/{model}/infer", body, h)
        if status != 200:
            return status, json.loads(data)
        length = head.get("inference-header-content-length")
        return status, decode_infer_response(data, None if length is None else int(length))

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def start_server(folder: Path, env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "aetk.cli.main", "serve", str(folder), "--host", "127.0.0.1",
                                 "--port", "0", *args], stdout=subprocess.PIPE, stderr=err, env=env, text=True)


@contextlib.contextmanager
def serve(folder: Path, env: dict, log: Path, *args: str):
    """Start `aetk serve` on a free port; always stop it."""
    proc = start_server(folder, env, log, *args)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, f"server did not start: {line!r}\n{log.read_text()}"
        yield Server(proc, int(match.group(1)), log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=20)
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


# small limits, so the limit tests stay small; a short timeout for the slow-client test
dense_server = _server_fixture("dense", "--max-body-mb", "0.05", "--max-json-mb", "0.04", "--max-output-mb", "0.01",
                               "--request-timeout", "3")
vae_server = _server_fixture("vae")
conv_server = _server_fixture("conv", "--max-queue-delay-ms", "200", "--max-batch", "8")


@pytest.fixture(scope="module")
def dense(exports):
    return rt.load_export(exports["dense"], device="cpu")


def images(n, seed=0, h=4, w=4):
    return np.random.default_rng(seed).random((n, 1, h, w)).astype(np.float32)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=1e-6, atol=1e-7)


def good(server, dense):
    """A good request after a bad one: served, and right."""
    x = images(2, seed=42)
    status, out = server.infer("encoder", {"x": x})
    assert status == 200, out
    close(out["z"], dense.encode(x))


def no_traceback(server):
    text = server.log.read_text()
    assert "Traceback" not in text, text[-3000:]


# -- the protocol through a client nobody here wrote ----------------------------------------------
def test_server_and_model_metadata(dense_server, exports):
    c = dense_server.client()
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata()
    assert meta["name"] == "aetk" and "binary_tensor_data" in meta["extensions"]
    assert c.is_model_ready("encoder") and c.is_model_ready("autoencoder", "1")
    m = c.get_model_metadata("encoder")
    assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 4, 4]}]
    assert m["outputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 3]}]
    assert c.get_model_metadata("decoder", "1")["inputs"][0]["shape"] == [-1, 3]
    config = c.get_model_config("encoder")
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == [1, 4, 4]
    assert sorted(m["name"] for m in c.get_model_repository_index()) == ["autoencoder", "decoder", "encoder"]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as err:
        c.get_model_metadata("nope")
    assert str(exports["dense"]) not in str(err.value)
    with pytest.raises(InferenceServerException, match="no version '7'"):
        c.get_model_metadata("encoder", "7")


def test_dynamic_axes_are_minus_one(conv_server):
    m = conv_server.client().get_model_metadata("autoencoder")
    assert m["inputs"][0]["shape"] == [-1, 1, -1, -1] and m["outputs"][0]["shape"] == [-1, 1, -1, -1]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_matches_the_runtime(dense_server, vae_server, exports, binary):
    c = dense_server.client()
    dense = rt.load_export(exports["dense"], device="cpu")
    x = images(5, seed=1)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    r = c.infer("encoder", [inp], outputs=[httpclient.InferRequestedOutput("z", binary_data=binary)], request_id="r1")
    close(r.as_numpy("z"), dense.encode(x))
    assert r.get_response()["id"] == "r1" and r.get_response()["model_version"] == "1"
    r = c.infer("autoencoder", [inp])  # tritonclient's default: binary outputs
    close(r.as_numpy("x_hat"), dense.reconstruct(x))
    vae = rt.load_export(exports["vae"], device="cpu")
    v = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    inp = httpclient.InferInput("x", list(v.shape), "FP32")
    inp.set_data_from_numpy(v, binary_data=binary)
    r = vae_server.client().infer("encoder", [inp], outputs=[httpclient.InferRequestedOutput("logvar", binary)])
    assert r.as_numpy("mean") is None
    close(r.as_numpy("logvar"), vae.encode_stats(v)[1])
    mean, logvar = vae.encode_stats(v)
    eps = np.random.default_rng(3).standard_normal(mean.shape).astype(np.float32)
    ins = []
    for name, arr in (("mean", mean), ("logvar", logvar), ("eps", eps)):
        ins.append(httpclient.InferInput(name, list(arr.shape), "FP32"))
        ins[-1].set_data_from_numpy(arr, binary_data=binary)
    r = vae_server.client().infer("sample", ins)
    close(r.as_numpy("z"), vae.reparameterize(mean, logvar, eps))


def test_other_numeric_datatypes_are_converted(dense_server, dense):
    x = (images(2) * 255).astype(np.uint8)
    for arr in (x, x.astype(np.float64), x.astype(np.int32)):
        status, out = dense_server.infer("encoder", {"x": arr}, binary=True)
        assert status == 200
        close(out["z"], dense.encode(arr))


def test_conveniences_npy_json_and_raw(dense_server, vae_server, dense, exports):
    x = images(4, seed=3)
    buf = io.BytesIO()
    np.save(buf, x)
    status, head, body = dense_server.call("POST", "/reconstruct", buf.getvalue(), {"Content-Type": "application/x-npy"})
    assert status == 200 and head["content-type"] == "application/x-npy"
    close(np.load(io.BytesIO(body)), dense.reconstruct(x))
    raw = (x * 255).round()
    status, _, body = dense_server.call("POST", "/encode", json.dumps({"inputs": raw.tolist(), "raw": True}).encode(),
                                        {"Content-Type": "application/json"})
    assert status == 200
    close(json.loads(body)["outputs"], dense.encode(raw, raw=True))
    z = dense.encode(x)
    buf = io.BytesIO()
    np.save(buf, z)
    status, _, body = dense_server.call("POST", "/decode?raw=true", buf.getvalue(), {"Content-Type": "application/x-npy"})
    np.testing.assert_allclose(np.load(io.BytesIO(body)), dense.decode(z, raw=True), rtol=1e-5)
    vae = rt.load_export(exports["vae"], device="cpu")
    v = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, v)
    status, head, body = vae_server.call("POST", "/encode?raw=true", buf.getvalue(), {"Content-Type": "application/x-npy"})
    assert status == 200 and head["content-type"] == "application/x-npz"
    archive = np.load(io.BytesIO(body))
    close(archive["mean"], vae.encode_stats(v, raw=True)[0])
    close(archive["logvar"], vae.encode_stats(v, raw=True)[1])


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


def _metric(server, name: str, **labels) -> float:
    _, _, body = server.call("GET", "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.decode().splitlines():
        if line.startswith(name + ("{" if labels else " ")):
            got = line[len(name):].split(" ")[0].strip("{}")
            if ",".join(sorted(got.split(","))) == want or not labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_dynamic_batching_merges_requests_and_mixed_sizes(conv_server, exports):
    conv = rt.load_export(exports["conv"], device="cpu")
    calls = _metric(conv_server, "aetk_serve_batch_rows_count", model="autoencoder")
    sizes = [(8, 8), (10, 7), (8, 8), (12, 16), (10, 7), (8, 8)] * 2
    inputs = [images(1 + i % 2, seed=i, h=h, w=w) for i, (h, w) in enumerate(sizes)]
    results = _concurrently(lambda x: conv_server.infer("autoencoder", {"x": x}), [(x,) for x in inputs])
    for x, (status, out) in zip(inputs, results):
        assert status == 200, out
        assert out["x_hat"].shape == x.shape  # padded and cropped back
        close(out["x_hat"], conv.reconstruct(x))
    made = _metric(conv_server, "aetk_serve_batch_rows_count", model="autoencoder") - calls
    assert 3 <= made < len(inputs)  # merged by shape, at most --max-batch 8 rows a call
    assert _metric(conv_server, "aetk_serve_batch_rows_bucket", model="autoencoder", le="8.0") == \
        _metric(conv_server, "aetk_serve_batch_rows_count", model="autoencoder")
    status, out = conv_server.infer("encoder", {"x": images(1, h=10, w=7)})
    assert status == 400 and "multiples of 4" in out["error"]


def test_metrics(dense_server, dense):
    good(dense_server, dense)
    status, head, body = dense_server.call("GET", "/metrics")
    assert status == 200 and head["content-type"].startswith("text/plain")
    text = body.decode()
    for name in ("aetk_serve_requests_total", "aetk_serve_inference_requests_total", "aetk_serve_batch_rows_bucket",
                 "aetk_serve_queue_depth", "aetk_serve_request_duration_seconds_bucket"):
        assert name in text
    assert _metric(dense_server, "aetk_serve_inference_requests_total", model="encoder", outcome="ok") >= 1


# -- faults: each answered with a 4xx, and the next good request is served ---------------------------
def _raw(port: int, data: bytes, *, shut: bool = False, timeout: float = 10) -> tuple[bytes, float]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks), time.monotonic() - start


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _error(answer: bytes) -> str:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]


def test_huge_body_is_refused_without_reading_it(dense_server, dense):
    head = (b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    answer, seconds = _raw(dense_server.port, head + b'{"inputs": [' + b"1.0, " * 2000)
    assert _status(answer) == 413 and "over the limit of 52428 bytes" in _error(answer)
    assert b"connection: close" in answer.lower()
    assert seconds < 5  # answered at once, not after a gigabyte that never comes
    good(dense_server, dense)
    # just over the limit through an ordinary client: a 413, not a broken pipe
    x = images(1000)  # 64 kB of binary data
    status, out = dense_server.infer("encoder", {"x": x})
    assert status == 413 and "--max-body-mb" in out["error"]
    good(dense_server, dense)
    # a client that sends a body far over the limit before it reads: the answer, not a reset
    for size in (2 * 2**20, 8 * 2**20):
        status, head, data = dense_server.call("POST", "/v2/models/encoder/infer", b"x" * size)
        assert status == 413 and head["connection"] == "close" and "--max-body-mb" in json.loads(data)["error"]
    good(dense_server, dense)


def test_chunked_body_over_the_limit(dense_server, dense):
    chunk = b"x" * 30000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    answer, _ = _raw(dense_server.port, b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert _status(answer) == 413
    good(dense_server, dense)


def test_json_over_its_own_limit_and_outputs_over_theirs(dense_server, dense):
    x = images(145)
    assert 0.04 * 2**20 < len(encode_infer_request({"x": x}, binary=False)[0]) < 0.05 * 2**20
    status, out = dense_server.infer("encoder", {"x": x}, binary=False)  # JSON over 0.04 MiB, body under 0.05
    assert status == 413 and "--max-json-mb" in out["error"]
    good(dense_server, dense)
    status, out = dense_server.infer("autoencoder", {"x": images(200)})  # 12.8 kB of outputs, limit 10.5 kB
    assert status == 413 and "--max-output-mb" in out["error"]
    good(dense_server, dense)


def test_deeply_nested_json_is_a_400(dense_server, dense):
    deep = b"[" * 100000 + b"]" * 100000
    for path, body in (("/v2/models/encoder/infer", b'{"inputs": ' + deep + b"}"),
                       ("/encode", b'{"inputs": ' + deep + b"}"),
                       ("/v2/models/encoder/infer",
                        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ' + b"[" * 200
                        + b"1" + b"]" * 200 + b"}]}")):
        status, _, data = dense_server.call("POST", path, body[:50000], {"Content-Type": "application/json"})
        assert status in (400, 413), data
        status, _, data = dense_server.call("POST", path, body if len(body) < 50000 else deep[:20000] + deep[-20000:],
                                            {"Content-Type": "application/json"})
        assert status == 400 and "error" in json.loads(data), data
        good(dense_server, dense)
    no_traceback(dense_server)


def test_head_and_keep_alive_answers_arrive_whole(dense_server, dense):
    """Each response's head and body leave in one write (connection.OneWriteHead): answers to
    HEAD (no body) and to several requests on one keep-alive connection arrive complete."""
    with socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) as s:
        s.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    last = answer.rsplit(b"HTTP/1.1 200 OK", 1)[1].split(b"\r\n\r\n", 1)[1]
    assert json.loads(last)["name"] == "aetk"
    good(dense_server, dense)


def test_expect_100_continue_is_answered_before_the_body(dense_server, dense):
    """A client that sends `Expect: 100-continue` waits for `100 Continue` before the body
    (curl does for large bodies): it must come at once, not held back with the response."""
    x = images(2, seed=3)
    body, hl = encode_infer_request({"x": x}, binary=True, binary_output=False)
    head = (f"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"Inference-Header-Content-Length: {hl}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) as s:
        s.sendall(head)
        s.settimeout(5)
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        s.sendall(body)
        s.settimeout(10)
        answer = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", answer.lower()).group(1)):
            answer += s.recv(65536)
    assert _status(answer) == 200
    close(json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"], dense.encode(x).ravel())
    good(dense_server, dense)


def test_an_early_answer_to_head_is_not_held_back(dense_server, dense):
    """A HEAD answered before its announced body was read (413 here) gets its head at once:
    HEAD has no body for the head to wait for, and the guard then drains the body for up to
    DRAIN_SECONDS before it finishes the response."""
    from aetk.serve.guard import DRAIN_SECONDS

    for length in (b"999999999", b"10"):  # over --max-body-mb, and a body nobody reads
        with socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(b"HEAD /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
            first = s.recv(65536)
            waited = time.monotonic() - t0
        assert first.startswith(b"HTTP/1.1 413" if length == b"999999999" else b"HTTP/1.1 200"), first
        assert waited < DRAIN_SECONDS / 2, waited
    good(dense_server, dense)


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND"])
def test_unknown_methods_get_json_405(dense_server, dense, method):
    status, head, data = dense_server.call(method, "/v2/models/encoder/infer", b"{}")
    assert status == 405 and head["content-type"] == "application/json"
    assert method in json.loads(data)["error"] and "POST" in head["allow"]
    good(dense_server, dense)


def test_wrong_routes_and_methods_get_json(dense_server, dense):
    status, head, data = dense_server.call("GET", "/nowhere")
    assert status == 404 and head["content-type"] == "application/json" and "/v2" in json.loads(data)["error"]
    status, head, data = dense_server.call("GET", "/v2/models/encoder/infer")
    assert status == 405 and head["allow"] == "POST" and "error" in json.loads(data)
    status, head, data = dense_server.call("POST", "/v2/models/encoder", b"{}")
    assert status == 405 and "error" in json.loads(data)
    good(dense_server, dense)


@pytest.mark.parametrize("lengths", [(b"10", b"10"), (b"10", b"12")], ids=["same", "different"])
def test_duplicate_content_length_is_refused(dense_server, dense, lengths):
    body = b'{"inputs":[]}'[:10]
    head = b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"Content-Length: %s\r\n" % n for n in lengths) + b"\r\n"
    answer, _ = _raw(dense_server.port, head + body, shut=True)
    assert _status(answer) == 400, answer
    answer, _ = _raw(dense_server.port, b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", shut=True)
    assert _status(answer) == 400, answer
    good(dense_server, dense)


BAD = [
    ({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}, 400,
     r"model 'encoder': input 'x' expects shape \(batch, 1, 4, 4\), got \(1, 2\)"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "BYTES", "data": ["a"] * 16}]}, 400, "BYTES"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": ["a"] * 16}]}, 400, "only numbers"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [1.0] * 15}]}, 400, "holds 15 values"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [[1.0, 2.0], [3.0]]}]}, 400,
     "rectangular"),
    ({"inputs": [{"name": "y", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [1.0] * 16}]}, 400, "unknown"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP99", "data": [1.0] * 16}]}, 400, "datatype"),
    ({"inputs": [{"name": "x", "shape": [-1, 1, 4, 4], "datatype": "FP32", "data": [1.0] * 16}]}, 400, "shape"),
    ({"inputs": [{"name": "x", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [1.0] * 16}],
      "outputs": [{"name": "nope"}]}, 400, "no output 'nope'"),
    ({"inputs": []}, 400, "non-empty list"),
    ({"input": []}, 400, "unknown keys"),
    ([1, 2], 400, "must be a JSON object"),
    (b"{not json", 400, "invalid JSON"),
    (b"\xff\xfe", 400, "invalid JSON"),
]


@pytest.mark.parametrize("payload,status,message", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_clear_4xx_answers(dense_server, dense, exports, payload, status, message):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    got, head, data = dense_server.call("POST", "/v2/models/encoder/infer", body, {"Content-Type": "application/json"})
    assert got == status, data
    assert head["content-type"] == "application/json"
    error = json.loads(data)["error"]
    assert re.search(message, error), error
    assert str(exports["dense"]) not in error and ".onnx" not in error  # no file paths in answers
    good(dense_server, dense)


def test_bad_binary_tensors(dense_server, dense):
    x = images(1)
    body, hl = encode_infer_request({"x": x})
    for headers, data, message in (
            ({"Inference-Header-Content-Length": str(hl)}, body[:-4], "ends before"),
            ({"Inference-Header-Content-Length": str(hl)}, body + b"1234", "after the tensors"),
            ({"Inference-Header-Content-Length": str(len(body) + 5)}, body, "does not fit"),
            ({"Inference-Header-Content-Length": "ten"}, body, "byte count"),
            ({"Inference-Header-Content-Length": str(hl), "Content-Encoding": "gzip"}, gzip.compress(body), "compressed")):
        status, _, answer = dense_server.call("POST", "/v2/models/encoder/infer", data, headers)
        assert 400 <= status < 500 and message in json.loads(answer)["error"], answer
        good(dense_server, dense)


def test_aborted_connections_log_no_traceback(dense_server, dense):
    # a body announced and never finished
    with socket.create_connection(("127.0.0.1", dense_server.port)) as s:
        s.sendall(b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
    # a whole request, then gone before the answer
    body, hl = encode_infer_request({"x": images(3)})
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", dense_server.port)) as s:
            s.sendall(b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: %d\r\n"
                      b"Content-Length: %d\r\n\r\n" % (hl, len(body)) + body)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    time.sleep(0.5)
    good(dense_server, dense)
    no_traceback(dense_server)
    assert "client disconnected" in dense_server.log.read_text()


def test_a_slow_client_does_not_hold_others(dense_server, dense):
    slow = []
    for _ in range(8):  # more slow clients than CPUs; each has sent half a body
        s = socket.create_connection(("127.0.0.1", dense_server.port))
        s.sendall(b"POST /v2/models/encoder/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 50)
        slow.append(s)
    try:
        t0 = time.monotonic()
        for i in range(20):
            good(dense_server, dense)
        assert time.monotonic() - t0 < 5
        # the slow ones are answered 408 after --request-timeout (3 s), and closed
        slow[0].settimeout(10)
        answer = b""
        while chunk := slow[0].recv(65536):
            answer += chunk
        assert _status(answer) == 408 and "--request-timeout" in _error(answer)
    finally:
        for s in slow:
            s.close()
    good(dense_server, dense)
    no_traceback(dense_server)


def test_endless_or_trickled_request_heads_are_cut_off(dense_server, dense):
    # headers without end: 431 once the head passes 64 KiB, then the connection is closed
    with socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) as s:
        s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):
            for i in range(300):
                s.sendall(b"X-Junk-%d: %s\r\n" % (i, b"a" * 1000))
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    assert _status(answer) == 431, answer[:200]
    good(dense_server, dense)
    # a head that never ends, and a connection that never says anything: closed after
    # --request-timeout (3 s here), holding no thread meanwhile
    heads = [socket.create_connection(("127.0.0.1", dense_server.port), timeout=10) for _ in range(2)]
    heads[0].sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    good(dense_server, dense)
    for s in heads:
        assert s.recv(100) == b""
        s.close()
    assert 2 < time.monotonic() - t0 < 9
    good(dense_server, dense)
    no_traceback(dense_server)


def test_a_large_json_request_does_not_block_small_ones(exports, env, tmp_path):
    with serve(exports["conv"], env, tmp_path / "log", "--max-json-mb", "32", "--max-body-mb", "64",
               "--max-queue-delay-ms", "0") as server:
        conv = rt.load_export(exports["conv"], device="cpu")
        big = np.random.default_rng(0).random((4, 1, 256, 256)).astype(np.float32)
        body, _ = encode_infer_request({"x": big}, binary=False, binary_output=False)
        assert len(body) > 4 * 2**20
        result = {}
        t = threading.Thread(target=lambda: result.update(big=server.call(
            "POST", "/v2/models/autoencoder/infer", body, {"Content-Type": "application/json"}, timeout=120)))
        small = images(1, h=8, w=8)
        server.infer("encoder", {"x": small})  # warm
        t.start()
        worst = 0.0
        while t.is_alive():
            t0 = time.monotonic()
            status, out = server.infer("encoder", {"x": small})
            worst = max(worst, time.monotonic() - t0)
            assert status == 200
            close(out["z"], conv.encode(small))
        t.join()
        assert result["big"][0] == 200
        assert worst < 2.5, f"a small request waited {worst:.2f} s behind a large JSON one"


def test_queue_full_is_503_and_recovers(exports, env, tmp_path):
    with serve(exports["dense"], env, tmp_path / "log", "--max-queue", "2", "--max-queue-delay-ms", "1500") as server:
        dense = rt.load_export(exports["dense"], device="cpu")
        results = _concurrently(lambda x: server.infer("encoder", {"x": x}), [(images(1, seed=i),) for i in range(6)])
        codes = sorted(r[0] for r in results)
        assert codes.count(200) == 2 and codes.count(503) == 4, results
        assert all("--max-queue" in r[1]["error"] for r in results if r[0] == 503)
        status, head, _ = server.call("POST", "/v2/models/encoder/infer",
                                      *encode_infer_request({"x": images(1)}, binary=False)[:1])
        assert status == 200
        good(server, dense)


def test_memory_returns_after_a_burst_of_large_requests(exports, env, tmp_path):
    with serve(exports["conv"], env, tmp_path / "log", "--max-body-mb", "64", "--max-batch", "16") as server:
        x = np.random.default_rng(0).random((60, 1, 256, 256)).astype(np.float32)  # 15 MiB
        body, hl = encode_infer_request({"x": x})
        headers = {"Inference-Header-Content-Length": str(hl)}
        for _ in range(2):
            assert server.call("POST", "/v2/models/autoencoder/infer", body, headers)[0] == 200
        baseline = server.rss_mib()
        peaks, done = [baseline], threading.Event()

        def watch():
            while not done.wait(0.01):
                peaks.append(server.rss_mib())

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for _ in range(3):  # bursts of 4 at once
                results = _concurrently(lambda: server.call("POST", "/v2/models/autoencoder/infer", body, headers)[0],
                                        [()] * 4)
                assert results == [200] * 4
        finally:
            done.set()
            watcher.join()
        peak = max(peaks)
        time.sleep(1.0)
        after = server.rss_mib()
        print(f"RSS: {baseline:.0f} MiB after warm-up, peak seen {peak:.0f} MiB, {after:.0f} MiB after the bursts")
        assert after < baseline + 96, (baseline, peak, after)  # the old server kept 2.5 GB after one such request


# -- security and operations ------------------------------------------------------------------------
def test_bearer_token_from_a_file(exports, env, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with serve(exports["dense"], env, tmp_path / "log", "--token-file", str(token)) as server:
        dense = rt.load_export(exports["dense"], device="cpu")
        assert server.call("GET", "/v2/health/ready")[0] == 200  # probes need no token
        status, head, data = server.call("GET", "/v2/models/encoder")
        assert status == 401 and head["www-authenticate"] == "Bearer" and "bearer token" in json.loads(data)["error"]
        assert server.call("GET", "/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
        c = server.client()
        with pytest.raises(InferenceServerException, match="bearer token"):
            c.get_model_metadata("encoder")
        auth = {"Authorization": "Bearer s3cret-token"}
        assert c.get_model_metadata("encoder", headers=auth)["name"] == "encoder"
        x = images(2)
        status, out = server.infer("encoder", {"x": x}, headers=auth)
        assert status == 200
        close(out["z"], dense.encode(x))
        assert "s3cret" not in server.log.read_text()


def test_bearer_token_from_the_environment(exports, env, tmp_path):
    with serve(exports["dense"], env | {"MY_TOKEN": "abc"}, tmp_path / "log", "--token-env", "MY_TOKEN") as server:
        assert server.call("GET", "/v2")[0] == 401
        assert server.call("GET", "/v2", headers={"Authorization": "Bearer abc"})[0] == 200


def test_sigterm_drains_requests_in_flight(exports, env, tmp_path):
    with serve(exports["dense"], env, tmp_path / "log", "--max-queue-delay-ms", "1500") as server:
        dense = rt.load_export(exports["dense"], device="cpu")
        x = images(3)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=server.infer("encoder", {"x": x})))
        t.start()
        time.sleep(0.5)  # the request waits in the queue for 1.5 s
        server.proc.send_signal(signal.SIGTERM)
        t.join(30)
        status, out = result["r"]
        assert status == 200
        close(out["z"], dense.encode(x))
        assert server.proc.wait(timeout=20) == 0
    no_traceback(server)


def test_two_workers_share_the_port(exports, env, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = dict(env, TMPDIR=str(temporary))
    with serve(exports["dense"], env, tmp_path / "log", "--workers", "2") as server:
        dense = rt.load_export(exports["dense"], device="cpu")
        for _ in range(50):
            if server.call("GET", "/v2/health/ready")[0] == 200:
                break
            time.sleep(0.2)
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers
            good(server, dense)
        # Every scrape, whichever worker answers it, counts all 12 (prometheus_client's
        # multiprocess mode); a worker's own counts alone would be short of 12.
        scrapes = [_metric(server, "aetk_serve_inference_requests_total", model="encoder", outcome="ok")
                   for _ in range(6)]
        assert scrapes == [12.0] * 6
        assert _metric(server, "aetk_serve_queue_depth", model="encoder") == 0.0
        assert any(temporary.glob("aetk-serve-metrics-*/*.db"))  # the workers' metric files...
        server.proc.terminate()
        assert server.proc.wait(timeout=30) == 0
    assert not any(temporary.glob("aetk-serve-metrics-*"))  # ...go with the server


def test_unservable_folder_and_bad_options_exit_2(env, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "aetk.cli.main", "serve", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    out = run(str(tmp_path / "missing"), "--port", "0")
    assert out.returncode == 2 and "missing does not exist" in out.stderr and "Traceback" not in out.stderr
    out = run(str(tmp_path), "--port", "0")
    assert out.returncode == 2 and "neither an `aetk export` folder" in out.stderr
    out = run(str(tmp_path), "--max-batch", "0")
    assert out.returncode == 2 and "--max-batch must be >= 1" in out.stderr
    out = run(str(tmp_path), "--preferred-batch", "4,99")
    assert out.returncode == 2 and "--preferred-batch" in out.stderr
    out = run(str(tmp_path), "--token-file", str(tmp_path / "nope"))
    assert out.returncode == 2 and "--token-file" in out.stderr


def test_the_served_process_imports_no_torch(exports, env):
    code = ("import sys; from aetk.serve.app import create_app; from aetk.serve.options import ServeOptions; "
            f"create_app(ServeOptions({str(exports['conv'])!r})); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx') or m.startswith(('aetk.train', "
            "'aetk.models', 'aetk.export'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_docker_image_files_suffice(exports, env, tmp_path):
    """No Docker engine here: lay out /app as deploy/Dockerfile's COPY lines do, and serve from it."""
    import shutil

    app = tmp_path / "app"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (.+)$", dockerfile, re.M)
    assert copies
    for line in copies:
        *sources, dest = line.split()
        target = app / dest.removeprefix("/app/")
        for src in sources:
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            elif dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target / Path(src).name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / src, target)
    assert "ENTRYPOINT [\"python\", \"-m\", \"aetk.cli.serve\", \"/model\"" in dockerfile
    requirements = (app / "deploy" / "requirements.txt").read_text()
    for name in ("numpy", "onnxruntime", "typer", "uvicorn", "httptools", "starlette", "prometheus_client"):
        assert re.search(rf"^{name}\b", requirements, re.M), name
    image_env = env | {"PYTHONPATH": env["PYTHONPATH"].split(os.pathsep)[0]}  # the blockers, then /app (the cwd)
    proc = subprocess.Popen([sys.executable, "-m", "aetk.cli.serve", str(exports["dense"]), "--port", "0"],
                            cwd=app, env=image_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        server = Server(proc, int(match.group(1)), tmp_path / "unused")
        good(server, rt.load_export(exports["dense"], device="cpu"))
        code = ("import sys, aetk.serve.app, aetk.cli.serve; print(sorted({m.split('.')[0] + '.' + m.split('.')[1] "
                "for m in sys.modules if m.startswith('aetk.') and m.count('.') >= 1}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=app, env=image_env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "aetk.train" not in out.stdout and "aetk.models" not in out.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)
