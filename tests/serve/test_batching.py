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


class FakeRequest:
    """What ``Server.bounded`` reads of a request: ASGI receive(), which blocks until the
    client goes (``gone`` set) as uvicorn's does once the body is read."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def bounded(request: FakeRequest, work, timeout_s: float = 30.0):
    from types import SimpleNamespace

    from lmforge.serve.app import Server

    server = SimpleNamespace(limits=SimpleNamespace(timeout_s=timeout_s))
    return Server.bounded(server, request, work)


def test_a_client_that_leaves_cancels_its_work_at_once():
    from lmforge.serve.guard import ClientGone

    async def main():
        request, never = FakeRequest(), asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, request.gone.set)
        try:
            await bounded(request, never)
        except ClientGone:
            return never.cancelled()
        raise AssertionError("no ClientGone")

    assert asyncio.run(main())  # its queued items are dropped (the batcher skips them)


def test_bounded_work_returns_its_result_or_times_out_with_504():
    from lmforge.serve.guard import ApiError

    async def answer():
        await asyncio.sleep(0.01)
        return 42

    async def main():
        result = await bounded(FakeRequest(), answer())
        never = asyncio.get_running_loop().create_future()
        try:
            await bounded(FakeRequest(), never, timeout_s=0.05)
        except ApiError as e:
            return result, e.status, never.cancelled()
        raise AssertionError("no timeout")

    assert asyncio.run(main()) == (42, 504, True)
