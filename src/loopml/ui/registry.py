"""Registered models: versions, aliases, stages, gate results, approvals, lineage, model card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from loopml.errors import InvalidInput, LoopmlError, NotFound
from loopml.registry.records import CHAMPION_ALIAS, PromotionRequest, RequestStatus
from loopml.registry.service import RegistryService
from loopml.ui._common import check_csrf, empty_state, page

# The request scope key loopml.server.auth stores the verified user under (the UI and the server
# are both adapters over the capabilities; neither imports the other's modules).
SCOPE_USER = "loopml.user"

router = APIRouter()
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def _svc(request: Request) -> RegistryService:
    svc: RegistryService = request.app.state.registry
    return svc


def acting_user(request: Request) -> str | None:
    """The signed-in user when an auth layer set one on the request, else the server's user."""
    user = request.scope.get(SCOPE_USER)  # set by the auth middleware from the verified token
    return user if isinstance(user, str) and user else None


@router.get("/models")
def models(request: Request) -> Response:
    svc = _svc(request)
    found = svc.search_registered_models(max_results=1000).models
    if not found:
        return empty_state(
            request,
            "models",
            "No registered models yet",
            [
                "The registry versions models logged by runs, gates their promotion on "
                "evaluation results and keeps who approved what.",
            ],
            [
                'mlflow.register_model("runs:/<run_id>/model", "churn")  # MLFLOW_TRACKING_URI=this server',
                "loopml models promote churn 1 --to production",
            ],
        )
    pending = svc.list_requests(status=RequestStatus.PENDING)
    reviews = _reviews(svc, pending)
    return page(request, "models.html", "models", models=found, pending=pending, reviews=reviews)


@router.get("/models/{name}")
def model_page(request: Request, name: str) -> Response:
    svc = _svc(request)
    model = svc.get_registered_model(name)
    versions = svc.search_model_versions(filter_string=_eq("name", name), max_results=1000).versions
    requests = svc.list_requests(name, status=None)
    return page(
        request,
        "model.html",
        "models",
        model=model,
        versions=versions,
        gate=svc.get_gate(name),
        requests=requests,
        reviews=_reviews(svc, requests),
        transitions=svc.list_transitions(name)[-50:][::-1],
    )


def _reviews(svc: RegistryService, requests: list[PromotionRequest]) -> dict[str, dict[str, Any]]:
    """What an approver sees for each pending request: the version's artifact digest and the
    current Production version (0: none). The approve form posts both back, and the approval is
    a compare-and-swap against them, so nothing moves if either changed since the page loaded."""
    champions: dict[str, int] = {}
    out: dict[str, dict[str, Any]] = {}
    for q in requests:
        if q.status != RequestStatus.PENDING:
            continue
        if q.name not in champions:
            try:
                champions[q.name] = int(svc.get_model_version_by_alias(q.name, CHAMPION_ALIAS).version)
            except NotFound:
                champions[q.name] = 0
        digest = svc.get_model_version(q.name, q.version).digest
        out[q.request_id] = {"digest": digest, "champion": champions[q.name]}
    return out


def _eq(field: str, value: str) -> str:
    return f"{field} = '" + value.replace("'", "''") + "'"


def _lineage_graph(lineage: Any) -> dict[str, Any]:
    """Nodes in columns (datasets -> run -> model version) and the edges between them."""
    nodes: list[dict[str, Any]] = []
    for d in lineage.datasets:
        nodes.append({"col": 0, "label": d.ref, "sub": d.context or "input", "href": _dataset_href(d)})
    if lineage.run is not None:
        r = lineage.run
        sub = f"commit {r.commit[:10]}" if r.commit else r.experiment_name
        nodes.append({"col": 1, "label": r.run_name, "sub": sub, "href": f"/ui/runs/{r.run_id}"})
    m = lineage.model
    nodes.append({"col": 2, "label": f"{m.name} v{m.version}", "sub": m.current_stage.value, "href": ""})
    return {"nodes": nodes, "features": list(lineage.features)}


def _dataset_href(d: Any) -> str:
    return f"/ui/datasets/{d.name}?version={d.version}" if d.version is not None else ""


@router.get("/models/{name}/versions/{version}")
def version_page(request: Request, name: str, version: str) -> Response:
    svc = _svc(request)
    mv = svc.get_model_version(name, version)
    lineage = svc.lineage(name, mv.version)
    gate_result = svc.check_gate(name, mv.version)
    return page(
        request,
        "version.html",
        "models",
        mv=mv,
        lineage=lineage,
        graph=_lineage_graph(lineage),
        gate=svc.get_gate(name),
        gate_result=gate_result,
        evaluations=svc.list_evaluations(name, mv.version),
        requests=(requests := [r for r in svc.list_requests(name, status=None) if r.version == mv.version]),
        reviews=_reviews(svc, requests),
        card=render_markdown(svc.card(name, mv.version)),
    )


def render_markdown(text: str) -> Markup:
    """CommonMark with tables; raw HTML in the text is escaped, unsafe link schemes dropped."""
    return Markup(_MARKDOWN.render(text))


def _decide(
    request: Request,
    request_id: str,
    token: str,
    reason: str,
    approve: bool,
    seen: tuple[str, str] = ("", ""),
) -> Response:
    check_csrf(request, token)
    svc = _svc(request)
    req = svc.get_request(request_id)
    user = acting_user(request)
    try:
        if approve:
            digest, champion = _seen(*seen)
            svc.approve(
                request_id, reason=reason or None, user=user, digest=digest, expected_champion=champion
            )
        else:
            svc.reject(request_id, reason=reason or None, user=user)
    except LoopmlError as exc:
        model = svc.get_registered_model(req.name)
        return page(
            request,
            "model.html",
            "models",
            status_code=exc.status_code,
            model=model,
            versions=svc.search_model_versions(filter_string=_eq("name", req.name)).versions,
            gate=svc.get_gate(req.name),
            requests=(requests := svc.list_requests(req.name, status=None)),
            reviews=_reviews(svc, requests),
            transitions=svc.list_transitions(req.name)[-50:][::-1],
            flash_error=exc.message,
        )
    return RedirectResponse(f"/ui/models/{req.name}?decided={request_id}", status_code=303)


def _seen(digest: str, champion: str) -> tuple[str, int]:
    """The digest and Production version the approver's page showed; both are required."""
    if not digest or not champion.isdigit():
        raise InvalidInput(
            "fields 'digest' and 'expected_champion' are required: reload the page and approve again",
            details={"field": "digest" if not digest else "expected_champion"},
        )
    return digest, int(champion)


@router.post("/requests/{request_id}/approve")
def approve(
    request: Request,
    request_id: str,
    csrf_token: str = Form(""),
    reason: str = Form(""),
    digest: str = Form(""),
    expected_champion: str = Form(""),
) -> Response:
    return _decide(request, request_id, csrf_token, reason, approve=True, seen=(digest, expected_champion))


@router.post("/requests/{request_id}/reject")
def reject(request: Request, request_id: str, csrf_token: str = Form(""), reason: str = Form("")) -> Response:
    return _decide(request, request_id, csrf_token, reason, approve=False)
