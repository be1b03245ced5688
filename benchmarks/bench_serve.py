"""Serving speed of ``aetk serve`` (uvicorn + Starlette, Open Inference Protocol): throughput
and p50 / p99 latency at concurrency 1, 8 and 64, with dynamic batching on and off, against
calling ``aetk.runtime`` in-process and the old ``deploy/server.py`` (``--old``, from git history).

One run, one model, one machine: a ``conv`` autoencoder for Fashion-MNIST-sized images
(1 x 28 x 28, channels 32/64, 30-d code), untrained (speed does not depend on the weights),
exported with ``aetk export``; the requests are one image each to its encoder, sent as
binary tensor data (``/v2/models/encoder/infer``; the old server: an .npy body to ``/encode``).
Every server runs in its own process; the clients are asyncio keep-alive connections in this
process (one per concurrent request), so on a small machine client and server share the CPUs:
read the figures as a lower bound of what the server does alone.

    .venv/bin/python benchmarks/bench_serve.py              # 5 s per cell
    .venv/bin/python benchmarks/bench_serve.py --seconds 2  # quicker
    .venv/bin/python benchmarks/bench_serve.py --device cuda
    git show 81cbcdd:deploy/server.py > /tmp/old_server.py
    .venv/bin/python benchmarks/bench_serve.py --old /tmp/old_server.py  # + the http.server one

Targets: batching >= 3x the throughput of no batching at concurrency 64, and serving overhead
(p50 at concurrency 1 minus the in-process call's p50) under 1 ms per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aetk.serve.protocol import encode_infer_request  # noqa: E402


def export_conv(folder: Path, size: int = 28) -> Path:
    import torch

    from aetk.export import export_model
    from aetk.models import create_model

    torch.manual_seed(0)
    model = create_model("conv", (1, size, size), channels=[32, 64], code_size=30).eval()
    export_model(model, folder, real_batch=torch.rand(8, 1, size, size))
    return folder


# -- a small keep-alive HTTP/1.1 client ---------------------------------------------------------
async def _exchange(reader, writer, head: bytes, body: bytes) -> int:
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _load(port: int, path: str, body: bytes, headers: dict, concurrency: int, seconds: float):
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    latencies: list[float] = []
    errors = [0]

    async def worker(deadline_holder):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(3):  # warm the connection
                await _exchange(reader, writer, head, body)
            await start.wait()
            while time.perf_counter() < deadline_holder[0]:
                t = time.perf_counter()
                status = await _exchange(reader, writer, head, body)
                if status != 200:
                    errors[0] += 1
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    start = asyncio.Event()
    deadline = [float("inf")]
    tasks = [asyncio.create_task(worker(deadline)) for _ in range(concurrency)]
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"rps": len(lat) / wall, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": errors[0]}


def load(port, path, body, headers, concurrency, seconds):
    return asyncio.run(_load(port, path, body, headers, concurrency, seconds))


# -- servers ---------------------------------------------------------------------------------
class Server:
    def __init__(self, argv: list[str], env=None):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.log.seek(0)
            raise RuntimeError(f"server did not start: {line!r} {self.log.read().decode()[-2000:]}")
        self.port = int(m.group(1))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.proc.stdout.close()


def aetk_serve(folder: Path, device: str, batching: bool) -> Server:
    argv = [sys.executable, "-m", "aetk.cli.main", "serve", str(folder), "--port", "0", "--device", device,
            "--no-access-log", "--max-queue", "4096"]
    argv += ["--max-batch", "64", "--max-queue-delay-ms", "1"] if batching else ["--max-batch", "1"]
    return Server(argv)


def old_server(script: Path | None):
    def start(folder: Path, device: str, batching: bool) -> Server | None:
        if script is None or not script.is_file():
            return None
        argv = [sys.executable, str(script), str(folder), "--port", "0", "--quiet", "--device", device]
        argv += ["--max-batch", "64", "--max-wait-ms", "1"] if batching else ["--max-batch", "1", "--max-wait-ms", "0"]
        return Server(argv, env=os.environ | {"PYTHONPATH": str(ROOT)})
    return start


def in_process(folder: Path, device: str, x: np.ndarray, seconds: float) -> dict:
    import aetk.runtime as rt

    enc = rt.load_export(folder, device=device).graph("encoder")
    for _ in range(20):
        enc.run(x)
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        enc.run(x)
        lat.append(time.perf_counter() - t)
    lat = np.array(lat) * 1000
    return {"rps": len(lat) / lat.sum() * 1000, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": 0}


def per_call_costs(folder: Path, device: str, x: np.ndarray, rows: int = 64, seconds: float = 1.0) -> dict:
    """In process, what batching amortizes: the encoder's call on 1 row, its cost per row in
    a ``rows``-row call, and one executor round trip (run_in_executor of a no-op, as the
    batcher hands each call over)."""
    import aetk.runtime as rt

    enc = rt.load_export(folder, device=device).graph("encoder")

    def timed(fn) -> float:
        for _ in range(10):
            fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        return (time.perf_counter() - t0) / n * 1000

    big = np.repeat(x, rows, axis=0)
    one, many = timed(lambda: enc.run(x)), timed(lambda: enc.run(big)) / rows

    async def round_trips() -> float:
        from concurrent.futures import ThreadPoolExecutor

        loop, pool = asyncio.get_running_loop(), ThreadPoolExecutor(1)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await loop.run_in_executor(pool, int)
            n += 1
        pool.shutdown()
        return (time.perf_counter() - t0) / n * 1000

    try:
        import uvloop  # what uvicorn runs on when it is installed (the serve extra)

        hop = uvloop.run(round_trips())
    except ImportError:
        hop = asyncio.run(round_trips())
    return {"one": one, "per_row": many, "hop": hop}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--model", type=Path, default=None, help="an export folder (default: export a conv model)")
    p.add_argument("--old", type=Path, default=None,
                   help="the old deploy/server.py to compare with (removed from the tree; get it with "
                        "`git show 81cbcdd:deploy/server.py > /tmp/old_server.py`)")
    p.add_argument("--size", type=int, default=28, help="image height and width (default 28: Fashion-MNIST)")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    tmp = tempfile.TemporaryDirectory()
    folder = args.model or export_conv(Path(tmp.name) / "conv", args.size)
    x = np.random.default_rng(0).random((1, 1, args.size, args.size), dtype=np.float32)
    v2_body, hl = encode_infer_request({"x": x}, binary=True, binary_output=True)
    v2_headers = {"Inference-Header-Content-Length": str(hl), "Content-Type": "application/octet-stream"}
    buf = io.BytesIO()
    np.save(buf, x)
    npy_body, npy_headers = buf.getvalue(), {"Content-Type": "application/x-npy"}

    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; device {args.device}; {args.seconds:g} s per cell; "
          f"conv encoder on 1 x {args.size} x {args.size} images")
    rows = []
    base = in_process(folder, args.device, x, args.seconds)
    rows.append(("aetk.runtime in-process", "-", 1, base))
    servers = [("aetk serve", aetk_serve, "/v2/models/encoder/infer", v2_body, v2_headers)]
    if args.old is not None:
        servers.append(("old deploy/server.py", old_server(args.old), "/encode", npy_body, npy_headers))
    for name, start, path, body, headers in servers:
        for batching in (False, True):
            server = start(folder, args.device, batching)
            if server is None:
                continue
            try:
                for c in levels:
                    r = load(server.port, path, body, headers, c, args.seconds)
                    rows.append((name, "on" if batching else "off", c, r))
                    print(f"  {name:24s} batching {'on ' if batching else 'off'} c={c:<3d} "
                          f"{r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms", flush=True)
            finally:
                server.stop()

    print()
    print("| server | batching | concurrency | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, batching, c, r in rows:
        print(f"| {name} | {batching} | {c} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {r['errors']} |")
    get = {(n, b, c): r for n, b, c, r in rows}
    on, off = get.get(("aetk serve", "on", 64)), get.get(("aetk serve", "off", 64))
    if on and off:
        ratio = on["rps"] / off["rps"]
        print(f"\nbatching at concurrency 64: {ratio:.2f}x the throughput of no batching (target >= 3x: "
              f"{'met' if ratio >= 3 else 'MISSED'})")
        costs = per_call_costs(folder, args.device, x)
        print(f"  in process: the encoder on 1 row {costs['one']:.3f} ms, {costs['per_row']:.4f} ms a row in a "
              f"64-row call; an executor round trip {costs['hop']:.3f} ms; a request without batching "
              f"{1000 / off['rps']:.3f} ms of the whole machine")
        t_on, t_off = 1000 / on["rps"], 1000 / off["rps"]
        saved = t_off - t_on
        print(f"  a request costs {t_on:.3f} ms of the whole machine (client included) with batching, {t_off:.3f} ms "
              f"without: batching saves {saved:.3f} ms a request. For 3x, the rest of a request (HTTP, the "
              f"protocol, the client) would have to cost under {saved / 2:.3f} ms")
    one = get.get(("aetk serve", "off", 1))
    if one:
        overhead = one["p50"] - base["p50"]
        print(f"serving overhead at concurrency 1 (batching off, p50 minus in-process p50): {overhead:.3f} ms "
              f"(target < 1 ms: {'met' if overhead < 1 else 'MISSED'})")
    one_on = get.get(("aetk serve", "on", 1))
    if one_on:
        print(f"  with batching on (includes up to --max-queue-delay-ms 1): {one_on['p50'] - base['p50']:.3f} ms")
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
