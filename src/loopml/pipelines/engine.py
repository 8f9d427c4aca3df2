"""Running a pipeline: validate, build the DAG, then run, reuse or skip each step.

For each step whose inputs are ready the engine computes the cache key (the code digest of
the step and the project code it calls, the digests of its input values, its literal
parameters). An earlier successful execution with that key whose outputs still exist and
verify is reused (recorded as cached); otherwise the step is handed to the executor.
Independent steps run at the same time on a pool or Ray. A step that still fails after its
retries fails the run: running steps finish, nothing new starts, the traceback is kept, and
``resume`` later re-runs from there, reusing what finished.

>>> result = my_pipeline.run({"alpha": 0.5})      # doctest: +SKIP
>>> result.status, result.cached_steps            # doctest: +SKIP
('SUCCEEDED', ['load'])
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from loopml.config import Settings
from loopml.errors import IntegrityError, InvalidInput, LoopmlError
from loopml.pipelines._tracking import RunTracker
from loopml.pipelines.dsl import Graph, Node, Output, Pipeline, handles_in
from loopml.pipelines.executors import Executor, open_executor
from loopml.pipelines.hashing import code_digest
from loopml.pipelines.params import coerce_params, recordable
from loopml.pipelines.records import (
    CACHED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    PipelineRunRecord,
    StepRecord,
    new_id,
    now_ms,
)
from loopml.pipelines.store import PipelineStore
from loopml.pipelines.store_local import SqlPipelineStore
from loopml.pipelines.tasks import Task, TaskResult
from loopml.pipelines.values import Ref, json_bytes, list_ref, load_value, store_value
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.service import TrackingService

_KEY_VERSION = "loopml-pipelines-1"
log = logging.getLogger("loopml.pipelines.engine")
_lock = threading.Lock()
_contexts: dict[Settings, tuple[PipelineStore, TrackingService]] = {}

Progress = Callable[[StepRecord], None]


class PipelineFailed(LoopmlError):
    """A step failed on every attempt; ``details`` has ``run_id`` and ``step``."""

    error_code = "PIPELINE_FAILED"


def context(settings: Settings) -> tuple[PipelineStore, TrackingService]:
    """The pipeline store and tracking service of ``settings``, built once per process: the
    local store, or the server ``LOOPML_TRACKING_URI`` names (steps still run here)."""
    with _lock:
        if settings not in _contexts:
            _contexts[settings] = _remote(settings) if settings.is_remote else _local(settings)
        return _contexts[settings]


def _local(settings: Settings) -> tuple[PipelineStore, TrackingService]:
    return SqlPipelineStore.from_settings(settings), LocalTrackingService.from_settings(settings)


def _remote(settings: Settings) -> tuple[PipelineStore, TrackingService]:
    # httpx only when remote, as the SDK does: the HTTP clients are the layer above this one.
    from loopml.client.http import HttpTrackingService
    from loopml.client.http_pipelines import HttpPipelineStore

    assert settings.tracking_uri is not None
    tracking = HttpTrackingService(
        settings.tracking_uri,
        token=settings.token,
        retries=settings.http_retries,
        timeout=settings.http_timeout,
    )
    return HttpPipelineStore.from_settings(settings), tracking


def reset() -> None:
    """Close cached stores (tests)."""
    with _lock:
        for store, tracking in _contexts.values():
            store.close()
            tracking.close()
        _contexts.clear()


@dataclass
class PipelineResult:
    """A finished run: its record (with steps) and its outputs, loaded on demand."""

    record: PipelineRunRecord
    graph: Graph
    store: PipelineStore
    _outputs: dict[str, list[Ref]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def cached_steps(self) -> list[str]:
        return [s.step for s in self.record.steps if s.cached]

    def output(self, step: str) -> Any:
        """The value step ``step`` produced (a tuple for several outputs, a list for a map)."""
        if step not in self._outputs:
            raise InvalidInput(
                f"run {self.run_id} has no output of step {step!r}; steps: {', '.join(self._outputs)}",
                details={"step": step},
            )
        values = [load_value(self.store.blobs, r) for r in self._outputs[step]]
        return values[0] if len(values) == 1 else tuple(values)

    @property
    def value(self) -> Any:
        """What the pipeline function returned, with step outputs in place of handles."""
        return _resolve(self.graph.result, self)


def _resolve(obj: Any, result: PipelineResult) -> Any:
    if isinstance(obj, Output):
        refs = result._outputs[obj.node]
        return load_value(result.store.blobs, refs[0 if obj.index is None else obj.index])
    if isinstance(obj, list | tuple):
        return type(obj)(_resolve(v, result) for v in obj)
    if isinstance(obj, dict):
        return {k: _resolve(v, result) for k, v in obj.items()}
    return obj


def run_pipeline(
    pipe: Pipeline,
    params: dict[str, Any],
    *,
    cache: bool | None = None,
    executor: str | Executor | None = None,
    settings: Settings | None = None,
    trigger_id: str | None = None,
    resume_from: str | None = None,
    concurrent: bool = False,
    raise_on_failure: bool = True,
    progress: Progress | None = None,
) -> PipelineResult:
    """Run ``pipe`` with ``params`` (coerced to its signature) and return the finished run.

    ``cache=False`` runs every step; ``executor`` is a name (see
    :mod:`loopml.pipelines.executors`) or an open executor; ``concurrent=True`` skips the
    one-run-per-pipeline lock; a failed run raises :class:`PipelineFailed` unless
    ``raise_on_failure=False``. Bad parameters or a bad graph raise before anything runs.
    """
    settings = settings or Settings.load()
    values = coerce_params(pipe, params)
    graph = pipe.build(values)
    store, tracking = context(settings)
    use_cache = pipe.cache if cache is None else cache
    own = not isinstance(executor, Executor)
    ex = open_executor(executor or settings.executor) if own else executor  # type: ignore[arg-type]
    assert isinstance(ex, Executor)
    record = PipelineRunRecord(
        run_id=new_id(), pipeline=pipe.name, target=pipe.target, status=RUNNING,
        params=recordable(values), executor=ex.name, use_cache=use_cache, created_by=settings.user,
        started_at=now_ms(), trigger_id=trigger_id, resumed_from=resume_from,
    )  # fmt: skip
    lease: Lease | None = None
    try:
        if not concurrent:
            store.acquire(pipe.name, record.run_id)
            lease = Lease(store, pipe.name, record.run_id).start()
        try:
            runner = _Runner(store, RunTracker(tracking, store.blobs), ex, record, graph, progress)
            runner.lost = lease.lost if lease else None
            runner.run()
        finally:
            if lease is not None:
                lease.stop()
                store.release(pipe.name, record.run_id)
    finally:
        if own:
            ex.close()
    result = PipelineResult(store.get_run(record.run_id), graph, store, runner.outputs)
    if raise_on_failure and result.status == FAILED:
        raise PipelineFailed(result.record.error or "failed", details={"run_id": record.run_id})
    return result


class Lease:
    """Renews a run's lock from a daemon thread every ``store.lease_s / 3`` seconds.

    Renewal happens while a step runs (in this process, a pool or on Ray), so a long step does
    not let the lease expire. A renewal that finds the lock taken over (this run's client was
    unreachable for longer than the lease) sets :attr:`lost` and stops; the engine then fails
    the run at its next step boundary instead of writing alongside the run that took over. A
    renewal that fails (the server briefly unreachable) is retried at the next interval.

    >>> lease = Lease(store, "training", run_id).start()  # doctest: +SKIP
    >>> lease.stop()                                      # doctest: +SKIP
    """

    def __init__(self, store: PipelineStore, pipeline: str, run_id: str) -> None:
        self.store, self.pipeline, self.run_id = store, pipeline, run_id
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"loopml-lease-{run_id[:12]}", daemon=True)

    def start(self) -> Lease:
        """Start renewing; returns ``self``."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop renewing and wait for the thread (bounded: a renewal in flight has its timeout)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _renew(self) -> None:
        while not self._stop.wait(max(self.store.lease_s / 3, 0.01)):
            try:
                held = self.store.renew(self.pipeline, self.run_id)
            except Exception as exc:  # a network or database hiccup: the next interval retries
                log.warning(
                    "pipeline %s run %s: could not renew its lock: %s", self.pipeline, self.run_id, exc
                )
                continue
            if not held:
                log.warning(
                    "pipeline %s run %s: run lock lost (another run took over after the %g s lease "
                    "expired); the run stops at its next step boundary",
                    self.pipeline, self.run_id, self.store.lease_s,
                )  # fmt: skip
                self.lost.set()
                return


def _is_plain(value: Any) -> bool:
    """JSON made of plain Python values (passed inline; anything else is stored as a value)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


@dataclass
class _Unit:
    """One executable step: a plain node, or one item of a map node."""

    label: str
    node: Node
    args: dict[str, tuple[str, Any]]
    parent: str | None = None
    index: int = 0
    key: str = ""


class _Runner:
    def __init__(
        self,
        store: PipelineStore,
        tracker: RunTracker,
        ex: Executor,
        record: PipelineRunRecord,
        graph: Graph,
        progress: Progress | None,
    ) -> None:
        self.store, self.tracker, self.ex, self.record, self.graph = store, tracker, ex, record, graph
        self.progress = progress
        self.outputs: dict[str, list[Ref]] = {}
        self.pending = list(graph.nodes.values())
        self.running: dict[Future[TaskResult], tuple[_Unit, StepRecord]] = {}
        self.queue: list[_Unit] = []
        self.maps: dict[str, list[Ref | None]] = {}
        self.failed: StepRecord | None = None
        self.lost: threading.Event | None = None  # set when the run's lock lease was taken over
        self.digests: dict[int, str] = {}
        self.reuse: dict[str, StepRecord] = {}
        self.candidates: dict[str, list[StepRecord]] = {}
        self.produced: dict[str, StepRecord] = {}
        if record.resumed_from:
            old = store.get_run(record.resumed_from)
            self.reuse = {s.step: s for s in old.steps if s.status in (SUCCEEDED, CACHED)}

    def run(self) -> None:
        store = self.store
        store.create_run(self.record)
        tracking_id = self.tracker.start(self.record)
        store.set_tracking_run(self.record.run_id, tracking_id)
        self.record.tracking_run_id = tracking_id
        error: str | None = None
        try:
            self._loop()
        except BaseException as exc:  # storage or executor failure: the run must not stay RUNNING
            error = f"{type(exc).__name__}: {exc}"
            self._finish(FAILED, error)
            raise
        if self._lock_lost():
            error = (
                f"run lock lost: another run took over after the lease expired (not renewed within "
                f"{self.store.lease_s:g} s; see `loopml pipeline list --runs`); this run stopped at a "
                f"step boundary, `loopml pipeline resume {self.record.run_id}` continues it"
            )
            self._abandon_running(error)
        elif self.failed is not None:
            last = (self.failed.error or "").strip().splitlines()[-1:] or ["failed"]
            error = (
                f"step {self.failed.step!r} failed after {self.failed.attempts} attempt(s): {last[0]}; "
                f"see `loopml pipeline logs {self.record.run_id} {self.failed.step}`, fix it and "
                f"`loopml pipeline resume {self.record.run_id}`"
            )
        self._finish(FAILED if error else SUCCEEDED, error)

    def _may_start(self) -> bool:
        return self.failed is None and not self._lock_lost()

    def _lock_lost(self) -> bool:
        return self.lost is not None and self.lost.is_set()

    def _abandon_running(self, error: str) -> None:
        """Steps still running when the lock was lost: recorded FAILED, their results dropped."""
        for _, step in self.running.values():
            step.status, step.error, step.finished_at = FAILED, error, now_ms()
            self.store.save_step(step, new=False)
        self.running.clear()

    def _finish(self, status: str, error: str | None) -> None:
        self.store.finish_run(self.record.run_id, status, error)
        self.tracker.finish(status, now_ms())

    def _loop(self) -> None:
        while not self._lock_lost():
            if self.failed is None:
                self._schedule_ready()
                self._prefetch()
                while self.queue and len(self.running) < self.ex.slots and self._may_start():
                    self._start(self.queue.pop(0))
            if not self.running:
                if self.failed is None and self.queue:
                    continue
                if self.failed is None and self.pending:
                    if any(all(d in self.outputs for d in n.deps) for n in self.pending):
                        continue
                    stuck = ", ".join(n.name for n in self.pending)
                    raise IntegrityError(f"steps {stuck} wait for outputs no step will produce")
                return
            done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
            for future in done:
                unit, step = self.running.pop(future)
                self._finished(unit, step, future.result())

    def _schedule_ready(self) -> None:
        for node in list(self.pending):
            if all(dep in self.outputs for dep in node.deps):
                self.pending.remove(node)
                if node.mapped is None:
                    self.queue.append(_Unit(node.name, node, self._args(node, node.args)))
                else:
                    self._expand(node)

    def _args(self, node: Node, args: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        out: dict[str, tuple[str, Any]] = {}
        for name, value in args.items():
            if isinstance(value, Output):
                out[name] = ("ref", self._ref(value))
            elif handles_in(value):
                if not isinstance(value, list | tuple) or len(handles_in(value)) != len(value):
                    raise InvalidInput(
                        f"step {node.name!r} called at {node.site}: argument {name!r} mixes step "
                        "outputs with other values; pass a list of outputs only",
                        details={"step": node.name, "where": node.site},
                    )
                out[name] = ("refs", [self._ref(h) for h in value])
            else:
                out[name] = self._literal(node, name, value)
        return out

    def _literal(self, node: Node, name: str, value: Any) -> tuple[str, Any]:
        if _is_plain(value):
            return ("value", value)
        what = f"argument {name!r} of step {node.name!r} (called at {node.site})"
        return ("ref", store_value(self.store.blobs, value, what=what))

    def _ref(self, handle: Output) -> Ref:
        refs = self.outputs[handle.node]
        return refs[0 if handle.index is None else handle.index]

    def _expand(self, node: Node) -> None:
        assert node.mapped is not None
        items = self._items(node, node.args[node.mapped])
        self.maps[node.name] = [None] * len(items)
        for i, item in enumerate(items):
            args = self._args(node, {k: v for k, v in node.args.items() if k != node.mapped})
            args[node.mapped] = item
            self.queue.append(_Unit(f"{node.name}[{i}]", node, args, node.name, i))
        if not items:
            self.outputs[node.name] = [list_ref(self.store.blobs, [])]

    def _items(self, node: Node, source: Any) -> list[tuple[str, Any]]:
        if isinstance(source, list | tuple):
            return [
                ("ref", self._ref(v)) if isinstance(v, Output) else self._literal(node, "item", v)
                for v in source
            ]
        ref = self._ref(source)
        if ref["kind"] == "list":
            return [("ref", item) for item in ref["items"]]
        value = load_value(self.store.blobs, ref) if ref["kind"] == "json" else None
        if not isinstance(value, list):
            raise InvalidInput(
                f"step {node.step.name!r}.map called at {node.site}: step {source.node!r} returned a "
                f"{ref['kind']} value, not a list",
                details={"step": node.name, "where": node.site},
            )
        return [("value", v) for v in value]

    def _key(self, unit: _Unit) -> str:
        fn = unit.node.step.fn
        if id(fn) not in self.digests:
            self.digests[id(fn)] = code_digest(fn)
        parts: dict[str, Any] = {}
        for name, (kind, payload) in sorted(unit.args.items()):
            if kind == "ref":
                parts[name] = ["ref", payload["digest"]]
            elif kind == "refs":
                parts[name] = ["refs", [r["digest"] for r in payload]]
            else:
                parts[name] = ["value", payload]
        blob = json_bytes([_KEY_VERSION, self.digests[id(fn)], parts])
        return hashlib.sha256(blob).hexdigest()

    def _prefetch(self) -> None:
        """Key every queued step and fetch the cache candidates of all of them in one query."""
        todo = [u for u in self.queue if not u.key]
        for unit in todo:
            unit.key = self._key(unit)
        if self.record.use_cache:
            keys = [u.key for u in todo if u.node.step.cache and u.key not in self.candidates]
            if keys:
                self.candidates.update(self.store.cache_candidates(keys))

    def _start(self, unit: _Unit) -> None:
        key = unit.key or self._key(unit)
        step = StepRecord(self.record.run_id, unit.label, RUNNING, cache_key=key, started_at=now_ms())
        step.upstream = list(unit.node.deps)
        hit, reused_from = self._lookup(unit, key)
        if hit is not None:
            step.status, step.cached, step.outputs, step.finished_at = CACHED, True, hit.outputs, now_ms()
            step.logs = hit.logs  # the logs of the execution whose outputs are reused
            self._record(unit, step, reused_from or hit.run_id)
            return
        self.store.save_step(step, new=True)
        self.store.stage(_input_refs(unit))
        s = unit.node.step
        task = Task(
            unit.label, s.fn, unit.args, 1 if unit.parent else s.n_outputs, self.store.artifact_root,
            s.retries, s.backoff_s, s.max_backoff_s, s.context_param,
        )  # fmt: skip
        self.running[self.ex.submit(task)] = (unit, step)

    def _lookup(self, unit: _Unit, key: str) -> tuple[StepRecord | None, str]:
        old = self.reuse.get(unit.label)
        if old is not None and old.cache_key == key and self._valid(old):
            return old, old.run_id
        if not (self.record.use_cache and unit.node.step.cache):
            return None, ""
        if key in self.produced:  # the same call earlier in this run
            return self.produced[key], ""
        if key not in self.candidates:
            self.candidates.update(self.store.cache_candidates([key]))
        for candidate in self.candidates.pop(key):
            if self._valid(candidate):
                return candidate, ""
        return None, ""

    def _valid(self, step: StepRecord) -> bool:
        return step.outputs is not None and self.store.valid(step.outputs)

    def _finished(self, unit: _Unit, step: StepRecord, result: TaskResult) -> None:
        self.store.publish(result.outputs if result.ok else [], result.logs)
        step.attempts, step.logs = result.attempts, result.logs
        step.finished_at = now_ms()
        if result.ok:
            step.status, step.outputs = SUCCEEDED, result.outputs
            self.produced[step.cache_key or ""] = step
        else:
            step.status, step.error = FAILED, result.error
            self.failed = self.failed or step
        self._record(unit, step, "")

    def _record(self, unit: _Unit, step: StepRecord, reused_from: str) -> None:
        literals = {k: v for k, (kind, v) in unit.args.items() if kind == "value"}
        step.tracking_run_id = self.tracker.step(step, literals, _input_refs(unit), reused_from)
        self.store.save_step(step, new=step.cached)
        if self.progress is not None:
            self.progress(step)
        if step.outputs is None:
            return
        if unit.parent is None:
            self.outputs[unit.label] = step.outputs
            return
        items = self.maps[unit.parent]
        items[unit.index] = step.outputs[0]
        if all(i is not None for i in items):
            self.outputs[unit.parent] = [list_ref(self.store.blobs, [i for i in items if i is not None])]


def _input_refs(unit: _Unit) -> list[Ref]:
    """The stored values a unit reads (its literal arguments are inline)."""
    return [r for kind, p in unit.args.values() if kind != "value" for r in (p if kind == "refs" else [p])]
