"""The micro-batcher: coalescing, the latency bound, overload, error isolation, draining."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from loopml.errors import InvalidInput, Unavailable
from loopml.serving.batching import MicroBatcher


class Recorder:
    """A predict that records each batch (its size and when it started) and sleeps a little."""

    def __init__(self, seconds: float = 0.0, fail_on: object = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.batches: list[list[Any]] = []
        self.started: dict[Any, float] = {}
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, items: list[Any]) -> list[Any]:
        now = time.monotonic()
        with self._lock:
            self.batches.append(list(items))
            for item in items:
                self.started.setdefault(item, now)
            self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot predict {self.fail_on!r}")
        time.sleep(self.seconds)
        return [("out", item) for item in items]


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def test_lone_request_goes_straight_through() -> None:
    predict = Recorder()

    async def main() -> Any:
        batcher = MicroBatcher(predict, max_batch_size=32, max_latency_ms=10_000)
        result = await batcher.submit("a")
        await batcher.close()
        return result

    start = time.monotonic()
    assert run(main) == ("out", "a")
    # With nothing else running the batcher must not wait for company (10 s here).
    assert time.monotonic() - start < 5
    assert predict.batches == [["a"]]


def test_concurrent_requests_are_coalesced_and_answered_in_order() -> None:
    predict = Recorder(seconds=0.02)
    sizes: list[int] = []

    async def main() -> list[Any]:
        batcher = MicroBatcher(
            predict, max_batch_size=16, max_latency_ms=50, on_batch=lambda n, s: sizes.append(n)
        )
        results = await asyncio.gather(*(batcher.submit(i) for i in range(64)))
        await batcher.close()
        assert batcher.stats.items == 64
        return list(results)

    assert run(main) == [("out", i) for i in range(64)]
    assert max(len(b) for b in predict.batches) > 1
    assert max(len(b) for b in predict.batches) <= 16
    assert len(predict.batches) < 64
    assert sorted(sizes) == sorted(len(b) for b in predict.batches)
    # predict ran off the event loop, in the batcher's own threads
    assert all(name.startswith("loopml-batch") for name in predict.threads)


def test_no_item_waits_beyond_max_latency_while_a_slow_batch_runs() -> None:
    # A batch takes 300 ms; later arrivals must not wait for it to finish: after
    # max_latency_ms (20) a second batch starts alongside.
    predict = Recorder(seconds=0.3)
    max_latency_ms = 20.0
    submitted: dict[int, float] = {}

    async def one(batcher: MicroBatcher[int, Any], i: int) -> Any:
        submitted[i] = time.monotonic()
        return await batcher.submit(i)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_batch_size=100, max_latency_ms=max_latency_ms)
        first = asyncio.ensure_future(one(batcher, 0))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(one(batcher, i)) for i in range(1, 6)]
        await asyncio.gather(first, *rest)
        await batcher.close()

    run(main)
    slack_s = 0.2  # generous: CI machines stall; a wait for the 300 ms batch would still exceed it
    for i, t in submitted.items():
        waited = predict.started[i] - t
        assert waited <= max_latency_ms / 1000 + slack_s, (i, waited)
    assert [len(b) for b in predict.batches] == [1, 5]


def test_full_queue_is_rejected_with_retry_after() -> None:
    gate = threading.Event()

    def blocked(items: list[int]) -> list[int]:
        gate.wait(10)
        return items

    async def main() -> Unavailable:
        batcher = MicroBatcher(
            blocked, max_batch_size=2, max_latency_ms=10_000, max_queue=3, max_concurrent_batches=1
        )
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)  # item 0 is now in predict; the next three wait
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable) as excinfo:
            await batcher.submit(4)
        gate.set()
        assert await asyncio.gather(running, *queued) == [0, 1, 2, 3]
        assert batcher.stats.rejected == 1
        await batcher.close()
        return excinfo.value

    error = run(main)
    assert error.status_code == 503
    assert error.details["retry_after"] >= 1
    assert "max_queue" in error.message


def test_a_failing_item_fails_only_its_own_caller() -> None:
    predict = Recorder(seconds=0.01, fail_on=3)

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_batch_size=8, max_latency_ms=50)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)), return_exceptions=True)
        await batcher.close()
        return list(results)

    results = run(main)
    assert isinstance(results[3], ValueError)
    assert "cannot predict 3" in str(results[3])
    assert [r for i, r in enumerate(results) if i != 3] == [("out", i) for i in range(8) if i != 3]


def test_wrong_number_of_outputs_is_an_error_for_the_batch() -> None:
    async def main() -> None:
        batcher = MicroBatcher(lambda xs: [], max_batch_size=4, max_latency_ms=1)
        with pytest.raises(RuntimeError, match="0 outputs for a batch of 1"):
            await batcher.submit(1)
        await batcher.close()

    run(main)


def test_close_drains_queued_requests_then_refuses_new_ones() -> None:
    predict = Recorder(seconds=0.05)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_batch_size=4, max_latency_ms=10_000, max_concurrent_batches=1)
        futures = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
        await asyncio.sleep(0)
        await batcher.close()
        assert all(f.done() for f in futures)
        assert [f.result() for f in futures] == [("out", i) for i in range(10)]
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.submit(99)

    run(main)


def test_cancelled_caller_costs_no_predict() -> None:
    predict = Recorder(seconds=0.05)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_batch_size=8, max_latency_ms=10_000, max_concurrent_batches=1)
        first = asyncio.ensure_future(batcher.submit("first"))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.submit("gone"))
        kept = asyncio.ensure_future(batcher.submit("kept"))
        await asyncio.sleep(0)
        gone.cancel()
        assert await first == ("out", "first")
        assert await kept == ("out", "kept")
        await batcher.close()

    run(main)
    assert ["gone"] not in predict.batches
    assert all("gone" not in b for b in predict.batches)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("max_batch_size", {"max_batch_size": 0, "max_latency_ms": 1}),
        ("max_latency_ms", {"max_batch_size": 1, "max_latency_ms": -1}),
        ("max_queue", {"max_batch_size": 1, "max_latency_ms": 1, "max_queue": 0}),
    ],
)
def test_bad_settings_name_the_field(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        MicroBatcher(lambda xs: xs, **kwargs)
    assert excinfo.value.details == {"field": field}
