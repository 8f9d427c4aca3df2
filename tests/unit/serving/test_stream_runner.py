"""StreamRunner: write before acknowledge, micro-batches, bad messages, bounds and stop.

The source and sink here are small in-memory implementations of the interface (a
queue with a pending list, like a consumer group); the model is a real logged one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loopml import sdk
from loopml.models import LoadedModel, load
from loopml.serving.stream import Message, Output, Sink, Source, StreamRunner
from tests.support.stream_model import expected_predictions, log_churn_model, messages


class MemorySource(Source):
    """New messages, plus a pending list of those delivered and not acknowledged."""

    def __init__(self, payloads: list[dict[str, Any]], events: list[str] | None = None) -> None:
        self.new: list[Message] = [(f"{i}-0", p) for i, p in enumerate(payloads)]
        self.pending: dict[str, dict[str, Any]] = {}
        self.events = events if events is not None else []
        self.reads: list[int] = []

    def read(self, max_count: int, block_ms: int) -> list[Message]:
        batch, self.new = self.new[:max_count], self.new[max_count:]
        self.pending.update(batch)
        if batch:
            self.reads.append(len(batch))
        return batch

    def ack(self, ids: Sequence[str]) -> None:
        self.events.append(f"ack {len(ids)}")
        for mid in ids:
            del self.pending[mid]

    def close(self) -> None:
        pass


class MemorySink(Sink):
    def __init__(self, events: list[str], fail: bool = False) -> None:
        self.records: list[dict[str, Any]] = []
        self.events = events
        self.fail = fail

    def write(self, outputs: Sequence[Output]) -> None:
        if self.fail:
            raise ConnectionError("sink is down")
        self.events.append(f"write {len(outputs)}")
        self.records += [record for _, record in outputs]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("stream") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
            mp.delenv(var, raising=False)
        mp.setenv("LOOPML_HOME", str(home))
        sdk.reset()
        yield log_churn_model(Path(home), register_as="churn")
        sdk.reset()


@pytest.fixture(scope="module")
def model(model_uri: str) -> LoadedModel:
    return load(model_uri)


def test_every_message_gets_the_local_prediction_and_is_acknowledged_after_the_write(
    model_uri: str, model: LoadedModel
) -> None:
    events: list[str] = []
    payloads = messages(10)
    source, sink = MemorySource(payloads, events), MemorySink(events)
    stats = StreamRunner(model_uri, source, sink, batch_size=4, model=model, max_messages=10).run()
    assert [r["prediction"] for r in sink.records] == expected_predictions(model_uri, payloads)
    assert [r["source_id"] for r in sink.records] == [f"{i}-0" for i in range(10)]
    assert events == ["write 4", "ack 4", "write 4", "ack 4", "write 2", "ack 2"]
    assert source.pending == {}
    assert (stats.acked, stats.batches, stats.failed) == (10, 3, 0)


def test_a_failed_write_acknowledges_nothing(model_uri: str, model: LoadedModel) -> None:
    events: list[str] = []
    source = MemorySource(messages(3), events)
    with pytest.raises(ConnectionError):
        StreamRunner(model_uri, source, MemorySink(events, fail=True), model=model, max_messages=3).run()
    assert events == []
    assert sorted(source.pending) == ["0-0", "1-0", "2-0"]  # re-delivered on the next start


def test_a_bad_message_gets_an_error_record_and_its_neighbours_are_predicted(
    model_uri: str, model: LoadedModel
) -> None:
    payloads = messages(3)
    payloads[1] = {**payloads[1], "tenure": "a long time"}
    sink = MemorySink([])
    stats = StreamRunner(model_uri, MemorySource(payloads), sink, model=model, max_messages=3).run()
    statuses = [(r["status"], r.get("error", "")) for r in sink.records]
    assert statuses[0] == ("ok", "") and statuses[2] == ("ok", "")
    assert statuses[1][0] == "error" and "'tenure'" in statuses[1][1]
    assert sink.records[1]["prediction"] is None
    good = [payloads[0], payloads[2]]
    assert [sink.records[0]["prediction"], sink.records[2]["prediction"]] == expected_predictions(
        model_uri, good
    )
    assert (stats.acked, stats.failed) == (3, 1)


def test_max_messages_bounds_the_reads(model_uri: str, model: LoadedModel) -> None:
    source = MemorySource(messages(10))
    stats = StreamRunner(model_uri, source, MemorySink([]), batch_size=4, model=model, max_messages=6).run()
    assert source.reads == [4, 2]
    assert stats.acked == 6
    assert len(source.new) == 4


def test_idle_timeout_ends_the_run(model_uri: str, model: LoadedModel) -> None:
    stats = StreamRunner(
        model_uri, MemorySource(messages(2)), MemorySink([]), model=model, idle_timeout_s=0.05
    ).run()
    assert stats.acked == 2


def test_stop_finishes_the_batch_in_hand(model_uri: str, model: LoadedModel) -> None:
    events: list[str] = []
    source = MemorySource(messages(8), events)
    sink = MemorySink(events)
    runner = StreamRunner(model_uri, source, sink, batch_size=2, model=model)
    runner.on_batch = lambda stats: runner.stop()
    thread = threading.Thread(target=runner.run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert events == ["write 2", "ack 2"]
    assert source.pending == {}


def test_a_registry_alias_is_pinned_to_one_version_named_in_every_record(model_uri: str) -> None:
    sink = MemorySink([])
    runner = StreamRunner(model_uri, MemorySource(messages(2)), sink, max_messages=2)
    runner.run()
    assert runner.model_version == "1"
    assert {(r["model"], r["model_version"]) for r in sink.records} == {("models:/churn@champion", "1")}
