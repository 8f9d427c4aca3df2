"""loopml's native monitoring API: ``/api/v1/labels`` and ``/api/v1/monitors``.

* ``POST /api/v1/labels`` ``{"request_ids": [...], "labels": [...], "endpoint": "churn"}``:
  ground truth for earlier predictions, by request id, whenever it arrives;
* ``GET /api/v1/performance/{endpoint}?window_s=3600``: performance over time windows;
* ``/api/v1/monitors``: create, list, get, replace, delete; ``POST .../{name}/run`` runs
  once; ``GET .../{name}/runs``; ``GET /api/v1/alerts``; ``GET /api/v1/triggers`` and
  ``POST /api/v1/triggers/{id}/claim`` for the pipelines capability.

Thin like the other routers: the service runs in the thread pool.
:class:`loopml.client.http_monitoring.HttpMonitorService` is its client.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from loopml.config import Settings
from loopml.monitoring.local import LocalMonitorService
from loopml.monitoring.monitors import Monitor
from loopml.monitoring.scheduler import Scheduler
from loopml.server.api_v1_registry import caller

router = APIRouter(prefix="/api/v1", tags=["monitoring"])
JSON = dict[str, Any]


class Labels(BaseModel):
    request_ids: list[str]
    labels: list[Any]
    endpoint: str | None = None


class Claim(BaseModel):
    by: str = ""


def install(app: FastAPI, svc: LocalMonitorService, settings: Settings) -> None:
    """Mount the routes; with ``settings.monitor_scheduler`` run scheduled monitors in the
    background from startup to shutdown."""
    app.state.monitoring = svc
    app.include_router(router)
    if settings.monitor_scheduler:
        scheduler = Scheduler(svc)
        app.state.monitor_scheduler = scheduler
        app.router.on_startup.append(scheduler.start)
        app.router.on_shutdown.append(scheduler.stop)


def monitoring(request: Request) -> LocalMonitorService:
    svc: LocalMonitorService = request.app.state.monitoring
    return svc


@router.post("/labels")
async def log_labels(body: Labels, request: Request) -> JSON:
    n = await run_in_threadpool(
        monitoring(request).log_labels, body.request_ids, body.labels, endpoint=body.endpoint
    )
    return {"logged": n}


@router.get("/performance/{endpoint}")
async def performance(
    endpoint: str,
    request: Request,
    start: int | None = None,
    end: int | None = None,
    window_s: float | None = None,
) -> JSON:
    return await run_in_threadpool(
        lambda: monitoring(request).performance(endpoint, start=start, end=end, window_s=window_s)
    )


@router.post("/monitors")
async def create_monitor(body: dict[str, Any], request: Request) -> JSON:
    monitor = Monitor.from_dict(body)
    return (await run_in_threadpool(monitoring(request).create_monitor, monitor, caller(request))).to_dict()


@router.get("/monitors")
async def list_monitors(request: Request) -> JSON:
    return {"monitors": [m.to_dict() for m in await run_in_threadpool(monitoring(request).list_monitors)]}


@router.get("/monitors/{name}")
async def get_monitor(name: str, request: Request) -> JSON:
    return (await run_in_threadpool(monitoring(request).get_monitor, name)).to_dict()


@router.put("/monitors/{name}")
async def update_monitor(name: str, body: dict[str, Any], request: Request) -> JSON:
    monitor = Monitor.from_dict({**body, "name": name})
    return (await run_in_threadpool(monitoring(request).update_monitor, monitor, caller(request))).to_dict()


@router.delete("/monitors/{name}")
async def delete_monitor(name: str, request: Request) -> JSON:
    await run_in_threadpool(monitoring(request).delete_monitor, name)
    return {}


@router.post("/monitors/{name}/run")
async def run_monitor(name: str, request: Request, now: int | None = None) -> JSON:
    return (await run_in_threadpool(lambda: monitoring(request).run_monitor(name, now=now))).to_dict()


@router.get("/monitors/{name}/runs")
async def list_runs(name: str, request: Request, limit: int = Query(20, ge=1, le=10_000)) -> JSON:
    return {
        "runs": [r.to_dict() for r in await run_in_threadpool(monitoring(request).list_runs, name, limit)]
    }


@router.get("/alerts")
async def list_alerts(
    request: Request,
    monitor: str | None = None,
    status: str | None = None,
    limit: int = Query(100, ge=1, le=10_000),
) -> JSON:
    found = await run_in_threadpool(monitoring(request).list_alerts, monitor, status, limit)
    return {"alerts": [a.to_dict() for a in found]}


@router.get("/triggers")
async def list_triggers(request: Request, status: str | None = "pending") -> JSON:
    status = None if status in ("", "all") else status
    return {
        "triggers": [t.to_dict() for t in await run_in_threadpool(monitoring(request).list_triggers, status)]
    }


@router.post("/triggers/{trigger_id}/claim")
async def claim_trigger(trigger_id: str, body: Claim, request: Request) -> JSON:
    by = body.by or caller(request) or ""
    return (await run_in_threadpool(monitoring(request).claim_trigger, trigger_id, by)).to_dict()
