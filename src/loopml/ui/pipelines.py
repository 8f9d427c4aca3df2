"""Pipelines (definitions, runs, one run's DAG and steps with status, cache hits, durations and logs,
trigger history) and the audit log (filterable, with the hash chain's verification).

Each is one route with query arguments (``?run=ID``, ``?verify=1``), so the permission table
in :mod:`loopml.server.auth` needs one rule per page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from loopml.governance import audit as audit_log
from loopml.pipelines.records import PipelineRunRecord
from loopml.pipelines.store import PipelineStore
from loopml.ui._common import empty_state, page
from loopml.ui._dag import dag_svg

router = APIRouter()
RUNS_SHOWN = 100
LOG_BYTES = 64 * 1024
AUDIT_PAGE = 200
_STREAMS = ("stdout", "stderr", "traceback")


def _timeline(run: PipelineRunRecord) -> dict[str, Any]:
    """Per step: start and duration (s from the run's start), status and whether it was cached."""
    steps = []
    for s in run.steps:
        start = ((s.started_at or run.started_at) - run.started_at) / 1000
        duration = s.duration_s or 0.0
        row = {"step": s.step, "start": start, "duration": duration, "status": s.status}
        steps.append({**row, "cached": s.cached})
    return {"steps": steps}


def _logs(store: PipelineStore, run: PipelineRunRecord) -> dict[str, list[tuple[str, str, bool]]]:
    """Per step: (stream, text, truncated) of its captured output."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for s in run.steps:
        for stream in _STREAMS:
            digest = s.logs.get(stream)
            if digest:
                data = store.blobs.read_bytes(digest)
                text = data[-LOG_BYTES:].decode(errors="replace")
                out.setdefault(s.step, []).append((stream, text, len(data) > LOG_BYTES))
    return out


def _no_pipelines(request: Request) -> Response:
    return empty_state(
        request,
        "pipelines",
        "No pipelines yet",
        [
            "A pipeline is a DAG of Python steps with caching, retries and resume, run in process, "
            "on a process pool or on Ray, by hand, on a schedule, when a dataset gets a new version "
            "or when a monitor's alert opens.",
        ],
        [
            "loopml pipeline run flows.py:train",
            "loopml pipeline register flows.py:train --cron '0 3 * * *'",
        ],
    )


@router.get("/pipelines")
def pipelines(request: Request, run: str | None = None, pipeline: str | None = None) -> Response:
    store: PipelineStore | None = getattr(request.app.state, "pipelines", None)
    if store is None:
        return _no_pipelines(request)
    if run:
        record = store.get_run(run)
        return page(
            request,
            "pipeline_run.html",
            "pipelines",
            run=record,
            timeline=_timeline(record),
            dag=dag_svg(record.steps),
            logs=_logs(store, record),
            triggers=[t for t in store.list_triggers(record.pipeline, limit=20) if t.run_id == record.run_id],
        )
    definitions = store.list_definitions()
    runs = store.list_runs(pipeline, limit=RUNS_SHOWN)
    if not definitions and not runs:
        return _no_pipelines(request)
    return page(
        request,
        "pipelines.html",
        "pipelines",
        definitions=definitions,
        runs=runs,
        triggers=store.list_triggers(pipeline, limit=RUNS_SHOWN),
        pipeline=pipeline or "",
    )


@router.get("/audit")
def audit(
    request: Request,
    actor: str = "",
    target: str = "",
    after: int = Query(0, ge=0),
    verify: bool = False,
) -> Response:
    db = request.app.state.tracking.db
    entries = audit_log.list_entries(
        db, actor=actor or None, target=target or None, limit=AUDIT_PAGE + 1, after_seq=after
    )
    report = audit_log.verify(db) if verify else None
    return page(
        request,
        "audit.html",
        "audit",
        entries=entries[:AUDIT_PAGE],
        more=len(entries) > AUDIT_PAGE,
        next_after=entries[AUDIT_PAGE - 1].seq if len(entries) > AUDIT_PAGE else 0,
        actor=actor,
        target=target,
        after=after,
        report=report,
        auth_enabled=bool(getattr(request.app.state, "auth_enabled", False)),
    )
