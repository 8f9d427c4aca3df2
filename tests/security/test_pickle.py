"""A pickle that would create a sentinel file, sent through every server-side model load path
(MLflow-format models in several disguises and a loopml model): refused, never executed.

The payload is live: ``test_the_payload_is_live`` shows unpickling it does create the file,
so the refusals below are what keeps it from running.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import loopml.models
from loopml import sdk
from loopml.errors import LoopmlError
from tests.security.conftest import Target

pytestmark = pytest.mark.server


class Payload:
    """Unpickling this opens (creates) ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def predict(self, data: Any) -> Any:
        return data

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def mlmodel(sklearn: dict[str, Any] | None, pyfunc: dict[str, Any] | None = None) -> bytes:
    import yaml

    flavors: dict[str, Any] = {}
    if pyfunc is not None:
        flavors["python_function"] = {
            "model_path": "model.pkl",
            "python_version": "3.11.0",
            "env": {},
            **pyfunc,
        }
    if sklearn is not None:
        flavors["sklearn"] = {
            "pickled_model": "model.pkl",
            "sklearn_version": "1.5.0",
            "code": None,
            **sklearn,
        }
    return yaml.safe_dump({"artifact_path": "model", "flavors": flavors, "mlflow_version": "2.15.0"}).encode()


DISGUISES = {
    "cloudpickle": mlmodel({"serialization_format": "cloudpickle"}, {"loader_module": "mlflow.sklearn"}),
    "pickle": mlmodel({"serialization_format": "pickle"}),
    "default-format": mlmodel({}),
    "pyfunc-loader-module": mlmodel(
        None, {"loader_module": "mlflow.pyfunc.model", "python_model": "model.pkl"}
    ),
    "claims-skops": mlmodel({"serialization_format": "skops"}),
}


@pytest.fixture
def marker(target: Target) -> Iterator[Path]:
    path = target.sentinel / f"pwned-{uuid.uuid4().hex[:8]}"
    yield path
    assert not path.exists(), "the pickle payload ran"


def test_the_payload_is_live(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


def _serve(url: str, model: str, source: str) -> httpx.Response:
    """Register ``source`` as a version of ``model``, put it behind an endpoint, invoke it."""
    assert httpx.post(f"{url}/api/v1/registry/models", json={"name": model}).status_code == 200
    created = httpx.post(f"{url}/api/v1/registry/models/{model}/versions", json={"source": source})
    assert created.status_code == 200, created.text
    policy = {
        "variants": [{"name": "primary", "model_uri": f"models:/{model}/1", "weight": 100, "role": "primary"}]
    }
    assert httpx.post(f"{url}/api/v1/endpoints", json={"name": model, "policy": policy}).status_code == 200
    return httpx.post(f"{url}/endpoints/{model}/invocations", json={"instances": [[1.0]]}, timeout=120)


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_mlflow_format_pickles_are_refused_by_the_server(
    target: Target, tripwire: Target, marker: Path, disguise: str
) -> None:
    url = target.url
    run = httpx.post(f"{url}/api/v1/runs", json={"experiment_id": target.experiment_id}).json()["info"][
        "run_id"
    ]
    for name, content in (("MLmodel", DISGUISES[disguise]), ("model.pkl", pickle.dumps(Payload(marker)))):
        assert (
            httpx.put(f"{url}/api/v1/runs/{run}/artifacts/model/{name}", content=content).status_code == 200
        )
    model = f"pk-{disguise}"
    answer = _serve(url, model, f"runs:/{run}/model")
    assert 400 <= answer.status_code < 500, answer.text
    v2 = httpx.post(
        f"{url}/v2/models/{model}/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]},
        timeout=120,
    )
    assert 400 <= v2.status_code < 500, v2.text
    with pytest.raises(LoopmlError):  # the client-side loader, through the server's API
        _load_remote(url, f"models:/{model}/1")
    target.tried("pickle payloads", 3)


def test_a_loopml_pickle_model_is_refused_by_the_server(
    target: Target, tripwire: Target, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = target.url
    _remote_sdk(url, monkeypatch)
    with sdk.start_run(experiment_id=target.experiment_id, capture_env=False) as run:
        loopml.models.log_model(Payload(marker), "evil", trust_pickle=True)
    answer = _serve(url, "pk-loopml", f"runs:/{run.run_id}/evil")
    assert answer.status_code == 403, answer.text
    assert "trust_pickle" in answer.json()["message"]
    with pytest.raises(LoopmlError, match="trust_pickle"):
        loopml.models.load("models:/pk-loopml/1")
    target.tried("pickle payloads", 2)
    sdk.reset()


def _remote_sdk(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_TRACKING_URI", url)
    sdk.reset()


def _load_remote(url: str, uri: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _remote_sdk(url, mp)
        try:
            loopml.models.load(uri)
        finally:
            sdk.reset()
