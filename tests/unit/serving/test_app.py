"""The inference app's wiring of router, metrics and runtimes across endpoint revisions, with a
fake loader (no model library) and an in-memory endpoint source."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopml.errors import NotFound
from loopml.serving.app import FixedEndpoints, InferenceServer
from loopml.serving.host import LoadedVersion
from loopml.serving.records import (
    BatchingConfig,
    DeploymentEvent,
    Endpoint,
    RollbackPolicy,
    TrafficPolicy,
)

NO_JUDGE = RollbackPolicy(enabled=False)


class Source:
    """Endpoints changed in place, as the service would change them (revision + 1)."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.events: list[DeploymentEvent] = []

    def put(self, name: str, policy: TrafficPolicy, batching: BatchingConfig | None = None) -> None:
        old = self.endpoints.get(name)
        self.endpoints[name] = Endpoint(
            name, policy, batching or BatchingConfig(), 0, 0, "ada", revision=old.revision + 1 if old else 1
        )

    def get(self, name: str) -> Endpoint:
        if name not in self.endpoints:
            raise NotFound(f"endpoint {name!r} does not exist")
        return self.endpoints[name]

    def rollback(self, name: str, event: DeploymentEvent) -> None:
        self.events.append(event)
        assert event.policy is not None
        self.put(name, event.policy)


LOADS: list[tuple[str, bool]] = []


def loader(uri: str, *, trust_pickle: bool = False) -> LoadedVersion:
    """``models:/m/N`` predicts N for every row (so a response names the version that served it)."""
    LOADS.append((uri, trust_pickle))
    version = uri.rsplit("/", 1)[-1]

    def predict(x: Any) -> Any:
        if version == "9":
            raise RuntimeError("broken model")
        return np.full(len(x), float(version))

    return LoadedVersion(uri, "m", version, None, predict)


def run(test: Callable[[InferenceServer, Source, httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        source = Source()
        server = InferenceServer(source, loader=loader, refresh_s=0.0)
        transport = httpx.ASGITransport(app=server.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                await test(server, source, client)
            finally:
                await server.close()

    asyncio.run(main())


async def invoke(client: httpx.AsyncClient, name: str, **headers: str) -> httpx.Response:
    return await client.post(f"/endpoints/{name}/invocations", json={"instances": [[1.0]]}, headers=headers)


async def swapped(server: InferenceServer, name: str, revision: int) -> None:
    """Wait for the background swap to ``revision`` (loading is instant with the fake loader)."""
    for _ in range(500):
        if (await server.runtime(name)).endpoint.revision == revision:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"endpoint {name!r} never reached revision {revision}")


def samples(server: InferenceServer, metric: str) -> dict[frozenset[tuple[str, str]], float]:
    body, _ = server.metrics.render()
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == metric
    }


def weight(server: InferenceServer, variant: str) -> float | None:
    return samples(server, "loopml_serving_traffic_weight").get(
        frozenset({("endpoint", "ep"), ("variant", variant)})
    )


def canary(percent: float, canary_uri: str = "m/2") -> TrafficPolicy:
    return replace(TrafficPolicy.canary("m/1", canary_uri, percent), rollback=NO_JUDGE)


def test_a_canary_that_left_the_split_shows_zero_weight() -> None:
    async def body(server: InferenceServer, source: Source, client: httpx.AsyncClient) -> None:
        source.put("ep", canary(10))
        assert (await invoke(client, "ep")).status_code == 200
        assert weight(server, "canary") == 10.0
        source.put("ep", TrafficPolicy.single("m/1"))  # what a rollback or a finished canary stores
        await invoke(client, "ep")
        await swapped(server, "ep", 2)
        assert weight(server, "canary") == 0.0 and weight(server, "primary") == 100.0

    run(body)


def test_loopml_serve_publishes_the_split_a_rollback_left() -> None:
    """``loopml serve`` never rebuilds after a rollback: the judge's split itself must be published."""
    policy = replace(
        TrafficPolicy.canary("m/1", "m/9", 50),
        rollback=RollbackPolicy(min_requests=5, max_p99_latency_ratio=None),
    )
    source = FixedEndpoints(Endpoint("ep", policy, BatchingConfig(), 0, 0, "ada"))

    async def main() -> None:
        server = InferenceServer(source, loader=loader)
        transport = httpx.ASGITransport(app=server.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(60):
                await invoke(client, "ep")
        await server.close()
        assert [e.kind for e in source.events] == ["rollback"]
        assert weight(server, "canary") == 0.0 and weight(server, "primary") == 100.0

    asyncio.run(main())


def test_a_canary_keeps_its_statistics_when_its_weight_changes() -> None:
    async def body(server: InferenceServer, source: Source, client: httpx.AsyncClient) -> None:
        source.put("ep", canary(10))
        for _ in range(40):
            assert (await invoke(client, "ep")).status_code == 200
        before = (await server.runtime("ep")).router.stats()
        assert before["primary"]["requests"] + before["canary"]["requests"] == 40
        source.put("ep", canary(50))
        await invoke(client, "ep")
        await swapped(server, "ep", 2)
        after = (await server.runtime("ep")).router.stats()
        assert after["canary"]["requests"] >= before["canary"]["requests"]
        assert after["primary"]["requests"] + after["canary"]["requests"] >= 40
        # a re-pointed canary is new evidence: its statistics start from zero
        source.put("ep", canary(50, "m/3"))
        await invoke(client, "ep")
        await swapped(server, "ep", 3)
        stats = (await server.runtime("ep")).router.stats()
        assert stats["canary"]["requests"] == 0 and stats["primary"]["requests"] >= 20

    run(body)


def test_a_retired_version_leaves_no_queue_depth_gauge() -> None:
    def versions(server: InferenceServer) -> set[str]:
        return {dict(labels)["version"] for labels in samples(server, "loopml_serving_queue_depth")}

    async def body(server: InferenceServer, source: Source, client: httpx.AsyncClient) -> None:
        batching = BatchingConfig(enabled=True, max_latency_ms=1)
        source.put("ep", TrafficPolicy.single("m/1"), batching)
        assert (await invoke(client, "ep")).status_code == 200
        assert versions(server) == {"1"}
        source.put("ep", TrafficPolicy.single("m/2"), batching)
        await invoke(client, "ep")
        await swapped(server, "ep", 2)
        assert versions(server) == {"2"}
        del source.endpoints["ep"]
        assert (await invoke(client, "ep")).status_code == 404
        assert versions(server) == set()

    run(body)


def test_trust_pickle_reaches_the_loader_and_is_never_shared() -> None:
    async def body(server: InferenceServer, source: Source, client: httpx.AsyncClient) -> None:
        LOADS.clear()
        source.put("plain", TrafficPolicy.single("m/1"))
        source.endpoints["trusted"] = replace(source.get("plain"), name="trusted", trust_pickle=True)
        assert (await invoke(client, "plain")).status_code == 200
        assert (await invoke(client, "trusted")).status_code == 200
        # the same URI loaded twice: a model loaded trusting pickles never serves "plain"
        assert LOADS == [("models:/m/1", False), ("models:/m/1", True)]

    run(body)


@pytest.mark.parametrize(("flag", "trusted"), [([], False), (["--trust-pickle"], True)])
def test_loopml_serve_trusts_pickle_only_when_told(
    flag: list[str], trusted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from loopml.cli import app as cli_app

    served: list[Endpoint] = []
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(
        InferenceServer,
        "single",
        classmethod(lambda cls, e, **kw: served.append(e) or cls(FixedEndpoints(e))),
    )
    result = CliRunner().invoke(cli_app, ["serve", "m/1", "--no-log", *flag])
    assert result.exit_code == 0, result.output
    assert [e.trust_pickle for e in served] == [trusted]
