"""One behavioural suite for every RegistryService: SQLite, PostgreSQL, and HTTP to a live server."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loopml.client.http import HttpTrackingService
from loopml.client.http_registry import HttpRegistryService
from loopml.config import Settings
from loopml.errors import AlreadyExists, Conflict, GateFailed, InvalidInput, NotFound, PermissionDenied
from loopml.registry.local import LocalRegistryService
from loopml.registry.records import ModelStage, RequestStatus
from loopml.registry.service import RegistryService
from loopml.tracking.service import TrackingService


@dataclass
class Backend:
    registry: RegistryService
    tracking: TrackingService

    def logged_model(self, payload: bytes = b"weights") -> str:
        """A run with a model directory; returns its runs:/ URI."""
        run = self.tracking.create_run("0")
        self.tracking.put_artifact(run.run_id, "model/model.bin", io.BytesIO(payload))
        self.tracking.put_artifact(run.run_id, "model/conf.json", io.BytesIO(b"{}"))
        return f"runs:/{run.run_id}/model"


def _local(home: Path, database_url: str | None = None) -> LocalRegistryService:
    env = {"LOOPML_HOME": str(home), "LOOPML_USER": "ana"}
    if database_url:
        env["LOOPML_DATABASE_URL"] = database_url
    return LocalRegistryService.from_settings(Settings.load(env=env))


@pytest.fixture(params=["sqlite", "postgres", "http"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "http":
        url = request.getfixturevalue("server_url")
        remote = HttpRegistryService(url, user="ana", retries=2)
        tracking = HttpTrackingService(url, retries=2)
        yield Backend(remote, tracking)
        remote.close()
        tracking.close()
        return
    if request.param == "sqlite":
        reg = _local(tmp_path)
    else:
        reg = _local(tmp_path, request.getfixturevalue("postgres_url"))
    yield Backend(reg, reg.tracking)
    reg.close()


def _name(prefix: str = "model") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _evaluated(b: Backend, name: str, version: int, champion: int | None = None, **metrics: float) -> None:
    champ = {"accuracy": 0.90, "roc_auc": 0.90} if champion else {}
    b.registry.record_evaluation(name, version, "holdout", 1, "d" * 64, metrics, champion, champ)


def test_registered_model_lifecycle(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    model = reg.create_registered_model(name, description="weekly churn", tags={"team": "ml"})
    assert (model.name, model.description, model.tags, model.aliases) == (
        name,
        "weekly churn",
        {"team": "ml"},
        {},
    )
    with pytest.raises(AlreadyExists):
        reg.create_registered_model(name)
    reg.update_registered_model(name, "daily churn")
    reg.set_registered_model_tag(name, "owner", "ana")
    reg.delete_registered_model_tag(name, "team")
    got = reg.get_registered_model(name)
    assert (got.description, got.tags) == ("daily churn", {"owner": "ana"})
    reg.rename_registered_model(name, name + "-v2")
    assert reg.get_registered_model(name + "-v2").description == "daily churn"
    with pytest.raises(NotFound, match=f"registered model '{name}' does not exist; registered models are"):
        reg.get_registered_model(name)
    reg.delete_registered_model(name + "-v2")
    with pytest.raises(NotFound):
        reg.get_registered_model(name + "-v2")


def test_versions_number_from_one_record_run_and_digest(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    uri = backend.logged_model()
    run_id = uri.split("/")[1]
    v1 = reg.create_model_version(name, uri, description="first", tags={"k": "v"})
    v2 = reg.create_model_version(name, backend.tracking.get_run(run_id).info.artifact_uri + "/model")
    assert (v1.version, v2.version) == (1, 2)
    assert v1.run_id == v2.run_id == run_id
    assert v1.digest == v2.digest and len(v1.digest) == 64  # same files, same digest
    assert v1.current_stage is ModelStage.NONE and v1.tags == {"k": "v"} and v1.user_id == "ana"
    other = reg.create_model_version(name, backend.logged_model(b"other weights"))
    assert other.digest != v1.digest
    assert reg.get_model_version_download_uri(name, 1).endswith(f"{run_id}/artifacts/model")
    reg.delete_model_version(name, 3)
    assert reg.create_model_version(name, uri).version == 4  # numbers are never reused
    with pytest.raises(NotFound, match=f"model '{name}' has no version 9; latest is 4"):
        reg.get_model_version(name, 9)


@pytest.mark.parametrize(
    "source",
    ["/tmp/model", "file:///tmp/model", "s3://bucket/model", "https://example.com/m", "models:/other/1", ""],
)
def test_sources_loopml_did_not_issue_are_refused(backend: Backend, source: str) -> None:
    name = _name()
    backend.registry.create_registered_model(name)
    with pytest.raises(InvalidInput) as err:
        backend.registry.create_model_version(name, source)
    assert err.value.details["field"] == "source"
    assert backend.registry.get_registered_model(name).latest_versions == []


def test_source_checks_run_and_files(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    uri = backend.logged_model()
    with pytest.raises(InvalidInput, match="no artifacts"):
        reg.create_model_version(name, uri.replace("/model", "/missing"))
    with pytest.raises(InvalidInput, match="does not exist"):
        reg.create_model_version(name, "runs:/" + "0" * 32 + "/model")
    with pytest.raises(InvalidInput) as err:
        reg.create_model_version(name, uri, run_id="f" * 32)
    assert err.value.details["field"] == "run_id"


def test_aliases_move_and_name_what_exists(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    uri = backend.logged_model()
    for _ in range(2):
        reg.create_model_version(name, uri)
    reg.set_registered_model_alias(name, "challenger", 1)
    reg.set_registered_model_alias(name, "challenger", 2)
    reg.set_registered_model_alias(name, "shadow", 1)
    assert reg.get_model_version_by_alias(name, "challenger").version == 2
    assert reg.get_registered_model(name).aliases == {"challenger": 2, "shadow": 1}
    assert reg.get_model_version(name, 2).aliases == ["challenger"]
    with pytest.raises(NotFound, match=f"model '{name}' has no alias 'prod'; aliases are challenger, shadow"):
        reg.get_model_version_by_alias(name, "prod")
    with pytest.raises(NotFound, match="no version 5; latest is 2"):
        reg.set_registered_model_alias(name, "x", 5)
    with pytest.raises(InvalidInput):
        reg.set_registered_model_alias(name, "latest", 1)
    reg.delete_registered_model_alias(name, "shadow")
    reg.delete_model_version(name, 2)
    assert reg.get_registered_model(name).aliases == {}


def test_search_filters_order_and_pages(backend: Backend) -> None:
    reg, prefix = backend.registry, _name("search")
    uri = backend.logged_model()
    for i in range(3):
        reg.create_registered_model(f"{prefix}-{i}", tags={"team": "ml" if i < 2 else "bi"})
        reg.create_model_version(f"{prefix}-{i}", uri, tags={"i": str(i)})
    page = reg.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2)
    assert [m.name for m in page.models] == [f"{prefix}-0", f"{prefix}-1"]
    rest = reg.search_registered_models(
        f"name LIKE '{prefix}-%'", max_results=2, page_token=page.next_page_token
    )
    assert [m.name for m in rest.models] == [f"{prefix}-2"] and rest.next_page_token is None
    tagged = reg.search_registered_models(
        f"name LIKE '{prefix}%' AND tags.team = 'ml'", order_by=["name DESC"]
    )
    assert [m.name for m in tagged.models] == [f"{prefix}-1", f"{prefix}-0"]
    versions = reg.search_model_versions(f"run_id = '{uri.split('/')[1]}' AND tags.i = '2'").versions
    assert [(v.name, v.version) for v in versions] == [(f"{prefix}-2", 1)]
    with pytest.raises(InvalidInput) as err:
        reg.search_registered_models("description = 'x'")
    assert err.value.details["field"] == "filter"


def test_stage_graph_and_archive_existing(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    uri = backend.logged_model()
    for _ in range(2):
        reg.create_model_version(name, uri)
    reg.transition_model_version_stage(name, 1, "production", reason="first")
    reg.transition_model_version_stage(name, 2, "Staging")
    moved = reg.transition_model_version_stage(name, 2, "Production", archive_existing_versions=True)
    assert moved.current_stage is ModelStage.PRODUCTION and moved.aliases == ["champion"]
    assert reg.get_model_version(name, 1).current_stage is ModelStage.ARCHIVED
    with pytest.raises(Conflict, match="Archived -> Production is not allowed"):
        reg.transition_model_version_stage(name, 1, "Production")
    with pytest.raises(Conflict, match="already in Production"):
        reg.transition_model_version_stage(name, 2, "Production")
    with pytest.raises(InvalidInput):
        reg.transition_model_version_stage(name, 2, "Live")
    latest = reg.get_latest_versions(name, ["Production", "Archived"])
    assert [(v.version, v.current_stage.value) for v in latest] == [(1, "Archived"), (2, "Production")]
    trail = reg.list_transitions(name)
    assert [(t.version, t.from_stage.value, t.to_stage.value) for t in trail] == [
        (1, "None", "Production"),
        (2, "None", "Staging"),
        (1, "Production", "Archived"),
        (2, "Staging", "Production"),
    ]
    assert trail[0].reason == "first" and trail[0].user == "ana" and trail[0].digest == moved.digest


def test_gate_refuses_without_evaluation_and_on_failure(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    reg.create_model_version(name, backend.logged_model())
    reg.set_gate(name, ["accuracy >= 0.90", "latency_p99_ms <= 20"])
    with pytest.raises(GateFailed, match="has no evaluation; run `loopml models evaluate") as unevaluated:
        reg.promote(name, 1)
    assert "accuracy >= 0.90: value missing, limit 0.9, FAIL (not evaluated)" in unevaluated.value.message
    _evaluated(backend, name, 1, accuracy=0.85, latency_p99_ms=3.0)
    with pytest.raises(GateFailed) as err:
        reg.promote(name, 1)
    assert "accuracy >= 0.90: value 0.85, limit 0.9, FAIL" in err.value.message
    assert "latency_p99_ms <= 20: value 3, limit 20, pass" in err.value.message
    results = err.value.details["results"]
    assert [(r["metric"], r["passed"]) for r in results] == [("accuracy", False), ("latency_p99_ms", True)]
    assert reg.get_model_version(name, 1).current_stage is ModelStage.NONE  # nothing moved
    assert reg.list_transitions(name) == []
    with pytest.raises(GateFailed):  # MLflow's transition-stage goes through the same gate
        reg.transition_model_version_stage(name, 1, "Production")


def test_gate_compares_with_the_champion(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    uri = backend.logged_model()
    for _ in range(3):
        reg.create_model_version(name, uri)
    reg.set_gate(name, ["roc_auc >= champion.roc_auc - 0.005"])
    _evaluated(backend, name, 1, roc_auc=0.80)
    first = reg.promote(name, 1, reason="first model")  # no champion: passes with a note
    assert first.gate.passed and first.gate.results[0].note == "no champion to compare with"
    assert reg.champion(name) is not None and reg.champion(name).version == 1  # type: ignore[union-attr]
    _evaluated(backend, name, 2, champion=1, roc_auc=0.894)  # champion recorded at 0.90
    with pytest.raises(GateFailed, match=r"value 0.894, limit 0.895, FAIL"):
        reg.promote(name, 2)
    _evaluated(backend, name, 3, champion=1, roc_auc=0.896)
    done = reg.promote(name, 3, reason="beats v1")
    assert done.transition is not None and done.transition.gate == done.gate
    assert reg.get_model_version(name, 3).aliases == ["champion"]
    assert reg.get_model_version(name, 1).current_stage is ModelStage.ARCHIVED
    # v2's evaluation was against v1; the champion is now v3, so that evidence is stale.
    _evaluated(backend, name, 2, champion=1, roc_auc=0.99)
    assert not reg.check_gate(name, 2).passed
    assert "champion changed" in reg.check_gate(name, 2).note


def test_bad_thresholds_are_refused_whole(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    with pytest.raises(InvalidInput, match=r"threshold 'accuracy => 0\.9' is not valid"):
        reg.set_gate(name, ["roc_auc >= 0.8", "accuracy => 0.9"])
    assert reg.get_gate(name) is None
    gate = reg.set_gate(name, ["accuracy>=0.9"], require_approval=True)
    assert gate.thresholds == ["accuracy >= 0.9"] and reg.get_gate(name) == gate


def test_approval_needs_a_different_user(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    reg.create_model_version(name, backend.logged_model())
    reg.set_gate(name, ["accuracy >= 0.9"], require_approval=True)
    _evaluated(backend, name, 1, accuracy=0.95)
    pending = reg.promote(name, 1, reason="ship it", user="ana")
    assert pending.pending and pending.version.current_stage is ModelStage.NONE
    assert pending.request is not None
    request_id = pending.request.request_id
    assert [r.request_id for r in reg.list_requests(name)] == [request_id]
    with pytest.raises(Conflict, match="already pending"):
        reg.promote(name, 1, user="ana")
    with pytest.raises(PermissionDenied, match="cannot approve"):
        reg.approve(request_id, user="ana")
    done = reg.approve(request_id, reason="checked the card", user="bob")
    assert done.version.current_stage is ModelStage.PRODUCTION
    assert done.transition is not None
    assert (done.transition.user, done.transition.approved_by) == ("ana", "bob")
    request = reg.get_request(request_id)
    assert (request.status, request.decided_by) == (RequestStatus.APPROVED, "bob")
    with pytest.raises(Conflict, match="already approved by bob"):
        reg.reject(request_id, user="carol")
    assert reg.list_requests(name) == []


def test_rejection_and_mlflow_transition_under_approval(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    reg.create_model_version(name, backend.logged_model())
    reg.set_gate(name, [], require_approval=True)
    with pytest.raises(PermissionDenied, match="needs approval") as err:
        reg.transition_model_version_stage(name, 1, "Production", user="ana")
    request_id = err.value.details["request_id"]
    rejected = reg.reject(request_id, reason="not this week", user="bob")
    assert (rejected.status, rejected.decision_reason) == (RequestStatus.REJECTED, "not this week")
    assert reg.get_model_version(name, 1).current_stage is ModelStage.NONE
    with pytest.raises(NotFound, match="promotion request 'nope' does not exist"):
        reg.approve("nope", user="bob")


def test_delete_model_removes_everything(backend: Backend) -> None:
    reg, name = backend.registry, _name()
    reg.create_registered_model(name)
    reg.create_model_version(name, backend.logged_model())
    reg.set_gate(name, ["accuracy >= 0.5"], require_approval=True)
    _evaluated(backend, name, 1, accuracy=0.9)
    reg.promote(name, 1, user="ana")
    reg.set_registered_model_alias(name, "x", 1)
    reg.delete_registered_model(name)
    with pytest.raises(NotFound):
        reg.list_requests(name)
    reg.create_registered_model(name)
    assert reg.get_gate(name) is None and reg.list_evaluations(name) == []
