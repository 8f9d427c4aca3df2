"""``loopml server --auth`` end to end: the bootstrap token, the unmodified ``mlflow`` client with
a bearer token and with basic auth, roles, revocation, approvals by another user over HTTP, and
the audit log of it all (``loopml audit list|export|verify``)."""

from __future__ import annotations

import io
import re
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from loopml.cli import app as cli_app
from loopml.client.http import HttpTrackingService
from loopml.client.http_registry import HttpRegistryService
from loopml.errors import Conflict, PermissionDenied
from tests.support.live_server import free_port, loopml_process

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]
PASSWORD = "correct horse battery staple"


@dataclass
class Server:
    url: str
    home: Path
    log: str
    tokens: dict[str, str]

    def http(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("auth-server") / "home"
    home.mkdir()
    port = free_port()
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--auth"]
    env = {"LOOPML_MONITOR_SCHEDULER": "0", "LOOPML_PIPELINE_SCHEDULER": "0"}
    with loopml_process(home, args, port=port, ready_path="/health", what="auth server", env=env) as url:
        log = (home.parent / f"auth-server-{port}.log").read_text()
        boot = re.search(r"lm_[0-9a-f]{16}_[A-Za-z0-9_-]+", log)
        assert boot is not None, log
        root = httpx.post(f"{url}/api/v1/auth/bootstrap", json={"token": boot[0], "admin": "root"})
        assert root.status_code == 200, root.text
        srv = Server(url, home, log, {"root": root.json()["token"], "boot": boot[0]})
        with srv.http("root") as admin:
            for name, role in (("ed", "editor"), ("vi", "viewer"), ("ap", "approver"), ("al", "editor")):
                body = {"name": name, "role": role, "password": PASSWORD if name == "ed" else None}
                assert admin.post("/api/v1/auth/users", json=body).status_code == 200
                srv.tokens[name] = admin.post(f"/api/v1/auth/users/{name}/tokens", json={}).json()["token"]
        yield srv


@pytest.fixture
def use_mlflow(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield monkeypatch
    while mlflow.active_run():
        mlflow.end_run()


def _audit(server: Server, **params: str) -> list[dict[str, object]]:
    with server.http("root") as admin:
        entries: list[dict[str, object]] = admin.get(
            "/api/v1/audit", params={**params, "limit": 10000}
        ).json()["entries"]
    return entries


def test_the_bootstrap_token_is_printed_once_and_then_spent(server: Server) -> None:
    assert server.log.count(server.tokens["boot"]) == 1
    again = httpx.post(
        f"{server.url}/api/v1/auth/bootstrap", json={"token": server.tokens["boot"], "admin": "eve"}
    )
    assert again.status_code == 401
    with server.http("boot") as boot:  # and it never was an API token
        assert boot.get("/api/v1/experiments").status_code == 401


def test_mlflow_client_with_a_bearer_token(
    server: Server, use_mlflow: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_mlflow.setenv("MLFLOW_TRACKING_TOKEN", server.tokens["ed"])
    mlflow.set_experiment(f"auth-{uuid.uuid4().hex[:8]}")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("loss", 0.25, step=3)
        mlflow.log_artifact(str(note))
    got = MlflowClient(server.url).get_run(run.info.run_id)
    assert got.data.params == {"alpha": "0.5"} and got.data.metrics == {"loss": 0.25}
    entries = _audit(server, actor="ed")
    actions = {str(e["action"]) for e in entries}
    assert (
        "POST /api/2.0/mlflow/runs/log-batch" in actions or "POST /api/2.0/mlflow/runs/log-metric" in actions
    )
    assert all(e["token_id"] and e["outcome"] == "ok" for e in entries)
    assert any(str(e["target"]).endswith(f"/run:{run.info.run_id}") for e in entries)


def test_mlflow_client_with_basic_auth(server: Server, use_mlflow: pytest.MonkeyPatch) -> None:
    use_mlflow.setenv("MLFLOW_TRACKING_USERNAME", "ed")
    for password in (server.tokens["ed"], PASSWORD):  # a token, or the user's real password
        use_mlflow.setenv("MLFLOW_TRACKING_PASSWORD", password)
        assert MlflowClient(server.url).create_experiment(f"basic-{uuid.uuid4().hex[:8]}")
    use_mlflow.setenv("MLFLOW_TRACKING_PASSWORD", "wrong horse battery staple")
    with pytest.raises(MlflowException):
        MlflowClient(server.url).create_experiment(f"basic-{uuid.uuid4().hex[:8]}")
    failed = [e for e in _audit(server) if e["outcome"] == "login_failed"]
    assert failed and failed[-1]["action"] == "POST /api/2.0/mlflow/experiments/create"


def test_no_credentials_and_too_little_role_are_refused(
    server: Server, use_mlflow: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MlflowException, match=r"401|UNAUTHENTICATED|authentication required"):
        MlflowClient(server.url).search_experiments()
    use_mlflow.setenv("MLFLOW_TRACKING_TOKEN", server.tokens["vi"])
    assert MlflowClient(server.url).search_experiments() is not None  # a viewer reads
    with pytest.raises(MlflowException, match="needs editor"):
        MlflowClient(server.url).create_experiment(f"vi-{uuid.uuid4().hex[:8]}")
    denied = [e for e in _audit(server, actor="vi") if e["outcome"] == "denied"]
    assert denied and denied[-1]["action"] == "POST /api/2.0/mlflow/experiments/create"


def test_x_loopml_user_is_ignored_when_auth_is_on(server: Server) -> None:
    with server.http("vi") as vi:
        r = vi.post("/api/v1/registry/models", json={"name": "nope"}, headers={"X-Loopml-User": "root"})
    assert r.status_code == 403
    with server.http("ed") as ed:
        r = ed.post(
            "/api/v1/registry/models",
            json={"name": f"m-{uuid.uuid4().hex[:6]}"},
            headers={"X-Loopml-User": "root"},
        )
    assert r.status_code == 200
    assert _audit(server, target="project")[-1]["actor"] == "ed"


def test_a_revoked_token_stops_working(server: Server) -> None:
    with server.http("ed") as ed:
        new = ed.post("/api/v1/auth/tokens", json={"name": "short"}).json()
        extra = {"Authorization": f"Bearer {new['token']}"}
        assert httpx.get(f"{server.url}/api/v1/auth/whoami", headers=extra).json()["user"] == "ed"
        assert ed.delete(f"/api/v1/auth/tokens/{new['token_id']}").status_code == 200
        listed = {t["token_id"]: t for t in ed.get("/api/v1/auth/tokens").json()["tokens"]}
    assert listed[new["token_id"]]["revoked_at"] is not None and listed[new["token_id"]]["last_used_at"]
    assert httpx.get(f"{server.url}/api/v1/auth/whoami", headers=extra).status_code == 401
    with server.http("vi") as vi:  # someone else's token: not found, not revoked
        assert vi.delete(f"/api/v1/auth/tokens/{new['token_id']}").status_code == 404


def test_approval_by_another_user_over_http(server: Server) -> None:
    name = f"churn-{uuid.uuid4().hex[:6]}"
    tracking = HttpTrackingService(server.url, token=server.tokens["al"], retries=0)
    al = HttpRegistryService(server.url, token=server.tokens["al"], user="root", retries=0)
    ap = HttpRegistryService(server.url, token=server.tokens["ap"], retries=0)
    run = tracking.create_run("0")
    tracking.put_artifact(run.run_id, "model/model.bin", io.BytesIO(b"weights"))
    al.create_registered_model(name)
    version = al.create_model_version(name, f"runs:/{run.run_id}/model")
    with server.http("root") as admin:
        assert (
            admin.put(
                f"/api/v1/registry/models/{name}/gate", json={"thresholds": [], "require_approval": True}
            ).status_code
            == 200
        )
        # the requester may approve in general (approver on this model) but never their own request
        grant = {"user": "al", "role": "approver", "resource_type": "model", "resource_name": name}
        assert admin.post("/api/v1/auth/roles", json=grant).status_code == 200
    pending = al.promote(name, version.version, reason="weekly")
    assert pending.request is not None and pending.request.requested_by == "al"  # not the header's "root"
    with pytest.raises(PermissionDenied, match="cannot approve"):
        al.approve(pending.request.request_id, digest=version.digest, expected_champion=0)
    refused = [e for e in _audit(server, actor="al") if e["outcome"] == "denied"][-1]
    assert refused["action"] == "POST /api/v1/registry/requests/{request_id}/approve"
    assert refused["target"] == f"model:{name}/request:{pending.request.request_id}"
    with pytest.raises(Conflict, match="you saw"):
        ap.approve(pending.request.request_id, digest=version.digest, expected_champion=7)
    done = ap.approve(pending.request.request_id, reason="ok", digest=version.digest, expected_champion=0)
    assert done.transition is not None
    assert (done.transition.user, done.transition.approved_by, done.transition.digest) == (
        "al",
        "ap",
        version.digest,
    )
    entry = [e for e in _audit(server, actor="ap") if e["outcome"] == "ok"][-1]
    assert entry["after"] == {
        "champion": version.version,
        "version": version.version,
        "digest": version.digest,
    }


def test_audit_cli_lists_exports_and_catches_tampering(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(server.home))
    monkeypatch.delenv("LOOPML_TRACKING_URI", raising=False)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["audit", "list", "--actor", "ed", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {e["actor"] for e in orjson.loads(listed.stdout)} == {"ed"}
    exported = runner.invoke(cli_app, ["audit", "export", "--since", "2020-01-01"])
    lines = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    ok = runner.invoke(cli_app, ["audit", "verify"])
    assert ok.exit_code == 0 and "audit log intact" in ok.output
    # remote: the same answer through the API with an admin token
    monkeypatch.setenv("LOOPML_TRACKING_URI", server.url)
    monkeypatch.setenv("LOOPML_TOKEN", server.tokens["root"])
    assert runner.invoke(cli_app, ["audit", "verify"]).exit_code == 0
    monkeypatch.delenv("LOOPML_TRACKING_URI")
    with sqlite3.connect(server.home / "loopml.db") as conn:
        conn.execute("update audit_log set actor = 'nobody' where seq = 3")
    bad = runner.invoke(cli_app, ["audit", "verify"])
    assert bad.exit_code == 1 and "entry 3: content does not match its hash" in bad.output


def test_users_cli_against_the_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_TRACKING_URI", server.url)
    runner = CliRunner()
    monkeypatch.setenv("LOOPML_TOKEN", server.tokens["vi"])
    mine = runner.invoke(cli_app, ["users", "token", "--name", "laptop"])
    assert mine.exit_code == 0 and mine.stdout.strip().startswith("lm_")  # anyone signed in: their own
    denied = runner.invoke(cli_app, ["users", "create", "mallory", "--role", "admin"])
    assert denied.exit_code == 1 and "needs admin" in denied.output
    monkeypatch.setenv("LOOPML_TOKEN", server.tokens["root"])
    assert runner.invoke(cli_app, ["users", "create", "cli-made", "--role", "viewer"]).exit_code == 0
    assert (
        runner.invoke(cli_app, ["users", "grant", "cli-made", "editor", "--experiment", "0"]).exit_code == 0
    )
    listed = orjson.loads(runner.invoke(cli_app, ["users", "list", "--json"]).stdout)
    assert {("cli-made", "viewer", ""), ("cli-made", "editor", "0")} <= {
        (b["user"], b["role"], b["resource_name"]) for b in listed["roles"]
    }
    tokens = orjson.loads(runner.invoke(cli_app, ["users", "tokens", "vi", "--json"]).stdout)
    assert "laptop" in {t["name"] for t in tokens} and all("token" not in t for t in tokens)
