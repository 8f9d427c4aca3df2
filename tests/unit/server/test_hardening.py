"""The hardening middleware: Host names, JSON depth, and the audit entry each refusal leaves."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.config import Settings
from loopml.governance import audit
from loopml.server.app import create_app
from loopml.server.hardening import MAX_JSON_DEPTH, HostPolicy, host_allowed, json_depth

POLICY = HostPolicy.build(["models.example.com"], bind_host="10.1.2.3")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("LOCALHOST.", True),
        ("app.localhost:80", True),
        ("127.0.0.1:5000", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("10.9.9.9", True),  # any IP literal: rebinding needs a name
        ("models.example.com:443", True),
        ("evil.example.com", False),
        ("models.example.com.evil.net", False),
        ("localhost.evil.net", False),
        ("[::1].evil.net", False),
        ("[::1]x", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_host_names(host: str, allowed: bool) -> None:
    assert host_allowed(host, POLICY) is allowed


def test_allowed_hosts_come_from_settings_and_star_allows_all() -> None:
    s = Settings.load(env={"LOOPML_ALLOWED_HOSTS": "a.example, b.example", "LOOPML_HOME": "/tmp/x"})
    assert s.allowed_hosts == ("a.example", "b.example")
    assert host_allowed("b.example:8080", HostPolicy.build(s.allowed_hosts))
    assert host_allowed("anything.example", HostPolicy.build(["*"]))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:\n'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k'), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_json_depth_matches_the_parsed_structure(value: Any) -> None:
    """Brackets, quotes and backslashes inside strings never count."""
    assert json_depth(json.dumps(value).encode()) == _depth(value)


class Client:
    """Requests straight into the app (no server), from client address 127.0.0.1."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.db = app.state.tracking.db

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(go())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    env = {
        "LOOPML_HOME": str(tmp_path / "home"),
        "LOOPML_ALLOWED_HOSTS": "testserver",
        "LOOPML_MAX_REQUEST_BYTES": "4096",
        "LOOPML_MAX_UPLOAD_BYTES": "4096",
        "LOOPML_MONITOR_SCHEDULER": "0",
        "LOOPML_PIPELINE_SCHEDULER": "0",
    }
    app = create_app(Settings.load(env=env, toml_path=tmp_path / "none.toml"))
    try:
        yield Client(app)
    finally:
        app.state.tracking.db.dispose()


def _refusals(client: Client) -> list[audit.AuditEntry]:
    return [e for e in audit.list_entries(client.db, limit=1000) if e.outcome == "refused"]


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()


DEEP = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"headers": {"Host": "evil.example.com"}}, 400, "host"),
        ({"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415, "content-type"),
        ({"content": b"{}" * 4000, "headers": {"Content-Type": "application/json"}}, 413, "body-too-large"),
        ({"content": DEEP, "headers": {"Content-Type": "application/json"}}, 400, "json-too-deep"),
    ],
)
def test_each_refusal_leaves_one_audit_entry(
    client: Client, kwargs: dict[str, Any], status: int, reason: str
) -> None:
    kwargs = dict(kwargs)
    headers = {**kwargs.pop("headers"), "X-Request-ID": f"req-{reason}", "Authorization": _basic("mallory")}
    response = client.request("POST", "/api/v1/experiments", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    [entry] = _refusals(client)
    assert entry.action == f"refused:{reason}"
    assert entry.actor == "unverified:mallory"  # a claimed name, never checked: not an identity
    assert entry.token_id is None
    assert entry.target == "/api/v1/experiments"
    assert entry.after["status"] == status and entry.after["method"] == "POST"
    assert entry.request_id == f"req-{reason}"
    assert entry.client == "127.0.0.1"
    report = audit.verify(client.db)
    assert report.ok, report.problems


def test_accepted_requests_leave_no_refusal_and_the_chain_verifies(client: Client) -> None:
    created = client.request("POST", "/api/v1/experiments", json={"name": "fine"})
    assert created.status_code < 300, created.text
    assert client.request("GET", "/api/v1/experiments").status_code == 200
    assert _refusals(client) == []
    assert client.request("GET", "/health", headers={"Host": "attacker"}).status_code == 400
    [entry] = _refusals(client)
    assert (entry.actor, entry.action, entry.target) == ("anonymous", "refused:host", "/health")
    assert entry.request_id  # one is made up when the client sends none
    assert audit.verify(client.db).ok


def test_a_streamed_upload_over_the_limit_is_audited(client: Client) -> None:
    exp = client.request("POST", "/api/v1/experiments", json={"name": "uploads"}).json()
    run = client.request("POST", "/api/v1/runs", json={"experiment_id": exp["experiment_id"]}).json()
    run_id = run.get("run_id") or run["info"]["run_id"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(2):
            yield b"x" * 3000

    response = client.request("PUT", f"/api/v1/runs/{run_id}/artifacts/big.bin", content=chunks())
    assert response.status_code == 413, response.text
    [entry] = _refusals(client)
    assert entry.action == "refused:body-too-large"
    assert entry.target == f"/api/v1/runs/{run_id}/artifacts/big.bin"
    assert entry.after["method"] == "PUT"
