"""Streaming inference against a real redis-server: consumer groups, re-delivery, and
``loopml stream`` surviving ``kill -9`` without losing a message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from loopml import sdk
from loopml.errors import InvalidInput, Unavailable
from loopml.serving.stream import StreamRunner
from loopml.serving.stream.redis_streams import RedisStreamSink, RedisStreamSource
from tests.support.live_server import free_port
from tests.support.stream_model import expected_predictions, log_churn_model, messages

pytestmark = pytest.mark.redis

WAIT_S = 120  # generous: the job imports scikit-learn and loads the model first


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("stream") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
            mp.delenv(var, raising=False)
        mp.setenv("LOOPML_HOME", str(home))
        sdk.reset()
        yield home, log_churn_model(home, register_as="churn")
        sdk.reset()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    yield client
    client.close()


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"in-{tag}", f"out-{tag}"


def _feed(r: redis.Redis, stream: str, payloads: list[dict[str, Any]]) -> list[str]:
    pipe = r.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, payload)  # type: ignore[arg-type]
    return [str(mid) for mid in pipe.execute()]


def _outputs(r: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(stream)]


def _pending(r: redis.Redis, stream: str, group: str = "loopml") -> int:
    return int(r.xpending(stream, group)["pending"])


# ---------------------------------------------------------------- source and sink


def test_a_new_group_reads_from_the_start_or_only_new_entries(
    r: redis.Redis, redis_url: str, names: tuple[str, str]
) -> None:
    stream, _ = names
    old = _feed(r, stream, [{"n": "1"}])
    whole = RedisStreamSource.from_url(f"{redis_url}/{stream}?group=whole")
    fresh = RedisStreamSource.from_url(f"{redis_url}/{stream}?group=fresh&start=$")
    other = RedisStreamSource.from_url(f"{redis_url}/{stream}?group=whole&consumer=other")  # exists: fine
    new = _feed(r, stream, [{"n": "2"}])
    assert [mid for mid, _ in whole.read(10, 10)] == old + new
    assert fresh.read(10, 10) == [(new[0], {"n": "2"})]
    assert other.read(10, 10) == []  # a group delivers each entry to one of its consumers
    for src in (whole, fresh, other):
        src.close()


def test_unacknowledged_entries_come_back_first_after_a_restart(
    r: redis.Redis, redis_url: str, names: tuple[str, str]
) -> None:
    stream, _ = names
    url = f"{redis_url}/{stream}?group=g&consumer=w1"
    ids = _feed(r, stream, [{"n": str(i)} for i in range(5)])
    first = RedisStreamSource.from_url(url)
    got = first.read(3, 10)
    first.ack([got[0][0]])
    first.close()  # "crash": two entries read, never acknowledged
    second = RedisStreamSource.from_url(url)
    assert [mid for mid, _ in second.read(10, 10)] == ids[1:3]  # the pending ones, before new ones
    assert [mid for mid, _ in second.read(10, 10)] == ids[3:]
    second.ack(ids[1:])
    assert second.pending_count() == 0
    second.close()


def test_entries_held_too_long_by_a_dead_consumer_are_taken_over(
    r: redis.Redis, redis_url: str, names: tuple[str, str]
) -> None:
    stream, _ = names
    ids = _feed(r, stream, [{"n": "1"}, {"n": "2"}])
    dead = RedisStreamSource.from_url(f"{redis_url}/{stream}?group=g&consumer=dead")
    assert len(dead.read(10, 10)) == 2
    time.sleep(0.02)  # let the entries become idle for longer than claim_idle_ms below
    alive = RedisStreamSource.from_url(f"{redis_url}/{stream}?group=g&consumer=alive&claim_idle_ms=10")
    taken = alive.read(10, 10)
    assert [mid for mid, _ in taken] == ids
    alive.ack(ids)
    assert alive.pending_count() == 0
    dead.close()
    alive.close()


def test_a_pending_entry_deleted_from_the_stream_is_acknowledged_away(
    r: redis.Redis, redis_url: str, names: tuple[str, str]
) -> None:
    stream, _ = names
    url = f"{redis_url}/{stream}?group=g&consumer=w1"
    ids = _feed(r, stream, [{"n": "1"}, {"n": "2"}])
    first = RedisStreamSource.from_url(url)
    first.read(10, 10)
    first.close()
    r.xdel(stream, ids[0])
    second = RedisStreamSource.from_url(url)
    assert second.read(10, 10) == [(ids[1], {"n": "2"})]
    second.ack([ids[1]])
    assert second.pending_count() == 0
    second.close()


def test_the_sink_writes_one_entry_per_record(r: redis.Redis, redis_url: str, names: tuple[str, str]) -> None:
    _, out = names
    sink = RedisStreamSink.from_url(f"{redis_url}/{out}?maxlen=100")
    record = {"source_id": "1-0", "prediction": [0.25, 0.75], "model": "m", "model_version": "", "ts": 5}
    sink.write([("1-0", record), ("2-0", {**record, "source_id": "2-0", "prediction": "yes", "ok": True})])
    first, second = _outputs(r, out)
    assert first == {
        "source_id": "1-0",
        "prediction": "[0.25,0.75]",
        "model": "m",
        "model_version": "",
        "ts": "5",
    }
    assert (second["prediction"], second["ok"]) == ('"yes"', "true")
    sink.close()


def test_unreachable_or_wrong_keys_are_loopml_errors(
    r: redis.Redis, redis_url: str, names: tuple[str, str]
) -> None:
    stream, out = names
    r.set(stream, "not a stream")
    with pytest.raises(InvalidInput, match="WRONGTYPE"):
        RedisStreamSource.from_url(f"{redis_url}/{stream}")
    sink = RedisStreamSink.from_url(f"redis://127.0.0.1:{free_port()}/{out}")
    with pytest.raises(Unavailable, match="unreachable"):
        sink.write([("1-0", {"source_id": "1-0", "prediction": 1})])
    sink.close()


# ---------------------------------------------------------------- the job


def test_every_message_is_predicted_like_locally_and_acknowledged(
    r: redis.Redis, redis_url: str, names: tuple[str, str], model_home: tuple[Path, str]
) -> None:
    stream, out = names
    _, uri = model_home
    payloads = messages(300)
    ids = _feed(r, stream, payloads)
    source = RedisStreamSource.from_url(f"{redis_url}/{stream}")
    sink = RedisStreamSink.from_url(f"{redis_url}/{out}")
    stats = StreamRunner(uri, source, sink, batch_size=64, max_latency_ms=5, max_messages=300).run()
    records = _outputs(r, out)
    assert [rec["source_id"] for rec in records] == ids
    assert [json.loads(rec["prediction"]) for rec in records] == expected_predictions(uri, payloads)
    assert {(rec["model"], rec["model_version"], rec["status"]) for rec in records} == {
        ("models:/churn@champion", "1", "ok")
    }
    assert stats.batches < 300  # micro-batched, not one predict per message
    assert _pending(r, stream) == 0
    source.close()
    sink.close()


def _stream_job(
    home: Path, uri: str, redis_url: str, stream: str, out: str, *extra: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        env.pop(var, None)
    cmd = [
        *(sys.executable, "-m", "loopml.cli", "stream", uri),
        *("--source", f"{redis_url}/{stream}?group=loopml&consumer=job-1"),
        *("--sink", f"{redis_url}/{out}", "--batch-size", "20", "--max-latency-ms", "5", *extra),
    ]
    with open(home.parent / f"stream-{stream}.log", "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)


def _wait_for_outputs(r: redis.Redis, out: str, count: int, job: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while r.xlen(out) < count:
        assert job.poll() is None, f"loopml stream exited early with {job.returncode}"
        assert time.monotonic() < deadline, f"fewer than {count} predictions after {WAIT_S} s"
        time.sleep(0.02)


def _kill_with_messages_in_flight(r: redis.Redis, stream: str, job: subprocess.Popen[bytes]) -> int:
    """SIGSTOP the job until it is caught holding unacknowledged messages, then SIGKILL it."""
    for _ in range(1000):
        os.kill(job.pid, signal.SIGSTOP)
        in_flight = _pending(r, stream)
        if in_flight:
            os.kill(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
            return in_flight
        os.kill(job.pid, signal.SIGCONT)
        time.sleep(0.001)
    raise AssertionError("the job never held an unacknowledged message")


def test_kill_9_mid_stream_loses_nothing(
    r: redis.Redis, redis_url: str, names: tuple[str, str], model_home: tuple[Path, str]
) -> None:
    stream, out = names
    home, uri = model_home
    payloads = messages(2000)
    ids = _feed(r, stream, payloads)
    job = _stream_job(home, uri, redis_url, stream, out)
    try:
        _wait_for_outputs(r, out, 200, job)
        in_flight = _kill_with_messages_in_flight(r, stream, job)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert in_flight > 0 and r.xlen(out) < len(ids)  # killed mid-way, holding messages

    restarted = _stream_job(home, uri, redis_url, stream, out, "--idle-timeout", "1")
    assert restarted.wait(timeout=WAIT_S) == 0

    records = _outputs(r, out)
    by_source = {rec["source_id"]: json.loads(rec["prediction"]) for rec in records}
    assert set(by_source) == set(ids)  # every message has a prediction: none lost
    assert [by_source[mid] for mid in ids] == expected_predictions(uri, payloads)
    assert len(records) - len(ids) <= in_flight  # duplicates only for what was in flight
    assert _pending(r, stream) == 0


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(
    r: redis.Redis, redis_url: str, names: tuple[str, str], model_home: tuple[Path, str]
) -> None:
    stream, out = names
    home, uri = model_home
    ids = _feed(r, stream, messages(2000))
    job = _stream_job(home, uri, redis_url, stream, out)
    try:
        _wait_for_outputs(r, out, 100, job)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=WAIT_S) == 0
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
    assert _pending(r, stream) == 0  # nothing left half-done
    done = {rec["source_id"] for rec in _outputs(r, out)}
    assert len(done) == r.xlen(out) and done <= set(ids)
