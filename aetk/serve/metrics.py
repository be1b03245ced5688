"""Prometheus metrics (``GET /metrics``), on a private registry so that several apps in one
process (the tests) do not collide.

With ``--workers N`` a scrape reaches one worker, so each must answer for all of them: the
server gives the workers a shared folder in PROMETHEUS_MULTIPROC_DIR (server.py), where
prometheus_client's multiprocess mode keeps every process's values in files, and /metrics
sums them (gauges over the live processes)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("aetk_serve_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=r)
        self.inferences = Counter("aetk_serve_inference_requests", "inference requests, by model and outcome",
                                  ["model", "outcome"], registry=r)
        self.latency = Histogram("aetk_serve_request_duration_seconds",
                                 "whole inference request time (body, queue, run, answer), by model",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("aetk_serve_queue_duration_seconds", "time requests wait in the batch queue",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.run_time = Histogram("aetk_serve_run_duration_seconds", "ONNX Runtime time per batch",
                                  ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("aetk_serve_batch_rows", "rows per ONNX Runtime call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("aetk_serve_batch_requests", "requests merged into one ONNX Runtime call",
                                        ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("aetk_serve_queue_depth", "requests waiting in the batch queue", ["model"],
                                 registry=r, multiprocess_mode="livesum")
        self.in_flight = Gauge("aetk_serve_requests_in_flight", "HTTP requests being answered", registry=r,
                               multiprocess_mode="livesum")

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROCESS_ENV):  # every worker's values, from their files
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["MULTIPROCESS_ENV", "Metrics"]
