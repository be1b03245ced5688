"""aetk serve's parts without HTTP: the batch queue (max batch, max delay, preferred sizes,
shapes kept apart, a full queue, a failing batch), ServeOptions' checks (each names its flag),
and the message when the serving packages are missing."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest

from aetk.serve.batching import ModelQueue, QueueFull, _Item
from aetk.serve.options import ServeOptionError, ServeOptions, flag


def _run(calls):
    def run(feeds):
        x = feeds["x"]
        calls.append(len(x))
        return {"y": x * 2}
    return run


def _x(rows, cols=3, value=1.0):
    return {"x": np.full((rows, cols), value, np.float32)}


async def _submit_all(queue, feeds_list):
    return await asyncio.gather(*(queue.submit(f) for f in feeds_list), return_exceptions=True)


def test_a_full_batch_runs_at_once_and_each_request_gets_its_rows():
    calls = []

    async def main():
        q = ModelQueue("m", _run(calls), max_batch=6, max_delay_s=10.0)
        q.start()
        t0 = time.monotonic()
        out = await _submit_all(q, [_x(2, value=i) for i in range(3)])
        took = time.monotonic() - t0
        await q.stop()
        return out, took

    out, took = asyncio.run(main())
    assert took < 5 and calls == [6]  # did not wait out the 10 s delay
    for i, o in enumerate(out):
        np.testing.assert_array_equal(o["y"], np.full((2, 3), 2.0 * i))


def test_preferred_batch_sizes_run_before_the_delay():
    calls = []

    async def main():
        q = ModelQueue("m", _run(calls), max_batch=64, max_delay_s=10.0, preferred=(4,))
        q.start()
        t0 = time.monotonic()
        await _submit_all(q, [_x(1) for _ in range(4)])
        took = time.monotonic() - t0
        await q.stop()
        return took

    assert asyncio.run(main()) < 5 and calls == [4]


def test_the_delay_bounds_the_wait_and_shapes_stay_apart():
    calls = []

    async def main():
        q = ModelQueue("m", _run(calls), max_batch=64, max_delay_s=0.2)
        q.start()
        t0 = time.monotonic()
        out = await _submit_all(q, [_x(1), _x(2, cols=5), _x(3), _x(1, cols=5)])
        took = time.monotonic() - t0
        await q.stop()
        return out, took

    out, took = asyncio.run(main())
    assert 0.15 < took < 5
    assert sorted(calls) == [3, 4]  # 1 + 3 rows of width 3, 2 + 1 rows of width 5
    assert [o["y"].shape for o in out] == [(1, 3), (2, 5), (3, 3), (1, 5)]


def test_a_fired_timer_runs_the_batch_even_if_the_clock_reads_early():
    """Event-loop timers tick in whole milliseconds and can fire before time.monotonic()
    reaches the deadline; the batch must run then, not re-arm sub-millisecond timers."""
    async def main():
        q = ModelQueue("m", _run([]), max_batch=64, max_delay_s=0.001)
        q._items.append(_Item(_x(1), asyncio.get_running_loop().create_future()))
        first = q._items[0]
        early = first.t0 + 0.0005  # the clock still short of the deadline
        waiting = q._form(early)
        fired = q._form(early, expired=True)
        return waiting, fired, first

    waiting, fired, first = asyncio.run(main())
    assert waiting is None and fired == [first]


def test_a_full_queue_refuses_and_a_failing_batch_fails_only_its_requests():
    def run(feeds):
        if (feeds["x"] < 0).any():
            raise ValueError("negative")
        return {"y": feeds["x"]}

    async def main():
        q = ModelQueue("m", run, max_batch=2, max_delay_s=0.3, max_queue=2)
        q.start()
        out = await _submit_all(q, [_x(1, value=-1), _x(1), _x(1)])
        after = await q.submit(_x(1, value=5))
        await q.stop()
        return out, after

    out, after = asyncio.run(main())
    assert isinstance(out[0], ValueError) and isinstance(out[1], ValueError)  # one batch of two
    assert isinstance(out[2], QueueFull) and "--max-queue" in str(out[2])
    np.testing.assert_array_equal(after["y"], np.full((1, 3), 5.0))


def test_options_name_their_flags(tmp_path):
    o = ServeOptions(tmp_path)
    assert o.host == "127.0.0.1" and o.max_body_bytes == 64 * 2**20 and o.token() is None
    for field, value in (("max_batch", 0), ("max_queue", 0), ("workers", 0), ("port", 70000),
                         ("max_queue_delay_ms", -1.0), ("max_body_mb", 0.0), ("request_timeout_s", 0.0),
                         ("precision", "int4"), ("threads", 0)):
        with pytest.raises(ServeOptionError, match=flag(field)):
            dataclasses.replace(o, **{field: value})
    with pytest.raises(ServeOptionError, match="--preferred-batch"):
        ServeOptions(tmp_path, max_batch=8, preferred_batch=(16,))
    with pytest.raises(ServeOptionError, match="not both"):
        ServeOptions(tmp_path, token_env="X", token_file=tmp_path / "t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.port = 1  # type: ignore[misc]


def test_tokens_from_the_environment_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AETK_TEST_TOKEN", " abc \n")
    assert ServeOptions(tmp_path, token_env="AETK_TEST_TOKEN").token() == "abc"
    monkeypatch.delenv("AETK_TEST_TOKEN")
    with pytest.raises(ServeOptionError, match="--token-env AETK_TEST_TOKEN"):
        ServeOptions(tmp_path, token_env="AETK_TEST_TOKEN").token()
    (tmp_path / "t").write_text("xyz\n")
    assert ServeOptions(tmp_path, token_file=tmp_path / "t").token() == "xyz"
    (tmp_path / "e").write_text("\n")
    with pytest.raises(ServeOptionError, match="is empty"):
        ServeOptions(tmp_path, token_file=tmp_path / "e").token()


def test_missing_packages_say_what_to_install(monkeypatch):
    import importlib.util

    from aetk.serve import server

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(ServeOptionError, match=r"needs uvicorn: pip install 'aetk\[serve\]'"):
        server.require_dependencies()


class _Transport:
    def __init__(self):
        self.calls, self.closed = [], False

    def write(self, data):
        self.calls.append(("write", data))

    def writelines(self, parts):
        self.calls.append(("writelines", list(parts)))

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True
        self.calls.append(("close",))

    def get_extra_info(self, name):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_a_response_head_goes_out_with_its_body_in_one_write():
    from aetk.serve.connection import OneWriteHead

    t = _Transport()
    w = OneWriteHead(t)
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # not armed: an interim answer goes at once
    assert t.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    w.hold_next()  # the response starts
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(t.calls) == 1  # the head is held for the body
    w.write(b"body")
    w.write(b"more")  # a streamed body's later parts go straight through
    w.flush()
    assert t.calls[1:] == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"]), ("write", b"more")]
    assert w.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the real transport's

    t = _Transport()
    w = OneWriteHead(t)
    w.hold_next()
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body write follows (HEAD, 204)
    w.flush()
    assert t.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\n")]

    t = _Transport()
    w = OneWriteHead(t)
    w.hold_next()
    w.write(b"head")
    w.close()  # Connection: close right after a body-less response: the head still goes first
    assert t.calls == [("write", b"head"), ("close",)]


def test_served_sessions_do_not_spin(tmp_path):
    """ONNX Runtime's idle threads busy-wait by default; a server's would take the CPU from
    its event loop (bench_serve: +25-30% requests/s at concurrency 64 with batching)."""
    import torch

    from aetk.export import export_model
    from aetk.models import create_model
    from aetk.serve.repository import load_repository

    torch.manual_seed(0)
    export_model(create_model("ae", (6,), code_size=2).eval(), tmp_path / "out")
    repo = load_repository(ServeOptions(model_dir=tmp_path / "out", threads=1))
    sessions = [v.model.session for versions in repo.models.values() for v in versions.values()]
    assert sessions
    for s in sessions:
        assert s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_accepted_connections_do_not_wait_for_acks_on_asyncios_loop():
    """asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP, and a
    connection accepted on ``bind``'s socket has its proto. With Nagle on, a response written
    while the previous one was not yet acknowledged (pipelined requests) waited ~44 ms for the
    client's delayed ACK."""
    import socket

    from aetk.serve.server import bind

    async def main():
        sock = bind("127.0.0.1", 0)
        made = asyncio.get_running_loop().create_future()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport):
                made.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Protocol, sock=sock)
        try:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            nodelay = await asyncio.wait_for(made, 10)
            writer.close()
        finally:
            server.close()
        return nodelay

    loop = asyncio.SelectorEventLoop()  # asyncio's own loop (uvloop sets TCP_NODELAY itself)
    try:
        assert loop.run_until_complete(main()) != 0
    finally:
        loop.close()


def test_a_large_body_is_not_copied_to_join_its_head():
    """asyncio's transports (Python 3.11) write ``writelines(parts)`` as ``write(b"".join(parts))``:
    joining a large body to its head copied it whole (a 60 MiB answer: +60 MiB peak memory)."""
    from aetk.serve.connection import OneWriteHead

    t = _Transport()
    w = OneWriteHead(t)
    body = bytes(4 * 2**20)
    w.hold_next()
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    w.write(body)
    assert [c[0] for c in t.calls] == ["write", "write"]
    assert t.calls[0][1] == b"HTTP/1.1 200 OK\r\n\r\n" and t.calls[1][1] is body
