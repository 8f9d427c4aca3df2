"""The monitoring service the environment configures, and ``loopml.monitoring.log_labels``.

The functions use the store the environment configures (``LOOPML_HOME`` …), or, with
``LOOPML_TRACKING_URI=http://…``, that loopml server over HTTP.

>>> loopml.monitoring.log_labels(["req-1", "req-2"], [1, 0])   # doctest: +SKIP
2
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from loopml import sdk
from loopml.config import Settings
from loopml.monitoring.service import MonitorService

_lock = threading.Lock()
_services: dict[Settings, MonitorService] = {}


def service(settings: Settings | None = None) -> MonitorService:
    """The monitoring service of the configured store, or of the configured server over HTTP.

    >>> loopml.monitoring.service().list_monitors()  # doctest: +SKIP
    []
    """
    settings = settings or sdk._settings()
    with _lock:
        if settings not in _services:
            if settings.is_remote:
                from loopml.client.http_monitoring import HttpMonitorService  # httpx only when remote

                _services[settings] = HttpMonitorService.from_settings(settings)
            else:
                from loopml.monitoring.local import LocalMonitorService

                _services[settings] = LocalMonitorService.from_settings(settings)
        return _services[settings]


def reset() -> None:
    """Close and forget the cached services (tests, notebooks)."""
    with _lock:
        for svc in _services.values():
            svc.close()
        _services.clear()


def log_labels(request_ids: Sequence[str], labels: Sequence[Any], *, endpoint: str | None = None) -> int:
    """Attach ground truth to logged predictions by request id (the ``x-request-id`` each
    answer carried). Labels may arrive hours or days later, in any order; logging a label
    again is harmless and a corrected label replaces the earlier one. Returns how many were
    logged.

    >>> loopml.monitoring.log_labels(["r-17", "r-3"], [1, 0], endpoint="churn")  # doctest: +SKIP
    2
    """
    return service().log_labels(request_ids, labels, endpoint=endpoint)
