"""Redis Streams as a stream source (a consumer group) and a sink (``XADD``).

URL form, for both::

    redis://[[USER]:PASSWORD@]HOST[:PORT]/[DB/]STREAM[?group=G&consumer=C&start=0&claim_idle_ms=60000&maxlen=N]
    rediss://...                                   (TLS)

- ``STREAM``: the stream key (the last path segment; a leading all-digit segment is the DB number).
- ``group`` (source, default ``loopml``): the consumer group, created with ``MKSTREAM`` if missing.
- ``consumer`` (source, default ``loopml-<hostname>``): this reader's name inside the group. Keep it
  stable across restarts: on start the source re-reads its own pending entries (``XREADGROUP``
  from id ``0``), which is how messages read but not acknowledged before a crash are processed again.
- ``start`` (source, default ``0``): where a *new* group starts: ``0`` for the whole stream,
  ``$`` for only messages added from now on.
- ``claim_idle_ms`` (source, default 60000, ``0`` = never): entries another consumer of the group
  has held unacknowledged for this long are taken over (``XAUTOCLAIM``), so a consumer that died
  under another name does not strand its messages.
- ``maxlen`` (sink): trim the output stream to about this many entries (``XADD MAXLEN ~``).

>>> parse_stream_url("redis://cache:6380/2/scores?group=g1&consumer=c1").stream
'scores'
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from loopml.errors import InvalidInput, Unavailable
from loopml.serving.stream.base import Message, Output, Sink, Source

_SOURCE_OPTIONS = frozenset({"group", "consumer", "start", "claim_idle_ms"})
_SINK_OPTIONS = frozenset({"maxlen"})


@dataclass(frozen=True, slots=True)
class StreamURL:
    """A parsed ``redis://`` stream URL: where the server is and which stream, group and consumer."""

    connection_url: str  # the URL redis-py connects with (no stream, no options)
    stream: str
    group: str = "loopml"
    consumer: str = ""
    start: str = "0"
    claim_idle_ms: int = 60_000
    maxlen: int | None = None

    def describe(self) -> str:
        parts = urlsplit(self.connection_url)
        host = parts.hostname or "localhost"
        return f"{parts.scheme}://{host}:{parts.port or 6379}/{self.stream}"


def parse_stream_url(url: str, *, role: str = "source") -> StreamURL:
    """Split a stream URL into the connection URL and the stream options (see the module doc).

    >>> u = parse_stream_url("redis://:secret@127.0.0.1:6379/in?group=scoring&consumer=w1")
    >>> (u.stream, u.group, u.consumer, u.connection_url)
    ('in', 'scoring', 'w1', 'redis://:secret@127.0.0.1:6379/0')
    """
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or not segments:
        raise InvalidInput(
            f"stream {role} {_redact(url)!r} is not a Redis stream URL; "
            "use redis://HOST:PORT/STREAM?group=G&consumer=C",
            details={"field": role},
        )
    db = "0"
    if len(segments) == 2 and segments[0].isdigit():
        db, segments = segments[0], segments[1:]
    if len(segments) != 1:
        raise InvalidInput(
            f"stream {role} {_redact(url)!r} names no single stream: the path is /STREAM or /DB/STREAM",
            details={"field": role},
        )
    options = _options(url, parts.query, role)
    return StreamURL(
        connection_url=f"{parts.scheme}://{parts.netloc}/{db}",
        stream=segments[0],
        group=options.get("group", "loopml"),
        consumer=options.get("consumer") or f"loopml-{socket.gethostname()}",
        start=options.get("start", "0"),
        claim_idle_ms=_int_option(options, "claim_idle_ms", 60_000, url, role),
        maxlen=_int_option(options, "maxlen", None, url, role),
    )


def _options(url: str, query: str, role: str) -> dict[str, str]:
    raw = parse_qs(query, keep_blank_values=True)
    allowed = _SOURCE_OPTIONS if role == "source" else _SINK_OPTIONS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidInput(
            f"stream {role} {_redact(url)!r} has unknown option(s) {unknown}; "
            f"a Redis {role} takes {sorted(allowed)}",
            details={"field": role, "unknown": unknown},
        )
    return {k: v[-1] for k, v in raw.items()}


def _int_option(options: dict[str, str], name: str, default: int | None, url: str, role: str) -> Any:
    if name not in options:
        return default
    value = options[name]
    if not value.isdigit():
        raise InvalidInput(
            f"stream {role} {_redact(url)!r}: {name}={value!r} must be a whole number",
            details={"field": role, "option": name},
        )
    return int(value)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _connect(parsed: StreamURL) -> redis.Redis:
    # RESP2 keeps the reply shapes of XREADGROUP/XAUTOCLAIM the same on every redis-py >= 5.
    return redis.Redis.from_url(parsed.connection_url, decode_responses=True, protocol=2)


@contextmanager
def _talking_to(url: StreamURL, role: str) -> Iterator[None]:
    """Redis failures as loopml errors (a one-line CLI message, not a traceback)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(
            f"Redis {role} {url.describe()} is unreachable ({exc}); unacknowledged messages "
            "are read again when the job restarts",
            details={"field": role},
        ) from None
    except redis.ResponseError as exc:  # e.g. WRONGTYPE: the key exists and is not a stream
        raise InvalidInput(f"Redis {role} {url.describe()}: {exc}", details={"field": role}) from None


def _entries(reply: Any) -> list[tuple[str | None, dict[str, Any] | None]]:
    """The (id, fields) pairs of an ``XREADGROUP`` reply for one stream, whatever its shape."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str | None, dict[str, Any] | None]] = []
    for _stream, entries in items:
        out += entries
    return out


class RedisStreamSource(Source):
    """Messages of one Redis stream, read through a consumer group.

    Pending entries of this consumer come first (re-delivery after a crash), then entries
    idle too long under other consumers (``XAUTOCLAIM``), then new entries (``>``).

    >>> src = RedisStreamSource.from_url("redis://127.0.0.1:6379/in?group=scoring")  # doctest: +SKIP
    >>> src.read(max_count=100, block_ms=50)                                           # doctest: +SKIP
    [('1718000000000-0', {'tenure': '12', 'charges': '70.5'})]
    """

    def __init__(self, client: redis.Redis, parsed: StreamURL) -> None:
        self.client = client
        self.url = parsed
        self._history_cursor: str | None = "0"  # None once our own pending entries are drained
        self._next_claim = 0.0
        self._ensure_group()

    @classmethod
    def from_url(cls, url: str) -> RedisStreamSource:
        parsed = parse_stream_url(url, role="source")
        return cls(_connect(parsed), parsed)

    def _ensure_group(self) -> None:
        with _talking_to(self.url, "source"):
            try:
                self.client.xgroup_create(self.url.stream, self.url.group, id=self.url.start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # the group exists already: keep its position
                    raise

    def read(self, max_count: int, block_ms: int) -> list[Message]:
        with _talking_to(self.url, "source"):
            return self._read(max_count, block_ms)

    def _read(self, max_count: int, block_ms: int) -> list[Message]:
        if self._history_cursor is not None:
            found = self._read_history(max_count)
            if found:
                return found
        claimed = self._claim_idle(max_count)
        if claimed:
            return claimed
        reply = self.client.xreadgroup(
            self.url.group, self.url.consumer, {self.url.stream: ">"}, count=max_count, block=block_ms
        )
        return self._keep(_entries(reply))

    def _read_history(self, max_count: int) -> list[Message]:
        """Our own pending entries, oldest first, each returned once per process."""
        while self._history_cursor is not None:
            reply = self.client.xreadgroup(
                self.url.group, self.url.consumer, {self.url.stream: self._history_cursor}, count=max_count
            )
            entries = _entries(reply)
            if not entries:
                self._history_cursor = None
                break
            last = entries[-1][0]
            self._history_cursor = last if last is not None else None
            kept = self._keep(entries)
            if kept:
                return kept
        return []

    def _claim_idle(self, max_count: int) -> list[Message]:
        if self.url.claim_idle_ms <= 0 or time.monotonic() < self._next_claim:
            return []
        reply = self.client.xautoclaim(
            self.url.stream,
            self.url.group,
            self.url.consumer,
            min_idle_time=self.url.claim_idle_ms,
            start_id="0-0",
            count=max_count,
        )
        entries = list(reply[1]) if reply and len(reply) > 1 else []
        if not entries:
            # Nothing idle: look again only after another idle period could have elapsed.
            self._next_claim = time.monotonic() + min(self.url.claim_idle_ms, 30_000) / 1000
        return self._keep(entries)

    def _keep(self, entries: list[tuple[str | None, dict[str, Any] | None]]) -> list[Message]:
        """Entries with a body; ones whose body was deleted (XDEL, trimming) are acknowledged away."""
        kept: list[Message] = []
        gone: list[str] = []
        for mid, fields in entries:
            if mid is None:
                continue
            if fields:
                kept.append((mid, dict(fields)))
            else:
                gone.append(mid)
        if gone:
            self.ack(gone)
        return kept

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            with _talking_to(self.url, "source"):
                self.client.xack(self.url.stream, self.url.group, *ids)

    def pending_count(self) -> int:
        """How many entries the group has delivered but nobody acknowledged yet."""
        summary = self.client.xpending(self.url.stream, self.url.group)
        return int(summary["pending"])

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        return f"{self.url.describe()} (group {self.url.group}, consumer {self.url.consumer})"


class RedisStreamSink(Sink):
    """Prediction records appended to a Redis stream, one ``XADD`` per record in one round trip.

    Each entry has ``source_id``, ``prediction`` (JSON), ``model``, ``model_version``, ``ts``
    (ms) and ``status`` (``ok`` or ``error``, then with ``error``).

    >>> sink = RedisStreamSink.from_url("redis://127.0.0.1:6379/out?maxlen=1000000")  # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis, parsed: StreamURL) -> None:
        self.client = client
        self.url = parsed

    @classmethod
    def from_url(cls, url: str) -> RedisStreamSink:
        parsed = parse_stream_url(url, role="sink")
        return cls(_connect(parsed), parsed)

    def write(self, outputs: Sequence[Output]) -> None:
        if not outputs:
            return
        pipe = self.client.pipeline(transaction=False)
        for _source_id, record in outputs:
            fields = {k: _field(k, v) for k, v in record.items() if v is not None}
            if self.url.maxlen is not None:
                pipe.xadd(self.url.stream, fields, maxlen=self.url.maxlen, approximate=True)  # type: ignore[arg-type]
            else:
                pipe.xadd(self.url.stream, fields)  # type: ignore[arg-type]
        with _talking_to(self.url, "sink"):
            pipe.execute()  # raises on the first failed command: nothing is acknowledged then

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        return self.url.describe()


def _field(name: str, value: Any) -> str | int | float:
    # The prediction is always JSON, so readers decode one way whatever the model returns.
    if name == "prediction" or isinstance(value, bool) or not isinstance(value, str | int | float):
        return json.dumps(value, separators=(",", ":"))
    return value
