"""LocalEndpointService: one transaction per change, every change an event."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.errors import AlreadyExists, InvalidInput, NotFound
from loopml.serving.local import LocalEndpointService
from loopml.serving.records import BatchingConfig, DeploymentEvent, TrafficPolicy, Variant
from loopml.store.db import Database


@pytest.fixture
def svc(tmp_path: Path) -> LocalEndpointService:
    # A file per test: in-memory URLs are all one URL to the migration cache.
    return LocalEndpointService(Database(f"sqlite:///{tmp_path / 'meta.db'}"), "ada")


def test_create_update_delete_keeps_history(svc: LocalEndpointService) -> None:
    svc.create_endpoint("churn", TrafficPolicy.single("churn@champion"))
    with pytest.raises(AlreadyExists):
        svc.create_endpoint("churn", TrafficPolicy.single("churn@champion"))
    canary = TrafficPolicy.canary("churn@champion", "churn/7", 10)
    updated = svc.update_endpoint(
        "churn", policy=canary, batching=BatchingConfig(enabled=True), reason="try v7"
    )
    assert updated.revision == 2 and svc.get_endpoint("churn").policy == canary
    assert svc.get_endpoint("churn").batching.enabled
    event = DeploymentEvent.new(
        "churn", "rollback", reason="errors", evidence={"canary": {"error_rate": 0.5}}
    )
    rolled = svc.rollback("churn", event)
    assert [v.name for v in rolled.policy.variants] == ["primary"] and rolled.revision == 3
    svc.delete_endpoint("churn")
    with pytest.raises(NotFound) as info:
        svc.get_endpoint("churn")
    assert "no endpoints yet" in info.value.message
    events = svc.list_events("churn")
    assert [e.kind for e in events] == ["deleted", "rollback", "updated", "created"]
    assert events[1].evidence == {"canary": {"error_rate": 0.5}} and events[2].reason == "try v7"


def test_not_found_lists_existing(svc: LocalEndpointService) -> None:
    svc.create_endpoint("a", TrafficPolicy.single("m@x"))
    with pytest.raises(NotFound) as info:
        svc.update_endpoint("b", description="x")
    assert "endpoints are a" in info.value.message


def test_policies_are_validated() -> None:
    with pytest.raises(InvalidInput):
        TrafficPolicy((Variant("a", "m@x", role="canary"),))
    with pytest.raises(InvalidInput):
        Variant("bad name", "m@x")
    with pytest.raises(InvalidInput):
        BatchingConfig(max_batch_size=0)
    with pytest.raises(InvalidInput):
        LocalEndpointService(Database("sqlite:///:memory:")).create_endpoint(
            "x/y", TrafficPolicy.single("m@x")
        )
