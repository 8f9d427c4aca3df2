"""``loopml users`` and ``loopml audit`` on the local store, and when authentication is forced on."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from loopml.cli import app as cli_app
from loopml.config import Settings
from loopml.governance.identity import IdentityService
from loopml.server.auth import auth_required, is_loopback
from loopml.store.db import Database


@pytest.mark.parametrize(
    ("bind", "flag", "on"),
    [
        ("127.0.0.1", "0", False),
        ("localhost", "0", False),
        ("::1", "0", False),
        ("127.0.0.1", "1", True),
        ("0.0.0.0", "0", True),  # off loopback auth cannot be turned off
        ("192.168.1.20", "0", True),
        ("myhost.example", "0", True),
    ],
)
def test_auth_is_on_with_the_flag_and_always_off_loopback(bind: str, flag: str, on: bool) -> None:
    settings = Settings.load(env={"LOOPML_HOME": "/tmp/x", "LOOPML_BIND_HOST": bind, "LOOPML_AUTH": flag})
    assert auth_required(settings) is on
    assert is_loopback(bind) is (bind in ("127.0.0.1", "localhost", "::1"))


def test_users_and_audit_commands_on_the_local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPML_USER", "ops")
    monkeypatch.delenv("LOOPML_TRACKING_URI", raising=False)
    runner = CliRunner()
    db = Database(f"sqlite:///{tmp_path / 'loopml.db'}")
    boot = IdentityService(db).issue_bootstrap_token()

    made = runner.invoke(cli_app, ["users", "bootstrap", "--token", boot, "--admin", "ana", "--json"])
    assert made.exit_code == 0, made.output
    assert IdentityService(db).authenticate_token(orjson.loads(made.stdout)["token"]).user == "ana"
    assert runner.invoke(cli_app, ["users", "create", "bo", "--role", "viewer"]).exit_code == 0
    assert runner.invoke(cli_app, ["users", "grant", "bo", "approver", "--model", "churn"]).exit_code == 0
    token = runner.invoke(cli_app, ["users", "token", "bo", "--name", "ci", "--expires-in", "60"])
    assert token.exit_code == 0 and token.stdout.strip().startswith("lm_")
    listed = orjson.loads(runner.invoke(cli_app, ["users", "list", "--json"]).stdout)
    assert {(b["user"], b["role"], b["resource_name"]) for b in listed["roles"]} == {
        ("ana", "admin", ""), ("bo", "viewer", ""), ("bo", "approver", "churn"),
    }  # fmt: skip
    bad = runner.invoke(cli_app, ["users", "grant", "bo", "owner"])
    assert bad.exit_code == 2 and "role 'owner' is not one of viewer, editor, approver, admin" in bad.output

    entries = orjson.loads(runner.invoke(cli_app, ["audit", "list", "--json", "--actor", "ops"]).stdout)
    # one entry per changing transaction: creating a user with a role is two
    actions = ["bootstrap", "create", "create", "grant", "token"]
    assert [e["action"] for e in entries] == [f"cli users {a}" for a in actions]
    assert entries[3]["target"] == "user:bo" and entries[3]["after"]["resource_name"] == "churn"
    assert runner.invoke(cli_app, ["audit", "verify"]).exit_code == 0
    with db.engine.begin() as conn:
        conn.exec_driver_sql("delete from audit_log where seq = 2")
    broken = runner.invoke(cli_app, ["audit", "verify"])
    assert broken.exit_code == 1 and "entries 2..2 are missing (deleted)" in broken.output
    db.dispose()


def test_embedded_cli_changes_are_audited_as_the_local_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPML_USER", "ops")
    monkeypatch.delenv("LOOPML_TRACKING_URI", raising=False)
    runner = CliRunner()

    def entries() -> list[dict[str, object]]:
        done = runner.invoke(cli_app, ["audit", "list", "--json"])
        assert done.exit_code == 0, done.output
        found: list[dict[str, object]] = orjson.loads(done.stdout)
        return found

    made = runner.invoke(cli_app, ["experiments", "create", "churn-exp", "--tag", "team=ml"])
    assert made.exit_code == 0, made.output
    mine = [e for e in entries() if e["action"] == "cli experiments create"]
    assert mine and {(e["actor"], e["client"], e["outcome"]) for e in mine} == {("ops", "cli", "ok")}
    assert mine[-1]["target"] == "churn-exp"  # positional arguments only, never option values
    before = len(entries())
    assert runner.invoke(cli_app, ["experiments", "list"]).exit_code == 0  # a read appends nothing
    refused = runner.invoke(cli_app, ["experiments", "create", "churn-exp"])  # exists: nothing written
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert len(entries()) == before
    verified = runner.invoke(cli_app, ["audit", "verify", "--json"])
    assert verified.exit_code == 0 and orjson.loads(verified.stdout)["ok"] is True
    # the binding ends with the command: later writes in this process are not attributed to it
    from loopml.governance import audit

    assert audit.current() is None
