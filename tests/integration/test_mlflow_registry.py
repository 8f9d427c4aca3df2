"""The unmodified ``mlflow`` client's model-registry flow against a live loopml server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from loopml.client.http_registry import HttpRegistryService  # noqa: E402
from loopml.errors import PermissionDenied  # noqa: E402

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

X = np.random.default_rng(0).random((60, 3))
Y = (X[:, 0] > 0.5).astype(int)


@dataclass(frozen=True)
class Logged:
    run_id: str
    uri: str  # models:/m-<id>, what mlflow 3 logs a model as
    model: LogisticRegression


@pytest.fixture
def client(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server_url)
    mlflow.set_registry_uri(server_url)
    mlflow.set_experiment(f"registry-{uuid.uuid4().hex[:8]}")
    yield MlflowClient(server_url, registry_uri=server_url)
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="module")
def logged(server_url: str) -> list[Logged]:
    """Two sklearn models logged by mlflow once for the module (logging is the slow part)."""
    mlflow.set_tracking_uri(server_url)
    mlflow.set_experiment(f"registry-models-{uuid.uuid4().hex[:8]}")
    out = []
    for c in (1.0, 0.01):
        model = LogisticRegression(C=c).fit(X, Y)
        with mlflow.start_run() as run:
            # explicit requirements: mlflow's inference of them takes tens of seconds
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        out.append(Logged(run.info.run_id, info.model_uri, model))
    return out


def _name(prefix: str = "churn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _code(err: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(err.value.error_code)


def test_register_versions_aliases_and_load(client: MlflowClient, logged: list[Logged]) -> None:
    name = _name()
    (run1, _, model1), (run2, _, model2) = [(m.run_id, m.uri, m.model) for m in logged]
    v1 = mlflow.register_model(f"runs:/{run1}/model", name)
    v2 = mlflow.register_model(f"runs:/{run2}/model", name)
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.run_id == run1 and v1.status == "READY" and v1.current_stage == "None"
    assert v1.source == logged[0].uri

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger"]
    assert {a: v for a, v in client.get_registered_model(name).aliases.items()} == {
        "champion": "1",
        "challenger": "2",
    }

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(X[:10])) == list(model1.predict(X[:10]))
    by_version = mlflow.pyfunc.load_model(f"models:/{name}/2")
    assert list(by_version.predict(X[:10])) == list(model2.predict(X[:10]))
    assert client.get_model_version_download_uri(name, "1").startswith("mlflow-artifacts:/")

    # moving an alias, then deleting it
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    client.delete_registered_model_alias(name, "challenger")
    with pytest.raises(MlflowException) as missing:
        client.get_model_version_by_alias(name, "challenger")
    assert _code(missing) == "RESOURCE_DOES_NOT_EXIST" and "champion" in str(missing.value)


def test_tags_descriptions_rename_and_delete(client: MlflowClient, logged: list[Logged]) -> None:
    name = _name()
    client.create_registered_model(name, tags={"team": "growth"}, description="weekly churn")
    run_id = logged[0].run_id
    mv = client.create_model_version(name, logged[0].uri, run_id=run_id, tags={"k": "v"})
    assert mv.version == "1" and mv.tags == {"k": "v"}

    client.set_registered_model_tag(name, "owner", "ana")
    client.delete_registered_model_tag(name, "team")
    client.update_registered_model(name, description="churn, weekly")
    rm = client.get_registered_model(name)
    assert rm.tags == {"owner": "ana"} and rm.description == "churn, weekly"

    client.set_model_version_tag(name, "1", "validated", "yes")
    client.delete_model_version_tag(name, "1", "k")
    client.update_model_version(name, "1", description="first")
    got = client.get_model_version(name, "1")
    assert got.tags == {"validated": "yes"} and got.description == "first"

    new_name = _name("renamed")
    client.rename_registered_model(name, new_name)
    assert client.get_registered_model(new_name).description == "churn, weekly"
    assert client.get_model_version(new_name, "1").run_id == run_id
    with pytest.raises(MlflowException) as gone:
        client.get_registered_model(name)
    assert _code(gone) == "RESOURCE_DOES_NOT_EXIST"

    client.delete_model_version(new_name, "1")
    with pytest.raises(MlflowException) as no_version:
        client.get_model_version(new_name, "1")
    assert _code(no_version) == "RESOURCE_DOES_NOT_EXIST"
    client.delete_registered_model(new_name)
    with pytest.raises(MlflowException) as deleted:
        client.get_registered_model(new_name)
    assert _code(deleted) == "RESOURCE_DOES_NOT_EXIST"


def test_errors_in_mlflow_shape(client: MlflowClient) -> None:
    name = _name()
    with pytest.raises(MlflowException) as unknown:
        client.get_registered_model(name)
    assert _code(unknown) == "RESOURCE_DOES_NOT_EXIST" and name in str(unknown.value)
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as duplicate:
        client.create_registered_model(name)
    assert _code(duplicate) == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as no_version:
        client.get_model_version(name, "7")
    assert _code(no_version) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as foreign:
        client.create_model_version(name, "s3://elsewhere/model")
    assert _code(foreign) == "INVALID_PARAMETER_VALUE" and "source" in str(foreign.value)
    with pytest.raises(MlflowException) as local_path:
        client.create_model_version(name, "/tmp/model")
    assert _code(local_path) == "INVALID_PARAMETER_VALUE"


def test_search_with_filters_and_paging(client: MlflowClient, logged: list[Logged]) -> None:
    prefix = f"search-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        client.create_registered_model(n, tags={"parity": "even" if i % 2 == 0 else "odd"})
    first = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, order_by=["name ASC"])
    assert [m.name for m in first] == names[:2] and first.token
    rest = client.search_registered_models(
        f"name LIKE '{prefix}-%'", max_results=10, order_by=["name ASC"], page_token=first.token
    )
    assert [m.name for m in rest] == names[2:] and not rest.token
    even = client.search_registered_models(f"name LIKE '{prefix}%' AND tags.parity = 'even'")
    assert sorted(m.name for m in even) == [names[0], names[2], names[4]]
    assert [m.name for m in client.search_registered_models(f"name = '{names[3]}'")] == [names[3]]

    run_id = logged[1].run_id
    for _ in range(3):
        client.create_model_version(names[0], logged[1].uri, run_id=run_id)
    found = client.search_model_versions(f"name = '{names[0]}'", max_results=2)
    assert [v.version for v in found] == ["3", "2"] and found.token
    tail = client.search_model_versions(f"name = '{names[0]}'", max_results=2, page_token=found.token)
    assert [v.version for v in tail] == ["1"]
    by_run = client.search_model_versions(f"run_id = '{run_id}' AND name = '{names[0]}'")
    assert sorted(v.version for v in by_run) == ["1", "2", "3"], [
        (v.name, v.version, v.source, v.run_id) for v in by_run
    ]


def test_stages_latest_versions_and_archive(client: MlflowClient, logged: list[Logged]) -> None:
    name = _name()
    run_id, model = logged[0].run_id, logged[0].model
    for _ in range(3):
        mlflow.register_model(f"runs:/{run_id}/model", name)
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "staging")
    latest = {v.current_stage: v.version for v in client.get_latest_versions(name)}
    assert latest == {"Production": "1", "Staging": "2", "None": "3"}
    assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["1"]

    moved = client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert list(loaded.predict(X[:5])) == list(model.predict(X[:5]))

    with pytest.raises(MlflowException) as illegal:
        client.transition_model_version_stage(name, "1", "Production")  # Archived -> Production
    assert _code(illegal) == "INVALID_PARAMETER_VALUE" and "Archived" in str(illegal.value)
    with pytest.raises(MlflowException) as bad_stage:
        client.transition_model_version_stage(name, "3", "Prod")
    assert _code(bad_stage) == "INVALID_PARAMETER_VALUE"


def test_transition_to_production_goes_through_the_gate(
    client: MlflowClient, server_url: str, logged: list[Logged]
) -> None:
    name = _name()
    mlflow.register_model(logged[0].uri, name)
    registry = HttpRegistryService(server_url, retries=0)
    try:
        registry.set_gate(name, ["accuracy >= 0.9"])
        with pytest.raises(MlflowException) as failed:
            client.transition_model_version_stage(name, "1", "Production")
        assert _code(failed) == "INVALID_STATE" and "loopml models evaluate" in str(failed.value)

        registry.record_evaluation(name, 1, "holdout", 1, "0" * 64, {"accuracy": 0.85})
        with pytest.raises(MlflowException) as below:
            client.transition_model_version_stage(name, "1", "Production")
        assert _code(below) == "INVALID_STATE" and "accuracy >= 0.9: value 0.85" in str(below.value)
        assert client.get_model_version(name, "1").current_stage == "None"

        registry.record_evaluation(name, 1, "holdout", 1, "0" * 64, {"accuracy": 0.95})
        client.transition_model_version_stage(name, "1", "Production")
        assert client.get_model_version(name, "1").current_stage == "Production"
        trail = registry.list_transitions(name, 1)
        assert [t.to_stage.value for t in trail][-1] == "Production" and trail[-1].gate is not None
    finally:
        registry.close()


def test_transition_under_approval_waits_for_another_user(
    client: MlflowClient, server_url: str, logged: list[Logged], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name()
    mlflow.register_model(logged[1].uri, name)
    ana = HttpRegistryService(server_url, retries=0, user="ana")
    bob = HttpRegistryService(server_url, retries=0, user="bob")
    try:
        ana.set_gate(name, [], require_approval=True)
        # MLFLOW_TRACKING_USERNAME/PASSWORD make the mlflow client send basic auth: the requester
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "unused")
        with pytest.raises(MlflowException) as waiting:
            MlflowClient(server_url).transition_model_version_stage(name, "1", "Production")
        assert _code(waiting) == "PERMISSION_DENIED" and "approval" in str(waiting.value)
        (request,) = ana.list_requests(name)
        assert request.requested_by == "ana" and client.get_model_version(name, "1").current_stage == "None"
        with pytest.raises(PermissionDenied):
            ana.approve(request.request_id)
        done = bob.approve(request.request_id, reason="card reviewed")
        assert done.transition is not None and done.transition.approved_by == "bob"
        assert client.get_model_version(name, "1").current_stage == "Production"
    finally:
        ana.close()
        bob.close()


def test_caller_identity_from_header_and_basic_auth(server_url: str, logged: list[Logged]) -> None:
    name = _name()
    registry = HttpRegistryService(server_url, retries=0, user="ana")
    try:
        registry.create_registered_model(name)
        assert registry.create_model_version(name, logged[0].uri).user_id == "ana"
    finally:
        registry.close()

    body = {"name": name, "source": logged[0].uri}
    answer = httpx.post(f"{server_url}/api/2.0/mlflow/model-versions/create", json=body, auth=("bob", "x"))
    assert answer.status_code == 200 and answer.json()["model_version"]["user_id"] == "bob"


def test_native_api_error_shapes_and_openapi(server_url: str, logged: list[Logged]) -> None:
    name = _name()
    api = f"{server_url}/api/v1/registry"
    missing = httpx.get(f"{api}/models/{name}")
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
    assert name in missing.json()["message"]
    assert httpx.post(f"{api}/models", json={"name": name}).status_code == 200
    created = httpx.post(f"{api}/models/{name}/versions", json={"source": logged[0].uri})
    assert created.json()["version"] == 1 and created.json()["current_stage"] == "None"
    assert httpx.put(f"{api}/models/{name}/gate", json={"thresholds": ["accuracy >= 0.9"]}).is_success
    failed = httpx.post(f"{api}/models/{name}/versions/1/promote", json={})
    assert failed.status_code == 422 and failed.json()["error_code"] == "GATE_FAILED"
    bad = httpx.post(f"{api}/models/{name}/versions/1/stage", json={"stage": "Prod"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "stage"
    paths = httpx.get(f"{server_url}/openapi.json").json()["paths"]
    assert "/api/v1/registry/models/{name}/versions/{version}/promote" in paths
