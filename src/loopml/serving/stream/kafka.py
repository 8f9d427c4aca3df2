"""Kafka as a stream source (a consumer group) and sink, through confluent-kafka (librdkafka).

URL form, for both::

    kafka://BROKER[:PORT][,BROKER[:PORT]...]/TOPIC[?group=G&<librdkafka option>=VALUE...]

- ``group`` (source, default ``loopml``): the consumer group (``group.id``).
- any other option is passed to librdkafka as it is (librdkafka rejects unknown names), e.g.
  ``security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.username=U&sasl.password=P``
  or ``auto.offset.reset=latest`` (default ``earliest``: a new group reads the topic from the start).

At-least-once: the consumer never commits on its own (``enable.auto.commit=false``); the
runner acknowledges a batch only after the sink returned, and the sink returns only after
the producer's delivery reports confirmed every record (``acks=all``, idempotent producer).
Acknowledging commits, per partition, the offset after the highest acknowledged message
(Kafka offsets are cumulative, so batches are acknowledged in the order they were read,
which the runner does). After a crash the group resumes from the last commit, re-delivering
what was read but not committed.

A message's id is ``TOPIC:PARTITION:OFFSET``; its value is a JSON object (one row), or a JSON
list for a model that takes a tensor. A sink record is one JSON object keyed by ``source_id``
(so duplicates of one source message land in one partition, in order).

Not exercised against a real broker in loopml's own tests (none is available where they run):
the unit tests check URL parsing, configuration, and the produce-flush-commit order with
stand-ins for the client objects.

>>> parse_kafka_url("kafka://k1:9092,k2:9092/events?group=scoring").config["group.id"]
'scoring'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from loopml.errors import InvalidInput, Unavailable
from loopml.serving.stream.base import Message, Output, Sink, Source
from loopml.serving.stream.frames import ENVELOPE_FIELD, TENSOR_FIELD

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
_SECRET_KEYS = ("password", "secret", "token")
_CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}
_PRODUCER_DEFAULTS = {"acks": "all", "enable.idempotence": True}


@dataclass(frozen=True, slots=True)
class KafkaURL:
    """A parsed ``kafka://`` URL: the topic and the librdkafka configuration for one role."""

    topic: str
    config: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"kafka://{self.config['bootstrap.servers']}/{self.topic}"


def parse_kafka_url(url: str, *, role: str = "source") -> KafkaURL:
    """The topic and the consumer (``role="source"``) or producer (``"sink"``) configuration.

    >>> parse_kafka_url("kafka://k:9092/preds", role="sink").config["acks"]
    'all'
    """
    parts = urlsplit(url)
    topic = unquote(parts.path.strip("/"))
    if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
        raise InvalidInput(
            f"stream {role} {_redact(url)!r} is not a Kafka URL; use kafka://BROKER:PORT/TOPIC?group=G",
            details={"field": role},
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    # At-least-once rests on these: a URL may not turn auto-commit back on or weaken acks.
    fixed = {"enable.auto.commit", "enable.auto.offset.store"} if role == "source" else {"acks", "group"}
    refused = sorted(fixed & set(options))
    if refused:
        raise InvalidInput(
            f"stream {role} {_redact(url)!r}: option(s) {refused} cannot be set on a Kafka {role} "
            "(commits happen after the sink write; the producer waits for acks=all)",
            details={"field": role, "refused": refused},
        )
    config: dict[str, Any] = {"bootstrap.servers": parts.netloc}
    if role == "source":
        config.update(_CONSUMER_DEFAULTS)
        config["group.id"] = options.pop("group", "loopml")
    else:
        config.update(_PRODUCER_DEFAULTS)
    config.update(options)  # librdkafka checks the names when the client is created
    return KafkaURL(topic, config)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qs(parts.query, keep_blank_values=True)
    shown = "&".join(f"{k}={'***' if any(s in k for s in _SECRET_KEYS) else v[-1]}" for k, v in pairs.items())
    return parts._replace(query=shown).geturl()


def _client(cls: Any, parsed: KafkaURL, url: str, role: str) -> Any:
    try:
        return cls(parsed.config)
    except KafkaException as exc:  # an unknown or invalid librdkafka option, named by librdkafka
        raise InvalidInput(
            f"stream {role} {_redact(url)!r}: {exc.args[0].str() if exc.args else exc}",
            details={"field": role},
        ) from None


def message_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def parse_message_id(mid: str) -> tuple[str, int, int]:
    """``(topic, partition, offset)`` of a message id (topic names cannot contain ``:``)."""
    topic, partition, offset = mid.rsplit(":", 2)
    return topic, int(partition), int(offset)


def decode_value(value: bytes | str | None) -> dict[str, Any]:
    """A message value as a payload: a JSON object is the row; anything else is left for the
    runner to reject with a message naming the field.

    >>> decode_value(b'{"age": 41}')
    {'age': 41}
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
    try:
        data = json.loads(text)
    except ValueError:
        return {ENVELOPE_FIELD: text}
    if isinstance(data, dict):
        return data
    if isinstance(data, list):
        return {TENSOR_FIELD: data}
    return {ENVELOPE_FIELD: text}


class KafkaSource(Source):
    """Messages of one topic, consumed in a consumer group with manual commits.

    >>> src = KafkaSource.from_url("kafka://127.0.0.1:9092/events?group=scoring")  # doctest: +SKIP
    """

    def __init__(self, consumer: Any, parsed: KafkaURL) -> None:
        self.consumer = consumer
        self.url = parsed
        consumer.subscribe([parsed.topic])

    @classmethod
    def from_url(cls, url: str) -> KafkaSource:
        parsed = parse_kafka_url(url, role="source")
        return cls(_client(Consumer, parsed, url, "source"), parsed)

    def read(self, max_count: int, block_ms: int) -> list[Message]:
        out: list[Message] = []
        for msg in self.consumer.consume(num_messages=max_count, timeout=block_ms / 1000):
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            mid = message_id(msg.topic(), msg.partition(), msg.offset())
            out.append((mid, decode_value(msg.value())))
        return out

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            raise Unavailable(f"Kafka consumer of {self.url.describe()} failed: {err.str()}")
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("Kafka consumer of %s: %s", self.url.describe(), err.str())

    def ack(self, ids: Sequence[str]) -> None:
        """Commit, per partition, the offset after the highest message in ``ids`` (synchronously)."""
        offsets = commit_offsets(ids)
        if not offsets:
            return
        try:
            results = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not committed means re-delivered (a rebalance moved the partition, say): still
            # at-least-once, so the job goes on; the next commit covers these offsets too.
            log.warning("Kafka commit on %s failed (may re-deliver): %s", self.url.describe(), exc)
            return
        for tp in results or []:
            if tp.error is not None:
                log.warning("Kafka commit of %s[%d] failed: %s", tp.topic, tp.partition, tp.error)

    def close(self) -> None:
        self.consumer.close()  # leaves the group now, so its partitions move without a session time-out

    def describe(self) -> str:
        return f"{self.url.describe()} (group {self.url.config['group.id']})"


def commit_offsets(ids: Sequence[str]) -> list[TopicPartition]:
    """The offsets to commit once ``ids`` are processed: per partition, the highest offset + 1.

    >>> [(tp.partition, tp.offset) for tp in commit_offsets(["t:0:4", "t:1:9", "t:0:5"])]
    [(0, 6), (1, 10)]
    """
    top: dict[tuple[str, int], int] = {}
    for mid in ids:
        topic, partition, offset = parse_message_id(mid)
        top[(topic, partition)] = max(offset, top.get((topic, partition), -1))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(top.items())]


class KafkaSink(Sink):
    """Prediction records produced to one topic; :meth:`write` returns once all are delivered.

    >>> sink = KafkaSink.from_url("kafka://127.0.0.1:9092/predictions")  # doctest: +SKIP
    """

    def __init__(self, producer: Any, parsed: KafkaURL, *, flush_timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        self.producer = producer
        self.url = parsed
        self.flush_timeout_s = flush_timeout_s

    @classmethod
    def from_url(cls, url: str) -> KafkaSink:
        parsed = parse_kafka_url(url, role="sink")
        return cls(_client(Producer, parsed, url, "sink"), parsed)

    def write(self, outputs: Sequence[Output]) -> None:
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.str() if hasattr(err, "str") else str(err))

        for source_id, record in outputs:
            value = json.dumps(record, separators=(",", ":"))
            self._produce(source_id, value, delivered)
        left = self.producer.flush(self.flush_timeout_s)
        if left or failures:
            why = failures[0] if failures else f"still undelivered after {self.flush_timeout_s} s"
            raise Unavailable(
                f"Kafka sink {self.url.describe()} did not confirm {len(failures) or left} of "
                f"{len(outputs)} record(s): {why}; the batch is not acknowledged and will be re-read",
                details={"field": "sink"},
            )

    def _produce(self, key: str, value: str, callback: Any) -> None:
        while True:
            try:
                self.producer.produce(self.url.topic, value=value, key=key, on_delivery=callback)
                return
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports to make room, then retry.
                self.producer.poll(0.1)

    def close(self) -> None:
        self.producer.flush(self.flush_timeout_s)

    def describe(self) -> str:
        return self.url.describe()
