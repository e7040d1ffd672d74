"""Dynamic batching: concurrent requests share forward passes; cancelled ones cost none."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor, wait

import httpx

from lmforge.serve.batching import Batcher


def run_batcher(max_batch_size: int, max_wait_ms: float, cancel: set[int] = frozenset()):
    calls: list[list[int]] = []

    def forward(values, key):
        calls.append(list(values))
        return [v * 10 for v in values]

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(forward, pool, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
            b.start()
            tasks = [asyncio.ensure_future(b.submit([i])) for i in range(10)]
            await asyncio.sleep(0)  # queued, not yet batched
            for i in cancel:
                tasks[i].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            await b.stop()
            return done

    return asyncio.run(main()), calls


def test_concurrent_items_are_grouped_up_to_the_batch_size():
    results, calls = run_batcher(4, 50)
    assert results == [[i * 10] for i in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]


def test_batching_off_runs_one_item_per_forward_pass():
    results, calls = run_batcher(1, 50)
    assert results == [[i * 10] for i in range(10)] and len(calls) == 10


def test_cancelled_requests_are_never_computed():
    results, calls = run_batcher(4, 50, cancel={1, 2, 7})
    computed = [v for c in calls for v in c]
    assert computed == [0, 3, 4, 5, 6, 8, 9]
    assert all(isinstance(results[i], asyncio.CancelledError) for i in (1, 2, 7))


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    def forward(values, key):
        if 3 in values:
            raise ValueError("bad input")
        return values

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(forward, pool, max_batch_size=1, max_wait_ms=0)
            b.start()
            out = await asyncio.gather(*(b.submit([i]) for i in range(5)), return_exceptions=True)
            await b.stop()
            return out

    out = asyncio.run(main())
    assert isinstance(out[3], ValueError) and out[4] == [4]


def test_concurrent_http_requests_share_forward_passes(cls_server):
    from conftest import auth

    with httpx.Client(base_url=cls_server.url, headers=auth(), timeout=60) as c:

        def count() -> tuple[float, float]:
            text = c.get("/metrics").text
            n = re.search(r'lmforge_batch_size_count\{queue="classify"\} (\S+)', text)
            s = re.search(r'lmforge_batch_size_sum\{queue="classify"\} (\S+)', text)
            return (float(n.group(1)), float(s.group(1))) if n else (0.0, 0.0)

        before = count()
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(c.post, "/v1/classify", json={"texts": [f"text {i}"]})
                for i in range(32)
            ]
            wait(futures)
        assert all(f.result().status_code == 200 for f in futures)
        after = count()
    batches, items = after[0] - before[0], after[1] - before[1]
    assert items == 32 and batches < 32  # some requests shared a forward pass
