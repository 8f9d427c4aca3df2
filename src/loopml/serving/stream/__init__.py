"""Streaming inference: consume a stream, predict in micro-batches, produce predictions.

    $ loopml stream models:/churn@champion \
        --source "redis://127.0.0.1:6379/requests?group=scoring&consumer=w1" \
        --sink redis://127.0.0.1:6379/predictions

>>> from loopml.serving.stream import StreamRunner, open_sink, open_source
>>> runner = StreamRunner(                                                  # doctest: +SKIP
...     "models:/churn@champion",
...     open_source("redis://127.0.0.1:6379/requests"),
...     open_sink("redis://127.0.0.1:6379/predictions"),
... )
>>> runner.run()                                                            # doctest: +SKIP

Delivery is at-least-once: a prediction is written before its message is acknowledged,
so a crash re-delivers, never loses; each output names its ``source_id`` for deduplication.
Backends: Redis Streams (``redis://``, ``rediss://``) and Kafka (``kafka://``), each
imported only when a URL names it.
"""

from __future__ import annotations

from loopml.serving.stream.base import SINKS, SOURCES, Message, Output, Sink, Source, open_sink, open_source
from loopml.serving.stream.runner import StreamRunner, StreamStats

__all__ = [
    "SINKS",
    "SOURCES",
    "Message",
    "Output",
    "Sink",
    "Source",
    "StreamRunner",
    "StreamStats",
    "open_sink",
    "open_source",
]
