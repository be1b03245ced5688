"""aetk.pipeline: the one read-ahead / write-behind pipeline of compress, decompress and denoise."""

from __future__ import annotations

import threading
import time

import pytest

from aetk.pipeline import Pipeline


def _no_pipeline_threads(name: str) -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith(name)]


def test_reads_come_back_in_order_and_writes_run_in_order():
    written = []

    def slow_read(i):
        time.sleep(0.01 * (i % 3))  # later items can finish first in a pool of 3
        return i * i

    with Pipeline(readers=3, writers=1, ahead=4, behind=2, name="t-order") as pipe:
        seen = []
        for item, read in pipe.read(range(20), slow_read):
            seen.append((item, read.result()))
            pipe.write(written.append, item)
    assert seen == [(i, i * i) for i in range(20)]
    assert written == list(range(20))
    assert _no_pipeline_threads("t-order")


def test_reads_run_ahead_but_no_more_than_ahead():
    started = []

    def read(i):
        started.append(i)
        return i

    with Pipeline(readers=2, ahead=3, name="t-ahead") as pipe:
        it = pipe.read(range(100), read)
        next(it)
        time.sleep(0.2)  # the readers have had time to run ahead
        assert 3 <= len(started) <= 4  # the one held and at most 3 ahead
        assert [i for i, _ in it] == list(range(1, 100))


def test_a_read_error_reaches_the_caller_at_result():
    def read(i):
        if i == 3:
            raise OSError("disk gone")
        return i

    got = []
    with pytest.raises(OSError, match="disk gone"):
        with Pipeline(name="t-readerr") as pipe:
            for _, fut in pipe.read(range(10), read):
                got.append(fut.result())
    assert got == [0, 1, 2]
    assert _no_pipeline_threads("t-readerr")


def test_a_failing_writer_stops_the_reader_and_skips_queued_writes():
    reads, writes = [], []
    gate = threading.Event()

    def read(i):
        reads.append(i)
        return i

    def write(i):
        if i == 2:
            gate.wait(5)
            raise RuntimeError("write failed")
        writes.append(i)

    with pytest.raises(RuntimeError, match="write failed"):
        with Pipeline(readers=1, writers=1, ahead=2, behind=3, name="t-writeerr") as pipe:
            for item, fut in pipe.read(range(1000), read):
                pipe.write(write, fut.result())
                if item == 4:
                    gate.set()  # writes 3 and 4 are queued behind the failing one
    assert writes == [0, 1], "writes queued behind the failed one were skipped"
    assert len(reads) < 20, f"the reader went on after the writer failed ({len(reads)} reads)"
    assert _no_pipeline_threads("t-writeerr")


def test_writes_with_done_are_judged_by_the_caller_in_order():
    outcomes = []

    def write(i):
        if i % 2:
            raise ValueError(f"odd {i}")
        return i

    def done(fut):
        outcomes.append(repr(fut.exception()) if fut.exception() else fut.result())

    with Pipeline(writers=3, behind=2, name="t-done") as pipe:
        for i in range(6):
            pipe.write(write, i, done=done)
    assert outcomes == [0, "ValueError('odd 1')", 2, "ValueError('odd 3')", 4, "ValueError('odd 5')"]


def test_a_failure_in_the_caller_skips_queued_writes_and_joins_the_threads():
    ran = []
    gate = threading.Event()

    def write(i):
        gate.wait(5)
        ran.append(i)

    with pytest.raises(KeyError):
        with Pipeline(writers=1, behind=10, name="t-caller") as pipe:
            for i in range(5):
                pipe.write(write, i)
            gate.set()
            raise KeyError("compute failed")
    assert ran in ([], [0]), "at most the write already running finishes"
    assert _no_pipeline_threads("t-caller")


def test_a_failed_write_ends_the_reads_at_the_next_step():
    gate = threading.Event()

    def read(i):
        if i > 0:
            gate.wait(5)
        return i

    def fail(_):
        raise RuntimeError("first")

    pipe = Pipeline(readers=1, writers=1, ahead=3, behind=5, name="t-why")
    reads = pipe.read(range(10), read)
    _, first = next(reads)
    pipe.write(fail, first.result())
    time.sleep(0.1)  # the write has failed; reads 1.. are queued behind the gate
    gate.set()
    with pytest.raises(RuntimeError, match="first"):
        next(reads)
    with pytest.raises(RuntimeError, match="first"):
        pipe.__exit__(None, None, None)
    assert _no_pipeline_threads("t-why")
