"""The monitoring contract, implemented locally (over the stores) and over HTTP.

Conventions every implementation keeps:

* Monitor names are URL-safe; a taken name raises ``AlreadyExists``, a missing one
  ``NotFound`` naming the monitors that exist.
* Webhook URLs are validated against SSRF when a monitor is saved
  (:func:`loopml.monitoring.webhooks.validate_url`).
* :meth:`run_monitor` stores a :class:`MonitorRun` and reconciles alerts: one alert per
  episode of a violated rule (see :mod:`loopml.monitoring.alerts`).
* Labels are attached by request id, late, in any order; the last one logged wins.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from loopml.monitoring.monitors import Alert, Monitor, MonitorRun, Trigger


class MonitorService(abc.ABC):
    """Monitors, their runs and alerts, delayed labels and retraining triggers.

    >>> svc = loopml.monitoring.service()                                  # doctest: +SKIP
    >>> svc.create_monitor(Monitor("churn", endpoint="churn", reference="churn@3",
    ...     rules=[Rule.parse("drift_share>=0.3")], schedule_s=300))        # doctest: +SKIP
    >>> svc.run_monitor("churn").result["rules"]                           # doctest: +SKIP
    """

    @abc.abstractmethod
    def create_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        """Save a new monitor; ``AlreadyExists`` if the name is taken."""

    @abc.abstractmethod
    def update_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        """Replace the definition of an existing monitor (its runs and alerts are kept)."""

    @abc.abstractmethod
    def get_monitor(self, name: str) -> Monitor:
        """The monitor ``name``; ``NotFound`` lists the monitors that exist."""

    @abc.abstractmethod
    def list_monitors(self) -> list[Monitor]:
        """Every monitor, by name."""

    @abc.abstractmethod
    def delete_monitor(self, name: str) -> None:
        """Delete the monitor; its runs and alerts are kept as history."""

    @abc.abstractmethod
    def run_monitor(self, name: str, *, now: int | None = None) -> MonitorRun:
        """Run once over the window ending at ``now`` (ms; default: the current time)."""

    @abc.abstractmethod
    def list_runs(self, name: str, limit: int = 20) -> list[MonitorRun]:
        """The monitor's runs, newest first."""

    @abc.abstractmethod
    def list_alerts(
        self, monitor: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first; ``status`` is "firing" or "resolved" (None: both)."""

    @abc.abstractmethod
    def list_triggers(self, status: str | None = "pending") -> list[Trigger]:
        """Actions alerts asked for, oldest first (``status`` None: all)."""

    @abc.abstractmethod
    def claim_trigger(self, trigger_id: str, by: str) -> Trigger:
        """Mark a pending trigger claimed by ``by``; ``Conflict`` if someone claimed it first."""

    @abc.abstractmethod
    def log_labels(
        self, request_ids: Sequence[str], labels: Sequence[Any], *, endpoint: str | None = None
    ) -> int:
        """Attach ground truth to predictions by request id; returns how many were logged."""

    @abc.abstractmethod
    def performance(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_s: float | None = None,
    ) -> dict[str, Any]:
        """Performance over time windows (a ``PerformanceReport`` as JSON)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
