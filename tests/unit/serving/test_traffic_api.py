"""``/api/v1/endpoints/E/traffic`` and ``/feedback`` on the loopml server app (in process, fake
models), through the HTTP client and ``loopml endpoints traffic``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from loopml.cli import app as cli_app
from loopml.cli import endpoints as cli_endpoints
from loopml.client.http_serving import HttpEndpointService
from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.server.app import create_app
from loopml.serving.records import RollbackPolicy, TrafficPolicy
from tests.unit.serving.test_app import loader


class Bridge(httpx.BaseTransport):
    """A sync transport into an ASGI app whose event loop runs in a thread (as under uvicorn:
    background bookkeeping keeps running between requests)."""

    def __init__(self, app: Any) -> None:
        self.asgi = httpx.ASGITransport(app=app)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        request.read()
        return asyncio.run_coroutine_threadsafe(send(), self.loop).result(timeout=60)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[tuple[httpx.Client, HttpEndpointService]]:
    # base_url http://test: "test" must be an allowed Host (the server refuses unknown names).
    app = create_app(
        Settings.load(env={"LOOPML_HOME": str(tmp_path / "home"), "LOOPML_ALLOWED_HOSTS": "test"})
    )
    app.state.inference.loader = loader  # models:/m/N predicts N
    bridge = Bridge(app)
    client = httpx.Client(transport=bridge, base_url="http://test")
    svc = HttpEndpointService("http://test", transport=bridge, retries=0)
    try:
        yield client, svc
    finally:
        svc.close()
        client.close()
        bridge.run(app.state.inference.close())
        bridge.stop()
        app.state.tracking.db.dispose()


def serve(client: httpx.Client, name: str, n: int) -> dict[str, str]:
    """``n`` answered requests: request id -> the version that answered it."""
    served = {}
    for i in range(n):
        r = client.post(
            f"/endpoints/{name}/invocations", json={"instances": [[1.0]]}, headers={"x-request-id": f"r{i}"}
        )
        assert r.status_code == 200, r.text
        served[r.headers["x-request-id"]] = str(int(r.json()["predictions"][0]))
    return served


def test_feedback_feeds_the_quality_ab_report(hosted: tuple[httpx.Client, HttpEndpointService]) -> None:
    client, svc = hosted
    policy = replace(TrafficPolicy.canary("m/1", "m/2", 50), rollback=RollbackPolicy(enabled=False))
    svc.create_endpoint("ep", policy)
    served = serve(client, "ep", 60)
    for request_id, version in served.items():
        # version 1 is right every time, version 2 on every other request
        quality = 1.0 if version == "1" or int(request_id[1:]) % 2 else 0.0
        assert svc.feedback("ep", request_id, quality)["variant"] == (
            "primary" if version == "1" else "canary"
        )

    report = svc.traffic("ep", metric="quality", alpha=0.01)
    assert report["stats"]["primary"]["requests"] + report["stats"]["canary"]["requests"] == 60
    # a score is not a second request
    n_canary = sum(v == "2" for v in served.values())
    assert report["stats"]["canary"]["requests"] == report["stats"]["canary"]["quality_n"] == n_canary
    arm = report["ab"]["arms"]["canary"]
    assert report["ab"]["metric"] == "quality" and report["ab"]["alpha"] == 0.01
    assert arm["n"] == n_canary and arm["baseline"] == 1.0 and arm["value"] < 1.0
    # the policy's own ab_metric by default
    assert svc.traffic("ep")["ab"]["metric"] == "error_rate"

    with pytest.raises(NotFound, match="no recent request 'nope'"):
        svc.feedback("ep", "nope", 1.0)
    with pytest.raises(InvalidInput, match="A/B metric 'auc'"):
        svc.traffic("ep", metric="auc")
    with pytest.raises(NotFound):
        svc.traffic("missing")


def test_bad_feedback_rolls_the_canary_back(hosted: tuple[httpx.Client, HttpEndpointService]) -> None:
    client, svc = hosted
    rollback = RollbackPolicy(
        min_requests=5, max_error_rate_delta=None, max_p99_latency_ratio=None, max_quality_drop=0.2
    )
    svc.create_endpoint("ep", replace(TrafficPolicy.canary("m/1", "m/2", 50), rollback=rollback))
    for request_id, version in serve(client, "ep", 60).items():
        svc.feedback("ep", request_id, 1.0 if version == "1" else 0.0)
    deadline = time.monotonic() + 30
    while not (events := [e for e in svc.list_events("ep") if e.kind == "rollback"]):
        assert time.monotonic() < deadline, "the rollback was never recorded"
        time.sleep(0.05)
    assert "quality" in events[0].reason
    assert [v.name for v in svc.get_endpoint("ep").policy.variants] == ["primary"]


def test_cli_prints_the_traffic_report(
    hosted: tuple[httpx.Client, HttpEndpointService], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, svc = hosted
    svc.create_endpoint("ep", TrafficPolicy.canary("m/1", "m/2", 50))
    serve(client, "ep", 20)
    monkeypatch.setattr(cli_endpoints, "_service", lambda: svc)
    shown = CliRunner().invoke(cli_app, ["endpoints", "traffic", "ep", "--metric", "latency_ms", "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["ab"]["metric"] == "latency_ms" and set(report["stats"]) == {"primary", "canary"}
    table = CliRunner().invoke(cli_app, ["endpoints", "traffic", "ep"])
    assert table.exit_code == 0 and "canary" in table.stdout and "error_rate vs primary" in table.stdout
