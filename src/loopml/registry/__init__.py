"""Model registry: registered models, versions, aliases and stages, evaluation gates,
approvals, lineage and model cards.

    import loopml.registry as registry

    registry.service().create_registered_model("churn")
    mv = registry.register("churn", info.model_uri)           # from loopml.models.log_model
    registry.set_gate("churn", ["accuracy >= 0.90", "roc_auc >= champion.roc_auc - 0.005"])
    registry.evaluate("churn", mv.version, dataset="churn-holdout@2", target="churned")
    registry.promote("churn", mv.version, reason="weekly retrain")   # GateFailed if it is worse
    print(registry.card("churn", mv.version))

The service is chosen like the tracking SDK's: ``LOOPML_TRACKING_URI=http://…`` talks to a
server, anything else works on the local stores. Mutations are recorded as ``LOOPML_USER``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

from loopml import sdk
from loopml.config import Settings
from loopml.errors import AlreadyExists
from loopml.registry.records import (
    CHAMPION_ALIAS,
    Evaluation,
    Gate,
    GateResult,
    Lineage,
    ModelStage,
    ModelVersion,
    Promotion,
    PromotionRequest,
    RegisteredModel,
    Transition,
)
from loopml.registry.service import RegistryService

__all__ = [
    "CHAMPION_ALIAS",
    "Evaluation",
    "Gate",
    "GateResult",
    "Lineage",
    "ModelStage",
    "ModelVersion",
    "Promotion",
    "PromotionRequest",
    "RegisteredModel",
    "RegistryService",
    "Transition",
    "approve",
    "card",
    "evaluate",
    "lineage",
    "models_trained_on",
    "promote",
    "register",
    "reject",
    "reset",
    "service",
    "set_gate",
]

_lock = threading.Lock()
_services: dict[Settings, RegistryService] = {}


def service(settings: Settings | None = None) -> RegistryService:
    """The registry for ``settings`` (default: the SDK's), local or over HTTP, built once.

    >>> loopml.registry.service().get_registered_model("churn").aliases  # doctest: +SKIP
    {'champion': 3}
    """
    settings = settings or sdk._settings()
    with _lock:
        if settings not in _services:
            _services[settings] = _build(settings)
        return _services[settings]


def _build(settings: Settings) -> RegistryService:
    if settings.is_remote:
        from loopml.client.http_registry import HttpRegistryService

        return HttpRegistryService.from_settings(settings)
    from loopml.registry.local import LocalRegistryService
    from loopml.tracking.local import LocalTrackingService

    tracking = sdk.service(settings)
    assert isinstance(tracking, LocalTrackingService)
    return LocalRegistryService.over(tracking, settings.user)


def reset() -> None:
    """Close and forget every cached registry service (tests, notebooks)."""
    with _lock:
        for svc in _services.values():
            svc.close()
        _services.clear()


def register(
    name: str,
    source: str,
    *,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    feature_service: str | None = None,
) -> ModelVersion:
    """Register ``source`` (e.g. ``ModelInfo.model_uri``) as a new version of ``name``,
    creating the model on first use. ``feature_service`` (a registered service's name) records
    the features the model was trained with, for a model logged without them: the version's
    lineage shows it and its endpoints accept entity keys alone.

    >>> mv = loopml.registry.register("churn", info.model_uri)  # doctest: +SKIP
    """
    if feature_service is not None:
        # Imported on use: the feature stack (pyarrow, duckdb) loads only when a service is named.
        from loopml.features.service import FEATURE_SERVICE_TAG, feature_store

        version = feature_store().describe_service(feature_service).version
        tags = {**(tags or {}), FEATURE_SERVICE_TAG: f"{feature_service}@{version}"}
    svc = service()
    with contextlib.suppress(AlreadyExists):
        svc.create_registered_model(name)
    return svc.create_model_version(name, source, description=description, tags=tags)


def set_gate(name: str, thresholds: Sequence[str], require_approval: bool = False) -> Gate:
    """Declare the thresholds ``name`` must meet to reach Production.

    >>> loopml.registry.set_gate("churn", ["accuracy >= 0.9", "latency_p99_ms <= 20"])  # doctest: +SKIP
    """
    return service().set_gate(name, thresholds, require_approval)


def evaluate(
    name: str,
    version: int | str,
    dataset: str,
    target: str,
    *,
    task: str = "auto",
    trust_pickle: bool = False,
) -> Evaluation:
    """Metrics of the candidate and of the champion on ``dataset`` (``"name@version"``), recorded.

    >>> loopml.registry.evaluate("churn", 4, dataset="holdout@2", target="churned")  # doctest: +SKIP
    """
    from loopml.registry import evaluation

    return evaluation.evaluate(
        service(), name, version, dataset, target, task=task, trust_pickle=trust_pickle
    )


def promote(name: str, version: int | str, to: str = "Production", reason: str | None = None) -> Promotion:
    """Run the gate and move the version (or open a request when approval is required).

    >>> loopml.registry.promote("churn", 4, reason="beats v3 on holdout@2")  # doctest: +SKIP
    """
    return service().promote(name, version, to, reason)


def approve(request_id: str, reason: str | None = None) -> Promotion:
    """Approve another user's pending promotion request (``LOOPML_USER`` is who approves)."""
    return service().approve(request_id, reason)


def reject(request_id: str, reason: str | None = None) -> PromotionRequest:
    """Reject another user's pending promotion request."""
    return service().reject(request_id, reason)


def lineage(name: str, version: int | str) -> Lineage:
    """model version -> run -> commit -> dataset versions.

    >>> loopml.registry.lineage("churn", 3).run.commit  # doctest: +SKIP
    """
    return service().lineage(name, version)


def models_trained_on(dataset_name: str, dataset_version: int | str) -> list[ModelVersion]:
    """The model versions whose run consumed that dataset version."""
    return service().models_trained_on(dataset_name, dataset_version)


def card(name: str, version: int | str) -> str:
    """The Markdown model card of a version."""
    return service().card(name, version)
