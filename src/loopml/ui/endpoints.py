"""Endpoints: traffic split, live request rate / latency / errors per version, canary status,
and the rollout, split and rollback actions (POST forms, confirmed in the browser)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Form, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from loopml.errors import InvalidInput, LoopmlError
from loopml.serving.records import Endpoint, TrafficPolicy, Variant
from loopml.serving.service import EndpointService
from loopml.ui._common import check_csrf, empty_state, page
from loopml.ui.registry import acting_user

router = APIRouter()


def _svc(request: Request) -> EndpointService:
    svc: EndpointService = request.app.state.endpoints
    return svc


@router.get("/endpoints")
def endpoints(request: Request) -> Response:
    found = _svc(request).list_endpoints()
    if not found:
        return empty_state(
            request,
            "endpoints",
            "No endpoints yet",
            [
                "An endpoint routes inference requests to model versions: one primary, "
                "optionally a canary, an A/B variant or a shadow, with automatic rollback.",
            ],
            [
                "loopml endpoints create churn --model churn@champion",
                "loopml endpoints update churn --canary churn@challenger:10",
            ],
        )
    return page(request, "endpoints.html", "endpoints", endpoints=found)


def _canary(ep: Endpoint) -> Variant | None:
    return next((v for v in ep.policy.variants if v.role == "canary"), None)


def _endpoint_page(request: Request, name: str, status_code: int = 200, error: str = "") -> Response:
    svc = _svc(request)
    ep = svc.get_endpoint(name)
    live_total = sum(v.weight for v in ep.policy.live) or 1.0
    split = [
        {"name": v.name, "role": v.role, "uri": v.model_uri, "percent": 100.0 * v.weight / live_total}
        for v in ep.policy.live
    ]
    return page(
        request,
        "endpoint.html",
        "endpoints",
        status_code=status_code,
        ep=ep,
        split=split,
        shadows=ep.policy.shadows,
        canary=_canary(ep),
        events=svc.list_events(name, limit=50),
        flash_error=error,
    )


@router.get("/endpoints/{name}")
def endpoint_page(request: Request, name: str) -> Response:
    return _endpoint_page(request, name)


def variant_stats(request: Request, name: str) -> dict[str, Any]:
    """Counters of the in-process inference server for one endpoint, per variant and version."""
    inference = getattr(request.app.state, "inference", None)
    stats: dict[tuple[str, str], dict[str, float]] = {}
    if inference is None:
        return {"variants": []}
    for family in inference.metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if labels.get("endpoint") != name or "variant" not in labels:
                continue
            key = (labels.get("variant", ""), labels.get("version", ""))
            entry = stats.setdefault(key, {"requests": 0.0, "errors": 0.0, "latency_sum": 0.0, "count": 0.0})
            if sample.name == "loopml_serving_requests_total":
                entry["requests"] += sample.value
            elif sample.name == "loopml_serving_errors_total":
                entry["errors"] += sample.value
            elif sample.name == "loopml_serving_request_duration_seconds_sum":
                entry["latency_sum"] += sample.value
            elif sample.name == "loopml_serving_request_duration_seconds_count":
                entry["count"] += sample.value
    rows = [
        {"variant": v, "version": ver, **vals}
        for (v, ver), vals in sorted(stats.items())
        if vals["requests"] or vals["errors"] or vals["count"]  # series created but never counted
    ]
    return {"variants": rows}


@router.get("/endpoints/{name}/stats.json")
def endpoint_stats(request: Request, name: str) -> Response:
    _svc(request).get_endpoint(name)
    return JSONResponse(variant_stats(request, name), headers={"Cache-Control": "no-store"})


def _percent(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 100.0:
        raise InvalidInput(
            f"canary percent {raw!r} must be a number from 0 to 100", details={"field": "percent"}
        )
    return value


def _split_policy(ep: Endpoint, percent: float, canary_uri: str) -> TrafficPolicy:
    """The endpoint's policy with the canary at ``percent`` and the primary at the rest."""
    current = _canary(ep)
    uri = canary_uri.strip() or (current.model_uri if current else "")
    if not uri:
        raise InvalidInput(
            "this endpoint has no canary yet: give the canary's model URI", details={"field": "canary_uri"}
        )
    others = [v for v in ep.policy.variants if v.role not in ("primary", "canary")]
    primary = replace(ep.policy.primary, weight=100.0 - percent)
    canary = Variant(current.name if current else "canary", uri, percent, "canary")
    return replace(ep.policy, variants=(primary, canary, *others))


def _act(request: Request, name: str, token: str, change: Any) -> Response:
    check_csrf(request, token)
    try:
        change()
    except LoopmlError as exc:
        return _endpoint_page(request, name, status_code=exc.status_code, error=exc.message)
    return RedirectResponse(f"/ui/endpoints/{name}", status_code=303)


@router.post("/endpoints/{name}/split")
def set_split(
    request: Request,
    name: str,
    csrf_token: str = Form(""),
    percent: str = Form(""),
    canary_uri: str = Form(""),
) -> Response:
    svc = _svc(request)

    def change() -> None:
        ep = svc.get_endpoint(name)
        policy = _split_policy(ep, _percent(percent), canary_uri)
        reason = f"canary set to {_percent(percent):g}% from the UI"
        svc.update_endpoint(name, policy=policy, reason=reason, user=acting_user(request))

    return _act(request, name, csrf_token, change)


@router.post("/endpoints/{name}/rollout")
def rollout(request: Request, name: str, csrf_token: str = Form("")) -> Response:
    """The canary becomes the primary and takes all live traffic."""
    svc = _svc(request)

    def change() -> None:
        ep = svc.get_endpoint(name)
        canary = _canary(ep)
        if canary is None:
            raise InvalidInput(f"endpoint {name!r} has no canary to roll out", details={"field": "canary"})
        others = [v for v in ep.policy.variants if v.role == "shadow"]
        primary = Variant(ep.policy.primary.name, canary.model_uri, 100.0, "primary")
        policy = replace(ep.policy, variants=(primary, *others))
        reason = f"canary {canary.model_uri} rolled out to 100% from the UI"
        svc.update_endpoint(name, policy=policy, reason=reason, kind="promoted", user=acting_user(request))

    return _act(request, name, csrf_token, change)


@router.post("/endpoints/{name}/rollback")
def rollback(request: Request, name: str, csrf_token: str = Form("")) -> Response:
    """All live traffic back to the primary (the stable version)."""
    svc = _svc(request)

    def change() -> None:
        ep = svc.get_endpoint(name)
        svc.update_endpoint(
            name,
            policy=ep.policy.stable_only(),
            reason="manual rollback from the UI",
            kind="rollback",
            user=acting_user(request),
        )

    return _act(request, name, csrf_token, change)
