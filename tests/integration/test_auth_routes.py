"""Every route the server answers has exactly one permission rule, and with auth on an
unauthenticated call to any non-public route is refused (401) and a viewer's call to any
mutating route is refused (403). The cases are built from the app's own router table: the
FastAPI routes, the MLflow fast-path routes and the inference routes, so a new route without a
rule fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from loopml.config import Settings
from loopml.governance import roles
from loopml.governance.identity import IdentityService
from loopml.server.app import create_app
from loopml.server.auth import PUBLIC, RULES, SIGNED_IN, RuleTable
from loopml.server.dispatch import FastPathDispatcher
from loopml.store.db import Database
from tests.support.live_server import free_port, loopml_process

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI >= 0.120)
            yield from ((prefix, r) for r in route.effective_route_contexts())
        elif isinstance(route, Mount):  # a mounted sub-app (the UI)
            yield from _walk(list(route.routes), prefix + route.path)
        else:
            yield prefix, route


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path pattern) for every route: FastAPI's, then the fast path's."""
    found: set[tuple[str, str]] = set()
    for prefix, route in _walk(list(app.router.routes)):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        assert path is not None and methods, f"a route the test cannot enumerate: {route!r}"
        found.update((m, prefix + path) for m in methods if m != "HEAD")
    for mw in app.user_middleware:
        if mw.cls is FastPathDispatcher:
            found.update((m, p) for m, p, _ in mw.kwargs["routes"])
    return sorted(found)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("auth-routes") / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="module")
def app(home: Path) -> FastAPI:
    """The app as the server builds it, for its router table."""
    env = {"LOOPML_HOME": str(home), "LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_SCHEDULER": "0"}
    return create_app(Settings.load(env=env, toml_path=home / "none.toml"))


@pytest.fixture(scope="module")
def viewer_token(home: Path) -> str:
    """A user with the project-wide viewer role, made on the store before the server starts."""
    db = Database(f"sqlite:///{home / 'loopml.db'}")
    ids = IdentityService(db)
    ids.bootstrap(ids.issue_bootstrap_token(), "root")
    ids.create_user("vera", by="root")
    roles.grant(db, "vera", "viewer", "project", "", by="root")
    secret = ids.create_token("vera").secret
    db.dispose()
    return secret


@pytest.fixture(scope="module")
def client(home: Path, viewer_token: str) -> Iterator[httpx.Client]:
    port = free_port()
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--auth"]
    env = {"LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_SCHEDULER": "0"}
    with (
        loopml_process(home, args, port=port, ready_path="/health", what="auth server", env=env) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        yield c


def _concrete(pattern: str) -> str:
    return _PARAM.sub(lambda m: "a/b" if m[2] else "x1", pattern)


def test_the_router_table_is_found(app: FastAPI) -> None:
    routes = app_routes(app)
    assert ("POST", "/api/2.0/mlflow/runs/log-batch") in routes  # fast path
    assert ("POST", "/v2/models/{model}/infer") in routes  # inference
    assert ("POST", "/api/v1/registry/requests/{request_id}/approve") in routes  # FastAPI
    assert len(routes) > 150


def test_every_route_has_exactly_one_rule(app: FastAPI) -> None:
    rules = {(r.method, r.pattern) for r in RULES}
    missing = [f"{m} {p}" for m, p in app_routes(app) if (m, p) not in rules]
    assert not missing, "routes without a permission rule in loopml.server.auth:\n" + "\n".join(missing)
    duplicated = len(RULES) - len(rules)
    assert duplicated == 0


def test_every_rule_is_the_one_its_route_matches() -> None:
    """No rule shadows another with different needs (the table is matched first-come)."""
    table = RuleTable(RULES)
    for rule in RULES:
        found = table.match(rule.method, _concrete(rule.pattern))
        assert found is not None, rule
        assert (found[0].needs, found[0].resource) == (rule.needs, rule.resource), (rule, found[0])


def test_an_unknown_route_is_refused_not_routed(client: httpx.Client, viewer_token: str) -> None:
    assert client.post("/api/v1/no-such-thing").status_code == 401
    headers = {"Authorization": f"Bearer {viewer_token}"}
    assert client.post("/api/v1/no-such-thing", headers=headers).status_code == 403


def _cases(kind: str) -> list[tuple[str, str]]:
    out = []
    for rule in RULES:
        if rule.needs == PUBLIC:
            continue
        if kind == "viewer" and (rule.method not in MUTATING or rule.needs in (SIGNED_IN, roles.Role.VIEWER)):
            continue
        out.append((rule.method, rule.pattern))
    return out


@pytest.mark.parametrize(("method", "pattern"), _cases("anonymous"))
def test_an_unauthenticated_call_is_refused(client: httpx.Client, method: str, pattern: str) -> None:
    r = client.request(method, _concrete(pattern), json={"run_id": "x1", "name": "x1"})
    assert r.status_code == 401, (method, pattern, r.text)
    assert r.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("method", "pattern"), _cases("viewer"))
def test_a_viewer_cannot_call_a_mutating_route(
    client: httpx.Client, viewer_token: str, method: str, pattern: str
) -> None:
    headers = {"Authorization": f"Bearer {viewer_token}", "X-Loopml-User": "root"}
    r = client.request(method, _concrete(pattern), json={"run_id": "x1", "name": "x1"}, headers=headers)
    assert r.status_code == 403, (method, pattern, r.text)
    assert r.json()["error_code"] == "PERMISSION_DENIED"
