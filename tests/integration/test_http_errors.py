"""Bad input over HTTP: a 4xx with a JSON body that names the field, never a 500."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def run_id(server_url: str) -> str:
    exp = httpx.post(f"{server_url}/api/v1/experiments", json={"name": f"err-{uuid.uuid4().hex[:8]}"}).json()
    return str(httpx.post(f"{server_url}/api/v1/runs", json=exp).json()["info"]["run_id"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"),
    [
        ("POST", "/api/2.0/mlflow/runs/log-batch", b"{not json", 400, "INVALID_PARAMETER_VALUE", "body"),
        ("POST", "/api/2.0/mlflow/runs/log-batch", b"[1, 2]", 400, "INVALID_PARAMETER_VALUE", "body"),
        ("POST", "/api/2.0/mlflow/runs/log-metric", {"key": "m", "value": 1, "timestamp": 1}, 400,
         "INVALID_PARAMETER_VALUE", "run_id"),
        ("POST", "/api/2.0/mlflow/runs/log-metric", {"run_id": "RUN", "key": "m", "value": "abc",
         "timestamp": 1}, 400, "INVALID_PARAMETER_VALUE", "metrics.value"),
        ("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": "RUN", "metrics": [{"key": "m"}]}, 400,
         "INVALID_PARAMETER_VALUE", "metrics"),
        ("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": "RUN", "params": [{"key": "p", "value": "x" * 6001}]},
         400, "INVALID_PARAMETER_VALUE", "params.value"),
        ("POST", "/api/2.0/mlflow/runs/log-batch", {"run_id": "RUN", "metrics": [
            {"key": f"m{i}", "value": 1, "timestamp": 1} for i in range(1001)]}, 400, "INVALID_PARAMETER_VALUE",
         "metrics"),
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "filter": "metrics.a >> 1"}, 400,
         "INVALID_PARAMETER_VALUE", "filter"),
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "max_results": 0}, 400,
         "INVALID_PARAMETER_VALUE", "max_results"),
        ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "page_token": "zzz"}, 400,
         "INVALID_PARAMETER_VALUE", "page_token"),
        ("GET", "/api/2.0/mlflow/experiments/get?experiment_id=abc", None, 400, "INVALID_PARAMETER_VALUE",
         "experiment_id"),
        ("POST", "/api/v1/runs/RUN/batch", {"metrics": [{"key": "m", "value": "x", "timestamp": 1}]}, 400,
         "INVALID_INPUT", "metrics.value"),
        ("POST", "/api/v1/runs/RUN/batch", {"metrics": [{"key": "m"}]}, 400, "INVALID_INPUT", "metrics.0.value"),
        ("POST", "/api/v1/experiments", {}, 400, "INVALID_INPUT", "name"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field(
    server_url: str, run_id: str, method: str, path: str, body: object, status: int, code: str, field: str
) -> None:
    path = path.replace("RUN", run_id)
    if isinstance(body, bytes):
        r = httpx.request(
            method, server_url + path, content=body, headers={"Content-Type": "application/json"}
        )
    else:
        r = httpx.request(method, server_url + path, json=_fill(body, run_id))
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["error_code"] == code and payload["message"]
    assert payload.get("details", {}).get("field") == field, payload


def _fill(body: object, run_id: str) -> object:
    if isinstance(body, dict):
        return {k: (run_id if v == "RUN" else v) for k, v in body.items()}
    return body


def test_a_rejected_batch_writes_nothing(server_url: str, run_id: str) -> None:
    metrics = [{"key": "good", "value": 1, "timestamp": 1}, {"key": "bad key!", "value": 1, "timestamp": 1}]
    r = httpx.post(f"{server_url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
    assert r.status_code == 400 and "bad key!" in r.json()["message"]
    run = httpx.get(f"{server_url}/api/v1/runs/{run_id}").json()
    assert run["metrics"] == []


def test_missing_and_conflicting_objects(server_url: str, run_id: str) -> None:
    r = httpx.get(f"{server_url}/api/2.0/mlflow/runs/get", params={"run_id": "f" * 32})
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    name = f"dup-{uuid.uuid4().hex[:8]}"
    httpx.post(f"{server_url}/api/2.0/mlflow/experiments/create", json={"name": name})
    r = httpx.post(f"{server_url}/api/2.0/mlflow/experiments/create", json={"name": name})
    assert (r.status_code, r.json()["error_code"]) == (409, "RESOURCE_ALREADY_EXISTS")
    url = f"{server_url}/api/2.0/mlflow/runs/log-parameter"
    httpx.post(url, json={"run_id": run_id, "key": "p", "value": "1"})
    r = httpx.post(url, json={"run_id": run_id, "key": "p", "value": "2"})
    assert r.status_code == 409 and "immutable" in r.json()["message"]
