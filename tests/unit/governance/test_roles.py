"""Roles: deny by default, per-resource over project-wide, '*' for everyone, the last admin stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.errors import PermissionDenied
from loopml.governance.roles import Role, grant, require, revoke, role_of
from loopml.store.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'roles.db'}")


def test_no_binding_means_no_access(db: Database) -> None:
    assert role_of(db, "bo") is None
    with db.read() as conn, pytest.raises(PermissionDenied, match="needs viewer"):
        require(conn, "bo", Role.VIEWER, "model", "churn")


def test_a_resource_binding_overrides_the_project_default(db: Database) -> None:
    grant(db, "bo", "editor", "project", "", by="ana")
    grant(db, "bo", "viewer", "experiment", "7", by="ana")
    grant(db, "bo", "approver", "model", "churn", by="ana")
    assert role_of(db, "bo", "experiment", "7") is Role.VIEWER  # restricted here
    assert role_of(db, "bo", "experiment", "8") is Role.EDITOR
    assert role_of(db, "bo", "model", "churn") is Role.APPROVER
    with db.read() as conn:
        with pytest.raises(PermissionDenied, match="--experiment 7"):
            require(conn, "bo", Role.EDITOR, "experiment", "7")
        assert require(conn, "bo", Role.EDITOR, "experiment", "8") is Role.EDITOR


def test_everyone_binding_and_project_admin(db: Database) -> None:
    grant(db, "*", "viewer", "project", "", by="ana")
    grant(db, "ana", "admin", "project", "", by="bootstrap")
    grant(db, "ana", "viewer", "model", "churn", by="ana")  # cannot demote a project admin
    assert role_of(db, "anyone") is Role.VIEWER
    assert role_of(db, "ana", "model", "churn") is Role.ADMIN


def test_the_last_admin_cannot_be_removed(db: Database) -> None:
    grant(db, "ana", Role.ADMIN, "project", "", by="bootstrap")
    with pytest.raises(PermissionDenied, match="last admin"):
        revoke(db, "ana", "project", "")
    grant(db, "bo", Role.ADMIN, "project", "", by="ana")
    revoke(db, "ana", "project", "")
    assert role_of(db, "ana") is None
