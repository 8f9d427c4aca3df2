"""The endpoints service over HTTP: the same contract as the local one, against ``/api/v1/endpoints``.

>>> svc = HttpEndpointService("http://127.0.0.1:5000", user="ana")   # doctest: +SKIP
>>> [e.name for e in svc.list_endpoints()]                            # doctest: +SKIP
['churn']
"""

from __future__ import annotations

from typing import Any

from loopml.client.http import UserApiClient, _q
from loopml.serving.records import BatchingConfig, DeploymentEvent, Endpoint, EventKind, TrafficPolicy
from loopml.serving.service import EndpointService


class HttpEndpointService(UserApiClient, EndpointService):
    """:class:`EndpointService` over ``/api/v1/endpoints``; ``user`` is who changes are recorded as."""

    def create_endpoint(
        self,
        name: str,
        policy: TrafficPolicy,
        batching: BatchingConfig | None = None,
        description: str = "",
        user: str | None = None,
    ) -> Endpoint:
        body = {
            "name": name,
            "policy": policy.to_dict(),
            "batching": (batching or BatchingConfig()).to_dict(),
            "description": description,
        }
        return Endpoint.from_dict(self._call("POST", "/endpoints", json=body, headers=self._as(user)))

    def get_endpoint(self, name: str) -> Endpoint:
        return Endpoint.from_dict(self._call("GET", f"/endpoints/{_q(name)}"))

    def list_endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_dict(e) for e in self._call("GET", "/endpoints")["endpoints"]]

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
        body = {
            "policy": policy.to_dict() if policy else None,
            "batching": batching.to_dict() if batching else None,
            "description": description,
            "reason": reason,
            "kind": kind,
            "evidence": evidence or {},
        }
        found = self._call("PATCH", f"/endpoints/{_q(name)}", json=body, headers=self._as(user), safe=False)
        return Endpoint.from_dict(found)

    def delete_endpoint(self, name: str, user: str | None = None) -> None:
        self._call("DELETE", f"/endpoints/{_q(name)}", headers=self._as(user))

    def record_event(self, event: DeploymentEvent) -> DeploymentEvent:
        found = self._call("POST", f"/endpoints/{_q(event.endpoint)}/events", json=event.to_dict())
        return DeploymentEvent.from_dict(found)

    def list_events(self, name: str, limit: int = 100) -> list[DeploymentEvent]:
        found = self._call("GET", f"/endpoints/{_q(name)}/events", params={"limit": limit})
        return [DeploymentEvent.from_dict(e) for e in found["events"]]

    # Not in the EndpointService contract: the statistics live in the serving process.
    def traffic(self, name: str, metric: str | None = None, alpha: float = 0.05) -> dict[str, Any]:
        """Per-variant statistics and the A/B report of ``name`` on the server.

        >>> svc.traffic("churn", metric="quality")["ab"]["arms"]["canary"]["p_value"]  # doctest: +SKIP
        0.012
        """
        params: dict[str, Any] = {"alpha": alpha, **({"metric": metric} if metric else {})}
        found: dict[str, Any] = self._call("GET", f"/endpoints/{_q(name)}/traffic", params=params)
        return found

    def feedback(self, name: str, request_id: str, quality: float) -> dict[str, Any]:
        """Report a quality score (higher is better) for the request answered with ``request_id``.

        >>> svc.feedback("churn", response.headers["x-request-id"], 1.0)  # doctest: +SKIP
        """
        body = {"request_id": request_id, "quality": quality}
        found: dict[str, Any] = self._call("POST", f"/endpoints/{_q(name)}/feedback", json=body, safe=False)
        return found
