"""Where pipeline runs are recorded: the :class:`PipelineStore` contract and its two homes.

The engine, the triggers, the CLI and the server's API use only this interface. It is
implemented on the metadata database (:class:`loopml.pipelines.store_local.SqlPipelineStore`,
embedded mode and inside the server) and over HTTP
(:class:`loopml.client.http_pipelines.HttpPipelineStore`, when ``LOOPML_TRACKING_URI`` is a
server), so one pipeline runs unchanged against either.

The cache is the steps that succeeded, looked up by ``cache_key``; the run lock per pipeline
(taken to start, released at the end) keeps two schedulers, or a scheduler and a person, from
running the same pipeline twice at once. The lock is a lease: the running engine renews it
every ``lease_s / 3`` seconds, and a lock not renewed for ``lease_s`` (its client died, or lost
the network) is taken over by the next run, so a dead laptop cannot block a pipeline forever.
"""

from __future__ import annotations

import abc
import heapq
import os
import socket

from loopml.pipelines.records import Definition, PipelineRunRecord, StepRecord, TriggerRecord
from loopml.pipelines.values import Ref, verify
from loopml.store.blobs import BlobStore


def owner_id() -> str:
    """``host:pid`` of this process (who holds a lock)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PipelineStore(abc.ABC):
    """Runs, steps, run locks, registered pipelines and the trigger history.

    Subclasses implement every abstract method; ``blobs`` is the content-addressed store of
    step values and logs as the engine reads and writes them, and ``artifact_root`` the blob
    root a step task (possibly in another process) writes its outputs to. A store whose tasks
    write somewhere else than ``blobs`` overrides :meth:`stage` and :meth:`publish`.
    ``lease_s`` is how long a run lock lives without :meth:`renew`; the store decides when a
    lock is stale, on its own clock (the server's, over HTTP).
    """

    blobs: BlobStore
    artifact_root: str
    lease_s: float = 60.0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the default holds none)."""

    def stage(self, refs: list[Ref]) -> None:  # noqa: B027 - optional hook
        """Make the values ``refs`` name readable under ``artifact_root`` before a task reads them."""

    def publish(self, refs: list[Ref], logs: dict[str, str]) -> None:  # noqa: B027 - optional hook
        """Make what a task wrote under ``artifact_root`` (its outputs and logs) readable in ``blobs``."""

    def valid(self, refs: list[Ref]) -> bool:
        """Whether every blob of these values exists and hashes to its digest (a cache hit's test)."""
        return all(verify(self.blobs, r) for r in refs)

    # -- runs --------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, run: PipelineRunRecord) -> None:
        """Record a new run (its steps come later)."""

    @abc.abstractmethod
    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set the final status (and why it failed) and the end time."""

    @abc.abstractmethod
    def set_tracking_run(self, run_id: str, tracking_run_id: str) -> None:
        """Link the run to the tracking run that records it."""

    @abc.abstractmethod
    def get_run(self, run_id: str, *, with_steps: bool = True) -> PipelineRunRecord:
        """One run (with its steps in DAG order); ``NotFound`` if there is none."""

    @abc.abstractmethod
    def list_runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRunRecord]:
        """The latest runs, newest first, without steps."""

    # -- steps -------------------------------------------------------------------------------
    @abc.abstractmethod
    def save_step(self, step: StepRecord, *, new: bool) -> None:
        """Insert the step (``new``) or update it."""

    @abc.abstractmethod
    def get_step(self, run_id: str, step: str) -> StepRecord:
        """One step of one run; ``NotFound`` if there is none."""

    @abc.abstractmethod
    def cache_candidates(self, keys: list[str], per_key: int = 5) -> dict[str, list[StepRecord]]:
        """Earlier successful executions of each cache key, newest first."""

    # -- locks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def acquire(self, pipeline: str, run_id: str, owner: str | None = None) -> None:
        """Take the pipeline's run lock or raise ``Conflict`` naming the run that holds it."""

    @abc.abstractmethod
    def renew(self, pipeline: str, run_id: str) -> bool:
        """Extend the lease of ``run_id``'s lock; ``False`` if it no longer holds it (taken over)."""

    @abc.abstractmethod
    def release(self, pipeline: str, run_id: str) -> None:
        """Drop the lock if ``run_id`` holds it."""

    @abc.abstractmethod
    def unlock(self, pipeline: str) -> str | None:
        """Drop the lock whoever holds it (its run, if still RUNNING, is marked FAILED)."""

    # -- definitions -------------------------------------------------------------------------
    @abc.abstractmethod
    def put_definition(self, d: Definition) -> Definition:
        """Create or update a registered pipeline (cursors survive an update)."""

    @abc.abstractmethod
    def get_definition(self, name: str) -> Definition:
        """A registered pipeline; ``NotFound`` names how to register it."""

    @abc.abstractmethod
    def list_definitions(self) -> list[Definition]:
        """Every registered pipeline, by name."""

    @abc.abstractmethod
    def delete_definition(self, name: str) -> None:
        """Forget a registered pipeline (its runs stay)."""

    @abc.abstractmethod
    def advance_cursor(self, name: str, column: str, old: int | None, new: int) -> bool:
        """Move a trigger cursor from ``old`` to ``new`` if nobody moved it first (the claim)."""

    @abc.abstractmethod
    def latest_dataset_version(self, dataset: str) -> int:
        """The newest version number of ``dataset`` (0 when it has none): the dataset trigger."""

    # -- trigger history ---------------------------------------------------------------------
    @abc.abstractmethod
    def record_trigger(self, rec: TriggerRecord) -> None:
        """Append a firing to the trigger history."""

    @abc.abstractmethod
    def update_trigger(self, trigger_id: str, status: str, run_id: str | None, message: str) -> None:
        """Record what a firing started (or why it started nothing)."""

    @abc.abstractmethod
    def list_triggers(self, pipeline: str | None = None, limit: int = 100) -> list[TriggerRecord]:
        """The latest firings, newest first."""


def in_dag_order(steps: list[StepRecord]) -> list[StepRecord]:
    """Every step after the steps it consumed; otherwise by start time, then name.

    Start times are milliseconds: a cached chain starts several steps in the same one, so they
    alone do not keep a step after its inputs.

    >>> a = StepRecord("r", "a", "SUCCEEDED", started_at=5)
    >>> b = StepRecord("r", "b", "SUCCEEDED", started_at=5, upstream=["a"])
    >>> [s.step for s in in_dag_order([b, a])]
    ['a', 'b']
    """

    def key(s: StepRecord) -> tuple[int, str]:
        return (s.started_at or 0, s.step)

    position = {s.step: i for i, s in enumerate(steps)}
    names = set(position)
    waiting = {s.step: {p for p in s.upstream or [] if p in names and p != s.step} for s in steps}
    consumers: dict[str, list[StepRecord]] = {}
    for s in steps:
        for parent in waiting[s.step]:
            consumers.setdefault(parent, []).append(s)
    ready = [(key(s), i, s) for i, s in enumerate(steps) if not waiting[s.step]]
    heapq.heapify(ready)
    ordered: list[StepRecord] = []
    while ready:
        *_, done = heapq.heappop(ready)
        ordered.append(done)
        for child in consumers.get(done.step, []):
            waiting[child.step].discard(done.step)
            if not waiting[child.step]:
                heapq.heappush(ready, (key(child), position[child.step], child))
    placed = {s.step for s in ordered}
    return ordered + sorted((s for s in steps if s.step not in placed), key=key)  # a cycle: never recorded
