"""The Starlette app: the Open Inference Protocol (KServe v2) over HTTP/REST, ``/metrics``,
and the ``/encode``, ``/decode``, ``/reconstruct`` npy conveniences, all on one
``Service`` (the repository's models, one batch queue each).

    GET  /v2                                          server metadata
    GET  /v2/health/live | /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}]             model metadata (-1: dynamic axes)
    GET  /v2/models/{name}[/versions/{v}]/ready
    GET  /v2/models/{name}[/versions/{v}]/config      a Triton-style config (batching, aetk metadata)
    POST /v2/models/{name}[/versions/{v}]/infer       JSON tensors and binary tensor data
    POST /v2/repository/index
    GET  /metrics                                     Prometheus
    POST /encode | /decode | /reconstruct             .npy or {"inputs": ..., "raw": false}

Every error is ``{"error": "..."}``: 4xx for the client's mistakes, 503 when a queue is full.
Messages name models and inputs, never files or folders.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import time
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

import aetk
import aetk.runtime as rt
from aetk.errors import AetkError
from aetk.normalization import Normalization
from aetk.options import flag

from .batching import ModelQueue, QueueFull
from .guard import Guard
from .metrics import Metrics
from .options import ServeOptions
from .protocol import InferRequest, ProtocolError, encode_infer_response, parse_infer_request
from .repository import Repository, ServedModel, load_repository

JSON, NPY, NPZ, OCTET = "application/json", "application/x-npy", "application/x-npz", "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"
THREAD_THRESHOLD = 256 * 1024  # JSON bodies / answers larger than this are (de)coded off the event loop
CONVENIENCES = {"/encode": "encoder", "/decode": "decoder", "/reconstruct": "autoencoder"}


class ServeError(AetkError):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status, headers, media_type=JSON)


class Service:
    """The repository's models, one ModelQueue each, and the checks every request goes through."""

    def __init__(self, repository: Repository, options: ServeOptions, metrics: Metrics) -> None:
        self.repository, self.options, self.metrics = repository, options, metrics
        self.queues: dict[tuple[str, str], ModelQueue] = {}
        for name, versions in repository.models.items():
            for version, served in versions.items():
                label = name if len(versions) == 1 else f"{name}:{version}"
                self.queues[(name, version)] = ModelQueue(
                    label, served.model.run, max_batch=served.max_batch,
                    max_delay_s=options.max_queue_delay_ms / 1000.0, preferred=options.preferred_batch,
                    max_queue=options.max_queue, metrics=metrics)
        self.graphs = repository.graphs()
        self._private = [str(options.folder.resolve()), str(options.folder)]
        self.ready = False

    async def start(self) -> None:
        for q in self.queues.values():
            q.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for q in self.queues.values():
            await q.stop()

    @property
    def live(self) -> bool:
        return all(q.alive for q in self.queues.values())

    def model(self, name: str, version: str | None = None) -> ServedModel:
        served = self.repository.get(name, version)
        if served is None:
            known = self.repository.models.get(name)
            if known is None:
                raise ServeError(404, f"unknown model {name[:100]!r}; this server has "
                                      f"{', '.join(sorted(self.repository.models))}")
            raise ServeError(404, f"model {name!r} has no version {version[:20]!r}; it has {', '.join(known)}")
        return served

    def public(self, served: ServedModel, message: str) -> str:
        """A runtime message without file names or folders."""
        prefix = served.model.path.name + ": "
        if message.startswith(prefix):
            message = f"model {served.name!r}: " + message[len(prefix):]
        for private in self._private:
            message = message.replace(private + os.sep, "").replace(private, "MODEL_DIR")
        return message

    async def infer(self, served: ServedModel, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Check ``feeds`` (400 / 413), queue them, wait for their outputs (503 when full)."""
        try:
            checked = served.model.validate(feeds)
        except rt.RuntimeModelError as exc:
            raise ServeError(400, self.public(served, str(exc))) from None
        size, limit = served.output_bytes(checked), self.options.max_output_bytes
        if size > limit:
            raise ServeError(413, f"the outputs would be {size} bytes, over the limit of {limit} bytes "
                                  f"({flag(ServeOptions, 'max_output_mb')}); send fewer rows")
        queue = self.queues[(served.name, served.version)]
        t0 = time.perf_counter()
        try:
            out = await queue.submit(checked)
        except QueueFull as exc:
            self.metrics.inferences.labels(served.name, "queue_full").inc()
            raise ServeError(503, f"{exc}; retry later", {"Retry-After": "1"}) from None
        except rt.RuntimeModelError as exc:
            self.metrics.inferences.labels(served.name, "error").inc()
            raise ServeError(400, self.public(served, str(exc))) from None
        self.metrics.inferences.labels(served.name, "ok").inc()
        self.metrics.latency.labels(served.name).observe(time.perf_counter() - t0)
        return out


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body, refused with 413 past ``limit`` (Content-Length was checked by the guard;
    this also bounds chunked bodies)."""
    length = request.headers.get("content-length")
    body = bytearray()
    if length is not None and length.isdigit():
        body = bytearray(int(length))
        view, at = memoryview(body), 0
        async for chunk in request.stream():
            if at + len(chunk) > len(body):
                raise ServeError(400, "the body is longer than its Content-Length", {"Connection": "close"})
            view[at:at + len(chunk)] = chunk
            at += len(chunk)
        view.release()
        if at != len(body):
            raise ServeError(400, f"the body ended after {at} of {len(body)} bytes", {"Connection": "close"})
        return body
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ServeError(413, f"the body is over the limit of {limit} bytes "
                                  f"({flag(ServeOptions, 'max_body_mb')})", {"Connection": "close"})
    return body


def _path_model(request: Request) -> tuple[str, str | None]:
    p = request.path_params
    return p["name"], p.get("version")


def _tag(request: Request, route: str, model: str | None = None) -> None:
    request.scope["aetk.route"] = route
    if model is not None:
        request.scope["aetk.model"] = model


def create_app(options: ServeOptions, repository: Repository | None = None) -> Guard:
    """The ASGI application (guard + Starlette) for ``options``; loads the models unless given."""
    repository = repository if repository is not None else load_repository(options)
    metrics = Metrics()
    service = Service(repository, options, metrics)
    routes = protocol_routes() + convenience_routes()
    app = Starlette(routes=routes, lifespan=_lifespan, exception_handlers=ERROR_HANDLERS)
    app.state.service = service
    guard = Guard(app, max_body=options.max_body_bytes, timeout_s=options.request_timeout_s,
                  token=options.token(), metrics=metrics, log_requests=options.access_log)
    guard.service = service
    return guard


def _service(request: Request) -> Service:
    return request.app.state.service


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette):
    service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


# -- Open Inference Protocol -------------------------------------------------------------------
def protocol_routes() -> list[Route]:
    """/v2 (server metadata, health, repository index), /v2/models/... and /metrics."""
    routes = [Route("/v2", server_metadata), Route("/v2/health/live", live), Route("/v2/health/ready", ready),
              Route("/v2/repository/index", repository_index, methods=["POST"]),
              Route("/metrics", metrics_endpoint)]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, model_metadata), Route(base + "/ready", model_ready),
                   Route(base + "/config", model_config), Route(base + "/infer", infer, methods=["POST"])]
    return routes


async def server_metadata(request: Request) -> Response:
    _tag(request, "/v2")
    return _json_response({"name": "aetk", "version": aetk.__version__,
                           "extensions": ["binary_tensor_data", "model_configuration"]})


async def live(request: Request) -> Response:
    _tag(request, "/v2/health/live")
    ok = _service(request).live
    return _json_response({"live": ok}, 200 if ok else 503)


async def ready(request: Request) -> Response:
    _tag(request, "/v2/health/ready")
    service = _service(request)
    ok = service.ready and service.live
    return _json_response({"ready": ok}, 200 if ok else 503)


async def model_metadata(request: Request) -> Response:
    _tag(request, "/v2/models/metadata")
    served = _service(request).model(*_path_model(request))
    return _json_response(served.describe())


async def model_ready(request: Request) -> Response:
    _tag(request, "/v2/models/ready")
    service = _service(request)
    served = service.model(*_path_model(request))
    ok = service.ready and service.queues[(served.name, served.version)].alive
    return _json_response({"name": served.name, "ready": ok}, 200 if ok else 503)


async def model_config(request: Request) -> Response:
    _tag(request, "/v2/models/config")
    service = _service(request)
    options = service.options
    served = service.model(*_path_model(request))
    meta = served.describe()
    strip = lambda t: {**t, "dims": t["shape"][1:]}  # noqa: E731 (Triton's dims leave out the batch axis)
    props = {k: {"string_value": json.dumps(v) if not isinstance(v, str) else v}
             for k, v in served.metadata.to_props().items()} if hasattr(served.metadata, "to_props") else {}
    return _json_response({
        "name": served.name, "platform": served.platform, "max_batch_size": served.max_batch,
        "input": [strip(t) for t in meta["inputs"]], "output": [strip(t) for t in meta["outputs"]],
        "dynamic_batching": {"max_queue_delay_microseconds": int(options.max_queue_delay_ms * 1000),
                             "preferred_batch_size": list(options.preferred_batch)},
        "parameters": props})


async def repository_index(request: Request) -> Response:
    _tag(request, "/v2/repository/index")
    repository = _service(request).repository
    return _json_response([{"name": n, "version": v, "state": "READY"}
                           for n, vs in sorted(repository.models.items()) for v in vs])


async def infer(request: Request) -> Response:
    _tag(request, "/v2/models/infer")
    service = _service(request)
    served = service.model(*_path_model(request))
    request.scope["aetk.model"] = served.name
    req, body = await _infer_request(request, service.options)
    names = served.model.output_names
    for o in req.outputs:
        if o.name not in names:
            raise ServeError(400, f"model {served.name!r} has no output {o.name[:100]!r}; "
                                  f"it has {', '.join(names)}")
    outputs = await service.infer(served, req.inputs)
    if not req.outputs:
        chosen = [(n, outputs[n], req.binary_output) for n in names]
    else:
        chosen = [(o.name, outputs[o.name], req.binary_output if o.binary is None else o.binary)
                  for o in req.outputs]
    big_json = sum(a.nbytes for _, a, b in chosen if not b) > THREAD_THRESHOLD
    encode = (run_in_threadpool if big_json else _call)
    pieces, head_len = await encode(encode_infer_response, served.name, served.version, chosen, req.id)
    content = b"".join(pieces)
    del pieces, outputs, chosen, body
    if head_len is None:
        return Response(content, 200, media_type=JSON)
    return Response(content, 200, {"Inference-Header-Content-Length": str(head_len)}, media_type=OCTET)


async def _infer_request(request: Request, options: ServeOptions) -> tuple[InferRequest, bytearray]:
    """The parsed request (JSON and binary tensor data) and the body it was parsed from."""
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise ServeError(415, "compressed request bodies (Content-Encoding) are not accepted")
    header = request.headers.get(HEADER_LENGTH)
    header_length = None
    if header is not None:
        if not header.isdigit():
            raise ServeError(400, "Inference-Header-Content-Length must be a byte count")
        header_length = int(header)
    body = await read_body(request, options.max_body_bytes)
    json_size = len(body) if header_length is None else header_length
    if json_size > THREAD_THRESHOLD:
        req = await run_in_threadpool(parse_infer_request, body, header_length, options.max_json_bytes)
    else:
        req = parse_infer_request(body, header_length, options.max_json_bytes)
    return req, body


async def metrics_endpoint(request: Request) -> Response:
    _tag(request, "/metrics")
    service = _service(request)
    for (name, version), q in service.queues.items():
        service.metrics.queue_depth.labels(q.name).set(q.depth)
    data, ctype = service.metrics.exposition()
    return Response(data, 200, media_type=ctype)


# -- conveniences ------------------------------------------------------------------------------
def convenience_routes() -> list[Route]:
    """POST /encode, /decode, /reconstruct: .npy or {"inputs": ..., "raw": false}."""
    return [Route(p, convenience, methods=["POST"]) for p in CONVENIENCES]


async def convenience(request: Request) -> Response:
    path = request.url.path
    _tag(request, path)
    service = _service(request)
    graph = CONVENIENCES[path]
    served = service.graphs.get(graph)
    if served is None:
        raise ServeError(404, f"{path} is not served: MODEL_DIR has no single {graph} model "
                              f"(use /v2/models/{{name}}/infer)")
    request.scope["aetk.model"] = served.name
    x, raw, ctype = await _convenience_input(request, service.options)
    norm = _normalization(served)
    if raw and graph != "decoder":
        if x.dtype.kind not in "fiub":
            raise ServeError(400, f"inputs must be a real numeric array, got dtype {x.dtype}")
        x = np.ascontiguousarray(norm.apply(x), dtype=np.float32)
    out = await service.infer(served, {served.model.input_names[0]: x})
    names = served.model.output_names
    if graph == "encoder" and served.metadata.variational:
        result = {"mean": out.get("mean", out[names[0]]), "logvar": out.get("logvar", out[names[1]])}
    else:
        y = out[names[0]]
        result = {"outputs": norm.invert(y) if raw and graph != "encoder" else y}
    result = {k: np.asarray(v, dtype=np.float32) for k, v in result.items()}
    return _convenience_response(request, ctype, result)


async def _convenience_input(request: Request, options: ServeOptions) -> tuple[np.ndarray, bool, str]:
    """The array a convenience request sends (.npy or JSON), whether it is raw data, and its Content-Type."""
    body = await read_body(request, options.max_body_bytes)
    ctype = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
    if ctype == NPY:
        try:
            x = np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 (numpy raises several kinds)
            raise ServeError(400, f"the body is not a valid .npy array without pickles: {exc}") from None
        if not isinstance(x, np.ndarray):
            raise ServeError(400, "an application/x-npy body holds one array (.npy, not .npz)")
        raw = _bool(request.query_params.get("raw", "false"), "query parameter raw")
    elif ctype in (JSON, "text/json"):
        if len(body) > options.max_json_bytes:
            raise ServeError(413, f"the JSON body is over the limit of {options.max_json_bytes} bytes "
                                  f"({flag(ServeOptions, 'max_json_mb')}); send .npy")
        parse = run_in_threadpool if len(body) > THREAD_THRESHOLD else _call
        x, raw = await parse(_convenience_json, body)
    else:
        raise ServeError(415, f"Content-Type {ctype[:60]!r} is not supported; send {JSON} or {NPY}")
    return x, raw, ctype


def _convenience_response(request: Request, ctype: str, result: dict[str, np.ndarray]) -> Response:
    """.npy (one array) or .npz (mean and logvar) when asked for or sent, JSON otherwise."""
    accept = request.headers.get("accept", "")
    if NPY in accept or (ctype == NPY and JSON not in accept):
        buf = io.BytesIO()
        if len(result) == 1:
            np.save(buf, result["outputs"], allow_pickle=False)
            return Response(buf.getvalue(), 200, media_type=NPY)
        np.savez(buf, **result)
        return Response(buf.getvalue(), 200, media_type=NPZ)
    payload = ({"outputs": result["outputs"].tolist()} if len(result) == 1
               else {"outputs": {k: v.tolist() for k, v in result.items()}})
    return _json_response(payload)


# -- errors ------------------------------------------------------------------------------------
async def serve_error(request: Request, exc: ServeError) -> Response:
    return _json_response({"error": exc.message}, exc.status, exc.headers)


async def protocol_error(request: Request, exc: ProtocolError) -> Response:
    return _json_response({"error": str(exc)}, exc.status)


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        message = f"no endpoint {request.url.path[:200]}; the API is under /v2 (GET /v2/models/{{name}})"
    elif exc.status_code == 405:
        message = f"{request.method} {request.url.path[:200]} is not allowed; use {exc.headers.get('Allow', '')}"
    else:
        message = exc.detail
    headers = dict(exc.headers or {})
    if request.method == "POST":
        headers["Connection"] = "close"  # the body was not read
    return _json_response({"error": message}, exc.status_code, headers)


async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
    request.scope["aetk.note"] = "client disconnected"
    return Response(b"", 499)


async def unexpected(request: Request, exc: Exception) -> Response:
    return _json_response({"error": f"internal error: {type(exc).__name__}"}, 500)


ERROR_HANDLERS = {ServeError: serve_error, ProtocolError: protocol_error, HTTPException: http_error,
                  ClientDisconnect: disconnected, Exception: unexpected}


async def _call(fn, *args):
    return fn(*args)


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ServeError(400, f"{what} must be true or false, got {str(value)[:40]!r}")


def _convenience_json(body: bytes) -> tuple[np.ndarray, bool]:
    try:
        doc = json.loads(bytes(body))
    except RecursionError:
        raise ServeError(400, "invalid JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServeError(400, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise ServeError(400, 'the JSON body must be an object {"inputs": [...], "raw": false}')
    unknown = sorted(set(doc) - {"inputs", "raw"})
    if unknown:
        raise ServeError(400, f"unknown keys {unknown[:5]}; the body takes 'inputs' and 'raw'")
    if not isinstance(doc["inputs"], list):
        raise ServeError(400, f"'inputs' must be a (nested) list of numbers, got {type(doc['inputs']).__name__}")
    try:
        x = np.array(doc["inputs"])
    except (ValueError, TypeError, RecursionError) as exc:
        raise ServeError(400, f"'inputs' is not a rectangular list of numbers ({exc})") from None
    if x.dtype.kind not in "biuf":
        raise ServeError(400, f"'inputs' must be a real numeric array, got dtype {x.dtype}")
    return x, _bool(doc.get("raw", False), "'raw'")


@functools.lru_cache(maxsize=64)
def _normalization_of(text: str) -> Normalization:
    return Normalization.from_dict(json.loads(text))


def _normalization(served: ServedModel) -> Normalization:
    return _normalization_of(json.dumps(served.metadata.normalization, sort_keys=True))


def app_from_environment() -> Guard:
    """uvicorn's factory for ``--workers N``: the options come in AETK_SERVE_OPTIONS (JSON)."""
    from .server import options_from_environment

    return create_app(options_from_environment())


__all__ = ["Service", "ServeError", "app_from_environment", "create_app"]
