"""Triggers: manual runs, cron schedules, new dataset versions and monitoring alerts.

A registered pipeline (``register``) names what starts it. :class:`PipelineScheduler`
checks them every ``tick_s`` seconds (inside ``loopml server`` unless
``LOOPML_PIPELINE_SCHEDULER=0``, or alone with ``loopml scheduler``):

- **cron**: the schedule's next time after the cursor has passed; missed firings collapse
  into one; the cursor moves with a conditional update, so of two schedulers one fires.
- **dataset**: the dataset has a version newer than the cursor; the run gets it as its
  first ``DatasetVersion`` parameter (or one named ``dataset``) when it has one.
- **alert**: a pending monitoring trigger names the pipeline; it is claimed first.

Every firing is recorded in the trigger history with the run it started, or why it started
none: a pipeline that is still running is not started twice (its run lock is held). A lock
whose lease ran out (``LOOPML_PIPELINE_LEASE_S`` without renewal: its client died) does not
block a firing: the new run takes it over and the abandoned run is marked FAILED.

>>> sched = PipelineScheduler(Settings.load(), clock=lambda: 1_700_000_000.0)  # doctest: +SKIP
>>> [t.kind for t in sched.tick()]                                            # doctest: +SKIP
['cron']
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput, LoopmlError, NotFound
from loopml.pipelines.dsl import Pipeline
from loopml.pipelines.engine import context, run_pipeline
from loopml.pipelines.loader import load_target
from loopml.pipelines.params import is_dataset_annotation
from loopml.pipelines.records import Definition, TriggerRecord, new_id
from loopml.pipelines.store import PipelineStore, owner_id

if TYPE_CHECKING:
    from loopml.monitoring.local import LocalMonitorService

log = logging.getLogger("loopml.pipelines.scheduler")


def _check_cron(schedule: str) -> None:
    from croniter import croniter

    if not croniter.is_valid(schedule):
        raise InvalidInput(
            f"schedule {schedule!r} is not a cron expression (e.g. '0 * * * *' for hourly)",
            details={"field": "schedule"},
        )


def check_local(settings: Settings) -> None:
    """The scheduler claims triggers in the store it runs beside: refuse a remote one."""
    if settings.is_remote:
        raise InvalidInput(
            f"the pipeline scheduler runs beside the store: it runs inside `loopml server` at "
            f"{settings.tracking_uri} (or as `loopml scheduler` on that machine); unset "
            "LOOPML_TRACKING_URI to schedule pipelines of a local store",
            details={"field": "tracking_uri"},
        )


def _latest_version(settings: Settings, store: PipelineStore, dataset: str) -> int:
    return store.latest_dataset_version(dataset)


def register_definition(
    pipe: Pipeline | str,
    *,
    name: str | None,
    schedule: str | None,
    on_dataset: str | None,
    on_alert: bool,
    params: dict[str, Any],
    settings: Settings,
) -> Definition:
    """Register (or update) a pipeline by name; see :func:`loopml.pipelines.register`."""
    loaded = load_target(pipe) if isinstance(pipe, str) else pipe
    if not loaded.target:
        raise InvalidInput(
            f"pipeline {loaded.name!r} is defined where it cannot be imported again (__main__ or a "
            "function); register it by reference: FILE.py:NAME or MODULE:NAME",
            details={"pipeline": loaded.name},
        )
    if schedule:
        _check_cron(schedule)
    from loopml.pipelines.params import coerce_params, recordable

    stored = recordable(coerce_params(loaded, params)) if params else {}
    store, _ = context(settings)
    definition = Definition(
        name or loaded.name, loaded.target, schedule or None, on_dataset or None, on_alert, stored
    )
    saved = store.put_definition(definition)
    if on_dataset and saved.dataset_cursor is None:  # only versions registered from now on fire
        store.advance_cursor(saved.name, "dataset_cursor", None, _latest_version(settings, store, on_dataset))
        saved = store.get_definition(saved.name)
    return saved


def fire(
    settings: Settings,
    definition: Definition,
    kind: str,
    detail: str,
    params: dict[str, Any] | None = None,
    *,
    at: int | None = None,
) -> TriggerRecord:
    """Record a firing and run the pipeline (or record why it was not run)."""
    store, _ = context(settings)
    rec = TriggerRecord(
        new_id(), definition.name, kind, detail, "started", None, "", at or int(time.time() * 1000)
    )
    store.record_trigger(rec)
    try:
        pipe = load_target(definition.target)
        pipe.name = definition.name
        merged = {**definition.params, **(params or {})}
        result = run_pipeline(
            pipe, merged, settings=settings, trigger_id=rec.trigger_id, raise_on_failure=False
        )
        rec.status, rec.run_id, rec.message = "started", result.run_id, f"run {result.status}"
    except Conflict as exc:
        rec.status, rec.run_id, rec.message = "skipped", exc.details.get("run_id"), exc.message
    except Exception as exc:  # the pipeline could not even start: keep why in the history
        rec.status, rec.message = "failed", exc.message if isinstance(exc, LoopmlError) else repr(exc)
        log.warning("pipeline %s (%s trigger) did not start: %s", definition.name, kind, rec.message)
    store.update_trigger(rec.trigger_id, rec.status, rec.run_id, rec.message)
    return rec


def _dataset_params(definition: Definition, ref: str) -> dict[str, Any]:
    try:
        pipe = load_target(definition.target)
    except LoopmlError:
        return {}
    for p in pipe.params():
        if is_dataset_annotation(p.annotation) or p.name == "dataset":
            return {p.name: ref}
    return {}


class PipelineScheduler:
    """Fires due triggers of every registered pipeline; a daemon thread with :meth:`start`.

    ``clock`` (seconds since the epoch) is injectable so tests move time without sleeping;
    ``monitor`` is where alert triggers come from (none: alerts are not polled).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tick_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        monitor: LocalMonitorService | None = None,
        max_parallel: int = 2,
    ) -> None:
        check_local(settings)
        self.settings = settings
        self.store, _ = context(settings)
        self.tick_s = tick_s
        self.clock = clock
        self.monitor = monitor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="loopml-pipeline")
        self.futures: list[Future[TriggerRecord]] = []

    def due(self) -> list[tuple[Definition, str, str, dict[str, Any]]]:
        """Claim every due firing: (definition, kind, detail, params)."""
        now = int(self.clock() * 1000)
        found: list[tuple[Definition, str, str, dict[str, Any]]] = []
        alerts = self._pending_alerts()
        for d in self.store.list_definitions():
            if d.schedule and self._cron_due(d, now):
                found.append((d, "cron", f"schedule {d.schedule!r}", {}))
            if d.on_dataset:
                latest = _latest_version(self.settings, self.store, d.on_dataset)
                if latest > (d.dataset_cursor or 0) and self.store.advance_cursor(
                    d.name, "dataset_cursor", d.dataset_cursor, latest
                ):
                    ref = f"{d.on_dataset}@{latest}"
                    found.append((d, "dataset", f"new dataset version {ref}", _dataset_params(d, ref)))
            for trigger in alerts.get(d.name, []) if d.on_alert else []:
                if self._claim_alert(trigger.trigger_id):
                    detail = f"alert {trigger.alert_id} of monitor {trigger.monitor!r}"
                    found.append((d, "alert", detail, {}))
        return found

    def _cron_due(self, d: Definition, now: int) -> bool:
        from croniter import croniter

        base = d.cron_cursor if d.cron_cursor is not None else d.created_at
        nxt = int(croniter(d.schedule, base / 1000).get_next(float) * 1000)
        return nxt <= now and self.store.advance_cursor(d.name, "cron_cursor", d.cron_cursor, now)

    def _pending_alerts(self) -> dict[str, list[Any]]:
        if self.monitor is None:
            return {}
        out: dict[str, list[Any]] = {}
        for t in self.monitor.list_triggers("pending"):
            out.setdefault(t.pipeline, []).append(t)
        return out

    def _claim_alert(self, trigger_id: str) -> bool:
        assert self.monitor is not None
        try:
            self.monitor.claim_trigger(trigger_id, by=f"pipelines@{owner_id()}")
        except (Conflict, NotFound):
            return False
        return True

    def tick(self, *, wait: bool = True) -> list[TriggerRecord]:
        """Fire what is due; with ``wait`` run the pipelines to the end and return the records,
        else start them on the scheduler's threads (returns nothing)."""
        now = int(self.clock() * 1000)
        firings = self.due()
        if wait:
            return [
                fire(self.settings, d, kind, detail, params, at=now) for d, kind, detail, params in firings
            ]
        self.futures = [f for f in self.futures if not f.done()]
        for d, kind, detail, params in firings:
            self.futures.append(self._pool.submit(fire, self.settings, d, kind, detail, params, at=now))
        return []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="loopml-pipelines", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; pipelines already started run to their end (waited for up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick(wait=False)
            except Exception:  # a database hiccup must not kill the scheduler; the next tick retries
                log.exception("pipeline scheduler: tick failed")
