"""Endpoints hosted by ``loopml server``: managed over /api/v1/endpoints and the CLI, served by
v2 and /endpoints/NAME/invocations, swapped to a new version while it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from loopml import registry, sdk
from loopml.client.http_serving import HttpEndpointService
from loopml.errors import AlreadyExists, NotFound
from loopml.serving.records import TrafficPolicy
from tests.support.live_server import live_server
from tests.support.serving import Trained, train_and_register

_clients: list[triton.InferenceServerClient] = []


def _client(url: str, **kwargs: float) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(url=url, **kwargs)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()  # its socket pool, else a ResourceWarning at exit


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Trained]]:
    home = tmp_path_factory.mktemp("endpoints") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOPML_HOME", str(home))
        mp.delenv("LOOPML_TRACKING_URI", raising=False)
        sdk.reset()
        registry.reset()
        trained = train_and_register(home)
    sdk.reset()
    with live_server(home) as url:
        yield url, trained


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOOPML_TRACKING_URI": url}
    return subprocess.run(
        [sys.executable, "-m", "loopml.cli", "endpoints", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_manages_endpoints(hosted: tuple[str, Trained]) -> None:
    url = hosted[0]
    created = _cli(url, "create", "cli-ep", "--model", "tab@champion", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["policy"]["variants"][0]["model_uri"] == "models:/tab@champion"
    updated = _cli(url, "update", "cli-ep", "--canary", "tab/1:10", "--json")
    variants = json.loads(updated.stdout)["policy"]["variants"]
    assert [(v["role"], v["weight"]) for v in variants] == [("primary", 90.0), ("canary", 10.0)]
    assert "cli-ep" in _cli(url, "list").stdout
    shown = json.loads(_cli(url, "show", "cli-ep", "--json").stdout)
    assert [e["kind"] for e in shown["events"]] == ["updated", "created"]
    assert _cli(url, "delete", "cli-ep").returncode == 0
    missing = _cli(url, "show", "cli-ep")
    assert missing.returncode != 0 and missing.stderr.startswith("error: endpoint 'cli-ep' does not exist")


@pytest.fixture
def svc(hosted: tuple[str, Trained]) -> Iterator[HttpEndpointService]:
    client = HttpEndpointService(hosted[0])
    yield client
    client.close()


def test_endpoint_serves_both_protocols_and_swaps_version(
    hosted: tuple[str, Trained], svc: HttpEndpointService
) -> None:
    url, t = hosted
    svc.create_endpoint("scorer", TrafficPolicy.single("tab@champion"))
    with pytest.raises(AlreadyExists):
        svc.create_endpoint("scorer", TrafficPolicy.single("tab@champion"))
    frame = t.frame.head(6)
    r = httpx.post(
        f"{url}/endpoints/scorer/invocations",
        timeout=120,
        json={"dataframe_records": frame.to_dict("records")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == t.table_model.predict(frame).tolist()

    client = _client(url.removeprefix("http://"), network_timeout=120)
    assert client.is_model_ready("scorer")
    a = triton.InferInput("a", [6], "FP64")
    a.set_data_from_numpy(frame["a"].to_numpy())
    b = triton.InferInput("b", [6], "INT64")
    b.set_data_from_numpy(frame["b"].to_numpy())
    np.testing.assert_array_equal(
        client.infer("scorer", [a, b]).as_numpy("predictions"), t.table_model.predict(frame)
    )

    svc.update_endpoint("scorer", policy=TrafficPolicy.single("lr@champion"), reason="swap model")
    deadline = time.monotonic() + 30
    while client.get_model_metadata("scorer")["inputs"][0]["name"] != "input":
        assert time.monotonic() < deadline, "the endpoint never switched to the new version"
        time.sleep(0.05)
    x = t.X[:4]
    r = httpx.post(f"{url}/endpoints/scorer/invocations", timeout=120, json={"instances": x.tolist()})
    assert r.json()["predictions"] == t.tensor_model.predict(x).tolist()
    assert [e.kind for e in svc.list_events("scorer")] == ["updated", "created"]

    svc.delete_endpoint("scorer")
    with pytest.raises(NotFound):
        svc.get_endpoint("scorer")
    gone = httpx.post(f"{url}/endpoints/scorer/invocations", timeout=120, json={"instances": x.tolist()})
    assert gone.status_code == 404 and gone.json()["error_code"] == "NOT_FOUND"
