"""The monitoring service over HTTP (``/api/v1/labels``, ``/api/v1/monitors`` …)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from loopml.client.http import UserApiClient, _q
from loopml.monitoring.monitors import Alert, Monitor, MonitorRun, Trigger
from loopml.monitoring.service import MonitorService


class HttpMonitorService(UserApiClient, MonitorService):
    """:class:`MonitorService` against a loopml server.

    >>> svc = HttpMonitorService("http://127.0.0.1:5000")   # doctest: +SKIP
    >>> svc.log_labels(["r1"], [1])                         # doctest: +SKIP
    1
    """

    def create_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        return Monitor.from_dict(
            self._call("POST", "/monitors", json=monitor.to_dict(), headers=self._as(user))
        )

    def update_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        found = self._call(
            "PUT", f"/monitors/{_q(monitor.name)}", json=monitor.to_dict(), headers=self._as(user)
        )
        return Monitor.from_dict(found)

    def get_monitor(self, name: str) -> Monitor:
        return Monitor.from_dict(self._call("GET", f"/monitors/{_q(name)}"))

    def list_monitors(self) -> list[Monitor]:
        return [Monitor.from_dict(m) for m in self._call("GET", "/monitors")["monitors"]]

    def delete_monitor(self, name: str) -> None:
        self._call("DELETE", f"/monitors/{_q(name)}")

    def run_monitor(self, name: str, *, now: int | None = None) -> MonitorRun:
        params = {"now": now} if now is not None else {}
        return MonitorRun.from_dict(
            self._call("POST", f"/monitors/{_q(name)}/run", params=params, safe=False)
        )

    def list_runs(self, name: str, limit: int = 20) -> list[MonitorRun]:
        found = self._call("GET", f"/monitors/{_q(name)}/runs", params={"limit": limit})
        return [MonitorRun.from_dict(r) for r in found["runs"]]

    def list_alerts(
        self, monitor: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Alert]:
        params: dict[str, Any] = {"limit": limit}
        params |= {"monitor": monitor} if monitor else {}
        params |= {"status": status} if status else {}
        return [Alert.from_dict(a) for a in self._call("GET", "/alerts", params=params)["alerts"]]

    def list_triggers(self, status: str | None = "pending") -> list[Trigger]:
        found = self._call("GET", "/triggers", params={"status": status or "all"})
        return [Trigger.from_dict(t) for t in found["triggers"]]

    def claim_trigger(self, trigger_id: str, by: str) -> Trigger:
        found = self._call("POST", f"/triggers/{_q(trigger_id)}/claim", json={"by": by}, safe=False)
        return Trigger.from_dict(found)

    def log_labels(
        self, request_ids: Sequence[str], labels: Sequence[Any], *, endpoint: str | None = None
    ) -> int:
        # Encoded here so NumPy labels travel as plain JSON; logging twice is harmless: safe to retry.
        body = orjson.dumps(
            {"request_ids": list(request_ids), "labels": list(labels), "endpoint": endpoint},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        headers = {"Content-Type": "application/json"}
        found = self._call("POST", "/labels", content=body, headers=headers, safe=True)
        return int(found["logged"])

    def performance(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_s: float | None = None,
    ) -> dict[str, Any]:
        params = {
            k: v for k, v in {"start": start, "end": end, "window_s": window_s}.items() if v is not None
        }
        found: dict[str, Any] = self._call("GET", f"/performance/{_q(endpoint)}", params=params)
        return found
