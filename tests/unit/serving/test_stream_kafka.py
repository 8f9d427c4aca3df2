"""Kafka backend without a broker: URLs, client configuration, and produce-flush-commit order.

No Kafka broker is available where these tests run, so confluent-kafka's Consumer and
Producer are replaced by small stand-ins in the ordering tests below (only here);
``TopicPartition`` is the real class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from confluent_kafka import TopicPartition

from loopml.errors import InvalidInput, Unavailable
from loopml.models.signature import Column, Schema, Signature
from loopml.serving.stream import StreamRunner, open_sink, open_source
from loopml.serving.stream.kafka import (
    KafkaSink,
    KafkaSource,
    commit_offsets,
    decode_value,
    parse_kafka_url,
)


def test_consumer_configuration_never_auto_commits() -> None:
    url = "kafka://k1:9092,k2:9092/events?group=scoring&security.protocol=SSL"
    parsed = parse_kafka_url(url, role="source")
    assert parsed.topic == "events"
    assert parsed.config == {
        "bootstrap.servers": "k1:9092,k2:9092",
        "group.id": "scoring",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "security.protocol": "SSL",
    }


def test_producer_configuration_waits_for_all_replicas() -> None:
    parsed = parse_kafka_url("kafka://k:9092/preds?linger.ms=5", role="sink")
    assert parsed.config == {
        "bootstrap.servers": "k:9092",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": "5",
    }


@pytest.mark.parametrize(
    ("url", "role", "match"),
    [
        ("kafka:///events", "source", "not a Kafka URL"),
        ("kafka://k:9092/", "source", "not a Kafka URL"),
        ("kafka://k:9092/a/b", "source", "not a Kafka URL"),
        ("kafka://k:9092/t?enable.auto.commit=true", "source", r"\['enable.auto.commit'\] cannot be set"),
        ("kafka://k:9092/t?acks=0", "sink", r"\['acks'\] cannot be set"),
        ("kafka://k:9092/t?group=x", "sink", r"\['group'\] cannot be set"),
    ],
)
def test_bad_urls_are_refused_with_the_form_to_use(url: str, role: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_kafka_url(url, role=role)


def test_errors_do_not_show_passwords() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_kafka_url("kafka://k:9092/t?sasl.password=hunter2&enable.auto.commit=1")
    assert "hunter2" not in info.value.message


def test_commit_offsets_are_the_next_offset_per_partition() -> None:
    offsets = commit_offsets(["t:0:4", "t:1:9", "t:0:5", "u.v:0:0"])
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets] == [
        ("t", 0, 6),
        ("t", 1, 10),
        ("u.v", 0, 1),
    ]


def test_values_decode_to_payloads() -> None:
    assert decode_value(b'{"a": 1}') == {"a": 1}
    assert decode_value(b"[1, 2]") == {"inputs": [1, 2]}
    assert decode_value(b"not json") == {"data": "not json"}
    assert decode_value(None) == {"data": ""}


def test_librdkafka_names_an_unknown_option() -> None:
    with pytest.raises(InvalidInput, match="grop"):
        open_source("kafka://127.0.0.1:1/in?grop=x")


def test_kafka_urls_open_kafka_backends() -> None:
    # Creating the clients does not contact the broker (librdkafka connects in the background).
    source, sink = open_source("kafka://127.0.0.1:1/in?group=g"), open_sink("kafka://127.0.0.1:1/out")
    try:
        assert isinstance(source, KafkaSource) and isinstance(sink, KafkaSink)
        assert source.describe() == "kafka://127.0.0.1:1/in (group g)"
    finally:
        source.close()
        sink.close()


# ---------------------------------------------------------------- order of operations


class FakeError:
    def __init__(self, text: str) -> None:
        self.text = text

    def str(self) -> str:
        return self.text

    def fatal(self) -> bool:
        return False

    def code(self) -> int:
        return -1


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes, error: FakeError | None = None) -> None:
        self._partition, self._offset, self._value, self._error = partition, offset, value, error

    def error(self) -> FakeError | None:
        return self._error

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    def __init__(self, messages: list[FakeMessage], events: list[Any]) -> None:
        self.messages, self.events = messages, events

    def subscribe(self, topics: list[str]) -> None:
        self.events.append(("subscribe", topics))

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        batch, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        return batch

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert asynchronous is False
        self.events.append(("commit", [(tp.partition, tp.offset) for tp in offsets]))
        return offsets

    def close(self) -> None:
        self.events.append(("close",))


class FakeProducer:
    """Queues records; ``flush`` delivers them (or fails ``fail_keys``, or leaves them queued)."""

    def __init__(self, events: list[Any], fail_keys: set[str] = frozenset(), stuck: bool = False) -> None:  # type: ignore[assignment]
        self.events, self.fail_keys, self.stuck = events, fail_keys, stuck
        self.queued: list[tuple[str, str, Callable[[Any, Any], None]]] = []
        self.full_once = True

    def produce(self, topic: str, *, value: str, key: str, on_delivery: Callable[[Any, Any], None]) -> None:
        if self.full_once:  # the first produce meets a full local queue
            self.full_once = False
            raise BufferError("queue full")
        self.events.append(("produce", key))
        self.queued.append((key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        self.events.append(("poll",))
        return 0

    def flush(self, timeout: float) -> int:
        self.events.append(("flush",))
        if self.stuck:
            return len(self.queued)
        for key, value, callback in self.queued:
            callback(FakeError("broker said no") if key in self.fail_keys else None, value)
        self.queued = []
        return 0


class ConstantModel:
    signature = Signature(Schema("columns", (Column("x", "float64"),)))

    def predict(self, data: Any) -> Any:
        return np.asarray(data["x"]) * 2


def _runner(consumer: FakeConsumer, producer: FakeProducer, max_messages: int) -> StreamRunner:
    source = KafkaSource(consumer, parse_kafka_url("kafka://k:9092/in?group=g"))
    sink = KafkaSink(producer, parse_kafka_url("kafka://k:9092/out", role="sink"), flush_timeout_s=1)
    return StreamRunner(
        "runs:/r/model", source, sink, batch_size=10, model=ConstantModel(), max_messages=max_messages
    )


def _messages() -> list[FakeMessage]:
    return [
        FakeMessage(0, 7, b'{"x": 1}'),
        FakeMessage(1, 3, b'{"x": 2}'),
        FakeMessage(0, 8, b'{"x": 3}'),
    ]


def test_offsets_are_committed_only_after_every_record_is_delivered() -> None:
    events: list[Any] = []
    producer = FakeProducer(events)
    _runner(FakeConsumer(_messages(), events), producer, max_messages=3).run()
    assert events == [
        ("subscribe", ["in"]),
        ("poll",),  # the full queue was drained, then the record produced again
        ("produce", "in:0:7"),
        ("produce", "in:1:3"),
        ("produce", "in:0:8"),
        ("flush",),
        ("commit", [(0, 9), (1, 4)]),
    ]


def test_a_failed_delivery_commits_nothing() -> None:
    events: list[Any] = []
    runner = _runner(FakeConsumer(_messages(), events), FakeProducer(events, {"in:1:3"}), max_messages=3)
    with pytest.raises(Unavailable, match="broker said no"):
        runner.run()
    assert not [e for e in events if e[0] == "commit"]


def test_an_unconfirmed_flush_commits_nothing() -> None:
    events: list[Any] = []
    runner = _runner(FakeConsumer(_messages(), events), FakeProducer(events, stuck=True), max_messages=3)
    with pytest.raises(Unavailable, match="did not confirm 3 of 3"):
        runner.run()
    assert not [e for e in events if e[0] == "commit"]


def test_consumer_errors_are_skipped_not_predicted() -> None:
    events: list[Any] = []
    msgs = [FakeMessage(0, 1, b"", FakeError("partition moved")), FakeMessage(0, 2, b'{"x": 5}')]
    producer = FakeProducer(events)
    producer.full_once = False
    stats = _runner(FakeConsumer(msgs, events), producer, max_messages=1).run()
    assert stats.acked == 1
    assert [e for e in events if e[0] in ("produce", "commit")] == [
        ("produce", "in:0:2"),
        ("commit", [(0, 3)]),
    ]
