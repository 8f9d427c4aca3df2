"""The pipeline store on the metadata database: runs, steps, definitions, triggers and run locks.

The cache is the ``pipeline_steps`` rows that succeeded, looked up by ``cache_key``; the
lock row per pipeline (inserted to start, renewed while running, deleted at the end) is what
keeps two schedulers (or a scheduler and a person) from running the same pipeline twice at
once. Its ``heartbeat_at`` is the lease: a row not renewed for ``lease_s`` is taken over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from loopml.config import Settings
from loopml.errors import Conflict, NotFound
from loopml.pipelines.records import (
    CACHED,
    RUNNING,
    SUCCEEDED,
    Definition,
    PipelineRunRecord,
    StepRecord,
    TriggerRecord,
    now_ms,
)
from loopml.pipelines.store import PipelineStore, in_dag_order, owner_id
from loopml.store.blobs import BlobStore, open_blob_store
from loopml.store.db import Database
from loopml.store.schema import (
    pipeline_definitions,
    pipeline_locks,
    pipeline_runs,
    pipeline_steps,
    pipeline_triggers,
)


class _Holder(NamedTuple):
    run_id: str
    owner: str
    renewed_at: int  # ms: the last renewal (when it was taken, for a lock without one)


class SqlPipelineStore(PipelineStore):
    """Reads and writes of the pipeline tables; every method is one short transaction."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        artifact_root: str,
        *,
        lease_s: float = 60.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.artifact_root = artifact_root
        self.lease_s = lease_s
        self.clock = clock  # milliseconds since the epoch: when locks are renewed and go stale

    @classmethod
    def from_settings(cls, settings: Settings) -> SqlPipelineStore:
        return cls(
            Database(settings.database_url),
            open_blob_store(settings.artifact_root),
            settings.artifact_root,
            lease_s=settings.pipeline_lease_s,
        )

    def close(self) -> None:
        self.db.dispose()

    def latest_dataset_version(self, dataset: str) -> int:
        from loopml.data.service import LocalDataService  # pyarrow only when a dataset trigger is checked

        try:
            versions = LocalDataService(self.db, self.blobs, "").list_versions(dataset)
        except NotFound:
            return 0
        return max(v.version for v in versions)

    # -- runs --------------------------------------------------------------------------------
    def create_run(self, run: PipelineRunRecord) -> None:
        row = {k: getattr(run, k) for k in (c.name for c in pipeline_runs.c) if k != "params"}
        with self.db.write() as conn:
            conn.execute(insert(pipeline_runs).values(**row, params=orjson.dumps(run.params).decode()))

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(pipeline_runs)
                .where(pipeline_runs.c.run_id == run_id)
                .values(status=status, finished_at=now_ms(), error=error)
            )

    def set_tracking_run(self, run_id: str, tracking_run_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(pipeline_runs)
                .where(pipeline_runs.c.run_id == run_id)
                .values(tracking_run_id=tracking_run_id)
            )

    def get_run(self, run_id: str, *, with_steps: bool = True) -> PipelineRunRecord:
        with self.db.read() as conn:
            row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).first()
            if row is None:
                raise NotFound(
                    f"pipeline run {run_id!r} does not exist; see `loopml pipeline list --runs`",
                    details={"run_id": run_id},
                )
            run = _run(row._mapping)
            if with_steps:
                query = select(pipeline_steps).where(pipeline_steps.c.run_id == run_id)
                run.steps = in_dag_order([_step(r._mapping) for r in conn.execute(query)])
        return run

    def list_runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        t = pipeline_runs
        query = select(t).order_by(t.c.started_at.desc(), t.c.run_id).limit(limit)
        if pipeline:
            query = query.where(t.c.pipeline == pipeline)
        with self.db.read() as conn:
            return [_run(r._mapping) for r in conn.execute(query)]

    # -- steps -------------------------------------------------------------------------------
    def save_step(self, step: StepRecord, *, new: bool) -> None:
        """Insert the step's row (``new``) or update it: a run writes a step when it starts and
        when it ends, a cached step once. Plain SQL: this is on every step's path."""
        values = _step_row(step)
        if new:
            names = ", ".join(values)
            sql = f"INSERT INTO pipeline_steps (run_id, step, {names}) VALUES ({_marks(len(values) + 2)})"
            params = (step.run_id, step.step, *values.values())
        else:
            sets = ", ".join(f"{k} = ?" for k in values)
            sql = f"UPDATE pipeline_steps SET {sets} WHERE run_id = ? AND step = ?"
            params = (*values.values(), step.run_id, step.step)
        with self.db.write() as conn:
            conn.exec_driver_sql(self.db.sql(sql), params)

    def get_step(self, run_id: str, step: str) -> StepRecord:
        t = pipeline_steps
        with self.db.read() as conn:
            row = conn.execute(select(t).where(and_(t.c.run_id == run_id, t.c.step == step))).first()
        if row is None:
            raise NotFound(
                f"pipeline run {run_id!r} has no step {step!r}; see `loopml pipeline show {run_id}`",
                details={"run_id": run_id, "step": step},
            )
        return _step(row._mapping)

    def cache_candidates(self, keys: list[str], per_key: int = 5) -> dict[str, list[StepRecord]]:
        """Earlier successful executions of each cache key, newest first (one query for all)."""
        columns = ", ".join(c.name for c in pipeline_steps.c)
        found: dict[str, list[StepRecord]] = {k: [] for k in keys}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            sql = (
                f"SELECT {columns} FROM pipeline_steps WHERE cache_key IN ({_marks(len(chunk))}) "
                "AND status IN (?, ?) ORDER BY finished_at DESC"
            )
            with self.db.read() as conn:
                rows = conn.exec_driver_sql(self.db.sql(sql), (*chunk, SUCCEEDED, CACHED)).all()
            for r in rows:
                bucket = found[r.cache_key]
                if len(bucket) < per_key:
                    bucket.append(_step(r._mapping))
        return found

    # -- locks -------------------------------------------------------------------------------
    def acquire(self, pipeline: str, run_id: str, owner: str | None = None) -> None:
        """Take the pipeline's run lock for ``owner`` (default: this process), or raise
        ``Conflict`` naming the run holding it and when its lease expires. A lock whose run has
        finished, whose owner process on this host is gone, or that was not renewed within
        ``lease_s`` is taken over (its run, if still RUNNING, is marked FAILED)."""
        owner = owner or owner_id()
        for _ in range(3):
            now = self.clock()
            try:
                with self.db.write() as conn:
                    conn.execute(
                        insert(pipeline_locks).values(
                            pipeline=pipeline, run_id=run_id, owner=owner, acquired_at=now, heartbeat_at=now
                        )
                    )
                return
            except DbIntegrityError:
                holder = self._lock_holder(pipeline)
                if holder is None:
                    continue
                why = self._stale(holder)
                if why is None:
                    raise self._busy(pipeline, holder) from None
                if self._take_over(pipeline, holder, run_id, owner, why):
                    return
        raise Conflict(f"pipeline {pipeline!r}: could not take its run lock", details={"pipeline": pipeline})

    def renew(self, pipeline: str, run_id: str) -> bool:
        """Move the lease of ``run_id``'s lock to now; ``False`` if another run took it over."""
        t = pipeline_locks
        with self.db.write() as conn:
            done = conn.execute(
                update(t)
                .where(and_(t.c.pipeline == pipeline, t.c.run_id == run_id))
                .values(heartbeat_at=self.clock())
            )
        return done.rowcount == 1

    def release(self, pipeline: str, run_id: str) -> None:
        t = pipeline_locks
        with self.db.write() as conn:
            conn.execute(delete(t).where(and_(t.c.pipeline == pipeline, t.c.run_id == run_id)))

    def unlock(self, pipeline: str) -> str | None:
        """Drop the pipeline's lock whoever holds it; a run it held that is still RUNNING (its
        process died) is marked FAILED. Returns that run's id, if there was a lock."""
        holder = self._lock_holder(pipeline)
        if holder is None:
            return None
        self._abandon(holder.run_id, f"abandoned: {holder.owner} stopped running it")
        self.release(pipeline, holder.run_id)
        return holder.run_id

    def _lock_holder(self, pipeline: str) -> _Holder | None:
        with self.db.read() as conn:
            row = conn.execute(select(pipeline_locks).where(pipeline_locks.c.pipeline == pipeline)).first()
        if row is None:
            return None
        renewed = row.heartbeat_at if row.heartbeat_at is not None else row.acquired_at
        return _Holder(str(row.run_id), str(row.owner), int(renewed))

    def _busy(self, pipeline: str, holder: _Holder) -> Conflict:
        age_s = max(0, self.clock() - holder.renewed_at) / 1000
        return Conflict(
            f"pipeline {pipeline!r} is already running (run {holder.run_id}, held by {holder.owner}, "
            f"last renewed {age_s:.0f} s ago); it expires after {self.lease_s:g} s without renewal; "
            f"wait for it, or `loopml pipeline unlock {pipeline}`",
            details={
                "pipeline": pipeline, "run_id": holder.run_id, "owner": holder.owner,
                "renewed_s_ago": round(age_s, 3), "lease_s": self.lease_s,
            },
        )  # fmt: skip

    def _stale(self, holder: _Holder) -> str | None:
        """Why the holder's lock may be taken over (None: it is live)."""
        with self.db.read() as conn:
            status = conn.execute(
                select(pipeline_runs.c.status).where(pipeline_runs.c.run_id == holder.run_id)
            ).scalar()
        if status is not None and status != RUNNING:
            return f"abandoned: its run is {status}"
        age_ms = self.clock() - holder.renewed_at
        if age_ms > self.lease_s * 1000:
            return (
                f"abandoned: its run lock lease expired ({holder.owner} did not renew it for "
                f"{age_ms / 1000:.0f} s; the lease is {self.lease_s:g} s), so another run took over"
            )
        host, _, pid = holder.owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return None
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"abandoned: {holder.owner} stopped running it"
        except PermissionError:
            return None
        return None

    def _take_over(self, pipeline: str, holder: _Holder, run_id: str, owner: str, why: str) -> bool:
        """Hand the stale lock to ``run_id`` if nobody renewed or took it meanwhile (one
        conditional update, so of two runs taking over one wins) and fail the abandoned run."""
        t, now = pipeline_locks, self.clock()
        renewed = func.coalesce(t.c.heartbeat_at, t.c.acquired_at)
        with self.db.write() as conn:
            done = conn.execute(
                update(t)
                .where(
                    and_(t.c.pipeline == pipeline, t.c.run_id == holder.run_id, renewed == holder.renewed_at)
                )
                .values(run_id=run_id, owner=owner, acquired_at=now, heartbeat_at=now)
            )
        if done.rowcount != 1:
            return False
        self._abandon(holder.run_id, why)
        return True

    def _abandon(self, run_id: str, error: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(pipeline_runs)
                .where(and_(pipeline_runs.c.run_id == run_id, pipeline_runs.c.status == RUNNING))
                .values(status="FAILED", finished_at=now_ms(), error=error)
            )

    # -- definitions -------------------------------------------------------------------------
    def put_definition(self, d: Definition) -> Definition:
        """Create or update a registered pipeline (cursors survive an update)."""
        t = pipeline_definitions
        now = now_ms()
        values = {
            "target": d.target, "schedule": d.schedule, "on_dataset": d.on_dataset,
            "on_alert": d.on_alert, "params": orjson.dumps(d.params).decode(), "updated_at": now,
        }  # fmt: skip
        with self.db.write() as conn:
            done = conn.execute(update(t).where(t.c.name == d.name).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(t).values(name=d.name, created_at=now, cron_cursor=now, **values))
        return self.get_definition(d.name)

    def get_definition(self, name: str) -> Definition:
        with self.db.read() as conn:
            row = conn.execute(
                select(pipeline_definitions).where(pipeline_definitions.c.name == name)
            ).first()
        if row is None:
            raise NotFound(
                f"pipeline {name!r} is not registered; register it with `loopml pipeline register "
                "FILE.py:NAME` or run it by FILE.py:NAME / module:NAME",
                details={"pipeline": name},
            )
        return _definition(row._mapping)

    def list_definitions(self) -> list[Definition]:
        with self.db.read() as conn:
            rows = conn.execute(select(pipeline_definitions).order_by(pipeline_definitions.c.name)).all()
        return [_definition(r._mapping) for r in rows]

    def delete_definition(self, name: str) -> None:
        self.get_definition(name)
        with self.db.write() as conn:
            conn.execute(delete(pipeline_definitions).where(pipeline_definitions.c.name == name))

    def advance_cursor(self, name: str, column: str, old: int | None, new: int) -> bool:
        """Move a trigger cursor from ``old`` to ``new`` if nobody moved it first (the claim)."""
        t = pipeline_definitions
        col = t.c[column]
        seen = col.is_(None) if old is None else col == old
        with self.db.write() as conn:
            done = conn.execute(update(t).where(and_(t.c.name == name, seen)).values({column: new}))
        return done.rowcount == 1

    # -- trigger history ---------------------------------------------------------------------
    def record_trigger(self, rec: TriggerRecord) -> None:
        with self.db.write() as conn:
            conn.execute(insert(pipeline_triggers).values(**rec.to_dict()))

    def update_trigger(self, trigger_id: str, status: str, run_id: str | None, message: str) -> None:
        t = pipeline_triggers
        with self.db.write() as conn:
            conn.execute(
                update(t)
                .where(t.c.trigger_id == trigger_id)
                .values(status=status, run_id=run_id, message=message)
            )

    def list_triggers(self, pipeline: str | None = None, limit: int = 100) -> list[TriggerRecord]:
        t = pipeline_triggers
        query = select(t).order_by(t.c.created_at.desc(), t.c.trigger_id).limit(limit)
        if pipeline:
            query = query.where(t.c.pipeline == pipeline)
        with self.db.read() as conn:
            return [TriggerRecord(**dict(r._mapping)) for r in conn.execute(query)]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _run(m: Any) -> PipelineRunRecord:
    values = dict(m)
    values["params"] = orjson.loads(values["params"])
    values["use_cache"] = bool(values["use_cache"])
    return PipelineRunRecord(**values)


def _step_row(step: StepRecord) -> dict[str, Any]:
    return {
        "status": step.status, "cache_key": step.cache_key, "cached": step.cached,
        "attempts": step.attempts, "started_at": step.started_at, "finished_at": step.finished_at,
        "outputs": None if step.outputs is None else orjson.dumps(step.outputs).decode(),
        "logs": orjson.dumps(step.logs).decode(), "tracking_run_id": step.tracking_run_id,
        "error": step.error,
        "upstream": None if step.upstream is None else orjson.dumps(step.upstream).decode(),
    }  # fmt: skip


def _step(m: Any) -> StepRecord:
    values = dict(m)
    values["outputs"] = None if values["outputs"] is None else orjson.loads(values["outputs"])
    values["logs"] = orjson.loads(values["logs"])
    values["cached"] = bool(values["cached"])
    values["upstream"] = None if values["upstream"] is None else orjson.loads(values["upstream"])
    return StepRecord(**values)


def _definition(m: Any) -> Definition:
    values = dict(m)
    values["params"] = orjson.loads(values["params"])
    values["on_alert"] = bool(values["on_alert"])
    return Definition(**values)
