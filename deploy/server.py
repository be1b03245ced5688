#!/usr/bin/env python3
"""Reference HTTP service for an ``aetk export`` folder: aetk.runtime + the standard library.

    python deploy/server.py MODEL_DIR --host 127.0.0.1 --port 8000 --max-batch 64 --max-wait-ms 5

    GET  /health, /ready
    POST /encode       {"inputs": [...], "raw": false} -> {"outputs": codes}
                       (VAE: {"outputs": {"mean": ..., "logvar": ...}})
    POST /decode       {"inputs": codes, "raw": false} -> {"outputs": reconstructions}
    POST /reconstruct  {"inputs": [...], "raw": false} -> {"outputs": reconstructions}

Bodies may also be ``application/x-npy`` (``?raw=true`` in the query string); the answer is
npy (npz for a VAE's mean and logvar) when the request was npy or asks ``Accept:
application/x-npy``. Concurrent requests for one graph are queued and a worker thread merges
those with the same per-example shape into one ONNX Runtime call (at most ``--max-batch``
rows, waiting at most ``--max-wait-ms`` after the oldest request), then splits the results.
Requests are validated before they are queued, so a bad request never spoils a batch.
Errors are JSON ``{"error": message}`` with a 4xx status for the client's mistakes.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# Prefer the aetk source tree next to this file (the repository, or /app in the image).
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "aetk" / "runtime" / "__init__.py").is_file():
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402

import aetk.runtime as rt  # noqa: E402

NPY, NPZ, JSON_TYPE = "application/x-npy", "application/x-npz", "application/json"
RESULT_TIMEOUT_S = 120.0


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str, close: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.close, self.headers = status, message, close, headers or {}


# -- request batching ---------------------------------------------------------------------
class _Item:
    __slots__ = ("x", "future", "t0")

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.future, self.t0 = x, Future(), time.monotonic()


class Batcher:
    """One worker thread per graph: merges queued requests into one ``run`` call."""

    def __init__(self, name: str, run, max_batch: int, max_wait_s: float) -> None:
        self.name, self._run = name, run
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._held: collections.deque = collections.deque()  # other shapes, for the next round
        self.stats = {"requests": 0, "calls": 0, "rows": 0, "max_rows_per_call": 0}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, x: np.ndarray) -> Future:
        item = _Item(x)
        with self._lock:
            self.stats["requests"] += 1
        self._queue.put(item)
        return item.future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        stopping = False
        while not stopping or self._held:
            first = self._held.popleft() if self._held else self._queue.get()
            if first is None:
                stopping = True
                continue
            batch, rows, key = [first], len(first.x), first.x.shape[1:]
            deadline = first.t0 + self.max_wait_s
            # Same-shape requests already held back join first, in arrival order.
            for item in list(self._held):
                if item.x.shape[1:] == key and rows + len(item.x) <= self.max_batch:
                    self._held.remove(item)
                    batch.append(item)
                    rows += len(item.x)
            while rows < self.max_batch and not stopping:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif item.x.shape[1:] == key and rows + len(item.x) <= self.max_batch:
                    batch.append(item)
                    rows += len(item.x)
                else:
                    self._held.append(item)
                    if item.x.shape[1:] == key:
                        break  # full: it starts the next call
            self._execute(batch, rows)

    def _execute(self, batch: list[_Item], rows: int) -> None:
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([i.x for i in batch], axis=0)
            outputs = self._run(x)
            with self._lock:
                self.stats["calls"] += 1
                self.stats["rows"] += rows
                self.stats["max_rows_per_call"] = max(self.stats["max_rows_per_call"], rows)
            start = 0
            for item in batch:
                stop = start + len(item.x)
                item.future.set_result({k: v[start:stop] for k, v in outputs.items()})
                start = stop
        except BaseException as exc:  # every waiting request hears about it; the worker goes on
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)


# -- the model behind the endpoints --------------------------------------------------------
class Service:
    """The export folder's graphs, one Batcher each, and the per-request pre/post steps."""

    ENDPOINTS = {"/encode": "encoder", "/decode": "decoder", "/reconstruct": "autoencoder"}

    def __init__(self, bundle: rt.ExportedModel, max_batch: int, max_wait_ms: float) -> None:
        self.bundle = bundle
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        self.batchers = {}
        for endpoint, graph in self.ENDPOINTS.items():
            if bundle.has(graph):
                model = bundle.graph(graph)
                self.batchers[endpoint] = Batcher(graph, model.run, max_batch, max_wait_ms / 1000.0)

    def describe(self) -> dict:
        meta = self.bundle.metadata
        return {
            "folder": str(self.bundle.folder), "kind": meta.kind, "variational": meta.variational,
            "precision": self.bundle.precision, "input_shape": meta.input_shape, "layout": meta.layout,
            "code_shape": meta.code_shape, "dynamic_spatial": meta.dynamic_spatial,
            "spatial_multiple": meta.spatial_multiple, "normalization": self.bundle.normalization.describe(),
            "graphs": sorted(self.bundle.models), "endpoints": sorted(self.batchers),
            "device": self.bundle.device, "providers": self.bundle.providers,
        }

    def handle(self, endpoint: str, inputs, raw: bool) -> dict[str, np.ndarray]:
        graph = self.ENDPOINTS[endpoint]
        if endpoint not in self.batchers:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"{endpoint} is not served: the export folder has no "
                                                  f"{graph} graph (it has {', '.join(sorted(self.bundle.models))})")
        model = self.bundle.graph(graph)
        x = model.validate(inputs)[model.input_names[0]]  # 400 on bad input, before queueing
        if raw and graph != "decoder":
            x = np.ascontiguousarray(self.bundle.preprocess(x), dtype=x.dtype)
        future = self.batchers[endpoint].submit(x)
        try:
            out = future.result(timeout=RESULT_TIMEOUT_S)
        except FutureTimeout:
            raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, f"no result within {RESULT_TIMEOUT_S:g} s") from None
        out = {k: v.astype(np.float32, copy=False) for k, v in out.items()}
        if graph == "encoder":
            if self.bundle.variational:
                names = model.output_names
                return {"mean": out.get("mean", out[names[0]]), "logvar": out.get("logvar", out[names[1]])}
            return {"outputs": out[model.output_names[0]]}
        y = out[model.output_names[0]]
        return {"outputs": self.bundle.postprocess(y) if raw else y}

    def stop(self) -> None:
        for b in self.batchers.values():
            b.stop()


# -- HTTP ---------------------------------------------------------------------------------
def _parse_bool(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise HTTPError(HTTPStatus.BAD_REQUEST, f"{what} must be true or false, got {value!r}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "aetk-serve"
    timeout = 60  # seconds a client may stall mid-request before its connection is dropped
    service: Service
    max_body: int
    quiet: bool

    # -- plumbing --------------------------------------------------------------------------
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
            self._drain = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def finish(self) -> None:
        super().finish()
        if getattr(self, "_drain", False):
            # We answered before reading the whole body. Closing a socket with unread data makes
            # the kernel send RST, which can destroy our answer in the client's buffers; so stop
            # writing, then swallow a bounded amount of what the client still sends.
            try:
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(1.0)
                budget = 1 << 20
                while budget > 0:
                    chunk = self.connection.recv(65536)
                    if not chunk:
                        break
                    budget -= len(chunk)
            except OSError:
                pass

    def _json(self, status: int, payload, headers: dict | None = None, close: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), JSON_TYPE, headers, close)

    def _error(self, err: HTTPError) -> None:
        self._json(err.status, {"error": err.message, "status": int(err.status)}, err.headers, err.close)

    def _guard(self, fn) -> None:
        try:
            fn()
        except HTTPError as err:
            self._error(err)
        except rt.RuntimeModelError as exc:  # bad shapes, dtypes, sizes: the client's to fix
            self._error(HTTPError(HTTPStatus.BAD_REQUEST, str(exc)))
        except Exception as exc:  # noqa: BLE001 (the server must keep serving)
            traceback.print_exc()
            self._error(HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}"))

    def _route(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _wrong_method(self) -> None:
        path = self._route()
        unread_body = self.command not in ("GET", "HEAD")  # answered without reading any body
        if path in Service.ENDPOINTS:
            allow = "POST"
        elif path in ("/health", "/ready"):
            allow = "GET"
        else:
            self._error(HTTPError(HTTPStatus.NOT_FOUND, f"no endpoint {path}; try GET /health, "
                                                        f"POST {', '.join(Service.ENDPOINTS)}",
                                  close=unread_body))
            return
        self._error(HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} {path} is not allowed; use {allow}",
                              headers={"Allow": allow}, close=unread_body))

    # -- methods -----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        path = self._route()
        if path == "/health":
            stats = {e.lstrip("/"): dict(b.stats) for e, b in self.service.batchers.items()}
            self._json(200, {"status": "ok", "model": self.service.describe(), "max_batch": self.service.max_batch,
                             "max_wait_ms": self.service.max_wait_ms, "stats": stats})
        elif path == "/ready":
            ready = all(b.alive for b in self.service.batchers.values())
            self._json(200 if ready else 503, {"ready": ready})
        else:
            self._wrong_method()

    def do_POST(self) -> None:  # noqa: N802
        self._guard(self._post)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _wrong_method

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length",
                            close=True)
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length header", close=True)
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a byte count",
                            close=True) from None
        if n > self.max_body:  # refuse before reading: the body is never buffered
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"body of {n} bytes exceeds the limit of {self.max_body} bytes (--max-body-mb)",
                            close=True)
        try:
            body = self.rfile.read(n)
        except TimeoutError:
            raise HTTPError(HTTPStatus.REQUEST_TIMEOUT, f"the {n}-byte body did not arrive within "
                                                        f"{self.timeout} s", close=True) from None
        if len(body) != n:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"body ended after {len(body)} of {n} bytes", close=True)
        return body

    def _post(self) -> None:
        path = self._route()
        if path not in Service.ENDPOINTS:
            self._wrong_method()
            return
        body = self._read_body()
        ctype = self.headers.get("Content-Type", JSON_TYPE).split(";")[0].strip().lower()
        query = parse_qs(urlsplit(self.path).query)
        if ctype == NPY:
            try:
                inputs = np.load(io.BytesIO(body), allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 (numpy raises several kinds)
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"body is not a valid .npy array without pickles: {exc}") from None
            if not isinstance(inputs, np.ndarray):
                raise HTTPError(HTTPStatus.BAD_REQUEST, "an application/x-npy body must hold one array (.npy, not .npz)")
            raw = _parse_bool(query.get("raw", ["false"])[-1], "query parameter raw")
        elif ctype in (JSON_TYPE, "text/json"):
            inputs, raw = self._parse_json(body)
        else:
            raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                            f"Content-Type {ctype!r} is not supported; send {JSON_TYPE} or {NPY}")
        result = self.service.handle(path, inputs, raw)
        accept = self.headers.get("Accept", "")
        if NPY in accept or (ctype == NPY and JSON_TYPE not in accept):
            buf = io.BytesIO()
            if len(result) == 1:
                np.save(buf, result["outputs"], allow_pickle=False)
                self._send(200, buf.getvalue(), NPY)
            else:
                np.savez(buf, **result)
                self._send(200, buf.getvalue(), NPZ)
            return
        if len(result) == 1:
            payload = {"outputs": result["outputs"].tolist()}
        else:
            payload = {"outputs": {k: v.tolist() for k, v in result.items()}}
        self._json(200, payload)

    @staticmethod
    def _parse_json(body: bytes):
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid JSON: {exc}") from None
        if not isinstance(doc, dict) or "inputs" not in doc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, 'the JSON body must be an object {"inputs": [...], "raw": false}')
        unknown = sorted(set(doc) - {"inputs", "raw"})
        if unknown:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"unknown keys {unknown}; the body takes 'inputs' and 'raw'")
        inputs = doc["inputs"]
        if not isinstance(inputs, list):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"'inputs' must be a (nested) list of numbers, got "
                                                    f"{type(inputs).__name__}")
        return inputs, _parse_bool(doc.get("raw", False), "'raw'")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled client must not keep the process alive at shutdown
    request_queue_size = 256  # the default listen backlog of 5 resets bursts of clients


def build_server(args: argparse.Namespace) -> tuple[ThreadingHTTPServer, Service]:
    bundle = rt.load_export(args.model_dir, device=args.device, precision=args.precision,
                            threads=args.threads, batch_size=args.max_batch)
    service = Service(bundle, args.max_batch, args.max_wait_ms)
    handler = type("BoundHandler", (Handler,), {"service": service, "max_body": int(args.max_body_mb * 2**20),
                                                  "quiet": args.quiet})
    return Server((args.host, args.port), handler), service


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="folder written by `aetk export`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="float32", choices=["float32", "float16", "int8"])
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--max-batch", type=int, default=64, help="rows merged into one ONNX Runtime call")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request may wait for others")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="larger bodies get 413")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = p.parse_args(argv)
    for name in ("max_batch", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.max_wait_ms < 0 or args.max_body_mb <= 0:
        p.error("--max-wait-ms must be >= 0 and --max-body-mb > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server, service = build_server(args)
    except rt.RuntimeModelError as exc:
        print(f"aetk-serve: cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aetk-serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2

    def shut_down(signum, frame):  # serve_forever returns; run from a thread, it must not block here
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    host, port = server.server_address[:2]
    d = service.describe()
    print(f"aetk-serve: {d['kind']} model from {d['folder']} on {d['device']} "
          f"(graphs: {', '.join(d['graphs'])}); listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        service.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
