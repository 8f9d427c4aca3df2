"""Model serving: endpoints, protocols (Open Inference Protocol v2, MLflow ``/invocations``),
validation, micro-batching, deployments, prediction log, batch and stream inference.

>>> from loopml.serving import TrafficPolicy
>>> TrafficPolicy.single("churn@champion").primary.model_uri
'models:/churn@champion'

Importing this package loads no model library and no web framework.
"""

from __future__ import annotations

import threading

from loopml import sdk
from loopml.config import Settings
from loopml.serving.records import (
    BatchingConfig,
    DeploymentEvent,
    Endpoint,
    RollbackPolicy,
    TrafficPolicy,
    Variant,
)
from loopml.serving.service import EndpointService

__all__ = [
    "BatchingConfig",
    "DeploymentEvent",
    "Endpoint",
    "EndpointService",
    "RollbackPolicy",
    "TrafficPolicy",
    "Variant",
    "reset",
    "service",
]

_lock = threading.Lock()
_services: dict[Settings, EndpointService] = {}


def service(settings: Settings | None = None) -> EndpointService:
    """The endpoints service for ``settings`` (default: the SDK's), local or over HTTP.

    >>> loopml.serving.service().list_endpoints()  # doctest: +SKIP
    []
    """
    settings = settings or sdk._settings()
    with _lock:
        if settings not in _services:
            _services[settings] = _build(settings)
        return _services[settings]


def _build(settings: Settings) -> EndpointService:
    # Imported on use: httpx only for a remote server, SQLAlchemy only for the local store.
    if settings.is_remote:
        from loopml.client.http_serving import HttpEndpointService

        return HttpEndpointService.from_settings(settings)
    from loopml.serving.local import LocalEndpointService
    from loopml.tracking.local import LocalTrackingService

    tracking = sdk.service(settings)
    assert isinstance(tracking, LocalTrackingService)
    return LocalEndpointService(tracking.db, settings.user)


def reset() -> None:
    """Forget every cached endpoints service (tests, notebooks)."""
    with _lock:
        _services.clear()
