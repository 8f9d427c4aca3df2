"""The MLflow REST API (``/api/2.0/mlflow``, ``/ajax-api/2.0/mlflow``, ``/api/3.0``).

An adapter only: each handler reads MLflow's request fields, calls the
tracking service and writes MLflow's response shape. Errors use MLflow's JSON
(``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}``) so the
unmodified ``mlflow`` client raises its usual exceptions. Routes are plain
Starlette routes: no dependency injection on the hot ingest path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopml.errors import InvalidInput, LoopmlError, NotFound
from loopml.server.mlflow_json import (
    error_response,
    experiment_json,
    logged_model_json,
    metric_json,
    pairs,
    run_info_json,
    run_json,
)
from loopml.server.responses import JSONResponse, json_body
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.records import DatasetInput, MetricTuple, ModelOutput, Param, RunTag, ViewType

Params = dict[str, Any]
Handler = Callable[[LocalTrackingService, Params], Any]
Endpoint = Callable[[Request], Awaitable[Response]]
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
SERVER_INFO = {
    "store_type": "SqlStore",
    "workspaces_enabled": False,
    "trace_archival_enabled": False,
    "multipart_uploads_enabled": False,
    "multipart_downloads_enabled": False,
    "presigned_upload_run_id_supported": False,
    "presigned_upload_model_id_supported": False,
    "features_enabled": {},
}


def _need(p: Params, *names: str) -> Any:
    for name in names:
        value = p.get(name)
        if value not in (None, ""):
            return value
    raise InvalidInput(f"missing value for required parameter '{names[0]}'", details={"field": names[0]})


def _run_id(p: Params) -> str:
    return str(_need(p, "run_id", "run_uuid"))


def _int(p: Params, name: str, default: int) -> int:
    raw = p.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be an integer, got {raw!r}", details={"field": name}) from None


def _list(p: Params, name: str) -> list[Any]:
    value = p.get(name) or []
    return value if isinstance(value, list) else [value]


# -- experiments ------------------------------------------------------------------------------
def create_experiment(svc: LocalTrackingService, p: Params) -> Params:
    tags = {t["key"]: t["value"] for t in _list(p, "tags")}
    name = _need(p, "name")
    return {"experiment_id": svc.create_experiment(name, p.get("artifact_location") or None, tags)}


def get_experiment(svc: LocalTrackingService, p: Params) -> Params:
    return {"experiment": experiment_json(svc.get_experiment(_need(p, "experiment_id")))}


def get_experiment_by_name(svc: LocalTrackingService, p: Params) -> Params:
    name = _need(p, "experiment_name")
    exp = svc.get_experiment_by_name(name)
    if exp is None:
        raise NotFound(f"Could not find experiment with name '{name}'")
    return {"experiment": experiment_json(exp)}


def search_experiments(svc: LocalTrackingService, p: Params) -> Params:
    page = svc.search_experiments(
        ViewType(p.get("view_type") or "ACTIVE_ONLY"),
        _int(p, "max_results", 1000),
        p.get("filter"),
        p.get("page_token"),
        order_by=_list(p, "order_by"),
    )
    out: Params = {"experiments": [experiment_json(e) for e in page.experiments]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def update_experiment(svc: LocalTrackingService, p: Params) -> Params:
    svc.rename_experiment(_need(p, "experiment_id"), _need(p, "new_name"))
    return {}


def delete_experiment(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_experiment(_need(p, "experiment_id"))
    return {}


def restore_experiment(svc: LocalTrackingService, p: Params) -> Params:
    svc.restore_experiment(_need(p, "experiment_id"))
    return {}


def set_experiment_tag(svc: LocalTrackingService, p: Params) -> Params:
    svc.set_experiment_tag(_need(p, "experiment_id"), _need(p, "key"), p.get("value", ""))
    return {}


def delete_experiment_tag(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_experiment_tag(_need(p, "experiment_id"), _need(p, "key"))
    return {}


# -- runs -------------------------------------------------------------------------------------
def create_run(svc: LocalTrackingService, p: Params) -> Params:
    tags = {t["key"]: t["value"] for t in _list(p, "tags")}
    run = svc.create_run(
        str(p.get("experiment_id") or "0"),
        p.get("run_name") or None,
        _int(p, "start_time", 0) or None,
        tags,
        p.get("user_id") or None,
    )
    return {"run": run_json(run)}


def get_run(svc: LocalTrackingService, p: Params) -> Params:
    return {"run": run_json(svc.get_run(_run_id(p)))}


def update_run(svc: LocalTrackingService, p: Params) -> Params:
    end_time = p.get("end_time")
    info = svc.update_run(
        _run_id(p),
        p.get("status") or None,
        None if end_time in (None, "") else int(end_time),
        p.get("run_name") or None,
    )
    return {"run_info": run_info_json(info)}


def delete_run(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_run(_run_id(p))
    return {}


def restore_run(svc: LocalTrackingService, p: Params) -> Params:
    svc.restore_run(_run_id(p))
    return {}


def _metrics(items: list[Any]) -> list[MetricTuple]:
    """(key, value, timestamp, step) tuples; the service validates their types and names."""
    try:
        return [(m["key"], m["value"], m["timestamp"], m.get("step") or 0) for m in items]
    except KeyError as exc:
        raise InvalidInput(f"a metric is missing '{exc.args[0]}'", details={"field": "metrics"}) from None
    except (TypeError, AttributeError):
        raise InvalidInput("each metric must be an object", details={"field": "metrics"}) from None


def _kv(items: list[Any], kind: str, cls: type[Param] | type[RunTag]) -> list[Any]:
    try:
        return [cls(i["key"], i.get("value", "")) for i in items]
    except (KeyError, TypeError, AttributeError):
        raise InvalidInput(f"each of {kind} needs a 'key' and a 'value'", details={"field": kind}) from None


def log_batch(svc: LocalTrackingService, p: Params) -> Params:
    svc.log_batch(
        _run_id(p),
        _metrics(_list(p, "metrics")),
        _kv(_list(p, "params"), "params", Param),
        _kv(_list(p, "tags"), "tags", RunTag),
    )
    return {}


def log_metric(svc: LocalTrackingService, p: Params) -> Params:
    svc.log_batch(_run_id(p), _metrics([{**p, "key": _need(p, "key")}]))
    return {}


def log_param(svc: LocalTrackingService, p: Params) -> Params:
    svc.log_batch(_run_id(p), params=[Param(_need(p, "key"), p.get("value", ""))])
    return {}


def set_tag(svc: LocalTrackingService, p: Params) -> Params:
    svc.log_batch(_run_id(p), tags=[RunTag(_need(p, "key"), p.get("value", ""))])
    return {}


def delete_tag(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_tag(_run_id(p), _need(p, "key"))
    return {}


def log_inputs(svc: LocalTrackingService, p: Params) -> Params:
    datasets = []
    for item in _list(p, "datasets"):
        d = item.get("dataset") or {}
        tags = {t["key"]: t["value"] for t in item.get("tags") or []}
        datasets.append(
            DatasetInput(
                _need(d, "name"),
                _need(d, "digest"),
                d.get("source_type") or "local",
                d.get("source") or "",
                d.get("schema"),
                d.get("profile"),
                tags.get("mlflow.data.context"),
                tags,
            )
        )
    svc.log_inputs(_run_id(p), datasets)
    return {}


def log_outputs(svc: LocalTrackingService, p: Params) -> Params:
    models = [ModelOutput(_need(m, "model_id"), int(m.get("step") or 0)) for m in _list(p, "models")]
    svc.log_outputs(_run_id(p), models)
    return {}


def search_runs(svc: LocalTrackingService, p: Params) -> Params:
    page = svc.search_runs(
        [str(e) for e in _list(p, "experiment_ids")],
        p.get("filter") or "",
        ViewType(p.get("run_view_type") or "ACTIVE_ONLY"),
        _int(p, "max_results", 1000),
        _list(p, "order_by"),
        p.get("page_token") or None,
    )
    out: Params = {"runs": [run_json(r) for r in page.runs]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_metric_history(svc: LocalTrackingService, p: Params) -> Params:
    history = svc.get_metric_history(_run_id(p), _need(p, "metric_key"))
    return {"metrics": [metric_json(m) for m in history]}


# -- logged models (MLflow 3) -----------------------------------------------------------------
def create_logged_model(svc: LocalTrackingService, p: Params) -> Params:
    model = svc.create_logged_model(
        str(_need(p, "experiment_id")),
        p.get("name"),
        p.get("source_run_id") or None,
        pairs(_list(p, "tags")),
        pairs(_list(p, "params")),
        p.get("model_type") or None,
    )
    return {"model": logged_model_json(model)}


def get_logged_model(svc: LocalTrackingService, p: Params) -> Params:
    return {"model": logged_model_json(svc.get_logged_model(_need(p, "model_id")))}


def finalize_logged_model(svc: LocalTrackingService, p: Params) -> Params:
    model = svc.finalize_logged_model(_need(p, "model_id"), _need(p, "status"))
    return {"model": logged_model_json(model)}


def delete_logged_model(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_logged_model(_need(p, "model_id"))
    return {}


def set_logged_model_tags(svc: LocalTrackingService, p: Params) -> Params:
    svc.set_logged_model_tags(_need(p, "model_id"), pairs(_list(p, "tags")))
    return {}


def delete_logged_model_tag(svc: LocalTrackingService, p: Params) -> Params:
    svc.delete_logged_model_tag(_need(p, "model_id"), _need(p, "tag_key"))
    return {}


def log_logged_model_params(svc: LocalTrackingService, p: Params) -> Params:
    svc.log_logged_model_params(_need(p, "model_id"), pairs(_list(p, "params")))
    return {}


def search_logged_models(svc: LocalTrackingService, p: Params) -> Params:
    models, token = svc.search_logged_models(
        [str(e) for e in _list(p, "experiment_ids")],
        _int(p, "max_results", 100),
        p.get("page_token") or None,
        filter_string=p.get("filter") or "",
    )
    out: Params = {"models": [logged_model_json(m) for m in models]}
    if token:
        out["next_page_token"] = token
    return out


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/search", search_experiments),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/experiments/delete", delete_experiment),
    ("POST", "/experiments/restore", restore_experiment),
    ("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    ("POST", "/experiments/delete-experiment-tag", delete_experiment_tag),
    ("POST", "/runs/create", create_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/restore", restore_run),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/log-inputs", log_inputs),
    ("POST", "/runs/outputs", log_outputs),
    ("POST", "/runs/search", search_runs),
    ("GET", "/runs/search", search_runs),
    ("GET", "/metrics/get-history", get_metric_history),
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("DELETE", "/logged-models/{model_id}", delete_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
    ("POST", "/logged-models/{model_id}/params", log_logged_model_params),
]


def _endpoint(handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            params: Params = dict(request.query_params)
            if request.method in ("POST", "PATCH", "PUT", "DELETE"):
                params.update(await json_body(request))
            params.update(request.path_params)
            result = await run_in_threadpool(handler, request.app.state.tracking, params)
        except LoopmlError as exc:
            return error_response(exc)
        except ValueError as exc:  # e.g. an unknown view_type enum value
            return error_response(InvalidInput(str(exc)))
        return JSONResponse(result)

    endpoint.__name__ = f"mlflow_{handler.__name__}"
    return endpoint


async def server_info(_request: Request) -> Response:
    return JSONResponse(SERVER_INFO)


def routes() -> list[tuple[str, str, Endpoint]]:
    """Every MLflow route, under both the REST and the ajax prefixes."""
    out = [(m, prefix + path, _endpoint(h)) for prefix in PREFIXES for m, path, h in ROUTES]
    out += [("GET", f"{p}/server-info", server_info) for p in ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")]
    return out
