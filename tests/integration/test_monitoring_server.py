"""Monitoring on a live ``loopml server``: labels over HTTP, monitors created, refused and run
through /api/v1, alerts and triggers listed by the HTTP client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from loopml.client.http_monitoring import HttpMonitorService
from loopml.errors import InvalidInput, NotFound
from loopml.monitoring.monitors import Monitor

pytestmark = pytest.mark.server


@pytest.fixture
def svc(server_url: str) -> Iterator[HttpMonitorService]:
    client = HttpMonitorService(server_url, retries=1)
    yield client
    client.close()


def test_labels_are_accepted_over_http_idempotently(svc: HttpMonitorService, server_url: str) -> None:
    assert svc.log_labels(["it-r1", "it-r2"], [1, 0], endpoint="it-churn") == 2
    assert svc.log_labels(["it-r1"], [1], endpoint="it-churn") == 1
    answer = httpx.post(f"{server_url}/api/v1/labels", json={"request_ids": ["a"], "labels": [1, 2]})
    assert answer.status_code == 400 and answer.json()["details"]["field"] == "labels"
    assert svc.performance("it-churn") == {"endpoint": "it-churn", "windows": []}  # no predictions yet


def test_monitor_lifecycle_over_http(svc: HttpMonitorService) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_monitor(Monitor("it-ssrf", endpoint="e", webhooks=["http://169.254.169.254/latest"]))
    assert err.value.details["field"] == "webhooks"
    made = svc.create_monitor(
        Monitor.from_dict(
            {
                "name": "it-lat",
                "endpoint": "it-none",
                "window": "5m",
                "rules": ["latency_p99>100"],
                "pipeline": "retrain",
            }
        )
    )
    assert made.window_s == 300 and [m.name for m in svc.list_monitors() if m.name == "it-lat"] == ["it-lat"]
    run = svc.run_monitor("it-lat")
    assert run.status == "no_data" and run.result["rules"][0]["state"] == "unknown"
    assert [r.run_id for r in svc.list_runs("it-lat")] == [run.run_id]
    assert svc.list_alerts("it-lat") == []
    assert all(t.monitor != "it-lat" for t in svc.list_triggers())
    svc.delete_monitor("it-lat")
    with pytest.raises(NotFound, match="does not exist"):
        svc.get_monitor("it-lat")
