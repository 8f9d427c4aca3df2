"""MLflow's model-registry REST API (``/api/2.0/mlflow``, ``/ajax-api/2.0/mlflow``).

An adapter only: each handler reads MLflow's request fields, calls the registry service and
writes MLflow's response shape, so ``mlflow.register_model``, ``MlflowClient`` registry calls
and ``mlflow.pyfunc.load_model("models:/name@alias")`` work unchanged. What MLflow lacks is
kept, not bypassed: a transition to Production runs the model's gate (``GateFailed`` answers
422 with MLflow's ``INVALID_STATE`` code, which the client does not retry and shows verbatim),
and a gate that requires approval answers ``PERMISSION_DENIED`` naming the pending request.

The caller's identity is :func:`loopml.server.api_v1_registry.caller`: ``X-Loopml-User`` or the
basic-auth username (what ``MLFLOW_TRACKING_USERNAME`` sends); it is not verified until
governance authenticates tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopml.errors import GateFailed, InvalidInput, LoopmlError
from loopml.registry.records import ModelVersion, RegisteredModel
from loopml.registry.service import RegistryService
from loopml.server.api_v1_registry import caller
from loopml.server.mlflow_json import error_response, pairs
from loopml.server.responses import JSONResponse, json_body

Params = dict[str, Any]
Handler = Callable[[RegistryService, Params, str | None], Any]
Endpoint = Callable[[Request], Awaitable[Response]]
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
# Fields MLflow sends as repeated query parameters on GET (order_by=a&order_by=b).
LIST_FIELDS = frozenset({"order_by", "stages"})
# MLflow keeps prompts in the registry's tables, so its client appends this clause to every model
# search; loopml has no prompts, so every model already satisfies it.
PROMPT_CLAUSE = "tag.`mlflow.prompt.is_prompt` != 'true'"
# MLflow's own defaults when the client leaves max_results out.
MODELS_DEFAULT_MAX = 100
VERSIONS_DEFAULT_MAX = 1000


# -- MLflow's JSON shapes ---------------------------------------------------------------------
def _kv(mapping: dict[str, str]) -> list[Params]:
    return [{"key": k, "value": v} for k, v in mapping.items()]


def model_version_json(v: ModelVersion) -> Params:
    out: Params = {
        "name": v.name,
        "version": str(v.version),
        "creation_timestamp": v.creation_timestamp,
        "last_updated_timestamp": v.last_updated_timestamp,
        "user_id": v.user_id,
        "current_stage": v.current_stage.value,
        "description": v.description,
        "source": v.source,
        "status": v.status,
        "tags": _kv(v.tags),
        "aliases": list(v.aliases),
    }
    if v.run_id:
        out["run_id"] = v.run_id
    if v.model_id:
        out["model_id"] = v.model_id
    return out


def registered_model_json(m: RegisteredModel) -> Params:
    return {
        "name": m.name,
        "creation_timestamp": m.creation_timestamp,
        "last_updated_timestamp": m.last_updated_timestamp,
        "description": m.description,
        "latest_versions": [model_version_json(v) for v in m.latest_versions],
        "tags": _kv(m.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in m.aliases.items()],
    }


def mlflow_error(exc: LoopmlError) -> Response:
    """MLflow's error body; a failed gate is ``INVALID_STATE`` (422: not retried by the client)."""
    if isinstance(exc, GateFailed):
        body: Params = {"error_code": "INVALID_STATE", "message": exc.message}
        if exc.details:
            body["details"] = exc.details
        return JSONResponse(body, status_code=exc.status_code)
    return error_response(exc)


# -- request fields ---------------------------------------------------------------------------
def _need(p: Params, name: str) -> Any:
    value = p.get(name)
    if value in (None, ""):
        raise InvalidInput(f"missing value for required parameter '{name}'", details={"field": name})
    return value


def _int(p: Params, name: str, default: int) -> int:
    raw = p.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be an integer, got {raw!r}", details={"field": name}) from None


def _bool(p: Params, name: str) -> bool:
    raw = p.get(name)
    return raw is True or str(raw).lower() == "true"


def _list(p: Params, name: str) -> list[Any]:
    value = p.get(name) or []
    return value if isinstance(value, list) else [value]


def _opt(p: Params, name: str) -> str | None:
    value = p.get(name)
    return None if value in (None, "") else str(value)


def _model_filter(text: str) -> str:
    text = (text or "").strip()
    if text == PROMPT_CLAUSE:
        return ""
    suffix = f" AND {PROMPT_CLAUSE}"
    return text[: -len(suffix)].strip() if text.endswith(suffix) else text


# -- registered models ------------------------------------------------------------------------
def create_registered_model(svc: RegistryService, p: Params, user: str | None) -> Params:
    model = svc.create_registered_model(
        _need(p, "name"), _opt(p, "description"), pairs(_list(p, "tags")), user
    )
    return {"registered_model": registered_model_json(model)}


def get_registered_model(svc: RegistryService, p: Params, _user: str | None) -> Params:
    return {"registered_model": registered_model_json(svc.get_registered_model(_need(p, "name")))}


def rename_registered_model(svc: RegistryService, p: Params, user: str | None) -> Params:
    model = svc.rename_registered_model(_need(p, "name"), _need(p, "new_name"), user)
    return {"registered_model": registered_model_json(model)}


def update_registered_model(svc: RegistryService, p: Params, user: str | None) -> Params:
    model = svc.update_registered_model(_need(p, "name"), str(p.get("description") or ""), user)
    return {"registered_model": registered_model_json(model)}


def delete_registered_model(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.delete_registered_model(_need(p, "name"), user)
    return {}


def search_registered_models(svc: RegistryService, p: Params, _user: str | None) -> Params:
    page = svc.search_registered_models(
        _model_filter(p.get("filter") or ""),
        _int(p, "max_results", MODELS_DEFAULT_MAX),
        [str(o) for o in _list(p, "order_by")],
        _opt(p, "page_token"),
    )
    out: Params = {"registered_models": [registered_model_json(m) for m in page.models]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_latest_versions(svc: RegistryService, p: Params, _user: str | None) -> Params:
    found = svc.get_latest_versions(_need(p, "name"), [str(s) for s in _list(p, "stages")])
    return {"model_versions": [model_version_json(v) for v in found]}


def set_registered_model_tag(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.set_registered_model_tag(_need(p, "name"), _need(p, "key"), str(p.get("value") or ""), user)
    return {}


def delete_registered_model_tag(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.delete_registered_model_tag(_need(p, "name"), _need(p, "key"), user)
    return {}


# -- model versions ---------------------------------------------------------------------------
def create_model_version(svc: RegistryService, p: Params, user: str | None) -> Params:
    version = svc.create_model_version(
        _need(p, "name"),
        _need(p, "source"),
        _opt(p, "run_id"),
        _opt(p, "description"),
        pairs(_list(p, "tags")),
        _opt(p, "model_id"),
        user,
    )
    return {"model_version": model_version_json(version)}


def get_model_version(svc: RegistryService, p: Params, _user: str | None) -> Params:
    found = svc.get_model_version(_need(p, "name"), _need(p, "version"))
    return {"model_version": model_version_json(found)}


def update_model_version(svc: RegistryService, p: Params, user: str | None) -> Params:
    found = svc.update_model_version(
        _need(p, "name"), _need(p, "version"), str(p.get("description") or ""), user
    )
    return {"model_version": model_version_json(found)}


def delete_model_version(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.delete_model_version(_need(p, "name"), _need(p, "version"), user)
    return {}


def transition_stage(svc: RegistryService, p: Params, user: str | None) -> Params:
    moved = svc.transition_model_version_stage(
        _need(p, "name"),
        _need(p, "version"),
        _need(p, "stage"),
        _bool(p, "archive_existing_versions"),
        "transition-stage through the MLflow API",
        user,
    )
    return {"model_version": model_version_json(moved)}


def search_model_versions(svc: RegistryService, p: Params, _user: str | None) -> Params:
    page = svc.search_model_versions(
        str(p.get("filter") or ""),
        _int(p, "max_results", VERSIONS_DEFAULT_MAX),
        [str(o) for o in _list(p, "order_by")],
        _opt(p, "page_token"),
    )
    out: Params = {"model_versions": [model_version_json(v) for v in page.versions]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_download_uri(svc: RegistryService, p: Params, _user: str | None) -> Params:
    return {"artifact_uri": svc.get_model_version_download_uri(_need(p, "name"), _need(p, "version"))}


def set_model_version_tag(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.set_model_version_tag(
        _need(p, "name"), _need(p, "version"), _need(p, "key"), str(p.get("value") or ""), user
    )
    return {}


def delete_model_version_tag(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.delete_model_version_tag(_need(p, "name"), _need(p, "version"), _need(p, "key"), user)
    return {}


# -- aliases ----------------------------------------------------------------------------------
def set_alias(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.set_registered_model_alias(_need(p, "name"), _need(p, "alias"), _need(p, "version"), user)
    return {}


def delete_alias(svc: RegistryService, p: Params, user: str | None) -> Params:
    svc.delete_registered_model_alias(_need(p, "name"), _need(p, "alias"), user)
    return {}


def get_by_alias(svc: RegistryService, p: Params, _user: str | None) -> Params:
    found = svc.get_model_version_by_alias(_need(p, "name"), _need(p, "alias"))
    return {"model_version": model_version_json(found)}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("POST", "/registered-models/rename", rename_registered_model),
    ("PATCH", "/registered-models/update", update_registered_model),
    ("DELETE", "/registered-models/delete", delete_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/registered-models/set-tag", set_registered_model_tag),
    ("DELETE", "/registered-models/delete-tag", delete_registered_model_tag),
    ("POST", "/registered-models/alias", set_alias),
    ("DELETE", "/registered-models/alias", delete_alias),
    ("GET", "/registered-models/alias", get_by_alias),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("PATCH", "/model-versions/update", update_model_version),
    ("DELETE", "/model-versions/delete", delete_model_version),
    ("POST", "/model-versions/transition-stage", transition_stage),
    ("GET", "/model-versions/search", search_model_versions),
    ("GET", "/model-versions/get-download-uri", get_download_uri),
    ("POST", "/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/model-versions/delete-tag", delete_model_version_tag),
]


def _query(request: Request) -> Params:
    q = request.query_params
    return {k: q.getlist(k) if k in LIST_FIELDS else q[k] for k in q}


def _endpoint(handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            params = _query(request)
            if request.method != "GET":
                params.update(await json_body(request))
            registry: RegistryService = request.app.state.registry
            result = await run_in_threadpool(handler, registry, params, caller(request))
        except LoopmlError as exc:
            return mlflow_error(exc)
        return JSONResponse(result)

    endpoint.__name__ = f"mlflow_{handler.__name__}"
    return endpoint


def routes() -> list[tuple[str, str, Endpoint]]:
    """Every MLflow registry route, under both the REST and the ajax prefixes."""
    return [(m, prefix + path, _endpoint(h)) for prefix in PREFIXES for m, path, h in ROUTES]
