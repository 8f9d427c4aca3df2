"""loopml's native dataset API under ``/api/v1/datasets`` (OpenAPI at ``/docs``).

:class:`loopml.client.http_data.HttpDataService` is its client.  Registration uploads the rows
as one Parquet stream (the request body, spooled to a temp file up to
``LOOPML_MAX_DATASET_UPLOAD_BYTES``); the server reads it and computes the content hash, the
profile and the snapshot itself, so what is recorded always describes the rows it stores.

A dataset name may hold ``/``: clients send it percent-encoded as one path segment, and the
routes take it as a path whose last ``/versions`` segment ends it.

    POST /api/v1/datasets/{name}/versions?description=&source=&tags={json}   body: Parquet
    GET  /api/v1/datasets                                   {"datasets": [{"name", "latest_version"}]}
    GET  /api/v1/datasets/{name}/versions                   {"versions": [DatasetVersion]}
    GET  /api/v1/datasets/{name}/versions/{version|latest}  DatasetVersion
    GET  /api/v1/datasets/{name}/versions/{version}/snapshot   the Parquet snapshot's bytes
    GET  /api/v1/datasets/by-digest/{digest}                {"dataset_version": DatasetVersion | null}
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from loopml.config import Settings
from loopml.data.records import DatasetVersion
from loopml.data.service import LocalDataService, check_dataset_name, check_tags
from loopml.data.sources import Source, read_source
from loopml.errors import InvalidInput
from loopml.server.api_v1_registry import caller
from loopml.tracking.local import LocalTrackingService

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])
JSON = dict[str, Any]
MAX_SOURCE_CHARS = 4096
SNAPSHOT_MEDIA_TYPE = "application/vnd.apache.parquet"


def install(app: FastAPI, tracking: LocalTrackingService, settings: Settings) -> None:
    """Serve the dataset API over ``tracking``'s database and blobs."""
    app.state.data = LocalDataService(tracking.db, tracking.artifacts.blobs, settings.user)
    app.state.max_dataset_upload_bytes = settings.max_dataset_upload_bytes
    app.include_router(router)


def _svc(request: Request) -> LocalDataService:
    svc: LocalDataService = request.app.state.data
    return svc


# -- registration -----------------------------------------------------------------------------
@router.post(
    "/{name:path}/versions",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {SNAPSHOT_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def register(
    name: str, request: Request, description: str = "", source: str = "", tags: str = "{}"
) -> JSON:
    """Register the Parquet rows in the body as the next version of ``name`` (or return the
    version that already holds them).  ``source`` says where the client read them from."""
    check_dataset_name(name)
    tag_map = check_tags(_tags(tags))
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidInput(
            f"source is longer than {MAX_SOURCE_CHARS} characters", details={"field": "source"}
        )
    path = await _spool(request, request.app.state.max_dataset_upload_bytes)
    try:
        dv = await run_in_threadpool(
            _register, _svc(request), name, path, source, description, tag_map, caller(request)
        )
    finally:
        path.unlink(missing_ok=True)
    return dv.to_dict()


def _tags(text: str) -> dict[str, Any]:
    try:
        tags = orjson.loads(text or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"tags is not valid JSON: {exc}", details={"field": "tags"}) from None
    if not isinstance(tags, dict):
        raise InvalidInput("tags must be a JSON object of strings", details={"field": "tags"})
    return tags


async def _spool(request: Request, limit: int) -> Path:
    """The body in a temp ``.parquet`` file, refused past ``limit`` bytes (before reading it all
    when Content-Length says so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    fd, name = tempfile.mkstemp(prefix="loopml-upload-", suffix=".parquet")
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(size, limit)
                fh.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _too_large(size: int, limit: int) -> InvalidInput:
    return InvalidInput(
        f"the dataset upload is {size} bytes or more; the server accepts at most {limit} "
        "(LOOPML_MAX_DATASET_UPLOAD_BYTES on the server)",
        details={"field": "body", "limit": limit},
    )


def _register(
    svc: LocalDataService,
    name: str,
    path: Path,
    origin: str,
    description: str,
    tags: dict[str, str],
    user: str | None,
) -> DatasetVersion:
    try:
        pq.read_metadata(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"the request body is not a Parquet file: {exc}", details={"field": "body"}
        ) from None
    src: Source = read_source(path)
    src = replace(src, description=origin or "upload")
    return svc.register_source(name, src, description=description, tags=tags, user=user)


# -- lookup -----------------------------------------------------------------------------------
@router.get("")
async def list_datasets(request: Request) -> JSON:
    found = await run_in_threadpool(_svc(request).list_datasets)
    return {"datasets": [{"name": n, "latest_version": v} for n, v in found]}


@router.get("/by-digest/{digest}")
async def get_by_digest(digest: str, request: Request) -> JSON:
    dv = await run_in_threadpool(_svc(request).get_by_digest, digest)
    return {"dataset_version": None if dv is None else dv.to_dict()}


@router.get("/{name:path}/versions/{version}/snapshot", response_class=StreamingResponse)
async def snapshot(name: str, version: str, request: Request) -> StreamingResponse:
    """The version's Parquet snapshot.  Its sha256 is checked before the first byte is sent, so
    a corrupt blob answers IntegrityError (500) rather than a truncated 200, and again while
    streaming; the client checks it a third time against the record."""
    svc = _svc(request)
    dv = await run_in_threadpool(svc.get, name, version)
    await run_in_threadpool(svc.blobs.verify, dv.snapshot_digest)
    chunks: Iterator[bytes] = svc.blobs.iter_verified(dv.snapshot_digest)
    headers = {"X-Loopml-Snapshot-Digest": dv.snapshot_digest, "Content-Length": str(dv.size_bytes)}
    return StreamingResponse(chunks, media_type=SNAPSHOT_MEDIA_TYPE, headers=headers)


@router.get("/{name:path}/versions")
async def list_versions(name: str, request: Request) -> JSON:
    found = await run_in_threadpool(_svc(request).list_versions, name)
    return {"versions": [dv.to_dict() for dv in found]}


@router.get("/{name:path}/versions/{version}")
async def get_version(name: str, version: str, request: Request) -> JSON:
    dv = await run_in_threadpool(_svc(request).get, name, version)
    return dv.to_dict()
