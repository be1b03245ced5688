"""The ASGI layer in front of the app: everything decided from a request's head, plus the
whole-request timeout, the access log and the request metrics.

* Methods other than GET, HEAD and POST: 405 (JSON), before any body is read.
* Two Content-Length headers, or Content-Length with Transfer-Encoding: 400 (the
  request-smuggling shapes; uvicorn's httptools parser refuses most of them first).
* Content-Length over ``--max-body-mb``: 413 at once, and the connection is closed (after
  reading and dropping what the client still sends, up to the limit + 16 MiB or 2 s, so a
  client that sends its whole body before reading sees the 413, not a reset).
* A bearer token, when one is configured (``/v2/health/*`` stays open for probes): 401.
* ``--request-timeout`` for the whole exchange: 408 while the body is still arriving,
  504 after; a request whose answer has started is cut off.
* One JSON access-log line per request; a client that hangs up is one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback

from aetk.options import flag

from .metrics import Metrics
from .options import ServeOptions

ALLOWED_METHODS = ("GET", "HEAD", "POST")
DRAIN_SECONDS = 2.0  # after an early answer, how long (and, beyond --max-body-mb, how many bytes)
DRAIN_EXTRA_BYTES = 16 * 2**20  # the rest of the body is read and dropped before closing
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
_timeout = getattr(asyncio, "timeout", None)
access_log = logging.getLogger("aetk.serve.access")
error_log = logging.getLogger("aetk.serve.error")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[dict, bytes]:
    body = json.dumps({"error": message}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": head}, body


class _Exchange:
    """One request as the guard sees it: what came in, what went out, and why it ended."""

    def __init__(self, scope, receive, send, drain) -> None:
        self.t0 = time.perf_counter()
        self.scope, self._receive, self._send, self._drain = scope, receive, send, drain
        self.status: int | None = None
        self.bytes_out = self.bytes_in = 0
        self.body_done, self.no_drain = False, False
        self.note: str | None = None
        self.expects_body = any((n == b"content-length" and v.strip() not in (b"0", b""))
                                or n == b"transfer-encoding" for n, v in scope["headers"])

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.request":
            self.bytes_in += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.note = self.note or "client disconnected"
        return message

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
            if not message.get("more_body", False) and self.expects_body and not self.body_done \
                    and not self.no_drain:
                # Answered before the body was read (413, 405, ...): closing now would reset
                # the connection under a client still sending, and it would never see the
                # answer. So send it, read and drop what follows (bounded), then finish.
                await self._send({**message, "more_body": True})
                await self._drain(self.receive)
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        await self._send(message)

    async def refuse(self, status: int, message: str, headers: dict | None = None) -> None:
        start, body = json_error(status, message, headers)
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body if self.scope["method"] != "HEAD" else b""})

    def record(self) -> dict:
        """The access-log line."""
        scope = self.scope
        client = scope.get("client") or ("-", 0)
        record = {"ts": round(time.time(), 3), "client": f"{client[0]}:{client[1]}", "method": scope["method"],
                  "path": scope["path"], "status": self.status or 499,
                  "ms": round((time.perf_counter() - self.t0) * 1000, 3), "bytes_in": self.bytes_in,
                  "bytes_out": self.bytes_out}
        if "aetk.model" in scope:
            record["model"] = scope["aetk.model"]
        if self.note:
            record["note"] = self.note
        return record


class Guard:
    def __init__(self, app, *, max_body: int, timeout_s: float, token: str | None, metrics: Metrics,
                 log_requests: bool = True) -> None:
        self.app, self.max_body, self.timeout_s = app, max_body, timeout_s
        self.token = token.encode() if token else None
        self.metrics, self.log_requests = metrics, log_requests

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self._drain)
        self.metrics.in_flight.inc()
        try:
            refusal = self._check_head(scope)
            if refusal is not None:
                await exchange.refuse(*refusal)
                return
            await self._run(exchange)
        except (ConnectionError, OSError) as exc:
            exchange.note = f"connection lost: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 (a bug: log it, keep serving)
            if exchange.status is None:
                await exchange.refuse(500, f"internal error: {type(exc).__name__}")
            error_log.error("internal error on %s %s\n%s", scope["method"], scope["path"], traceback.format_exc())
        finally:
            self.metrics.in_flight.dec()
            self._count(exchange)

    async def _run(self, exchange: _Exchange) -> None:
        """The app, within ``--request-timeout``: 408 while the body is still arriving, 504 after."""
        scope = exchange.scope
        try:
            if _timeout is not None:  # Python 3.11+: no extra task per request
                async with _timeout(self.timeout_s):
                    await self.app(scope, exchange.receive, exchange.send)
            else:
                await asyncio.wait_for(self.app(scope, exchange.receive, exchange.send), self.timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            exchange.note = "timed out"
            if exchange.status is None:
                timeout = flag(ServeOptions, "request_timeout_s")
                if not exchange.body_done and scope["method"] == "POST":
                    exchange.no_drain = True  # a slow client: do not wait for it any longer
                    await exchange.refuse(408, f"the request body did not arrive within {self.timeout_s:g} s "
                                               f"({timeout})", {"Connection": "close"})
                else:
                    await exchange.refuse(504, f"no answer within {self.timeout_s:g} s ({timeout})")

    def _count(self, exchange: _Exchange) -> None:
        """The request metrics and, when asked for, the access-log line."""
        status = exchange.status or 499  # nginx's "client closed request"
        route = exchange.scope.get("aetk.route", "other")
        self.metrics.requests.labels(route, str(status)).inc()
        if self.log_requests:
            access_log.info(json.dumps(exchange.record()))

    async def _drain(self, receive) -> None:
        loop = asyncio.get_running_loop()
        budget, deadline = self.max_body + DRAIN_EXTRA_BYTES, loop.time() + DRAIN_SECONDS
        while budget > 0:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), left)
            except (asyncio.TimeoutError, TimeoutError):
                return
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _check_head(self, scope) -> tuple | None:
        method = scope["method"]
        if method not in ALLOWED_METHODS:
            return 405, f"method {method[:20]} is not allowed; use {', '.join(ALLOWED_METHODS)}", {
                "Allow": ", ".join(ALLOWED_METHODS), "Connection": "close"}
        lengths, chunked, auth = [], False, None
        for name, value in scope["headers"]:
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                auth = value
        if len(lengths) > 1:
            return 400, "the request has more than one Content-Length header", {"Connection": "close"}
        if lengths and chunked:
            return 400, "the request has both Content-Length and Transfer-Encoding", {"Connection": "close"}
        if lengths:
            try:
                n = int(lengths[0])
            except ValueError:
                return 400, "Content-Length is not a byte count", {"Connection": "close"}
            if n > self.max_body:
                return 413, (f"the body of {n} bytes is over the limit of {self.max_body} bytes "
                             f"({flag(ServeOptions, 'max_body_mb')})"), {"Connection": "close"}
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            if auth is None or not auth.startswith(b"Bearer ") or not hmac.compare_digest(auth[7:].strip(), self.token):
                return 401, "a valid bearer token is required (Authorization: Bearer ...)", {
                    "WWW-Authenticate": "Bearer"}
        return None


__all__ = ["ALLOWED_METHODS", "Guard", "json_error"]
