"""The scoring helpers: peak memory of a fresh process, and the Pareto front."""

from __future__ import annotations

import multiprocessing as mp

from lmforge.compress.score import pareto_front
from lmforge.core.memory import peak_rss_mb


def _report(queue) -> None:
    queue.put(peak_rss_mb())


def test_a_spawned_child_reports_its_own_peak_not_its_parents():
    """``ru_maxrss`` survives exec: a spawn child of a 300 MB parent reported >= 300 MB."""
    import numpy as np

    ballast = np.ones(300_000_000 // 8)  # the parent's resident memory
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_report, args=(queue,))
    child.start()
    child_peak = queue.get(timeout=120)
    child.join()
    assert ballast.sum() > 0 and peak_rss_mb() > 300
    assert child_peak < 200


def test_pareto_front_keeps_the_undominated():
    def point(name, quality, latency, size):
        return {"name": name, "quality": quality, "latency_ms_p50_b1": latency, "size_mb": size}

    points = [
        point("source", 0.95, 50, 90),
        point("int8", 0.95, 15, 60),  # beats source on latency and size at equal quality
        point("student", 0.92, 10, 70),  # faster but worse: a trade-off, kept
        point("sparse", 0.40, 50, 90),  # dominated by everything
    ]
    assert pareto_front(points) == ["int8", "student"]
