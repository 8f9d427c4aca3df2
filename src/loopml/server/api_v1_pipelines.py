"""loopml's pipelines API and the pipeline scheduler inside ``loopml server``.

Reads (viewer):

* ``GET /api/v1/pipelines``: registered pipelines and their triggers;
* ``GET /api/v1/pipelines/runs?pipeline=NAME&limit=50``: the latest runs, newest first;
* ``GET /api/v1/pipelines/runs/{run_id}``: one run with its steps (status, cached,
  attempts, durations, output refs, tracking run ids);
* ``GET /api/v1/pipelines/runs/{run_id}/logs?step=NAME&stream=stderr``: captured logs as
  ``{"logs": [{"step", "stream", "text"}]}``;
* ``GET /api/v1/pipelines/triggers?pipeline=NAME``: the trigger history;
* ``GET /api/v1/pipelines/runs/{run_id}/steps/{step}``, ``GET /definitions/{name}``,
  ``POST /cache`` (``{"keys": [...]}``: earlier successful steps per cache key), ``POST
  /values/verify`` (``{"refs": [...]}``: whether each stored value is intact here);
* ``GET``/``HEAD /api/v1/pipelines/blobs/{digest}``: a step value or log, verified here.

Writes (editor), what a pipeline running elsewhere against this server records
(:class:`loopml.client.http_pipelines.HttpPipelineStore`): ``POST /runs``, ``POST
/runs/{run_id}/finish``, ``PUT /runs/{run_id}/tracking-run``, ``PUT /runs/{run_id}/steps/{step}``,
``POST``/``DELETE /locks/{pipeline}`` (the run lock: 409 while another run holds it and its
lease, ``LOOPML_PIPELINE_LEASE_S``, has not expired), ``POST /locks/{pipeline}/renew``
(``{"run_id"}``: extends the lease; ``{"renewed": false}`` once another run took over), ``POST
/locks/{pipeline}/unlock``, ``PUT``/``DELETE /definitions/{name}``, ``POST
/definitions/{name}/cursor``, ``POST /triggers``, ``PATCH /triggers/{trigger_id}`` and ``PUT
/blobs/{digest}`` (hashed while stored: bytes that do not hash to ``digest`` are refused with 400
and nothing is kept).

With ``LOOPML_PIPELINE_SCHEDULER`` on (the default) the scheduler fires cron, dataset and
alert triggers from startup to shutdown.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from loopml.config import Settings
from loopml.errors import IntegrityError, InvalidInput, NotFound
from loopml.monitoring.local import LocalMonitorService
from loopml.pipelines.engine import context
from loopml.pipelines.records import (
    CACHED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Definition,
    PipelineRunRecord,
    StepRecord,
    TriggerRecord,
)
from loopml.pipelines.store import PipelineStore
from loopml.pipelines.triggers import PipelineScheduler
from loopml.server.api_v1_registry import caller
from loopml.server.responses import spool_body
from loopml.store.blobs import CHUNK, blob_key

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


# -- what a pipeline running elsewhere records here --------------------------------------------
_STATUSES = (RUNNING, SUCCEEDED, FAILED, CACHED)
_HEX = re.compile(r"^[0-9a-f]{64}$")
_CURSORS = ("cron_cursor", "dataset_cursor")


def _status(value: str, field: str = "status") -> str:
    if value not in _STATUSES:
        raise InvalidInput(f"{field} {value!r}: use one of {', '.join(_STATUSES)}", details={"field": field})
    return value


def _refs(refs: list[dict[str, Any]] | None, field: str) -> None:
    """Every ref names a stored value by sha256 (a list's items too)."""
    for ref in refs or []:
        if not isinstance(ref.get("kind"), str) or not _HEX.match(str(ref.get("digest", ""))):
            raise InvalidInput(
                f"{field}: each value needs a 'kind' and a sha256 hex 'digest'", details={"field": field}
            )
        if ref["kind"] == "list":
            _refs(ref.get("items") if isinstance(ref.get("items"), list) else [], field)


class RunBody(BaseModel):
    run_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    pipeline: str = Field(min_length=1, max_length=256)
    target: str = Field(max_length=1024)
    status: str
    params: dict[str, Any]
    executor: str = Field(max_length=256)
    use_cache: bool
    created_by: str = Field(max_length=256)
    started_at: int
    finished_at: int | None = None
    error: str | None = None
    trigger_id: str | None = None
    resumed_from: str | None = None
    tracking_run_id: str | None = None


class FinishBody(BaseModel):
    status: str
    error: str | None = None


class TrackingRunBody(BaseModel):
    tracking_run_id: str = Field(min_length=1, max_length=64)


class StepBody(BaseModel):
    new: bool
    status: str
    cached: bool = False
    attempts: int = Field(0, ge=0)
    cache_key: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    started_at: int | None = None
    finished_at: int | None = None
    outputs: list[dict[str, Any]] | None = None
    logs: dict[str, str] = Field(default_factory=dict)
    tracking_run_id: str | None = None
    error: str | None = None
    upstream: list[str] | None = None


class CacheBody(BaseModel):
    keys: list[str] = Field(max_length=500)
    per_key: int = Field(5, ge=1, le=100)


class VerifyBody(BaseModel):
    refs: list[dict[str, Any]] = Field(max_length=1000)


class LockBody(BaseModel):
    run_id: str = Field(min_length=1, max_length=64)
    owner: str = Field(min_length=1, max_length=512)


class RenewBody(BaseModel):
    run_id: str = Field(min_length=1, max_length=64)


class DefinitionBody(BaseModel):
    target: str = Field(min_length=1, max_length=1024)
    schedule: str | None = None
    on_dataset: str | None = None
    on_alert: bool = False
    params: dict[str, Any] = Field(default_factory=dict)


class CursorBody(BaseModel):
    column: str
    old: int | None
    new: int


class TriggerBody(BaseModel):
    trigger_id: str = Field(min_length=1, max_length=64)
    pipeline: str = Field(min_length=1, max_length=256)
    kind: str = Field(max_length=32)
    detail: str
    status: str = Field(max_length=32)
    run_id: str | None = None
    message: str
    created_at: int


class TriggerUpdate(BaseModel):
    status: str = Field(max_length=32)
    run_id: str | None = None
    message: str


@router.post("/runs", status_code=201)
async def create_run(request: Request, body: RunBody) -> JSON:
    _status(body.status)
    run = PipelineRunRecord(**body.model_dump())
    run.created_by = caller(request) or run.created_by  # the token's user when auth is on
    await run_in_threadpool(_store(request).create_run, run)
    return {"run_id": run.run_id}


@router.post("/runs/{run_id}/finish")
async def finish_run(request: Request, run_id: str, body: FinishBody) -> JSON:
    store = _store(request)
    await run_in_threadpool(store.get_run, run_id, with_steps=False)  # 404 for an unknown run
    await run_in_threadpool(store.finish_run, run_id, _status(body.status), body.error)
    return {}


@router.put("/runs/{run_id}/tracking-run")
async def set_tracking_run(request: Request, run_id: str, body: TrackingRunBody) -> JSON:
    store = _store(request)
    await run_in_threadpool(store.get_run, run_id, with_steps=False)
    await run_in_threadpool(store.set_tracking_run, run_id, body.tracking_run_id)
    return {}


@router.put("/runs/{run_id}/steps/{step}")
async def save_step(request: Request, run_id: str, step: str, body: StepBody) -> JSON:
    _status(body.status)
    _refs(body.outputs, "outputs")
    if any(not _HEX.match(d) for d in body.logs.values()):
        raise InvalidInput("logs: each log is a sha256 hex digest", details={"field": "logs"})
    record = StepRecord(run_id, step, **body.model_dump(exclude={"new"}))
    store = _store(request)

    def save() -> None:
        store.get_run(run_id, with_steps=False)
        try:
            store.save_step(record, new=body.new)
        except DbIntegrityError:  # a retried insert that had arrived: the same step, updated
            store.save_step(record, new=False)

    await run_in_threadpool(save)
    return {}


@router.get("/runs/{run_id}/steps/{step}")
async def get_step(request: Request, run_id: str, step: str) -> JSON:
    found = await run_in_threadpool(_store(request).get_step, run_id, step)
    return {"step": found.to_dict()}


@router.post("/cache")
async def cache_candidates(request: Request, body: CacheBody) -> JSON:
    keys = [k for k in body.keys if _HEX.match(k)]
    found = await run_in_threadpool(_store(request).cache_candidates, keys, body.per_key)
    return {"candidates": {k: [s.to_dict() for s in steps] for k, steps in found.items()}}


@router.post("/values/verify")
async def verify_values(request: Request, body: VerifyBody) -> JSON:
    """Whether each value's blobs (a model's files, a list's items) exist here and verify."""
    _refs(body.refs, "refs")
    store = _store(request)
    return {"valid": await run_in_threadpool(lambda: [store.valid([r]) for r in body.refs])}


@router.post("/locks/{pipeline}")
async def acquire_lock(request: Request, pipeline: str, body: LockBody) -> JSON:
    store = _store(request)
    await run_in_threadpool(store.acquire, pipeline, body.run_id, body.owner)
    return {"pipeline": pipeline, "run_id": body.run_id, "lease_s": store.lease_s}


@router.post("/locks/{pipeline}/renew")
async def renew_lock(request: Request, pipeline: str, body: RenewBody) -> JSON:
    """Extend the lease of the run's lock; ``renewed`` is false once another run took it over."""
    return {"renewed": await run_in_threadpool(_store(request).renew, pipeline, body.run_id)}


@router.delete("/locks/{pipeline}")
async def release_lock(request: Request, pipeline: str, run_id: str = Query(min_length=1)) -> JSON:
    await run_in_threadpool(_store(request).release, pipeline, run_id)
    return {}


@router.post("/locks/{pipeline}/unlock")
async def unlock(request: Request, pipeline: str) -> JSON:
    return {"run_id": await run_in_threadpool(_store(request).unlock, pipeline)}


@router.get("/definitions/{name}")
async def get_definition(request: Request, name: str) -> JSON:
    found = await run_in_threadpool(_store(request).get_definition, name)
    return {"pipeline": found.to_dict()}


@router.put("/definitions/{name}")
async def put_definition(request: Request, name: str, body: DefinitionBody) -> JSON:
    definition = Definition(name, body.target, body.schedule, body.on_dataset, body.on_alert, body.params)
    saved = await run_in_threadpool(_store(request).put_definition, definition)
    return {"pipeline": saved.to_dict()}


@router.delete("/definitions/{name}")
async def delete_definition(request: Request, name: str) -> JSON:
    await run_in_threadpool(_store(request).delete_definition, name)
    return {}


@router.post("/definitions/{name}/cursor")
async def advance_cursor(request: Request, name: str, body: CursorBody) -> JSON:
    if body.column not in _CURSORS:
        raise InvalidInput(
            f"column {body.column!r}: use {' or '.join(_CURSORS)}", details={"field": "column"}
        )
    store = _store(request)
    await run_in_threadpool(store.get_definition, name)
    moved = await run_in_threadpool(store.advance_cursor, name, body.column, body.old, body.new)
    return {"moved": moved}


@router.post("/triggers", status_code=201)
async def record_trigger(request: Request, body: TriggerBody) -> JSON:
    await run_in_threadpool(_store(request).record_trigger, TriggerRecord(**body.model_dump()))
    return {"trigger_id": body.trigger_id}


@router.patch("/triggers/{trigger_id}")
async def update_trigger(request: Request, trigger_id: str, body: TriggerUpdate) -> JSON:
    store = _store(request)
    await run_in_threadpool(store.update_trigger, trigger_id, body.status, body.run_id, body.message)
    return {}


# -- step values and logs ----------------------------------------------------------------------
@router.put("/blobs/{digest}")
async def put_blob(request: Request, digest: str) -> JSON:
    blob_key(digest)  # 400 for anything but a sha256 hex digest, before the body is read
    spooled = await spool_body(request)
    try:
        size = await run_in_threadpool(_store_checked, _store(request), digest, spooled)
    finally:
        spooled.close()
    return {"digest": digest, "size": size}


def _store_checked(store: PipelineStore, digest: str, spooled: IO[bytes]) -> int:
    hasher, size = hashlib.sha256(), 0
    while chunk := spooled.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    if hasher.hexdigest() != digest:
        raise InvalidInput(
            f"the uploaded bytes hash to {hasher.hexdigest()}, not {digest}; nothing was stored. "
            "Upload the value under the sha256 of its bytes",
            details={"field": "digest", "digest": digest},
        )
    spooled.seek(0)
    store.blobs.put(spooled)
    return size


@router.api_route("/blobs/{digest}", methods=["HEAD"], include_in_schema=False)
async def blob_exists(request: Request, digest: str, verify: bool = False) -> Response:
    """200 when stored; with ``verify=true`` only when the stored bytes still hash to ``digest``
    (a client about to skip an upload asks this, so a rotten copy gets replaced)."""
    blob_key(digest)
    store = _store(request)
    if verify:
        found = await run_in_threadpool(_intact, store, digest)
    else:
        found = await run_in_threadpool(store.blobs.exists, digest)
    return Response(status_code=200 if found else 404)


def _intact(store: PipelineStore, digest: str) -> bool:
    try:
        store.blobs.verify(digest)
    except (NotFound, IntegrityError):
        return False
    return True


@router.get("/blobs/{digest}", response_class=StreamingResponse)
async def get_blob(request: Request, digest: str) -> StreamingResponse:
    """The blob, verified before the first byte is sent (a corrupt copy is an error, not data)."""
    blob_key(digest)
    spooled = await run_in_threadpool(_verified_copy, _store(request), digest)
    return StreamingResponse(_chunks(spooled), media_type="application/octet-stream")


def _verified_copy(store: PipelineStore, digest: str) -> IO[bytes]:
    spooled = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - _chunks closes it
    try:
        for chunk in store.blobs.iter_verified(digest):
            spooled.write(chunk)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled  # type: ignore[return-value]


def _chunks(spooled: IO[bytes]) -> Iterator[bytes]:
    with spooled:
        while chunk := spooled.read(CHUNK):
            yield chunk
