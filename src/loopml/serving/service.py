"""The endpoints contract, implemented locally (over the metadata store) and over HTTP.

Conventions every implementation keeps:

* Endpoint names are URL-safe (letters, digits, ``_.-``); a taken name raises
  ``AlreadyExists``, a missing one ``NotFound`` naming the endpoints that exist.
* Every create, update and delete is one transaction that also appends a
  :class:`DeploymentEvent` (kind ``created``/``updated``/``rollback``/``deleted``), so the
  history of an endpoint's traffic is complete and each change carries its reason.
* ``Endpoint.revision`` grows by one per update: hosts compare it to reload lazily.
"""

from __future__ import annotations

import abc
from typing import Any

from loopml.serving.records import BatchingConfig, DeploymentEvent, Endpoint, EventKind, TrafficPolicy


class EndpointService(abc.ABC):
    """Named inference endpoints and their deployment history.

    >>> svc = loopml.serving.service()                                                # doctest: +SKIP
    >>> svc.create_endpoint("churn", TrafficPolicy.single("models:/churn@champion"))  # doctest: +SKIP
    >>> svc.update_endpoint("churn", policy=TrafficPolicy.canary(                     # doctest: +SKIP
    ...     "churn@champion", "churn@challenger", 10), reason="try v7 on 10%")
    """

    @abc.abstractmethod
    def create_endpoint(
        self,
        name: str,
        policy: TrafficPolicy,
        batching: BatchingConfig | None = None,
        description: str = "",
        user: str | None = None,
    ) -> Endpoint:
        """Create an endpoint (and its ``created`` event); ``AlreadyExists`` if the name is taken."""

    @abc.abstractmethod
    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint ``name``; ``NotFound`` lists the endpoints that exist."""

    @abc.abstractmethod
    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint, by name."""

    @abc.abstractmethod
    def update_endpoint(
        self,
        name: str,
        *,
        policy: TrafficPolicy | None = None,
        batching: BatchingConfig | None = None,
        description: str | None = None,
        reason: str = "",
        kind: EventKind = "updated",
        evidence: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> Endpoint:
        """Change what is given (``None`` keeps it), bump ``revision`` and record an event of
        ``kind`` with ``reason`` and ``evidence`` in the same transaction."""

    @abc.abstractmethod
    def delete_endpoint(self, name: str, user: str | None = None) -> None:
        """Delete the endpoint; its events are kept (kind ``deleted`` appended)."""

    @abc.abstractmethod
    def record_event(self, event: DeploymentEvent) -> DeploymentEvent:
        """Append an event as given (e.g. one the rollback judge produced); ``NotFound`` if the
        endpoint never existed."""

    @abc.abstractmethod
    def list_events(self, name: str, limit: int = 100) -> list[DeploymentEvent]:
        """The endpoint's events, newest first."""

    def rollback(self, name: str, event: DeploymentEvent) -> Endpoint:
        """Apply an automatic rollback: all traffic to the primary, recorded with the evidence."""
        current = self.get_endpoint(name)
        policy = event.policy or current.policy.stable_only()
        return self.update_endpoint(
            name,
            policy=policy,
            reason=event.reason,
            kind="rollback",
            evidence=event.evidence,
            user=event.user,
        )
