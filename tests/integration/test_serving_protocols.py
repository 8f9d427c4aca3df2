"""``loopml serve`` as a subprocess, called by the unmodified tritonclient and MLflow's formats."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from loopml import registry, sdk
from tests.support.serving import Trained, serve_process, train_and_register

_clients: list[triton.InferenceServerClient] = []


def _client(url: str, **kwargs: float) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(url=url, **kwargs)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()  # its socket pool, else a ResourceWarning at exit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Trained]]:
    home = tmp_path_factory.mktemp("serving") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOPML_HOME", str(home))
        mp.delenv("LOOPML_TRACKING_URI", raising=False)
        sdk.reset()
        registry.reset()
        yield home, train_and_register(home)
    sdk.reset()


@pytest.fixture(scope="module")
def lr(trained: tuple[Path, Trained]) -> Iterator[str]:
    with serve_process(trained[0], "lr@champion") as address:
        yield address


@pytest.fixture(scope="module")
def tab(trained: tuple[Path, Trained]) -> Iterator[str]:
    with serve_process(trained[0], "models:/tab@champion") as address:
        yield address


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_equals_local_predict(
    lr: str, trained: tuple[Path, Trained], binary: bool
) -> None:
    t = trained[1]
    client = _client(lr)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lr")
    meta = client.get_model_metadata("lr")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 20]}]
    assert meta["versions"] == ["1"]
    x = t.X[:7]
    inp = triton.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("predictions", binary_data=binary)
    result = client.infer("lr", [inp], outputs=[out])
    np.testing.assert_array_equal(result.as_numpy("predictions"), t.tensor_model.predict(x))
    # Defaults: no outputs named -> every output comes back binary.
    result = client.infer("lr", [inp])
    np.testing.assert_array_equal(result.as_numpy("predictions"), t.tensor_model.predict(x))
    assert result.get_response()["model_version"] == "1"


def test_tritonclient_table_model_one_input_per_column(tab: str, trained: tuple[Path, Trained]) -> None:
    t = trained[1]
    client = _client(tab)
    meta = client.get_model_metadata("tab")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("a", "FP64"), ("b", "INT64")]
    frame = t.frame.head(9)
    a = triton.InferInput("a", [9], "FP64")
    a.set_data_from_numpy(frame["a"].to_numpy())
    b = triton.InferInput("b", [9], "INT64")
    b.set_data_from_numpy(frame["b"].to_numpy(), binary_data=False)
    result = client.infer("tab", [a, b])
    np.testing.assert_array_equal(result.as_numpy("predictions"), t.table_model.predict(frame))


def test_tritonclient_sees_validation_errors(lr: str) -> None:
    client = _client(lr)
    wrong = triton.InferInput("input", [2, 3], "FP64")
    wrong.set_data_from_numpy(np.zeros((2, 3)))
    with pytest.raises(InferenceServerException) as info:
        client.infer("lr", [wrong])
    assert info.value.status() == "400" and "[-1, 20]" in info.value.message()


def test_mlflow_scoring_formats(tab: str, lr: str, trained: tuple[Path, Trained]) -> None:
    t = trained[1]
    frame = t.frame.head(5)
    expected = t.table_model.predict(frame).tolist()
    url = f"http://{tab}/invocations"
    split = {"dataframe_split": frame.to_dict(orient="split")}
    records = {"dataframe_records": frame.to_dict(orient="records")}
    columnar = {"inputs": {"a": frame["a"].tolist(), "b": frame["b"].tolist()}}
    for body in (split, records, columnar):
        r = httpx.post(url, json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
        assert len(r.headers["x-request-id"]) == 32
    csv = httpx.post(url, content=frame.to_csv(index=False), headers={"content-type": "text/csv"})
    assert csv.json() == {"predictions": expected}
    buf = io.BytesIO()
    frame.to_parquet(buf)
    pq = httpx.post(url, content=buf.getvalue(), headers={"content-type": "application/vnd.apache.parquet"})
    assert pq.json() == {"predictions": expected}
    x = t.X[:3]
    for key in ("instances", "inputs"):
        r = httpx.post(f"http://{lr}/invocations", json={key: x.tolist()})
        assert r.json() == {"predictions": t.tensor_model.predict(x).tolist()}
    for path in ("/ping", "/health", "/version"):
        assert httpx.get(f"http://{tab}{path}").status_code == 200


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # inside mlflow's helper
def test_mlflow_helpers_payload_scores(tab: str, trained: tuple[Path, Trained]) -> None:
    """The JSON ``mlflow.models.convert_input_example_to_serving_input`` produces scores as is."""
    from mlflow.models import convert_input_example_to_serving_input

    frame = trained[1].frame.head(4)
    payload = convert_input_example_to_serving_input(frame)
    assert payload is not None
    r = httpx.post(f"http://{tab}/invocations", content=payload, headers={"content-type": "application/json"})
    assert r.json() == {"predictions": trained[1].table_model.predict(frame).tolist()}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataframe_records": [{"a": 1.0}]}, "b"),
        ({"dataframe_records": [{"a": 1.0, "b": 2, "c": 3}]}, "c"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [["x", 1]]}}, "a"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.5]]}}, "b"),
        ({"something": []}, "body"),
    ],
)
def test_invalid_input_is_400_naming_field_without_echo(
    tab: str, body: dict[str, object], field: str
) -> None:
    r = httpx.post(f"http://{tab}/invocations", json=body)
    assert r.status_code == 400
    doc = r.json()
    assert doc["error_code"] == "INVALID_INPUT" and doc["details"]["field"] == field
    assert "expected" in doc["details"]
    assert "2.5" not in r.text and '"x"' not in r.text


def test_unsupported_content_type_is_415(tab: str) -> None:
    r = httpx.post(f"http://{tab}/invocations", content=b"a,b", headers={"content-type": "application/xml"})
    assert r.status_code == 415 and r.json()["details"]["field"] == "content-type"


def test_oversize_body_is_413(trained: tuple[Path, Trained]) -> None:
    with serve_process(trained[0], "tab@champion", "--max-body-bytes", "1000") as address:
        big = {"dataframe_records": [{"a": 1.0, "b": 1}] * 200}
        r = httpx.post(f"http://{address}/invocations", json=big)
        assert r.status_code == 413 and r.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_metrics_count_requests(lr: str) -> None:
    httpx.post(f"http://{lr}/invocations", json={"instances": [[0.0] * 20]})
    text = httpx.get(f"http://{lr}/metrics").text
    assert 'loopml_serving_requests_total{endpoint="lr",variant="primary",version="1"}' in text


def test_standalone_server_has_the_request_hardening(tab: str) -> None:
    # DNS rebinding: a page on the attacker's name reaching the loopback server is refused
    r = httpx.get(f"http://{tab}/v2/models/tab", headers={"host": "evil.example.com"})
    assert r.status_code == 400 and r.json()["details"]["field"] == "Host"
    # a cross-site form or text/plain POST (no CORS preflight) never reaches the model
    r = httpx.post(
        f"http://{tab}/invocations", content=b'{"instances": []}', headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["details"]["field"] == "Content-Type"
    deep = b"[" * 100 + b"]" * 100
    r = httpx.post(f"http://{tab}/invocations", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["details"]["field"] == "body"
    r = httpx.get(f"http://{tab}/v2/health/ready")
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
