"""Models the unmodified ``mlflow`` client logs and registers on a live loopml server load with
``loopml.models.load`` (SDK pointed at the same server), verified and without mlflow."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")
import skops.io as sio  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import loopml  # noqa: E402
import loopml.models  # noqa: E402
import loopml.registry  # noqa: E402
from loopml.errors import IntegrityError, PermissionDenied  # noqa: E402

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

X = np.random.default_rng(1).normal(size=(80, 3))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)


@pytest.fixture
def remote(server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))  # the model cache
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    loopml.reset()
    loopml.set_tracking_uri(server_url)
    mlflow.set_tracking_uri(server_url)
    mlflow.set_registry_uri(server_url)
    mlflow.set_experiment(f"mlflow-models-{uuid.uuid4().hex[:8]}")
    yield server_url
    while mlflow.active_run():
        mlflow.end_run()
    loopml.registry.reset()
    loopml.reset()


def _log(**kwargs: Any) -> tuple[str, str, Any]:
    """(run id, models:/m-<id>, model): a pipeline logged by mlflow 3 to the server."""
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)
    with mlflow.start_run() as run:
        # explicit requirements: mlflow's inference of them takes tens of seconds
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"], **kwargs)
    return run.info.run_id, info.model_uri, model


def test_a_version_registered_by_mlflow_loads_like_the_original(remote: str) -> None:
    run_id, model_uri, model = _log()
    name = f"churn-{uuid.uuid4().hex[:8]}"
    mlflow.register_model(model_uri, name)
    mlflow.register_model(f"runs:/{run_id}/model", name)

    for uri in (f"models:/{name}/1", f"models:/{name}/2", model_uri, f"runs:/{run_id}/model"):
        loaded = loopml.models.load(uri)
        assert np.array_equal(loaded.predict(X), model.predict(X)), uri
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X)), uri
    registered = loopml.registry.service().get_model_version(name, 1)
    assert loopml.models.load(f"models:/{name}/1").manifest_digest == registered.digest


def test_a_pickled_mlflow_model_is_refused_without_trust_pickle(remote: str) -> None:
    _, model_uri, model = _log(serialization_format="cloudpickle")
    with pytest.raises(PermissionDenied) as refused:
        loopml.models.load(model_uri)
    assert "trust_pickle=True" in str(refused.value)
    assert np.array_equal(loopml.models.load(model_uri, trust_pickle=True).predict(X), model.predict(X))


def test_a_file_replaced_after_registration_is_refused(remote: str) -> None:
    _, model_uri, _ = _log()
    name = f"tampered-{uuid.uuid4().hex[:8]}"
    mlflow.register_model(model_uri, name)
    location = loopml.registry.service().get_model_version(name, 1).storage_location
    path = location.removeprefix("mlflow-artifacts:/") + "/model.skops"
    other = make_pipeline(StandardScaler(), LogisticRegression(C=0.001)).fit(X, 1 - Y)
    buffer = io.BytesIO()
    sio.dump(other, buffer)
    put = httpx.put(f"{remote}/api/2.0/mlflow-artifacts/artifacts/{path}", content=buffer.getvalue())
    assert put.is_success
    with pytest.raises(IntegrityError) as altered:
        loopml.models.load(f"models:/{name}/1")
    assert "registered" in str(altered.value)
