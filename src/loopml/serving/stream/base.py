"""The two halves of a stream job: a :class:`Source` of messages and a :class:`Sink` for predictions.

A source hands out messages as ``(message_id, payload)`` pairs and forgets one only when it
is acknowledged; a sink appends prediction records. The runner acknowledges a message
only after the sink has durably written its prediction, so a crash between the two
re-delivers the message (at-least-once): every output record carries ``source_id`` so a
downstream consumer can drop the duplicates.

Backends are chosen by URL scheme and imported only when used (``redis`` is never
imported for a Kafka job, and the other way round)::

    source = open_source("redis://127.0.0.1:6379/in?group=scoring")
    sink = open_sink("redis://127.0.0.1:6379/out")
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from loopml.errors import InvalidInput

# (message id as the backend spells it, the message's fields)
Message = tuple[str, dict[str, Any]]
# (the source message id, the prediction record written for it)
Output = tuple[str, dict[str, Any]]


class Source(abc.ABC):
    """Where messages come from. A subclass implements :meth:`read`, :meth:`ack` and :meth:`close`.

    ``read`` must first return the messages this consumer received earlier but never
    acknowledged (they were in flight when a previous process died), then new ones.

    >>> src = open_source("redis://127.0.0.1:6379/in")  # doctest: +SKIP
    >>> batch = src.read(max_count=64, block_ms=50)     # doctest: +SKIP
    >>> src.ack([mid for mid, _ in batch])              # doctest: +SKIP
    """

    @abc.abstractmethod
    def read(self, max_count: int, block_ms: int) -> list[Message]:
        """Up to ``max_count`` messages, waiting at most ``block_ms`` when none is ready."""

    @abc.abstractmethod
    def ack(self, ids: Sequence[str]) -> None:
        """Mark messages done: they are not delivered to this consumer group again."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; unacknowledged messages stay pending for the next run."""

    def describe(self) -> str:
        """A short, password-free name for logs."""
        return type(self).__name__


class Sink(abc.ABC):
    """Where predictions go. A subclass implements :meth:`write` and :meth:`close`.

    ``write`` returns only once every record is stored (or raises): the runner
    acknowledges the source messages right after it returns. Writing the same record
    twice must be harmless to readers, which deduplicate on ``source_id``.

    >>> sink = open_sink("redis://127.0.0.1:6379/out")                # doctest: +SKIP
    >>> sink.write([("1-0", {"source_id": "1-0", "prediction": 1})])  # doctest: +SKIP
    """

    @abc.abstractmethod
    def write(self, outputs: Sequence[Output]) -> None:
        """Store every record durably before returning; raise if any could not be stored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release connections."""

    def describe(self) -> str:
        """A short, password-free name for logs."""
        return type(self).__name__


# scheme -> "module:function" taking the URL; imported on first use so a job loads one client.
SOURCES: dict[str, str | Callable[[str], Source]] = {
    "redis": "loopml.serving.stream.redis_streams:RedisStreamSource.from_url",
    "rediss": "loopml.serving.stream.redis_streams:RedisStreamSource.from_url",
    "kafka": "loopml.serving.stream.kafka:KafkaSource.from_url",
}
SINKS: dict[str, str | Callable[[str], Sink]] = {
    "redis": "loopml.serving.stream.redis_streams:RedisStreamSink.from_url",
    "rediss": "loopml.serving.stream.redis_streams:RedisStreamSink.from_url",
    "kafka": "loopml.serving.stream.kafka:KafkaSink.from_url",
}


def open_source(url: str) -> Source:
    """The source ``url`` names: ``redis://HOST:PORT/STREAM?group=G&consumer=C`` or
    ``kafka://BROKER[,BROKER]/TOPIC?group=G``.

    >>> open_source("ftp://x/y")
    Traceback (most recent call last):
    loopml.errors.InvalidInput: stream source 'ftp://x/y' has an unknown scheme 'ftp'; use one of ...
    """
    factory: Callable[[str], Source] = _factory(SOURCES, url, "source")
    return factory(url)


def open_sink(url: str) -> Sink:
    """The sink ``url`` names (same URL forms as :func:`open_source`)."""
    factory: Callable[[str], Sink] = _factory(SINKS, url, "sink")
    return factory(url)


def _factory(table: dict[str, Any], url: str, role: str) -> Any:
    scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    target = table.get(scheme)
    if target is None:
        known = ", ".join(sorted(table))
        raise InvalidInput(
            f"stream {role} {url!r} has an unknown scheme {scheme!r}; use one of {known}",
            details={"field": role},
        )
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = "kafka" if scheme == "kafka" else "redis"
        raise InvalidInput(
            f"stream {role} {scheme}:// needs the {exc.name!r} package: pip install 'loopml[{extra}]'",
            details={"field": role},
        ) from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
