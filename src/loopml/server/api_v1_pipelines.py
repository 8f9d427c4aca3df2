"""loopml's pipelines API (read-only) and the pipeline scheduler inside ``loopml server``.

* ``GET /api/v1/pipelines``: registered pipelines and their triggers;
* ``GET /api/v1/pipelines/runs?pipeline=NAME&limit=50``: the latest runs, newest first;
* ``GET /api/v1/pipelines/runs/{run_id}``: one run with its steps (status, cached,
  attempts, durations, output refs, tracking run ids);
* ``GET /api/v1/pipelines/runs/{run_id}/logs?step=NAME&stream=stderr``: captured logs as
  ``{"logs": [{"step", "stream", "text"}]}``;
* ``GET /api/v1/pipelines/triggers?pipeline=NAME``: the trigger history.

With ``LOOPML_PIPELINE_SCHEDULER`` on (the default) the scheduler fires cron, dataset and
alert triggers from startup to shutdown.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from loopml.config import Settings
from loopml.errors import InvalidInput
from loopml.monitoring.local import LocalMonitorService
from loopml.pipelines.engine import context
from loopml.pipelines.store import PipelineStore
from loopml.pipelines.triggers import PipelineScheduler

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])
JSON = dict[str, Any]
_STREAMS = ("stdout", "stderr", "traceback")


def install(app: FastAPI, settings: Settings, monitor: LocalMonitorService) -> None:
    """Mount the routes; start the scheduler with the app when ``settings.pipeline_scheduler``."""
    app.state.pipelines = context(settings)[0] if not settings.is_remote else None
    app.include_router(router)
    if settings.pipeline_scheduler and not settings.is_remote:
        scheduler = PipelineScheduler(settings, monitor=monitor)
        app.state.pipeline_scheduler = scheduler
        app.router.on_startup.append(scheduler.start)
        app.router.on_shutdown.append(scheduler.stop)


def _store(request: Request) -> PipelineStore:
    store: PipelineStore = request.app.state.pipelines
    return store


@router.get("")
async def list_pipelines(request: Request) -> JSON:
    defs = await run_in_threadpool(_store(request).list_definitions)
    return {"pipelines": [d.to_dict() for d in defs]}


@router.get("/runs")
async def list_runs(
    request: Request, pipeline: str | None = None, limit: int = Query(50, ge=1, le=10_000)
) -> JSON:
    runs = await run_in_threadpool(_store(request).list_runs, pipeline, limit)
    return {"runs": [r.to_dict() for r in runs]}


@router.get("/runs/{run_id}")
async def get_run(request: Request, run_id: str) -> JSON:
    run = await run_in_threadpool(_store(request).get_run, run_id)
    return {"run": run.to_dict()}


@router.get("/runs/{run_id}/logs")
async def get_logs(request: Request, run_id: str, step: str | None = None, stream: str | None = None) -> JSON:
    if stream is not None and stream not in _STREAMS:
        raise InvalidInput(f"stream {stream!r}: use stdout, stderr or traceback", details={"field": "stream"})
    store = _store(request)

    def read() -> list[JSON]:
        steps = [store.get_step(run_id, step)] if step else store.get_run(run_id).steps
        out = []
        for s in steps:
            for name in _STREAMS:
                digest = s.logs.get(name)
                if digest and stream in (None, name):
                    text = store.blobs.read_bytes(digest).decode(errors="replace")
                    out.append({"step": s.step, "stream": name, "text": text})
        return out

    return {"logs": await run_in_threadpool(read)}


@router.get("/triggers")
async def list_triggers(
    request: Request, pipeline: str | None = None, limit: int = Query(100, ge=1, le=10_000)
) -> JSON:
    items = await run_in_threadpool(_store(request).list_triggers, pipeline, limit)
    return {"triggers": [t.to_dict() for t in items]}
