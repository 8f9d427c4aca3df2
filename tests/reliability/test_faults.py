"""A fault-injecting proxy between the clients and a live server: latency, a request or a
response cut after N bytes, a reset, a hang. loopml's HTTP client and the mlflow client get
a clean error or a successful retry, and the server never holds partial state: a batch is
all there or not at all, an experiment exists whole or not, an artifact is complete or absent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from loopml.client.http import HttpTrackingService
from loopml.errors import LoopmlError
from tests.reliability.faultproxy import FaultProxy
from tests.support.live_server import live_server

pytestmark = pytest.mark.server

FAULTS: list[tuple[str, float]] = [
    ("latency", 0.05),
    ("cut_request", 40),  # inside the request line/headers
    ("cut_request", 300),  # inside the body
    ("cut_response", 12),  # inside the status line/headers
    ("cut_response", 120),  # after the headers
    ("reset", 0),
    ("hang", 0),
]
BATCH = 20
TOTALS = {"calls": 0, "connections": 0, "faults": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("faults") / "home"
    home.mkdir()
    with live_server(home, env={"LOOPML_MONITOR_SCHEDULER": "0"}) as url:
        yield url


@pytest.fixture
def proxy(server: str) -> Iterator[FaultProxy]:
    with FaultProxy(int(server.rsplit(":", 1)[1])) as p:
        yield p
        TOTALS["faults"] += p.stats.injected


def new_run(server: str) -> str:
    exp = httpx.post(f"{server}/api/v1/experiments", json={"name": f"f-{uuid.uuid4().hex[:8]}"}).json()
    return str(httpx.post(f"{server}/api/v1/runs", json=exp).json()["info"]["run_id"])


def batch_rows(server: str, run_id: str, step: int) -> int:
    """How many of the batch logged at ``step`` the server holds (direct, not via the proxy)."""
    run = httpx.get(f"{server}/api/v1/runs/{run_id}").json()
    keys = [m["key"] for m in run["metrics"] if m["key"].startswith(f"s{step}_")]
    return len(keys)


def metrics(step: int) -> list[dict[str, object]]:
    return [
        {"key": f"s{step}_m{k}", "value": k * 0.5, "timestamp": 1000 + step, "step": step}
        for k in range(BATCH)
    ]


@pytest.mark.parametrize(("kind", "arg"), FAULTS)
def test_loopml_client_retries_or_fails_cleanly(
    server: str, proxy: FaultProxy, kind: str, arg: float
) -> None:
    run_id = new_run(server)
    svc = HttpTrackingService(proxy.url, retries=3, timeout=3)
    try:
        # log_batch is idempotent (keyed rows): retried through every fault, and it completes.
        from loopml.tracking.records import Metric

        proxy.plan([(kind, arg)])
        svc.log_batch(run_id, [Metric(str(m["key"]), float(m["value"]), 1000, 1) for m in metrics(1)])  # type: ignore[arg-type]
        assert batch_rows(server, run_id, 1) == BATCH
        # A read is retried too.
        proxy.plan([(kind, arg)])
        assert svc.get_run(run_id).info.run_id == run_id
        # An artifact upload (PUT, idempotent): complete after the retry, never partial.
        blob = bytes(range(256)) * 400
        proxy.plan([(kind, arg)])
        svc.put_artifact(run_id, "data/blob.bin", io.BytesIO(blob))
        stored = httpx.get(f"{server}/api/v1/runs/{run_id}/artifact-content/data/blob.bin").content
        assert hashlib.sha256(stored).digest() == hashlib.sha256(blob).digest()
        # Creating an experiment is not idempotent: success, or a clean error; never half-made.
        name = f"exp-{uuid.uuid4().hex[:8]}"
        proxy.plan([(kind, arg)])
        try:
            svc.create_experiment(name)
        except LoopmlError as exc:
            assert "may have been applied" in exc.message or "did not answer" in exc.message, exc.message
        found = httpx.get(f"{server}/api/v1/experiments/by-name/{name}").json()["experiment"]
        assert found is None or (found["name"] == name and found["artifact_location"])
        assert proxy.stats.injected == 4, proxy.stats  # each call met its fault
        TOTALS["calls"] += 4
        TOTALS["connections"] += proxy.stats.connections
    finally:
        svc.close()


@pytest.mark.parametrize(("kind", "arg"), FAULTS)
def test_mlflow_client_retries_or_fails_cleanly(
    server: str, proxy: FaultProxy, kind: str, arg: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.entities import Metric as MlflowMetric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    run_id = new_run(server)
    client = MlflowClient(tracking_uri=proxy.url)
    outcomes: list[str] = []
    for step in (1, 2):
        proxy.plan([(kind, arg)])
        try:
            client.log_batch(
                run_id,
                metrics=[MlflowMetric(str(m["key"]), float(m["value"]), 1000, step) for m in metrics(step)],
            )  # type: ignore[arg-type]
            outcomes.append("ok")
            assert batch_rows(server, run_id, step) == BATCH
        except MlflowException as exc:
            outcomes.append(type(exc).__name__)
            # A clean error: the batch is all there (applied before the cut) or not at all.
            assert batch_rows(server, run_id, step) in (0, BATCH)
    # Through a healthy proxy the same client works.
    client.log_batch(
        run_id, metrics=[MlflowMetric(str(m["key"]), float(m["value"]), 1000, 3) for m in metrics(3)]
    )  # type: ignore[arg-type]
    assert batch_rows(server, run_id, 3) == BATCH
    assert proxy.stats.injected == 2, proxy.stats
    TOTALS["calls"] += 3
    TOTALS["connections"] += proxy.stats.connections


def test_report_totals() -> None:
    print(
        f"fault proxy: {TOTALS['faults']} faults injected into {TOTALS['calls']} client calls "
        f"({TOTALS['connections']} connections)"
    )
    out = os.environ.get("LOOPML_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"test": "faults", **TOTALS}) + "\n")
