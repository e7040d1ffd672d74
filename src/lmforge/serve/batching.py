"""Dynamic batching: concurrent requests share one forward pass.

A request puts its items on a queue and awaits their futures. One worker per queue takes the
first waiting item, then keeps taking until ``max_batch_size`` items are in hand or
``max_wait_ms`` have passed since the first, and runs the batch in the server's one model
thread (a forward pass is one call, not several racing for 2 cores). With batching off
(``max_batch_size=1``) every item is its own forward pass, as a plain handler would do it.

A request whose client went away, or that timed out, is cancelled: its items still queued
are skipped when a batch is formed, so a dead client never costs a forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Item:
    value: Any
    future: asyncio.Future
    key: Any = None  # items batch together only with items of the same key (e.g. top_k)
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Groups items from concurrent requests into batches for ``run(values, key)``.

    Args:
        run: ``(values, key) -> results``, one result per value in order; called in
            ``executor`` (the model thread). An exception fails every item of that batch.
        executor: the single model thread every batcher of a server shares.
        max_batch_size: items per forward pass; 1 turns batching off.
        max_wait_ms: how long the first item of a batch waits for company.
        observe: ``(batch_size, queue_depth)`` after each batch is formed (metrics).
    """

    def __init__(
        self,
        run: Callable[[list[Any], Any], Sequence[Any]],
        executor: ThreadPoolExecutor,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        observe: Callable[[int, int], None] | None = None,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max_wait_ms / 1000
        self.observe = observe
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._held: _Item | None = None  # an item of another key, first in the next batch

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    @property
    def depth(self) -> int:
        return self.queue.qsize() + (self._held is not None)

    async def submit(self, values: list[Any], key: Any = None) -> list[Any]:
        """Results for ``values`` (in order), computed in batches with other requests' items.

        Cancelling the awaiting task (client gone, timeout) cancels the queued items.
        """
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in values]
        for v, f in zip(values, futures, strict=True):
            self.queue.put_nowait(_Item(v, f, key))
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise

    async def _next(self) -> _Item:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        return await self.queue.get()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next()
            if first.future.done():  # cancelled while queued
                continue
            batch = [first]
            deadline = first.queued + self.max_wait
            while len(batch) < self.max_batch_size:
                timeout = deadline - time.perf_counter()
                try:
                    item = (
                        self.queue.get_nowait()
                        if timeout <= 0 or not self.queue.empty()
                        else await asyncio.wait_for(self.queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if item.future.done():
                    continue
                if item.key != first.key:
                    self._held = item
                    break
                batch.append(item)
            if self.observe is not None:
                self.observe(len(batch), self.depth)
            try:
                results = await loop.run_in_executor(
                    self.executor, self.run, [i.value for i in batch], first.key
                )
            except Exception as e:  # the batch failed: every waiting request gets the error
                for i in batch:
                    if not i.future.done():
                        i.future.set_exception(e)
                continue
            for i, r in zip(batch, results, strict=True):
                if not i.future.done():
                    i.future.set_result(r)
