"""Adaptive micro-batching: concurrent requests coalesced into one predict call.

Most models cost nearly the same to call on one row as on fifty (Python and
framework overhead dominate), so under concurrency the cheapest way to raise
throughput is to call predict once for many waiting requests. The batcher does
that without adding latency when it cannot help:

- a request that arrives while no batch is running goes straight to predict
  (no timer, no waiting: at low concurrency the batcher is a pass-through);
- requests that arrive while a batch runs wait for it to finish and then leave
  together, up to ``max_batch_size`` at a time;
- a second batch starts alongside the running one when the waiting items fill a
  batch or the oldest has waited ``max_latency_ms``, so no request waits longer
  than that for its batch to start while a slow batch runs;
- the queue is bounded: when ``max_queue`` requests are waiting, ``submit``
  raises :class:`~loopml.errors.Unavailable` with ``details["retry_after"]``
  (seconds), which the server turns into 503 + ``Retry-After``.

``predict`` takes a list of per-request inputs and returns a list of
per-request outputs (the caller concatenates and splits, e.g. DataFrames). It
runs in a thread so the event loop keeps accepting requests. If a batch fails,
its items are retried one by one so that only the requests that really fail
see the error.

>>> import asyncio
>>> async def main() -> list[int]:
...     batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch_size=8, max_latency_ms=5)
...     results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
...     await batcher.close()
...     return list(results)
>>> asyncio.run(main())
[0, 2, 4, 6]
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loopml.errors import InvalidInput, Unavailable

In = TypeVar("In")
Out = TypeVar("Out")

BatchObserver = Callable[[int, float], None]
"""Called on the event loop after each batch with (batch size, predict seconds)."""


@dataclass(slots=True)
class _Pending:
    item: Any
    future: asyncio.Future[Any]
    enqueued: float


@dataclass(slots=True)
class BatcherStats:
    """Counters since the batcher was created (read them for tests and ``/metrics``)."""

    batches: int = 0
    items: int = 0
    rejected: int = 0
    max_batch: int = 0

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[In, Out]):
    """Coalesce concurrent :meth:`submit` calls into calls of ``predict(items)``.

    ``max_concurrent_batches`` bounds the batches running at once (the second
    slot is used only when a batch is full or its oldest item is due). Give an
    ``executor`` to share threads between endpoints; otherwise the batcher owns
    a small pool and shuts it down in :meth:`close`.

    >>> batcher = MicroBatcher(lambda xs: xs, max_batch_size=32, max_latency_ms=10, name="churn")
    >>> batcher.queue_depth
    0
    """

    def __init__(
        self,
        predict: Callable[[list[In]], Sequence[Out]],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        max_queue: int = 1024,
        executor: Executor | None = None,
        max_concurrent_batches: int = 2,
        on_batch: BatchObserver | None = None,
        name: str = "endpoint",
    ) -> None:
        _check_positive("max_batch_size", max_batch_size)
        _check_positive("max_queue", max_queue)
        _check_positive("max_concurrent_batches", max_concurrent_batches)
        if not max_latency_ms >= 0:
            raise InvalidInput(
                f"max_latency_ms must be >= 0 for {name!r}, got {max_latency_ms}",
                details={"field": "max_latency_ms"},
            )
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000.0
        self.max_queue = max_queue
        self.max_concurrent = max_concurrent_batches
        self.name = name
        self._on_batch = on_batch
        self._owns_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_concurrent_batches, thread_name_prefix=f"loopml-batch-{name}"
        )
        self._pending: deque[_Pending] = deque()
        self._running: set[asyncio.Future[tuple[list[Any], float]]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # The last batches' predict time per item, to tell a rejected caller when to come back.
        self._seconds_per_item = 0.0
        self.stats = BatcherStats()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (not counting those being predicted)."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Batches being predicted right now."""
        return len(self._running)

    async def submit(self, item: In) -> Out:
        """Predict one request's input as part of a batch and return its output.

        Raises :class:`~loopml.errors.Unavailable` when the queue is full or the
        batcher is closed, and whatever ``predict`` raised for this item.
        """
        if self._closed:
            raise Unavailable(
                f"endpoint {self.name!r} is shutting down; retry against its replacement",
                details={"endpoint": self.name, "retry_after": 1},
            )
        if len(self._pending) >= self.max_queue:
            self.stats.rejected += 1
            raise self._overloaded()
        loop = asyncio.get_running_loop()
        pending = _Pending(item, loop.create_future(), time.monotonic())
        self._pending.append(pending)
        self._dispatch(loop)
        result: Out = await pending.future
        return result

    async def close(self) -> None:
        """Stop accepting, predict everything already queued, wait for it, free the threads."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending or self._running:
            # Draining ignores the batching rules: nothing else will arrive to fill a batch.
            while self._pending and len(self._running) < self.max_concurrent:
                self._start_batch(loop)
            if self._running:
                await asyncio.wait(set(self._running))
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    def _overloaded(self) -> Unavailable:
        backlog_s = self._seconds_per_item * len(self._pending) / self.max_concurrent
        retry_after = max(1, math.ceil(backlog_s))
        return Unavailable(
            f"endpoint {self.name!r} has {len(self._pending)} requests waiting (max_queue="
            f"{self.max_queue}); retry after {retry_after}s, or add replicas / raise max_queue",
            details={"endpoint": self.name, "retry_after": retry_after, "queue_depth": len(self._pending)},
        )

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every batch the rules allow now; arm a timer for the oldest waiting item."""
        while self._pending and len(self._running) < self.max_concurrent:
            if not self._running or len(self._pending) >= self.max_batch_size:
                self._start_batch(loop)
                continue
            if time.monotonic() - self._pending[0].enqueued >= self.max_latency_s:
                self._start_batch(loop)
                continue
            break
        if self._pending and len(self._running) < self.max_concurrent and self._timer is None:
            due = self._pending[0].enqueued + self.max_latency_s - time.monotonic()
            self._timer = loop.call_later(max(0.0, due), self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop)

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[_Pending] = []
        while self._pending and len(batch) < self.max_batch_size:
            pending = self._pending.popleft()
            # A caller that went away (client disconnected) costs no predict.
            if not pending.future.done():
                batch.append(pending)
        if not batch:
            return
        items = [p.item for p in batch]
        running = loop.run_in_executor(self._executor, _predict_batch, self._predict, items)
        self._running.add(running)
        running.add_done_callback(lambda fut: self._finish(loop, fut, batch))

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        fut: asyncio.Future[tuple[list[Any], float]],
        batch: list[_Pending],
    ) -> None:
        self._running.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            # Only when the loop or the executor is torn down under us: fail the batch, loudly.
            error = Unavailable(
                f"endpoint {self.name!r} stopped while predicting; retry the request",
                details={"endpoint": self.name, "retry_after": 1},
            )
            outcomes, seconds = [_Failure(error)] * len(batch), 0.0
        else:
            outcomes, seconds = fut.result()
        for pending, outcome in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, _Failure):
                pending.future.set_exception(outcome.error)
            else:
                pending.future.set_result(outcome)
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.max_batch = max(self.stats.max_batch, len(batch))
        self._seconds_per_item = seconds / len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._closed:
            self._dispatch(loop)


@dataclass(slots=True)
class _Failure:
    error: BaseException


def _predict_batch(
    predict: Callable[[list[Any]], Sequence[Any]], items: list[Any]
) -> tuple[list[Any], float]:
    """Runs in a worker thread. Never raises: failures travel back per item as ``_Failure``."""
    start = time.perf_counter()
    try:
        outputs = list(predict(items))
        if len(outputs) != len(items):
            raise RuntimeError(f"predict returned {len(outputs)} outputs for a batch of {len(items)} inputs")
    except Exception as batch_error:
        if len(items) == 1:
            return [_Failure(batch_error)], time.perf_counter() - start
        # One bad request must not fail its neighbours: find the culprits one item at a time.
        outputs = [_predict_one(predict, item) for item in items]
    return outputs, time.perf_counter() - start


def _predict_one(predict: Callable[[list[Any]], Sequence[Any]], item: Any) -> Any:
    try:
        (output,) = predict([item])
    except Exception as error:
        return _Failure(error)
    return output


def _check_positive(field: str, value: int) -> None:
    if value < 1:
        raise InvalidInput(f"{field} must be >= 1, got {value}", details={"field": field})
