"""Prometheus metrics of one server (``GET /metrics``, text exposition format).

Each app has its own ``CollectorRegistry`` (no process-wide state, so tests can start several
apps in one process). Names follow Prometheus conventions: ``_total`` counters, ``_seconds``
histograms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class ServerMetrics:
    registry: Any
    requests: Any  # counter {route, status}
    errors: Any  # counter {route, status}: 4xx and 5xx answers
    latency: Any  # histogram {route}
    batch_size: Any  # histogram {queue}
    queue_depth: Any  # gauge {queue}
    tokens: Any  # counter {kind}: prompt / completion tokens generated

    @classmethod
    def create(cls) -> ServerMetrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "lmforge_requests", "HTTP requests answered", ["route", "status"], registry=r
            ),
            errors=Counter(
                "lmforge_request_errors",
                "Requests answered 4xx/5xx",
                ["route", "status"],
                registry=r,
            ),  # fmt: skip
            latency=Histogram(
                "lmforge_request_latency_seconds",
                "Time to answer a request",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),  # fmt: skip
            batch_size=Histogram(
                "lmforge_batch_size",
                "Items per forward pass",
                ["queue"],
                buckets=BATCH_BUCKETS,
                registry=r,
            ),  # fmt: skip
            queue_depth=Gauge(
                "lmforge_queue_depth", "Items waiting for a forward pass", ["queue"], registry=r
            ),
            tokens=Counter("lmforge_tokens", "Tokens processed", ["kind"], registry=r),
        )

    def observe_batch(self, queue: str) -> Any:
        """A ``Batcher`` observer recording batch sizes and queue depth of ``queue``."""

        def observe(size: int, depth: int) -> None:
            self.batch_size.labels(queue).observe(size)
            self.queue_depth.labels(queue).set(depth)

        return observe

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
