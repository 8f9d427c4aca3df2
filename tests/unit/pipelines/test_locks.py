"""Run locks are leases: renewed while a run lives, taken over once a dead client stops renewing.

Time is the store's injected clock wherever the test moves it; the runs that need real time
passing use a lease of a second or two and bounded waits.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput
from loopml.pipelines import Pipeline, get_run, register
from loopml.pipelines.engine import context, run_pipeline
from loopml.pipelines.records import RUNNING, PipelineRunRecord, now_ms
from loopml.pipelines.store_local import SqlPipelineStore
from loopml.pipelines.triggers import PipelineScheduler
from loopml.store.blobs import open_blob_store
from loopml.store.db import Database

FLOW = """
from loopml.pipelines import pipeline, step

@step
def first(n: int) -> int:
    return n + 1

@step
def second(n: int) -> int:
    return n * 2

@pipeline
def twostep(n: int = 1) -> int:
    return second(first(n))
"""

NAP = """
import time

from loopml.pipelines import pipeline, step

@step
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds

@pipeline
def napper(seconds: float = 0.1) -> float:
    return nap(seconds)
"""

ELSEWHERE = "laptop-that-died.example:4242"  # a lock owner on another host: never provably dead


def _lease_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("loopml-lease-")]


def _store(settings: Settings, lease_s: float) -> tuple[Settings, SqlPipelineStore]:
    leased = dataclasses.replace(settings, pipeline_lease_s=lease_s)
    store = context(leased)[0]
    assert isinstance(store, SqlPipelineStore) and store.lease_s == lease_s
    return leased, store


def _abandoned_run(store: SqlPipelineStore, pipeline: str, run_id: str) -> None:
    """A run another host started and then stopped renewing (its laptop died)."""
    store.create_run(PipelineRunRecord(run_id, pipeline, "x.py:x", RUNNING, {}, "inprocess", True, "ana", 1))
    store.acquire(pipeline, run_id, owner=ELSEWHERE)


def test_a_fresh_lock_is_a_conflict_naming_its_lease_and_an_expired_one_is_taken_over(
    settings: Settings,
) -> None:
    _, store = _store(settings, 2.0)
    now = [1_800_000_000_000]
    store.clock = lambda: now[0]
    _abandoned_run(store, "train", "a" * 32)
    now[0] += 1_500  # 1.5 s: still inside the 2 s lease
    with pytest.raises(Conflict) as busy:
        store.acquire("train", "b" * 32, owner=ELSEWHERE)
    assert busy.value.message == (
        f"pipeline 'train' is already running (run {'a' * 32}, held by {ELSEWHERE}, last renewed 2 s "
        "ago); it expires after 2 s without renewal; wait for it, or `loopml pipeline unlock train`"
    )
    assert busy.value.details["run_id"] == "a" * 32 and busy.value.details["lease_s"] == 2.0
    now[0] += 600  # 2.1 s since the last renewal: expired
    store.create_run(PipelineRunRecord("b" * 32, "train", "x.py:x", RUNNING, {}, "inprocess", True, "bo", 2))
    store.acquire("train", "b" * 32)
    old = store.get_run("a" * 32)
    assert old.status == "FAILED"
    assert "lease expired" in (old.error or "") and ELSEWHERE in (old.error or "")
    assert store.get_run("b" * 32).status == RUNNING
    assert not store.renew("train", "a" * 32)  # the dead client comes back: it lost the lock
    assert store.renew("train", "b" * 32)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    if request.param == "sqlite":
        yield settings.database_url
        return
    import uuid

    import sqlalchemy as sa

    server: str = request.getfixturevalue("postgres_url")
    name = f"locks_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    yield server.rsplit("/", 1)[0] + f"/{name}"


def test_of_two_runs_taking_over_one_expired_lock_one_wins(settings: Settings, database_url: str) -> None:
    now = [1_800_000_000_000]
    stores = [
        SqlPipelineStore(Database(database_url), open_blob_store(settings.artifact_root), settings.artifact_root,
                         lease_s=1.0, clock=lambda: now[0])
        for _ in range(2)
    ]  # fmt: skip
    first, second = stores
    _abandoned_run(first, "train", "a" * 32)
    now[0] += 1_001
    stale = first._lock_holder("train")
    assert stale is not None and first._stale(stale) is not None
    second.acquire("train", "b" * 32)  # takes it over between the first's read and its update
    assert not first._take_over("train", stale, "c" * 32, ELSEWHERE, "abandoned")
    with pytest.raises(Conflict, match=f"run {'b' * 32}"):
        first.acquire("train", "c" * 32)
    assert first.get_run("a" * 32).status == "FAILED"
    assert first.renew("train", "b" * 32) and not first.renew("train", "a" * 32)
    for store in stores:
        store.close()


def test_renewing_keeps_a_lock_past_its_lease(settings: Settings) -> None:
    _, store = _store(settings, 2.0)
    now = [1_800_000_000_000]
    store.clock = lambda: now[0]
    _abandoned_run(store, "train", "a" * 32)
    for _ in range(5):  # 7.5 s in all, renewed every 1.5 s
        now[0] += 1_500
        assert store.renew("train", "a" * 32)
        with pytest.raises(Conflict, match="last renewed 0 s ago"):
            store.acquire("train", "b" * 32)
    assert store.get_run("a" * 32).status == RUNNING
    store.release("train", "a" * 32)
    assert not store.renew("train", "a" * 32)  # released: nothing to renew


def test_an_old_lock_row_without_a_heartbeat_expires_from_when_it_was_taken(settings: Settings) -> None:
    from sqlalchemy import update

    from loopml.store.schema import pipeline_locks

    _, store = _store(settings, 60.0)
    _abandoned_run(store, "train", "a" * 32)
    with store.db.write() as conn:  # as written before leases: no heartbeat_at
        conn.execute(update(pipeline_locks).values(heartbeat_at=None, acquired_at=now_ms() - 30_000))
    with pytest.raises(Conflict, match="last renewed 30 s ago"):
        store.acquire("train", "b" * 32)
    with store.db.write() as conn:
        conn.execute(update(pipeline_locks).values(acquired_at=now_ms() - 61_000))
    store.acquire("train", "b" * 32)
    assert store.get_run("a" * 32).status == "FAILED"


def test_a_pipeline_takes_over_an_expired_lock_and_its_heartbeat_thread_stops(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    pipe = write_pipeline(FLOW)
    leased, store = _store(settings, 2.0)
    _abandoned_run(store, "twostep", "a" * 32)
    with pytest.raises(Conflict, match="expires after 2 s without renewal"):
        run_pipeline(pipe, {}, settings=leased)
    store.clock = lambda: now_ms() + 3_000  # the dead client's lease has run out
    result = run_pipeline(pipe, {"n": 2}, settings=leased)
    assert (result.status, result.value) == ("SUCCEEDED", 6)
    assert get_run("a" * 32, leased).status == "FAILED"
    assert _lease_threads() == []
    assert store._lock_holder("twostep") is None  # released at the end


def test_a_run_whose_lock_was_taken_over_fails_at_the_next_step_boundary(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    pipe = write_pipeline(FLOW)
    leased, store = _store(settings, 0.3)  # renewed every 0.1 s
    # Another host that sees this run's lock as expired (its clock is 10 s ahead) takes it over.
    other = SqlPipelineStore(
        Database(leased.database_url),
        store.blobs,
        store.artifact_root,
        lease_s=0.3,
        clock=lambda: now_ms() + 10_000,
    )
    seen: list[str] = []

    def take_over_after_first(step: object) -> None:
        seen.append(getattr(step, "step", ""))
        if seen == ["first"]:
            other.acquire("twostep", "b" * 32, owner=ELSEWHERE)
            deadline = time.monotonic() + 10
            while _lease_threads() and time.monotonic() < deadline:  # its next renewal finds it lost
                time.sleep(0.02)

    result = run_pipeline(pipe, {}, settings=leased, raise_on_failure=False, progress=take_over_after_first)
    assert result.status == "FAILED"
    assert (result.record.error or "").startswith(
        "run lock lost: another run took over after the lease expired"
    )
    assert [s.step for s in result.record.steps] == ["first"]  # `second` never started
    holder = store._lock_holder("twostep")  # the run that took over still holds it
    assert holder is not None and (holder.run_id, holder.owner) == ("b" * 32, ELSEWHERE)
    assert not store.renew("twostep", result.run_id)
    assert _lease_threads() == []
    other.close()


@pytest.mark.parametrize("executor", ["inprocess", "process:1"])
def test_a_step_longer_than_the_lease_keeps_its_lock(
    settings: Settings, write_pipeline: Callable[..., Pipeline], executor: str
) -> None:
    slow = write_pipeline(NAP, "napper")
    leased, store = _store(settings, 1.5)  # renewed every 0.5 s, from this process
    outcome: dict[str, object] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(
            result=run_pipeline(slow, {"seconds": 4.0}, settings=leased, cache=False, executor=executor)
        )
    )
    runner.start()
    deadline = time.monotonic() + 60
    while store._lock_holder("napper") is None and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    refused = 0
    while runner.is_alive() and time.monotonic() < deadline:  # a contender tries all along
        try:
            store.acquire("napper", "c" * 32, owner=ELSEWHERE)
        except Conflict:
            refused += 1
        else:  # the run released it as it ended (or it was taken over: then the run failed)
            store.release("napper", "c" * 32)
            break
        time.sleep(0.1)
    runner.join(30)
    assert refused > 20  # refused for longer than the 1.5 s lease
    result = outcome["result"]
    assert getattr(result, "status", None) == "SUCCEEDED"  # never taken over
    assert _lease_threads() == []


def test_the_scheduler_starts_a_pipeline_whose_lock_expired(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    pipe = write_pipeline(FLOW)
    leased, store = _store(settings, 60.0)
    locks = [now_ms()]
    store.clock = lambda: locks[0]
    register(pipe, schedule="* * * * *", settings=leased)
    _abandoned_run(store, "twostep", "a" * 32)
    t0 = time.time()
    sched = PipelineScheduler(leased, clock=lambda: t0 + 120)
    [skipped] = sched.tick()
    assert skipped.status == "skipped" and "expires after 60 s without renewal" in skipped.message
    locks[0] += 61_000
    sched.clock = lambda: t0 + 240
    [started] = sched.tick()
    assert started.status == "started" and started.message == "run SUCCEEDED"
    assert get_run("a" * 32, leased).status == "FAILED"
    history = store.list_triggers("twostep")
    assert [t.status for t in history] == ["started", "skipped"]


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "inf"])
def test_a_bad_lease_setting_names_the_variable(raw: str) -> None:
    with pytest.raises(InvalidInput, match="LOOPML_PIPELINE_LEASE_S"):
        Settings.load(env={"LOOPML_PIPELINE_LEASE_S": raw, "LOOPML_HOME": "/tmp/x"})
    assert (
        Settings.load(env={"LOOPML_PIPELINE_LEASE_S": "2.5", "LOOPML_HOME": "/tmp/x"}).pipeline_lease_s == 2.5
    )
