"""The unmodified ``mlflow`` client against a live loopml server."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture
def client(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server_url)
    mlflow.set_experiment(f"mlflow-{uuid.uuid4().hex[:8]}")
    yield MlflowClient(server_url)
    while mlflow.active_run():
        mlflow.end_run()


def test_logging_flow(client: MlflowClient, tmp_path: Path) -> None:
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("loss", 1.0)
        mlflow.log_metric("loss", 0.5, step=1)
        mlflow.log_metric("nanm", float("nan"))
        mlflow.log_metrics({"a": 1, "b": 2})
        mlflow.log_params({"p1": "x"})
        mlflow.set_tags({"t": "v", "stage": "x"})
        mlflow.delete_tag("stage")
        mlflow.log_input(
            mlflow.data.from_numpy(np.arange(10).reshape(5, 2), name="train"), context="training"
        )
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_param("c", 1)
        with pytest.raises(MlflowException) as err:
            mlflow.log_param("alpha", 0.7)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE" and "alpha" in str(err.value)
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "parent"
    assert run.data.params == {"alpha": "0.5", "p1": "x"}
    assert run.data.metrics["loss"] == 0.5 and math.isnan(run.data.metrics["nanm"])
    assert run.data.tags["t"] == "v" and "stage" not in run.data.tags
    assert run.inputs.dataset_inputs[0].dataset.name == "train"
    assert [t.value for t in run.inputs.dataset_inputs[0].tags if t.key == "mlflow.data.context"] == [
        "training"
    ]
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_batches_search_and_paging(client: MlflowClient) -> None:
    from mlflow.entities import Metric, Param, RunTag

    exp_id = mlflow.set_experiment(f"batches-{uuid.uuid4().hex[:8]}").experiment_id
    ids = []
    for i in range(6):
        with mlflow.start_run() as r:
            client.log_batch(
                r.info.run_id,
                metrics=[Metric("acc", i / 10, 0, 0)],
                params=[Param("model", "rf" if i % 2 else "lr")],
                tags=[RunTag("i", str(i))],
            )
            ids.append(r.info.run_id)
    df = mlflow.search_runs(
        [exp_id], filter_string="metrics.acc > 0.15 and params.model = 'rf'", order_by=["metrics.acc DESC"]
    )
    assert list(df["run_id"]) == [ids[5], ids[3]]
    page = client.search_runs([exp_id], max_results=4, order_by=["metrics.acc ASC"])
    rest = client.search_runs([exp_id], max_results=4, order_by=["metrics.acc ASC"], page_token=page.token)
    assert [r.info.run_id for r in page] + [r.info.run_id for r in rest] == ids
    assert rest.token is None
    found = client.search_experiments(filter_string=f"name = '{client.get_experiment(exp_id).name}'")
    assert [e.experiment_id for e in found] == [exp_id]


def test_artifacts_and_sklearn_model(client: MlflowClient, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello world")
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "x.json").write_text("{}")
    X = np.random.default_rng(0).random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "hello.txt"))
        mlflow.log_artifacts(str(tmp_path / "b"), artifact_path="bundle")
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model")
    rid = run.info.run_id
    assert {(f.path, f.is_dir) for f in client.list_artifacts(rid)} >= {
        ("hello.txt", False),
        ("bundle", True),
    }
    local = mlflow.artifacts.download_artifacts(
        run_id=rid, artifact_path="bundle", dst_path=str(tmp_path / "dl")
    )
    assert (Path(local) / "c" / "x.json").read_text() == "{}"
    expected = LogisticRegression().fit(X, y).predict(X[:5])
    by_run = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
    assert list(by_run.predict(X[:5])) == list(expected)
    by_id = mlflow.pyfunc.load_model(info.model_uri)
    assert list(by_id.predict(X[:5])) == list(expected)
    assert client.get_logged_model(info.model_id).status.value == "READY"
    assert [o.model_id for o in client.get_run(rid).outputs.model_outputs] == [info.model_id]
