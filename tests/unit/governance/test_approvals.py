"""Approvals: the requester cannot approve; an approval is a compare-and-swap on the artifact
digest and the Production version the approver saw; the transition records both people and the
digest; the audit entry shows the champion before and after."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.config import Settings
from loopml.errors import Conflict, PermissionDenied
from loopml.governance import audit
from loopml.registry.local import LocalRegistryService
from loopml.registry.records import ModelStage, RequestStatus


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[LocalRegistryService]:
    audit.install()
    registry = LocalRegistryService.from_settings(Settings.load(env={"LOOPML_HOME": str(tmp_path)}))
    yield registry
    registry.close()


def _version(reg: LocalRegistryService, name: str, payload: bytes) -> int:
    run = reg.tracking.create_run("0")
    reg.tracking.put_artifact(run.run_id, "model/model.bin", io.BytesIO(payload))
    return reg.create_model_version(name, f"runs:/{run.run_id}/model").version


def _request(reg: LocalRegistryService, name: str, version: int) -> str:
    pending = reg.promote(name, version, reason="weekly", user="ana")
    assert pending.request is not None
    return pending.request.request_id


@pytest.fixture
def gated(reg: LocalRegistryService) -> str:
    reg.create_registered_model("churn")
    _version(reg, "churn", b"v1")
    _version(reg, "churn", b"v2")
    reg.set_gate("churn", [], require_approval=True)
    return "churn"


def test_the_requester_cannot_approve(reg: LocalRegistryService, gated: str) -> None:
    request_id = _request(reg, gated, 1)
    with pytest.raises(PermissionDenied, match="cannot approve"):
        reg.approve(request_id, user="ana")


def test_an_approval_of_other_artifacts_moves_nothing(reg: LocalRegistryService, gated: str) -> None:
    request_id = _request(reg, gated, 1)
    other = reg.get_model_version(gated, 2).digest
    with pytest.raises(Conflict, match=r"not the .* you reviewed"):
        reg.approve(request_id, user="bo", digest=other, expected_champion=0)
    assert reg.get_model_version(gated, 1).current_stage is ModelStage.NONE
    assert reg.get_request(request_id).status is RequestStatus.PENDING


def test_production_moved_since_the_approver_looked(reg: LocalRegistryService, gated: str) -> None:
    first = _request(reg, gated, 1)
    second = _request(reg, gated, 2)
    seen = 0  # the approver of `second` saw no Production version...
    reg.approve(first, user="bo", digest=reg.get_model_version(gated, 1).digest, expected_champion=0)
    # ...and in between version 1 went to Production: the swap is refused with 409
    with pytest.raises(Conflict, match="is version 1 now, not the version 0 you saw") as err:
        reg.approve(second, user="bo", digest=reg.get_model_version(gated, 2).digest, expected_champion=seen)
    assert err.value.status_code == 409
    assert reg.get_registered_model(gated).aliases == {"champion": 1}
    done = reg.approve(
        second, user="carol", digest=reg.get_model_version(gated, 2).digest, expected_champion=1
    )
    assert reg.get_registered_model(gated).aliases == {"champion": 2}
    assert done.transition is not None
    t = done.transition
    assert (t.user, t.approved_by, t.request_id) == ("ana", "carol", second)
    assert t.digest == reg.get_model_version(gated, 2).digest


def test_the_audit_entry_shows_the_champion_before_and_after(reg: LocalRegistryService, gated: str) -> None:
    request_id = _request(reg, gated, 2)
    digest = reg.get_model_version(gated, 2).digest
    token = audit.bind(audit.AuditContext(actor="bo", action="POST /approve", request_id="r1"))
    try:
        reg.approve(request_id, user="bo", digest=digest, expected_champion=0)
    finally:
        audit.unbind(token)
    (entry,) = audit.list_entries(reg.db, actor="bo")
    assert entry.target == f"model:{gated}/request:{request_id}"
    assert entry.before == {"champion": None}
    assert entry.after == {"champion": 2, "version": 2, "digest": digest}


def test_the_champion_alias_cannot_bypass_the_approval(reg: LocalRegistryService, gated: str) -> None:
    with pytest.raises(PermissionDenied, match="moves only through"):
        reg.set_registered_model_alias(gated, "champion", 1, user="ana")
    reg.set_registered_model_alias(gated, "candidate", 1, user="ana")  # other aliases are free
    request_id = _request(reg, gated, 1)
    reg.approve(request_id, user="bo", digest=reg.get_model_version(gated, 1).digest, expected_champion=0)
    with pytest.raises(PermissionDenied, match="moves only through"):
        reg.delete_registered_model_alias(gated, "champion", user="ana")
    assert reg.get_registered_model(gated).aliases == {"candidate": 1, "champion": 1}
