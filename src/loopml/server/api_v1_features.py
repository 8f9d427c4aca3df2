"""The feature store over HTTP under ``/api/v1/features`` (OpenAPI at ``/docs``).

    POST /api/v1/features/online       {"entities": {"driver_id": [1, 2]} | "entity_rows": [{...}],
                                        "features": ["view:feature"] | "service": "name",
                                        "service_version": 2?, "full_feature_names": false, "now": ...}
                                       -> {"values": {column: [...]}, "statuses": {feature: [...]},
                                           "types": {feature: dtype}}
    POST /api/v1/features/push         {"view": "name", "rows": {column: [values]}} -> {"written": n}
    POST /api/v1/features/materialize  {"views": [...]?, "start": ..., "end": ..., "incremental": false}
    GET  /api/v1/features              ?kind=feature_view  -> {"definitions": [record]}
    GET  /api/v1/features/{kind}/{name}?version=N          -> record

The online read is the hot path: it is served by the fast-path dispatcher (no FastAPI routing or
pydantic), parses with orjson and answers with orjson. Bytes values travel base64-encoded, non-finite
floats as "nan"/"inf" and timestamps as ISO strings; ``types`` lets the client turn them back.
:class:`loopml.client.http_features.HttpFeatureStoreService` is the client.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopml.config import Settings
from loopml.errors import InvalidInput, LoopmlError
from loopml.features.materialize import OnlineFeatures
from loopml.features.service import LocalFeatureStoreService
from loopml.server.responses import json_body
from loopml.tracking.local import LocalTrackingService

router = APIRouter(prefix="/api/v1/features", tags=["features"])
JSON = dict[str, Any]
ONLINE_PATH = "/api/v1/features/online"
INLINE_ROWS = 16  # reads of at most this many entities may run on the event loop (see reads_inline)


def install(
    app: FastAPI, tracking: LocalTrackingService, settings: Settings
) -> list[tuple[str, str, Callable[[Request], Awaitable[Response]]]]:
    """Serve the feature store over ``tracking``'s database and the configured online store;
    returns the fast-path routes for the dispatcher."""
    svc = LocalFeatureStoreService.from_settings(settings, db=tracking.db)
    app.state.features = svc
    app.include_router(router)
    app.router.on_shutdown.append(svc.close)
    return [("POST", ONLINE_PATH, online_fast)]


def _body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An ``openapi_extra`` documenting a JSON request body (the routes parse it with orjson)."""
    schema = {"type": "object", "properties": properties, **({"required": required} if required else {})}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_LIST = {"type": "array", "items": {}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME = {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "ISO time or UTC microseconds"}
ONLINE_BODY = _body(
    {
        "entities": {"type": "object", "additionalProperties": _LIST},
        "entity_rows": {"type": "array", "items": {"type": "object"}},
        "features": _STRINGS,
        "service": {"type": "string"},
        "service_version": {"type": "integer"},
        "full_feature_names": {"type": "boolean"},
        "now": _TIME,
    }
)
PUSH_BODY = _body(
    {"view": {"type": "string"}, "rows": {"type": "object", "additionalProperties": _LIST}}, ["view", "rows"]
)
MATERIALIZE_BODY = _body(
    {"views": _STRINGS, "start": _TIME, "end": _TIME, "incremental": {"type": "boolean"}}
)


def _svc(request: Request) -> LocalFeatureStoreService:
    svc: LocalFeatureStoreService = request.app.state.features
    return svc


# -- online reads (hot path) ------------------------------------------------------------------
def online_values(svc: LocalFeatureStoreService, body: JSON) -> JSON:
    """The online read a request body describes, as the response body."""
    if "entities" in body:
        rows = body["entities"]
        if not isinstance(rows, dict):
            raise InvalidInput("entities must be an object {column: [values]}", details={"field": "entities"})
    else:
        rows = body.get("entity_rows")
        if not isinstance(rows, list):
            raise InvalidInput(
                "give entities {column: [values]} or entity_rows [{column: value}]",
                details={"field": "entities"},
            )
    features, service = body.get("features"), body.get("service")
    if features is not None and not (
        isinstance(features, list) and all(isinstance(f, str) for f in features)
    ):
        raise InvalidInput("features must be a list of 'view:feature' strings", details={"field": "features"})
    if service is not None and not isinstance(service, str):
        raise InvalidInput("service must be a feature service name", details={"field": "service"})
    version = body.get("service_version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise InvalidInput("service_version must be an integer", details={"field": "service_version"})
    found = svc.get_online_features(
        rows,
        features,
        service=service,
        service_version=version,
        full_feature_names=bool(body.get("full_feature_names", False)),
        now=body.get("now"),
    )
    return encode_online(found, getattr(found, "types", {}))


def encode_online(found: OnlineFeatures, types: dict[str, str]) -> JSON:
    """Column-wise values, statuses and types; bytes as base64, NaN/inf as text, times as ISO."""
    values = dict(found.values)
    for name, dtype in types.items():
        if name not in values:
            continue
        if dtype == "bytes":
            values[name] = [None if v is None else base64.b64encode(v).decode() for v in values[name]]
        elif dtype.startswith("float"):  # JSON has no NaN/inf (orjson writes null): send them as text
            values[name] = [v if v is None or math.isfinite(v) else str(v) for v in values[name]]
    return {"values": values, "statuses": found.statuses, "types": types}


def _error(exc: LoopmlError) -> Response:
    return Response(orjson.dumps(exc.to_dict()), status_code=exc.status_code, media_type="application/json")


def _entity_count(body: JSON) -> int:
    """How many entities a read body asks for (large when it cannot tell: the safe side)."""
    rows = body.get("entities", body.get("entity_rows"))
    if isinstance(rows, dict):
        first: Any = next(iter(rows.values()), [])
        return len(first) if isinstance(first, list) else INLINE_ROWS + 1
    return len(rows) if isinstance(rows, list) else INLINE_ROWS + 1


async def online_fast(request: Request) -> Response:
    """``POST /api/v1/features/online`` on the fast path (see the module docstring)."""
    try:
        body = await json_body(request)
        svc = _svc(request)
        if _entity_count(body) <= INLINE_ROWS and svc.reads_inline(
            body.get("features"), body.get("service"), body.get("service_version")
        ):
            doc = online_values(svc, body)  # a few keys from an idle local store: cheaper than a thread hop
        else:
            doc = await run_in_threadpool(online_values, svc, body)
    except LoopmlError as exc:
        return _error(exc)
    return Response(orjson.dumps(doc, option=orjson.OPT_NAIVE_UTC), media_type="application/json")


@router.post("/online", openapi_extra=ONLINE_BODY)
async def online(request: Request) -> Response:
    """Online feature values with a status each (present, missing, outside_ttl); see the module
    docstring for the body. Usually answered by the fast path before this route."""
    return await online_fast(request)


# -- writes -----------------------------------------------------------------------------------
@router.post("/push", openapi_extra=PUSH_BODY)
async def push(request: Request) -> JSON:
    """Write fresh rows of a feature view to the online store: ``{"view", "rows": {col: [...]}}``."""
    body = await json_body(request)
    view, rows = body.get("view"), body.get("rows")
    if not isinstance(view, str):
        raise InvalidInput("view must be a feature view name", details={"field": "view"})
    if not isinstance(rows, dict):
        raise InvalidInput("rows must be an object {column: [values]}", details={"field": "rows"})
    written = await run_in_threadpool(_svc(request).push, view, rows)
    return {"written": written}


@router.post("/materialize", openapi_extra=MATERIALIZE_BODY)
async def materialize(request: Request) -> JSON:
    """Materialize ``views`` (default all) for ``[start, end]`` or incrementally up to ``end``."""
    body = await json_body(request)
    views = body.get("views")
    if views is not None and not (isinstance(views, list) and all(isinstance(v, str) for v in views)):
        raise InvalidInput("views must be a list of feature view names", details={"field": "views"})
    svc = _svc(request)
    found = await run_in_threadpool(
        lambda: svc.materialize(
            body.get("end"), start=body.get("start"), views=views, incremental=bool(body.get("incremental"))
        )
    )
    return {"results": [asdict(r) for r in found]}


# -- definitions ------------------------------------------------------------------------------
@router.get("")
async def list_definitions(request: Request, kind: str | None = None) -> JSON:
    """The latest version of every registered definition (of ``kind``)."""
    found = await run_in_threadpool(_svc(request).list_definitions, kind or None)
    return {"definitions": [asdict(r) for r in found]}


@router.get("/{kind}/{name}")
async def get_definition(
    kind: str, name: str, request: Request, version: int | None = Query(None, ge=1, le=2**31)
) -> JSON:
    """One version (default: the latest) of a definition."""
    return asdict(await run_in_threadpool(_svc(request).get_definition, kind, name, version))
