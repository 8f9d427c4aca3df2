"""loopml's native endpoints API under ``/api/v1/endpoints`` (OpenAPI at ``/docs``).

Thin like the other ``api_v1`` routers: bodies are checked by pydantic for shape and by
:mod:`loopml.serving.records` for meaning, the service runs in the thread pool, and every
change tells the server's inference host to re-read the endpoint on its next request.
:class:`loopml.client.http_serving.HttpEndpointService` is its client.

Two routes read the inference host rather than the database:

* ``GET /api/v1/endpoints/E/traffic?metric=quality&alpha=0.05``: per-variant statistics
  (requests, error rate, p50/p99, mean quality) and the A/B report against the primary
  (``loopml endpoints traffic E``);
* ``POST /api/v1/endpoints/E/feedback`` with ``{"request_id": "...", "quality": 0.8}``: a
  per-request quality score (higher is better) reported after the fact, e.g. when a delayed
  label arrives. ``request_id`` is the ``x-request-id`` the answer carried (send your own on
  the request to know it up front). The score is credited to the variant that answered, for
  the rollback judge (``RollbackPolicy.max_quality_drop``) and the ``quality`` A/B metric; it
  does not count as a request. The server remembers the last 100,000 request ids per endpoint
  (older ones: 404).

Both are per server process, like the rollback judge: with ``loopml server --workers N`` a
report covers the worker that answers it, and feedback must reach the worker that served the
request (404 otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loopml.errors import InvalidInput, Unavailable
from loopml.server.api_v1_registry import caller
from loopml.serving.records import BatchingConfig, DeploymentEvent, TrafficPolicy
from loopml.serving.service import EndpointService

if TYPE_CHECKING:
    from loopml.serving.app import InferenceServer

router = APIRouter(prefix="/api/v1/endpoints", tags=["endpoints"])
JSON = dict[str, Any]


class EndpointCreate(BaseModel):
    name: str
    policy: dict[str, Any]
    batching: dict[str, Any] | None = None
    description: str = ""


class EndpointUpdate(BaseModel):
    policy: dict[str, Any] | None = None
    batching: dict[str, Any] | None = None
    description: str | None = None
    reason: str = ""
    kind: str = "updated"
    evidence: dict[str, Any] = Field(default_factory=dict)


class Feedback(BaseModel):
    request_id: str
    quality: float


def endpoints(request: Request) -> EndpointService:
    svc: EndpointService = request.app.state.endpoints
    return svc


def _invalidate(request: Request, name: str, *, warm: bool = True) -> None:
    host = getattr(request.app.state, "inference", None)
    if host is not None:
        # Loading a model can take seconds: start now rather than on the next request.
        if warm:
            host.warm(name)
        else:
            host.invalidate(name)


@router.post("")
async def create_endpoint(body: EndpointCreate, request: Request) -> JSON:
    policy = TrafficPolicy.from_dict(body.policy)
    batching = BatchingConfig.from_dict(body.batching)
    found = await run_in_threadpool(
        endpoints(request).create_endpoint, body.name, policy, batching, body.description, caller(request)
    )
    _invalidate(request, body.name)
    return found.to_dict()


@router.get("")
async def list_endpoints(request: Request) -> JSON:
    found = await run_in_threadpool(endpoints(request).list_endpoints)
    return {"endpoints": [e.to_dict() for e in found]}


@router.get("/{name}")
async def get_endpoint(name: str, request: Request) -> JSON:
    return (await run_in_threadpool(endpoints(request).get_endpoint, name)).to_dict()


@router.patch("/{name}")
async def update_endpoint(name: str, body: EndpointUpdate, request: Request) -> JSON:
    found = await run_in_threadpool(
        lambda: endpoints(request).update_endpoint(
            name,
            policy=TrafficPolicy.from_dict(body.policy) if body.policy is not None else None,
            batching=BatchingConfig.from_dict(body.batching) if body.batching is not None else None,
            description=body.description,
            reason=body.reason,
            kind=body.kind,  # type: ignore[arg-type]  # checked by the service
            evidence=body.evidence,
            user=caller(request),
        )
    )
    _invalidate(request, name)
    return found.to_dict()


@router.delete("/{name}")
async def delete_endpoint(name: str, request: Request) -> JSON:
    await run_in_threadpool(endpoints(request).delete_endpoint, name, caller(request))
    _invalidate(request, name, warm=False)
    return {}


@router.get("/{name}/events")
async def list_events(name: str, request: Request, limit: int = Query(100, ge=1, le=10_000)) -> JSON:
    found = await run_in_threadpool(endpoints(request).list_events, name, limit)
    return {"events": [e.to_dict() for e in found]}


@router.post("/{name}/events")
async def record_event(name: str, body: dict[str, Any], request: Request) -> JSON:
    try:
        event = DeploymentEvent.from_dict({**body, "endpoint": name})
    except KeyError as exc:  # was a 500: a missing field is the caller's error
        field = str(exc.args[0])
        raise InvalidInput(f"deployment event needs {field!r}", details={"field": field}) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"deployment event is malformed: {exc}", details={"field": "body"}) from None
    return (await run_in_threadpool(endpoints(request).record_event, event)).to_dict()


def _host(request: Request) -> InferenceServer:
    host: InferenceServer | None = getattr(request.app.state, "inference", None)
    if host is None:
        raise Unavailable("this server hosts no endpoints; run `loopml server` to serve them")
    return host


@router.get("/{name}/traffic")
async def traffic(name: str, request: Request, metric: str | None = None, alpha: float = 0.05) -> JSON:
    """Per-variant statistics and the A/B report (``metric``: error_rate, latency_ms or quality;
    default the policy's ``ab_metric``), as gathered by the server process that answers."""
    return await _host(request).traffic(name, metric, alpha)


@router.post("/{name}/feedback")
async def feedback(name: str, body: Feedback, request: Request) -> JSON:
    """A quality score (higher is better) for an answered request, by its ``x-request-id``:
    credited to the variant that answered it, for the rollback judge and the A/B report."""
    return await _host(request).feedback(name, body.request_id, body.quality)
