"""The fluent SDK behaves the same embedded and against a live server."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopml
from loopml.errors import Conflict, InvalidInput
from loopml.tracking.records import DatasetInput


@pytest.fixture(params=["embedded", "remote"])
def sdk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    loopml.reset()
    if request.param == "remote":
        loopml.set_tracking_uri(request.getfixturevalue("server_url"))
    loopml.set_experiment(f"sdk-{uuid.uuid4().hex[:8]}")
    yield request.param
    loopml.reset()


def test_a_run_records_everything(sdk: str, tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("weights")
    with loopml.start_run(run_name="train", tags={"team": "ml"}) as run:
        loopml.log_params({"lr": 0.1, "depth": 3})
        loopml.log_metrics({"loss": 0.5, "acc": 0.8}, step=1)
        loopml.log_metric("loss", 0.25, step=2)
        loopml.log_metric("weird", float("nan"))
        loopml.set_tag("stage", "dev")
        loopml.log_artifact(tmp_path / "model.txt", "model")
        loopml.log_dict({"a": 1}, "config.json")
        loopml.log_input(DatasetInput("iris", "d1g3st", source="sklearn"), context="training")
        with loopml.start_run(run_name="child", nested=True) as child:
            loopml.log_metric("inner", 1.0)
    got = loopml.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.params == {"lr": "0.1", "depth": "3"}
    assert got.metrics["loss"].value == 0.25 and math.isnan(got.metrics["weird"].value)
    assert got.tags["team"] == "ml" and got.tags["stage"] == "dev"
    assert got.tags["mlflow.source.git.commit"]  # the code version was captured
    assert got.tags["loopml.python_version"].count(".") == 2
    assert [(d.name, d.context) for d in got.inputs] == [("iris", "training")]
    paths = {f.path for f in loopml.service().list_artifacts(run.run_id)}
    assert {"model", "config.json", "environment"} <= paths
    reqs = b"".join(loopml.service().iter_artifact(run.run_id, "environment/requirements.txt")).decode()
    assert "sqlalchemy==" in reqs.lower()
    assert loopml.get_run(child.run_id).tags["mlflow.parentRunId"] == run.run_id


def test_a_failing_block_marks_the_run_failed(sdk: str) -> None:
    with pytest.raises(ZeroDivisionError), loopml.start_run() as run:
        1 / 0  # noqa: B018
    assert loopml.get_run(run.run_id).info.status == "FAILED"
    assert loopml.active_run() is None


def test_errors_are_the_same_exceptions(sdk: str) -> None:
    with loopml.start_run():
        loopml.log_param("alpha", 1)
        with pytest.raises(Conflict):
            loopml.log_param("alpha", 2)
        with pytest.raises(InvalidInput, match="already active"):
            loopml.start_run()
    with pytest.raises(InvalidInput, match="no active run"):
        loopml.log_metric("m", 1.0)


def test_search_and_compare(sdk: str) -> None:
    ids = []
    for lr in (0.01, 0.1, 1.0):
        with loopml.start_run(capture_env=False) as run:
            loopml.log_param("lr", lr)
            loopml.log_metric("acc", 1 - abs(lr - 0.1))
            ids.append(run.run_id)
    best = loopml.search_runs("metrics.acc > 0.5", order_by=["metrics.acc DESC"])
    assert [r.run_id for r in best] == [ids[1], ids[0], ids[2]][: len(best)] and best[0].run_id == ids[1]
    table = loopml.compare_runs(ids)
    assert table.differing_params() == ["lr"] and table.metrics[1]["acc"] == 1.0
    assert len(loopml.search_runs(max_results=2)) == 2
