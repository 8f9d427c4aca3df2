"""Triggers: cron on an injected clock, new dataset versions, monitoring alerts, one run at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml.data
from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput
from loopml.monitoring.local import LocalMonitorService
from loopml.pipelines import Pipeline, get_run, list_runs, register
from loopml.pipelines.engine import context
from loopml.pipelines.triggers import PipelineScheduler, fire
from tests.unit.monitoring.test_monitors import T0, log_window, monitor

FLOW = """
from loopml.data import DatasetVersion
from loopml.pipelines import pipeline, step

@step
def rows(dataset: DatasetVersion) -> int:
    return dataset.num_rows

@step
def hello(name: str) -> str:
    return "hello " + name

@pipeline
def retrain(dataset: DatasetVersion | None = None, name: str = "x") -> object:
    return rows(dataset) if dataset is not None else hello(name)
"""

MINUTE = 60.0


def test_cron_fires_once_per_due_time_and_collapses_missed_ones(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    pipe = write_pipeline(FLOW)
    t0 = time.time()
    register(pipe, schedule="*/5 * * * *", settings=settings)
    now = [t0]
    sched = PipelineScheduler(settings, clock=lambda: now[0])
    assert sched.tick() == []  # registered just now: not due yet
    now[0] = t0 + 5 * MINUTE + 1  # one */5 boundary has passed for sure
    fired = sched.tick()
    assert [(t.kind, t.status) for t in fired] == [("cron", "started")]
    assert get_run(fired[0].run_id or "", settings).status == "SUCCEEDED"
    assert sched.tick() == []  # same time again: nothing new
    now[0] = t0 + 120 * MINUTE  # many boundaries missed (scheduler down): one run, not 23
    assert len(sched.tick()) == 1
    history = context(settings)[0].list_triggers("retrain")
    assert [t.kind for t in history] == ["cron", "cron"]


def test_two_schedulers_fire_a_due_cron_once(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    register(write_pipeline(FLOW), schedule="* * * * *", settings=settings)
    later = time.time() + 2 * MINUTE
    a = PipelineScheduler(settings, clock=lambda: later)
    b = PipelineScheduler(settings, clock=lambda: later)
    assert len(a.due()) + len(b.due()) == 1


def test_a_new_dataset_version_triggers_a_run_with_that_version(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    loopml.data.register("churn", pd.DataFrame({"x": [1, 2, 3]}))
    register(write_pipeline(FLOW), on_dataset="churn", settings=settings)
    sched = PipelineScheduler(settings)
    assert sched.tick() == []  # the version that existed at registration does not fire
    loopml.data.register("churn", pd.DataFrame({"x": [1, 2, 3, 4, 5]}))
    fired = sched.tick()
    assert [(t.kind, t.detail) for t in fired] == [("dataset", "new dataset version churn@2")]
    run = get_run(fired[0].run_id or "", settings)
    assert run.params["dataset"] == "churn@2" and run.status == "SUCCEEDED"
    step = next(s for s in run.steps if s.step == "rows")
    _, tracking = context(settings)
    inputs = tracking.get_run(step.tracking_run_id or "").inputs
    assert [(i.name, i.tags["loopml.dataset.version"]) for i in inputs] == [("churn", "2")]
    assert sched.tick() == []


def test_a_monitoring_alert_triggers_the_pipeline_it_names(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    register(write_pipeline(FLOW), settings=settings)
    monitoring = LocalMonitorService.from_settings(settings)
    rng = np.random.default_rng(0)
    monitoring.data.register(
        "ref", pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    )
    monitoring.create_monitor(monitor(pipeline="retrain"))
    log_window(monitoring.predictions_root, T0, 3.0)
    monitoring.run_monitor("churn-drift", now=T0 + 60_000)
    assert monitoring.list_triggers("pending")
    sched = PipelineScheduler(settings, monitor=monitoring)
    fired = sched.tick()
    assert fired and {t.kind for t in fired} == {"alert"}
    assert all("churn-drift" in t.detail for t in fired)
    assert monitoring.list_triggers("pending") == []  # claimed
    started = [t for t in fired if t.status == "started"]
    assert started and get_run(started[0].run_id or "", settings).status == "SUCCEEDED"
    monitoring.close()


BLOCKING = """
from pathlib import Path
import time
from loopml.pipelines import pipeline, step

@step(cache=False)
def wait_for(flag: str) -> int:
    for _ in range(500):
        if Path(flag).exists():
            return 1
        time.sleep(0.02)
    raise TimeoutError(flag)

@pipeline
def slow(flag: str = "") -> int:
    return wait_for(flag)
"""


def test_no_second_run_while_the_pipeline_is_running(
    settings: Settings, write_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    pipe = write_pipeline(BLOCKING)
    flag = tmp_path / "go"
    definition = register(pipe, params={"flag": str(flag)}, settings=settings)
    first = threading.Thread(target=fire, args=(settings, definition, "manual", "first"))
    first.start()
    try:
        for _ in range(250):  # until the first run holds the lock
            if list_runs("slow", settings=settings):
                break
            time.sleep(0.02)
        second = fire(settings, definition, "cron", "second")
        with pytest.raises(Conflict, match="already running"):
            pipe.run({"flag": str(flag)}, settings=settings)
    finally:
        flag.write_text("go")
        first.join(30)
    running = list_runs("slow", settings=settings)
    assert second.status == "skipped" and second.run_id == running[-1].run_id
    assert "already running" in second.message
    assert [r.status for r in running] == ["SUCCEEDED"]
    assert pipe.run({"flag": str(flag)}, settings=settings).status == "SUCCEEDED"  # lock released


def test_register_refuses_a_bad_cron_and_unloadable_pipelines(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    with pytest.raises(InvalidInput, match="not a cron expression"):
        register(write_pipeline(FLOW), schedule="every day", settings=settings)

    from loopml.pipelines import pipeline, step

    @step
    def one() -> int:
        return 1

    @pipeline
    def local() -> int:
        return one()

    with pytest.raises(InvalidInput, match="cannot be imported again"):
        register(local, settings=settings)


def test_a_lock_left_by_a_dead_process_is_taken_over(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    import socket
    import subprocess
    import sys

    from loopml.pipelines.records import RUNNING, PipelineRunRecord, now_ms

    pipe = write_pipeline(FLOW)
    store, _ = context(settings)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    crashed = PipelineRunRecord(
        "f" * 32, "retrain", pipe.target, RUNNING, {}, "inprocess", True, "me", now_ms()
    )
    store.create_run(crashed)
    store.acquire("retrain", crashed.run_id)
    from sqlalchemy import update

    from loopml.store.schema import pipeline_locks

    with store.db.write() as conn:  # as if that process had taken it, then died
        conn.execute(update(pipeline_locks).values(owner=f"{socket.gethostname()}:{dead.stdout.strip()}"))
    assert pipe.run({}, settings=settings).status == "SUCCEEDED"
    abandoned = get_run(crashed.run_id, settings)
    assert abandoned.status == "FAILED" and "abandoned" in (abandoned.error or "")

    other = PipelineRunRecord(
        "e" * 32, "retrain", pipe.target, RUNNING, {}, "inprocess", True, "me", now_ms()
    )
    store.create_run(other)
    store.acquire("retrain", other.run_id)
    with store.db.write() as conn:  # a process on another machine: not provably dead
        conn.execute(update(pipeline_locks).values(owner="elsewhere:1"))
    with pytest.raises(Conflict, match="loopml pipeline unlock retrain"):
        pipe.run({}, settings=settings)
    assert store.unlock("retrain") == other.run_id
    assert pipe.run({}, settings=settings).status == "SUCCEEDED"


@pytest.mark.postgres
def test_runs_cache_and_locks_on_postgresql(
    postgres_url: str,
    tmp_path: Path,
    write_pipeline: Callable[..., Pipeline],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    import sqlalchemy as sa

    name = f"pipes_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "pg-home"))
    monkeypatch.setenv("LOOPML_DATABASE_URL", url)
    settings = Settings.load()
    try:
        pipe = write_pipeline(FLOW)
        first = pipe.run({"name": "pg"}, settings=settings)
        again = pipe.run({"name": "pg"}, settings=settings)
        assert (first.value, again.cached_steps) == ("hello pg", ["hello"])
        store, _ = context(settings)
        store.acquire("retrain", "a" * 32)
        with pytest.raises(Conflict):
            store.acquire("retrain", "b" * 32)
        store.release("retrain", "a" * 32)
        register(pipe, schedule="* * * * *", settings=settings)
        later = time.time() + 2 * MINUTE
        assert len(PipelineScheduler(settings, clock=lambda: later).tick()) == 1
    finally:
        from loopml.pipelines import engine

        engine.reset()
