"""The stream job: read a micro-batch, predict it, write the predictions, then acknowledge.

Acknowledging only after the sink write returned is what makes the job at-least-once:
if the process dies anywhere before the ack (even ``kill -9``), the messages stay
pending in the source and the next run, which starts by re-reading its own pending
entries, predicts them again. A message that cannot be predicted (a missing field, a
value of the wrong type) is not retried forever: its output record says
``status: error`` with the reason, and it is acknowledged like the others.

>>> runner = StreamRunner(                                                # doctest: +SKIP
...     "models:/churn@champion",
...     open_source("redis://127.0.0.1:6379/in"),
...     open_sink("redis://127.0.0.1:6379/out"),
...     batch_size=64, max_latency_ms=20,
... )
>>> runner.run().acked                                                    # doctest: +SKIP
1000
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loopml.errors import InvalidInput
from loopml.models import load
from loopml.models.signature import Signature
from loopml.models.uris import is_logged_model_uri
from loopml.serving.stream.base import Message, Output, Sink, Source
from loopml.serving.stream.frames import payloads_to_input, split_outputs

log = logging.getLogger(__name__)

# How long one idle read waits: short enough that a stop request is honoured promptly.
_IDLE_BLOCK_MS = 500


class Model(Protocol):
    """What the runner needs of a model: :class:`loopml.models.LoadedModel` is one."""

    signature: Signature | None

    def predict(self, data: Any) -> Any: ...


@dataclass(slots=True)
class StreamStats:
    """Counters of one run; ``acked`` is what the source will never deliver to this group again."""

    read: int = 0
    predicted: int = 0
    failed: int = 0
    written: int = 0
    acked: int = 0
    batches: int = 0
    started: float = 0.0

    def summary(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.acked} messages in {self.batches} batches ({self.failed} failed) "
            f"in {seconds:.1f} s, {self.acked / seconds:.0f} msg/s"
        )


class StreamRunner:
    """Consume ``source``, predict with the model ``model_uri`` names, produce to ``sink``.

    ``batch_size`` bounds a micro-batch; no message waits more than ``max_latency_ms``
    after the batch's first one arrived. ``max_messages`` and ``idle_timeout_s`` end the
    run (tests, backfills); :meth:`stop` ends it after the current batch (the CLI calls
    it on SIGTERM and SIGINT).

    >>> stats = StreamRunner("runs:/0a1b/model", source, sink, max_messages=100).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        model_uri: str,
        source: Source,
        sink: Sink,
        *,
        batch_size: int = 64,
        max_latency_ms: float = 50.0,
        max_messages: int | None = None,
        idle_timeout_s: float | None = None,
        trust_pickle: bool = False,
        model: Model | None = None,
        on_batch: Callable[[StreamStats], None] | None = None,
    ) -> None:
        if batch_size < 1 or max_latency_ms < 0:
            raise InvalidInput(
                f"batch_size must be >= 1 and max_latency_ms >= 0 (got {batch_size}, {max_latency_ms})",
                details={"field": "batch_size" if batch_size < 1 else "max_latency_ms"},
            )
        self.model_uri = model_uri
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.max_latency_ms = max_latency_ms
        self.max_messages = max_messages
        self.idle_timeout_s = idle_timeout_s
        self.on_batch = on_batch
        self.stats = StreamStats()
        self._stop = threading.Event()
        if model is None:
            pinned, self.model_version = pin_model_uri(model_uri)
            model = load(pinned, trust_pickle=trust_pickle)
        else:
            self.model_version = ""
        self.model: Model = model

    def stop(self) -> None:
        """Finish the batch in hand (predict, write, acknowledge), then return from :meth:`run`."""
        self._stop.set()

    def run(self) -> StreamStats:
        """Process messages until stopped, ``max_messages`` are done or the source stays idle."""
        self.stats.started = time.monotonic()
        last_message = time.monotonic()
        while not self._stop.is_set() and not self._reached_max():
            batch = self._collect()
            if not batch:
                if self.idle_timeout_s is not None and time.monotonic() - last_message >= self.idle_timeout_s:
                    break
                continue
            last_message = time.monotonic()
            self.process(batch)
        return self.stats

    def process(self, batch: Sequence[Message]) -> None:
        """Predict, write, THEN acknowledge one micro-batch: the order that loses nothing."""
        outputs = self.predict(batch)
        self.sink.write(outputs)
        self.stats.written += len(outputs)
        self.source.ack([mid for mid, _ in batch])
        self.stats.acked += len(batch)
        self.stats.batches += 1
        if self.on_batch is not None:
            self.on_batch(self.stats)

    def _reached_max(self) -> bool:
        return self.max_messages is not None and self.stats.acked >= self.max_messages

    def _collect(self) -> list[Message]:
        want = self.batch_size
        if self.max_messages is not None:
            want = min(want, self.max_messages - self.stats.acked)
        batch = self.source.read(want, self._idle_block_ms())
        if not batch:
            return []
        deadline = time.monotonic() + self.max_latency_ms / 1000
        while len(batch) < want and not self._stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms < 1:  # Redis reads BLOCK 0 as "forever": never ask for less than 1 ms
                break
            more = self.source.read(want - len(batch), left_ms)
            if not more:
                break
            batch += more
        self.stats.read += len(batch)
        return batch

    def _idle_block_ms(self) -> int:
        if self.idle_timeout_s is None:
            return _IDLE_BLOCK_MS
        return max(1, min(_IDLE_BLOCK_MS, int(self.idle_timeout_s * 1000)))

    def predict(self, batch: Sequence[Message]) -> list[Output]:
        """One output record per message; the batch is predicted in one call when it can be."""
        try:
            values = self._predict_many([payload for _, payload in batch])
        except Exception:
            # One bad message must not fail its neighbours: find it by predicting one at a time.
            return [self._predict_one(mid, payload) for mid, payload in batch]
        self.stats.predicted += len(batch)
        now = _now_ms()
        return [(mid, self._record(mid, value, now)) for (mid, _), value in zip(batch, values, strict=True)]

    def _predict_many(self, payloads: list[dict[str, Any]]) -> list[Any]:
        data = payloads_to_input(self.model.signature, payloads)
        return split_outputs(self.model.predict(data), len(payloads))

    def _predict_one(self, mid: str, payload: dict[str, Any]) -> Output:
        try:
            (value,) = self._predict_many([payload])
        except Exception as exc:
            self.stats.failed += 1
            reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.warning("message %s not predicted: %s", mid, reason)
            return mid, {**self._record(mid, None, _now_ms()), "status": "error", "error": reason}
        self.stats.predicted += 1
        return mid, self._record(mid, value, _now_ms())

    def _record(self, mid: str, value: Any, ts: int) -> dict[str, Any]:
        return {
            "source_id": mid,
            "prediction": value,
            "model": self.model_uri,
            "model_version": self.model_version,
            "ts": ts,
            "status": "ok",
        }


def pin_model_uri(uri: str) -> tuple[str, str]:
    """``(uri to load, version)``: a registry alias or stage is resolved once, so the whole run
    uses one version even if the alias moves meanwhile, and each record names it.

    >>> pin_model_uri("runs:/0a1b/model")
    ('runs:/0a1b/model', '')
    """
    if not uri.startswith("models:/") or is_logged_model_uri(uri):
        return uri, ""
    from loopml import registry  # serving sits above the registry; loaded only for models:/ URIs
    from loopml.registry.resolve import find_version

    mv = find_version(registry.service(), uri)
    return f"models:/{mv.name}/{mv.version}", str(mv.version)


def _now_ms() -> int:
    return int(time.time() * 1000)
