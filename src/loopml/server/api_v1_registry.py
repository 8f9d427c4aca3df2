"""loopml's native registry API under ``/api/v1/registry`` (OpenAPI at ``/docs``).

Thin, like :mod:`loopml.server.api_v1`: each route validates its body with pydantic, calls the
registry service in the thread pool and encodes records with :mod:`loopml.registry.codec`.
:class:`loopml.client.http_registry.HttpRegistryService` is its client.

Who is calling: the ``X-Loopml-User`` header, else the username of HTTP basic auth, else the
server's default user. Nothing verifies that identity yet; token authentication arrives with
governance, and until then an approval is only as trustworthy as the network in front of the
server.
"""

from __future__ import annotations

import base64
import binascii
from functools import partial
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loopml.errors import InvalidInput
from loopml.registry import codec
from loopml.registry.records import ModelStage, RequestStatus
from loopml.registry.service import RegistryService

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
USER_HEADER = "X-Loopml-User"
JSON = dict[str, Any]


def registry(request: Request) -> RegistryService:
    svc: RegistryService = request.app.state.registry
    return svc


def _status(text: str) -> RequestStatus:
    try:
        return RequestStatus(text)
    except ValueError:
        known = ", ".join(s.value for s in RequestStatus)
        raise InvalidInput(
            f"request status {text!r} is not one of {known}, all", details={"field": "status"}
        ) from None


def caller(request: Request) -> str | None:
    """The caller's user name: the token's user when auth is on (set by :mod:`loopml.server.auth`;
    the headers are then ignored), else ``X-Loopml-User``, else the basic-auth username, else None."""
    verified = request.scope.get("loopml.user")
    if verified or request.scope.get("loopml.auth"):
        return str(verified) if verified else None
    user = request.headers.get(USER_HEADER, "").strip()
    if user:
        return user
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0].strip() or None


class ModelCreate(BaseModel):
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ModelUpdate(BaseModel):
    description: str


class Rename(BaseModel):
    new_name: str


class TagValue(BaseModel):
    value: str


class VersionCreate(BaseModel):
    source: str
    run_id: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    model_id: str | None = None


class AliasTarget(BaseModel):
    version: int | str


class StageMove(BaseModel):
    stage: str
    archive_existing_versions: bool = False
    reason: str | None = None


class GateIn(BaseModel):
    thresholds: list[str]
    require_approval: bool = False


class EvaluationIn(BaseModel):
    dataset_name: str
    dataset_version: int
    dataset_digest: str
    metrics: dict[str, float]
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None


class PromoteIn(BaseModel):
    to: str = ModelStage.PRODUCTION.value
    reason: str | None = None


class Decision(BaseModel):
    reason: str | None = None


class Approval(Decision):
    digest: str | None = Field(None, description="The artifact digest the approver reviewed.")
    expected_champion: int | None = Field(
        None, description="The Production version the approver saw (0: none); 409 if it moved since."
    )


# -- registered models ------------------------------------------------------------------------
@router.post("/models")
async def create_registered_model(body: ModelCreate, request: Request) -> JSON:
    model = await run_in_threadpool(
        registry(request).create_registered_model, body.name, body.description, body.tags, caller(request)
    )
    return codec.to_dict(model)


@router.get("/models")
async def search_registered_models(
    request: Request,
    filter: str = "",
    max_results: int = 100,
    order_by: list[str] = Query(default_factory=list),
    page_token: str | None = None,
) -> JSON:
    page = await run_in_threadpool(
        registry(request).search_registered_models, filter, max_results, order_by, page_token
    )
    return {"models": [codec.to_dict(m) for m in page.models], "next_page_token": page.next_page_token}


@router.get("/models/{name}")
async def get_registered_model(name: str, request: Request) -> JSON:
    return codec.to_dict(await run_in_threadpool(registry(request).get_registered_model, name))


@router.patch("/models/{name}")
async def update_registered_model(name: str, body: ModelUpdate, request: Request) -> JSON:
    model = await run_in_threadpool(
        registry(request).update_registered_model, name, body.description, caller(request)
    )
    return codec.to_dict(model)


@router.post("/models/{name}/rename")
async def rename_registered_model(name: str, body: Rename, request: Request) -> JSON:
    model = await run_in_threadpool(
        registry(request).rename_registered_model, name, body.new_name, caller(request)
    )
    return codec.to_dict(model)


@router.delete("/models/{name}")
async def delete_registered_model(name: str, request: Request) -> JSON:
    await run_in_threadpool(registry(request).delete_registered_model, name, caller(request))
    return {}


@router.put("/models/{name}/tags/{key}")
async def set_registered_model_tag(name: str, key: str, body: TagValue, request: Request) -> JSON:
    await run_in_threadpool(
        registry(request).set_registered_model_tag, name, key, body.value, caller(request)
    )
    return {}


@router.delete("/models/{name}/tags/{key}")
async def delete_registered_model_tag(name: str, key: str, request: Request) -> JSON:
    await run_in_threadpool(registry(request).delete_registered_model_tag, name, key, caller(request))
    return {}


@router.get("/models/{name}/latest-versions")
async def get_latest_versions(
    name: str, request: Request, stages: list[str] = Query(default_factory=list)
) -> JSON:
    found = await run_in_threadpool(registry(request).get_latest_versions, name, stages)
    return {"versions": [codec.to_dict(v) for v in found]}


# -- model versions ---------------------------------------------------------------------------
@router.post("/models/{name}/versions")
async def create_model_version(name: str, body: VersionCreate, request: Request) -> JSON:
    version = await run_in_threadpool(
        registry(request).create_model_version,
        name,
        body.source,
        body.run_id,
        body.description,
        body.tags,
        body.model_id,
        caller(request),
    )
    return codec.to_dict(version)


@router.get("/versions")
async def search_model_versions(
    request: Request,
    filter: str = "",
    max_results: int = 1000,
    order_by: list[str] = Query(default_factory=list),
    page_token: str | None = None,
) -> JSON:
    page = await run_in_threadpool(
        registry(request).search_model_versions, filter, max_results, order_by, page_token
    )
    return {"versions": [codec.to_dict(v) for v in page.versions], "next_page_token": page.next_page_token}


@router.get("/models/{name}/versions/{version}")
async def get_model_version(name: str, version: str, request: Request) -> JSON:
    return codec.to_dict(await run_in_threadpool(registry(request).get_model_version, name, version))


@router.patch("/models/{name}/versions/{version}")
async def update_model_version(name: str, version: str, body: ModelUpdate, request: Request) -> JSON:
    found = await run_in_threadpool(
        registry(request).update_model_version, name, version, body.description, caller(request)
    )
    return codec.to_dict(found)


@router.delete("/models/{name}/versions/{version}")
async def delete_model_version(name: str, version: str, request: Request) -> JSON:
    await run_in_threadpool(registry(request).delete_model_version, name, version, caller(request))
    return {}


@router.put("/models/{name}/versions/{version}/tags/{key}")
async def set_model_version_tag(name: str, version: str, key: str, body: TagValue, request: Request) -> JSON:
    await run_in_threadpool(
        registry(request).set_model_version_tag, name, version, key, body.value, caller(request)
    )
    return {}


@router.delete("/models/{name}/versions/{version}/tags/{key}")
async def delete_model_version_tag(name: str, version: str, key: str, request: Request) -> JSON:
    await run_in_threadpool(registry(request).delete_model_version_tag, name, version, key, caller(request))
    return {}


@router.get("/models/{name}/versions/{version}/download-uri")
async def get_model_version_download_uri(name: str, version: str, request: Request) -> JSON:
    uri = await run_in_threadpool(registry(request).get_model_version_download_uri, name, version)
    return {"artifact_uri": uri}


# -- aliases ----------------------------------------------------------------------------------
@router.put("/models/{name}/aliases/{alias}")
async def set_registered_model_alias(name: str, alias: str, body: AliasTarget, request: Request) -> JSON:
    await run_in_threadpool(
        registry(request).set_registered_model_alias, name, alias, body.version, caller(request)
    )
    return {}


@router.delete("/models/{name}/aliases/{alias}")
async def delete_registered_model_alias(name: str, alias: str, request: Request) -> JSON:
    await run_in_threadpool(registry(request).delete_registered_model_alias, name, alias, caller(request))
    return {}


@router.get("/models/{name}/aliases/{alias}")
async def get_model_version_by_alias(name: str, alias: str, request: Request) -> JSON:
    found = await run_in_threadpool(registry(request).get_model_version_by_alias, name, alias)
    return codec.to_dict(found)


# -- stages, gates, evaluations, approvals ----------------------------------------------------
@router.post("/models/{name}/versions/{version}/stage")
async def transition_model_version_stage(name: str, version: str, body: StageMove, request: Request) -> JSON:
    moved = await run_in_threadpool(
        registry(request).transition_model_version_stage,
        name,
        version,
        body.stage,
        body.archive_existing_versions,
        body.reason,
        caller(request),
    )
    return codec.to_dict(moved)


@router.put("/models/{name}/gate")
async def set_gate(name: str, body: GateIn, request: Request) -> JSON:
    gate = await run_in_threadpool(
        registry(request).set_gate, name, body.thresholds, body.require_approval, caller(request)
    )
    return codec.to_dict(gate)


@router.get("/models/{name}/gate")
async def get_gate(name: str, request: Request) -> JSON:
    gate = await run_in_threadpool(registry(request).get_gate, name)
    return {"gate": None if gate is None else codec.to_dict(gate)}


@router.post("/models/{name}/versions/{version}/evaluations")
async def record_evaluation(name: str, version: str, body: EvaluationIn, request: Request) -> JSON:
    evaluation = await run_in_threadpool(
        registry(request).record_evaluation,
        name,
        version,
        body.dataset_name,
        body.dataset_version,
        body.dataset_digest,
        body.metrics,
        body.champion_version,
        body.champion_metrics,
        caller(request),
    )
    return codec.to_dict(evaluation)


@router.get("/models/{name}/evaluations")
async def list_evaluations(name: str, request: Request, version: str | None = None) -> JSON:
    found = await run_in_threadpool(registry(request).list_evaluations, name, version)
    return {"evaluations": [codec.to_dict(e) for e in found]}


@router.get("/models/{name}/versions/{version}/gate-check")
async def check_gate(name: str, version: str, request: Request) -> JSON:
    return codec.to_dict(await run_in_threadpool(registry(request).check_gate, name, version))


@router.post("/models/{name}/versions/{version}/promote")
async def promote(name: str, version: str, body: PromoteIn, request: Request) -> JSON:
    done = await run_in_threadpool(
        registry(request).promote, name, version, body.to, body.reason, caller(request)
    )
    return codec.to_dict(done)


@router.get("/requests")
async def list_requests(request: Request, name: str | None = None, status: str | None = None) -> JSON:
    # "all" (or nothing) lists every request; the contract's default of "pending" is the client's.
    wanted = None if status in (None, "", "all") else _status(status)
    found = await run_in_threadpool(registry(request).list_requests, name, wanted)
    return {"requests": [codec.to_dict(r) for r in found]}


@router.get("/requests/{request_id}")
async def get_request(request_id: str, request: Request) -> JSON:
    return codec.to_dict(await run_in_threadpool(registry(request).get_request, request_id))


@router.post("/requests/{request_id}/approve")
async def approve(request_id: str, body: Approval, request: Request) -> JSON:
    done = await run_in_threadpool(
        partial(registry(request).approve, digest=body.digest, expected_champion=body.expected_champion),
        request_id,
        body.reason,
        caller(request),
    )
    return codec.to_dict(done)


@router.post("/requests/{request_id}/reject")
async def reject(request_id: str, body: Decision, request: Request) -> JSON:
    found = await run_in_threadpool(registry(request).reject, request_id, body.reason, caller(request))
    return codec.to_dict(found)


@router.get("/models/{name}/transitions")
async def list_transitions(name: str, request: Request, version: str | None = None) -> JSON:
    found = await run_in_threadpool(registry(request).list_transitions, name, version)
    return {"transitions": [codec.to_dict(t) for t in found]}


# -- lineage ----------------------------------------------------------------------------------
@router.get("/models/{name}/versions/{version}/lineage")
async def lineage(name: str, version: str, request: Request) -> JSON:
    return codec.to_dict(await run_in_threadpool(registry(request).lineage, name, version))


@router.get("/datasets/{dataset_name}/versions/{dataset_version}/models")
async def models_trained_on(dataset_name: str, dataset_version: str, request: Request) -> JSON:
    found = await run_in_threadpool(registry(request).models_trained_on, dataset_name, dataset_version)
    return {"versions": [codec.to_dict(v) for v in found]}


@router.get("/models/{name}/versions/{version}/card", response_model=None)
async def card(name: str, version: str, request: Request) -> JSON:
    # One round trip for what the contract's default would assemble from six.
    return {"markdown": await run_in_threadpool(registry(request).card, name, version)}
