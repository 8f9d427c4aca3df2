"""loopml's native tracking API under ``/api/v1`` (OpenAPI at ``/docs``).

Thin: each route validates its body with pydantic, calls the tracking service
in the thread pool and encodes the result with :mod:`loopml.tracking.codec`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from loopml.server.responses import spool_body
from loopml.tracking import codec
from loopml.tracking.records import DatasetInput, Metric, Param, RunTag, ViewType
from loopml.tracking.service import TrackingService

router = APIRouter(prefix="/api/v1", tags=["tracking"])


def _svc(request: Request) -> TrackingService:
    svc: TrackingService = request.app.state.tracking
    return svc


class ExperimentCreate(BaseModel):
    name: str
    artifact_location: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ExperimentUpdate(BaseModel):
    name: str


class TagValue(BaseModel):
    value: str


class RunCreate(BaseModel):
    experiment_id: str = "0"
    run_name: str | None = None
    start_time: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    user_id: str | None = None


class RunUpdate(BaseModel):
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class MetricIn(BaseModel):
    key: str
    value: float | str
    timestamp: int
    step: int = 0


class KeyValue(BaseModel):
    key: str
    value: str


class Batch(BaseModel):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class DatasetIn(BaseModel):
    name: str
    digest: str
    source_type: str = "local"
    source: str = ""
    schema_: str | None = Field(default=None, alias="schema")
    profile: str | None = None
    context: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Inputs(BaseModel):
    datasets: list[DatasetIn]


class RunSearch(BaseModel):
    experiment_ids: list[str]
    filter: str = ""
    view_type: ViewType = ViewType.ACTIVE_ONLY
    max_results: int = 1000
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


class RunIds(BaseModel):
    run_ids: list[str]


# -- experiments ------------------------------------------------------------------------------
@router.post("/experiments")
async def create_experiment(body: ExperimentCreate, request: Request) -> dict[str, str]:
    exp_id = await run_in_threadpool(
        _svc(request).create_experiment, body.name, body.artifact_location, body.tags
    )
    return {"experiment_id": exp_id}


@router.get("/experiments")
async def search_experiments(
    request: Request,
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int = 1000,
    filter: str | None = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    page = await run_in_threadpool(
        _svc(request).search_experiments, view_type, max_results, filter, page_token
    )
    return {
        "experiments": [codec.experiment_to_dict(e) for e in page.experiments],
        "next_page_token": page.next_page_token,
    }


@router.get("/experiments/by-name/{name}")
async def get_experiment_by_name(name: str, request: Request) -> dict[str, Any]:
    exp = await run_in_threadpool(_svc(request).get_experiment_by_name, name)
    return {"experiment": codec.experiment_to_dict(exp) if exp else None}


@router.get("/experiments/{experiment_id}")
async def get_experiment(experiment_id: str, request: Request) -> dict[str, Any]:
    exp = await run_in_threadpool(_svc(request).get_experiment, experiment_id)
    return codec.experiment_to_dict(exp)


@router.patch("/experiments/{experiment_id}")
async def rename_experiment(experiment_id: str, body: ExperimentUpdate, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).rename_experiment, experiment_id, body.name)
    return {}


@router.delete("/experiments/{experiment_id}")
async def delete_experiment(experiment_id: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).delete_experiment, experiment_id)
    return {}


@router.post("/experiments/{experiment_id}/restore")
async def restore_experiment(experiment_id: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).restore_experiment, experiment_id)
    return {}


@router.put("/experiments/{experiment_id}/tags/{key}")
async def set_experiment_tag(
    experiment_id: str, key: str, body: TagValue, request: Request
) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).set_experiment_tag, experiment_id, key, body.value)
    return {}


@router.delete("/experiments/{experiment_id}/tags/{key}")
async def delete_experiment_tag(experiment_id: str, key: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).delete_experiment_tag, experiment_id, key)
    return {}


# -- runs -------------------------------------------------------------------------------------
@router.post("/runs")
async def create_run(body: RunCreate, request: Request) -> dict[str, Any]:
    run = await run_in_threadpool(
        _svc(request).create_run,
        body.experiment_id,
        body.run_name,
        body.start_time,
        body.tags,
        body.user_id,
    )
    return codec.run_to_dict(run)


@router.post("/runs/search")
async def search_runs(body: RunSearch, request: Request) -> dict[str, Any]:
    page = await run_in_threadpool(
        _svc(request).search_runs,
        body.experiment_ids,
        body.filter,
        body.view_type,
        body.max_results,
        body.order_by,
        body.page_token,
    )
    return {
        "runs": [codec.run_to_dict(r) for r in page.runs],
        "next_page_token": page.next_page_token,
    }


@router.post("/runs/compare")
async def compare_runs(body: RunIds, request: Request) -> dict[str, Any]:
    return codec.comparison_to_dict(await run_in_threadpool(_svc(request).compare_runs, body.run_ids))


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    return codec.run_to_dict(await run_in_threadpool(_svc(request).get_run, run_id))


@router.patch("/runs/{run_id}")
async def update_run(run_id: str, body: RunUpdate, request: Request) -> dict[str, Any]:
    info = await run_in_threadpool(
        _svc(request).update_run, run_id, body.status, body.end_time, body.run_name
    )
    return asdict(info)


@router.delete("/runs/{run_id}")
async def delete_run(run_id: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).delete_run, run_id)
    return {}


@router.post("/runs/{run_id}/restore")
async def restore_run(run_id: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).restore_run, run_id)
    return {}


@router.post("/runs/{run_id}/batch")
async def log_batch(run_id: str, body: Batch, request: Request) -> dict[str, Any]:
    # values stay as sent ("NaN" strings included): the service validates and names a bad one
    metrics = [Metric(m.key, m.value, m.timestamp, m.step) for m in body.metrics]  # type: ignore[arg-type]
    await run_in_threadpool(
        _svc(request).log_batch,
        run_id,
        metrics,
        [Param(p.key, p.value) for p in body.params],
        [RunTag(t.key, t.value) for t in body.tags],
    )
    return {}


@router.delete("/runs/{run_id}/tags/{key}")
async def delete_tag(run_id: str, key: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_svc(request).delete_tag, run_id, key)
    return {}


@router.get("/runs/{run_id}/metrics/{key}/history")
async def get_metric_history(run_id: str, key: str, request: Request) -> dict[str, Any]:
    history = await run_in_threadpool(_svc(request).get_metric_history, run_id, key)
    return {"metrics": [codec.metric_to_dict(m) for m in history]}


@router.post("/runs/{run_id}/inputs")
async def log_inputs(run_id: str, body: Inputs, request: Request) -> dict[str, Any]:
    datasets = [
        DatasetInput(d.name, d.digest, d.source_type, d.source, d.schema_, d.profile, d.context, d.tags)
        for d in body.datasets
    ]
    await run_in_threadpool(_svc(request).log_inputs, run_id, datasets)
    return {}


# -- artifacts --------------------------------------------------------------------------------
@router.get("/runs/{run_id}/artifacts")
async def list_artifacts(
    run_id: str, request: Request, path: str = "", recursive: bool = Query(False)
) -> dict[str, Any]:
    files = await run_in_threadpool(_svc(request).list_artifacts, run_id, path, recursive)
    return {"files": [codec.file_info_to_dict(f) for f in files]}


@router.put("/runs/{run_id}/artifacts/{path:path}")
async def upload_artifact(run_id: str, path: str, request: Request) -> dict[str, Any]:
    spooled = await spool_body(request)
    try:
        info = await run_in_threadpool(_svc(request).put_artifact, run_id, path, spooled)
    finally:
        spooled.close()
    return codec.file_info_to_dict(info)


@router.get("/runs/{run_id}/artifact-content/{path:path}")
async def download_artifact(run_id: str, path: str, request: Request) -> StreamingResponse:
    chunks: Iterator[bytes] = await run_in_threadpool(_svc(request).iter_artifact, run_id, path)
    return StreamingResponse(chunks, media_type="application/octet-stream")


# -- MLflow 3 logged models (read side) ------------------------------------------------------
@router.get("/logged-models")
async def search_logged_models(
    request: Request,
    experiment_id: list[str] = Query(...),
    filter: str = "",
    max_results: int = 100,
    page_token: str | None = None,
) -> dict[str, Any]:
    found, token = await run_in_threadpool(
        _svc(request).search_logged_models, experiment_id, max_results, page_token, filter
    )
    return {"models": [codec.logged_model_to_dict(m) for m in found], "next_page_token": token}


@router.get("/logged-models/{model_id}")
async def get_logged_model(model_id: str, request: Request) -> dict[str, Any]:
    return codec.logged_model_to_dict(await run_in_threadpool(_svc(request).get_logged_model, model_id))


@router.get("/logged-models/{model_id}/artifacts")
async def list_logged_model_artifacts(
    model_id: str, request: Request, path: str = "", recursive: bool = Query(False)
) -> dict[str, Any]:
    files = await run_in_threadpool(_svc(request).list_logged_model_artifacts, model_id, path, recursive)
    return {"files": [codec.file_info_to_dict(f) for f in files]}


@router.get("/logged-models/{model_id}/artifact-content/{path:path}")
async def download_logged_model_artifact(model_id: str, path: str, request: Request) -> StreamingResponse:
    svc = _svc(request)
    chunks: Iterator[bytes] = await run_in_threadpool(svc.iter_logged_model_artifact, model_id, path)
    return StreamingResponse(chunks, media_type="application/octet-stream")
