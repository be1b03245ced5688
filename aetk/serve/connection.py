"""The HTTP/1.1 connection: uvicorn's httptools protocol with two bounds it lacks, applied
while a request's head (request line and headers) is arriving:

* size: a head over ``HEAD_LIMIT`` bytes gets 431 and the connection is closed (uvicorn
  keeps every header in memory, with no limit of its own);
* time: a head not complete within ``--request-timeout`` closes the connection (uvicorn
  starts no timer before the first request, and a trickled head would hold its connection
  forever). Connections cost memory, never a thread; this bounds that memory and time.

Once the head is complete, the Guard (guard.py) bounds the body and the whole request.

It also sends each response's head and body in one write (``OneWriteHead``): uvicorn writes
the status line and headers as soon as the response starts, then the body, so every small
response cost two socket writes and woke the client twice.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_LIMIT = 64 * 1024  # bytes of request line and headers (beyond the first read: see data_received)
JOIN_LIMIT = 64 * 1024  # a larger body is written after its head, not with it: asyncio's writelines copies


class OneWriteHead:
    """The connection's transport as a response sees it: the write of the response head
    (armed by ``hold_next``, as the response starts) is held and goes out with the next write
    (the body) as one ``writelines`` (a body over ``JOIN_LIMIT``: right after it); anything
    else written (an interim ``100 Continue``) goes at once, and a flush or close sends what
    is held (a body-less answer: 204, 304)."""

    def __init__(self, transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._hold_next = False

    def hold_next(self) -> None:
        self._hold_next = True

    def write(self, data: bytes) -> None:
        if self._hold_next:
            self._hold_next, self._held = False, data
            return
        self.flush(data)

    def flush(self, data: bytes = b"") -> None:
        held, self._held = self._held, None
        if held is None:
            if data:
                self._transport.write(data)
        elif self._transport.is_closing():
            return
        elif data and len(data) <= JOIN_LIMIT:
            self._transport.writelines([held, data])
        else:
            self._transport.write(held)
            if data:
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):  # is_closing, get_extra_info, ...: the real transport's
        return getattr(self._transport, name)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn.Config(http="aetk.serve.connection:BoundedHeadProtocol"); the head timeout is
    the config's ``aetk_head_timeout_s`` (an attribute, so that it travels to --workers)."""

    head_limit = HEAD_LIMIT

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timeout_s = float(getattr(self.config, "aetk_head_timeout_s", 60.0))
        self._head_timer = None
        self._begun_now = False
        self._start_head()

    def _start_head(self) -> None:
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _stop_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._start_head()
        self._begun_now = True

    def on_headers_complete(self) -> None:
        self._stop_head()
        before = getattr(self, "cycle", None)
        super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        # HEAD: no body will follow the head, and the guard may drain an unread request body
        # (seconds) before it finishes the response, so its head goes at once
        if cycle is not None and cycle is not before and cycle.scope["method"] != "HEAD":
            cycle.transport = head = OneWriteHead(self.transport)
            finished, send = cycle.on_response, cycle.send

            async def send_holding_the_head(message) -> None:  # the app's send for this request
                if message["type"] == "http.response.start":
                    head.hold_next()
                await send(message)

            def on_response() -> None:  # this cycle's: pipelined requests have their own
                head.flush()  # a response without a body write (204, 304)
                finished()

            cycle.send, cycle.on_response = send_holding_the_head, on_response

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # between requests uvicorn's keep-alive timeout applies; the next head starts its own clock

    def data_received(self, data: bytes) -> None:
        self._begun_now = False
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if not self._begun_now:  # the read that began a head is not counted: it may hold a body's end
            self._head_bytes += len(data)
        if self._head_bytes > self.head_limit:
            self._stop_head()
            body = json.dumps({"error": f"the request head is over {self.head_limit} bytes"}).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                 b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._stop_head()
        super().connection_lost(exc)


__all__ = ["HEAD_LIMIT", "JOIN_LIMIT", "BoundedHeadProtocol", "OneWriteHead"]
