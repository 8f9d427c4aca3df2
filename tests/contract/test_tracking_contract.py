"""One behavioural suite for every TrackingService: SQLite, PostgreSQL, and HTTP to a live server."""

from __future__ import annotations

import io
import math
import uuid
from pathlib import Path

import pytest

from loopml.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from loopml.tracking.records import DatasetInput, Metric, Param, RunTag, ViewType
from loopml.tracking.service import TrackingService


def _name(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_experiment_lifecycle(service: TrackingService) -> None:
    name = _name()
    exp_id = service.create_experiment(name, tags={"team": "ml"})
    exp = service.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage, exp.tags) == (name, "active", {"team": "ml"})
    assert service.get_experiment_by_name(name) == exp
    assert service.get_experiment_by_name(_name("missing")) is None
    with pytest.raises(AlreadyExists):
        service.create_experiment(name)
    service.rename_experiment(exp_id, name + "-renamed")
    assert service.get_experiment(exp_id).name == name + "-renamed"
    service.set_experiment_tag(exp_id, "owner", "ana")
    assert service.get_experiment(exp_id).tags["owner"] == "ana"
    service.delete_experiment_tag(exp_id, "owner")
    assert "owner" not in service.get_experiment(exp_id).tags
    service.delete_experiment(exp_id)
    assert service.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = service.search_experiments(ViewType.ACTIVE_ONLY, filter_string=f"name LIKE '{name}%'")
    assert active.experiments == []
    service.restore_experiment(exp_id)
    found = service.search_experiments(filter_string=f"name = '{name}-renamed'").experiments
    assert [e.experiment_id for e in found] == [exp_id]


def test_missing_objects_raise_not_found(service: TrackingService) -> None:
    with pytest.raises(NotFound):
        service.get_experiment("987654321")
    with pytest.raises(NotFound):
        service.get_run("0" * 32)
    with pytest.raises(NotFound):
        service.log_batch("0" * 32, metrics=[Metric("m", 1.0, 1, 0)])


def test_run_lifecycle_and_logging(service: TrackingService) -> None:
    exp_id = service.create_experiment(_name())
    run = service.create_run(exp_id, run_name="first", tags={"k": "v"}, user_id="ana")
    assert run.info.status == "RUNNING" and run.info.run_name == "first"
    assert run.info.artifact_uri.endswith(f"{run.run_id}/artifacts")
    service.log_batch(
        run.run_id,
        metrics=[Metric("loss", 1.0, 100, 0), Metric("loss", 0.5, 200, 1), Metric("nan", math.nan, 1, 0)],
        params=[Param("lr", "0.1")],
        tags=[RunTag("stage", "dev")],
    )
    service.log_metric(run.run_id, "acc", float("inf"), 300, 2)
    service.log_param(run.run_id, "lr", "0.1")  # same value again is fine
    got = service.get_run(run.run_id)
    assert got.params == {"lr": "0.1"}
    assert got.metrics["loss"].value == 0.5 and got.metrics["loss"].step == 1
    assert math.isnan(got.metrics["nan"].value)
    assert got.metrics["acc"].value == float("inf")
    assert got.tags["stage"] == "dev" and got.tags["k"] == "v" and got.tags["mlflow.runName"] == "first"
    history = service.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]
    info = service.update_run(run.run_id, status="FINISHED", end_time=500)
    assert (info.status, info.end_time) == ("FINISHED", 500)
    service.delete_tag(run.run_id, "stage")
    assert "stage" not in service.get_run(run.run_id).tags
    with pytest.raises(NotFound):
        service.delete_tag(run.run_id, "stage")


def test_param_change_is_a_conflict_and_writes_nothing(service: TrackingService) -> None:
    run = service.create_run(service.create_experiment(_name()))
    service.log_param(run.run_id, "alpha", "0.5")
    with pytest.raises(Conflict, match="alpha"):
        service.log_batch(run.run_id, metrics=[Metric("m", 1.0, 1, 0)], params=[Param("alpha", "0.7")])
    got = service.get_run(run.run_id)
    assert got.params == {"alpha": "0.5"} and "m" not in got.metrics


@pytest.mark.parametrize(
    ("metrics", "params", "tags", "field"),
    [
        ([Metric("m", 1.0, 1, 0)] * 1001, [], [], "metrics"),
        ([], [Param(f"p{i}", "v") for i in range(101)], [], "params"),
        ([], [], [RunTag(f"t{i}", "v") for i in range(101)], "tags"),
        ([Metric("bad key!", 1.0, 1, 0)], [], [], "metric"),
        ([Metric("x" * 251, 1.0, 1, 0)], [], [], "metric"),
        ([], [Param("p", "v" * 6001)], [], "params.value"),
        ([Metric("ok", 1.0, 1, 0), Metric("m", "oops", 1, 0)], [], [], "metrics.value"),  # type: ignore[arg-type]
    ],
)
def test_bad_batches_are_rejected_whole(
    service: TrackingService, metrics: list[Metric], params: list[Param], tags: list[RunTag], field: str
) -> None:
    run = service.create_run(service.create_experiment(_name()))
    with pytest.raises(InvalidInput) as err:
        service.log_batch(run.run_id, metrics, params, tags)
    assert err.value.details.get("field") == field
    got = service.get_run(run.run_id)
    assert got.metrics == {} and got.params == {}


def test_log_batch_is_idempotent(service: TrackingService) -> None:
    run = service.create_run(service.create_experiment(_name()))
    batch = [Metric("m", float(i), 1000 + i, i) for i in range(50)]
    service.log_batch(run.run_id, batch, [Param("p", "1")], [RunTag("t", "x")])
    service.log_batch(run.run_id, batch, [Param("p", "1")], [RunTag("t", "x")])
    assert len(service.get_metric_history(run.run_id, "m")) == 50
    assert service.get_run(run.run_id).metrics["m"].value == 49.0


def test_a_point_sent_in_two_different_batches_is_kept_once(service: TrackingService) -> None:
    run = service.create_run(service.create_experiment(_name()))
    service.log_batch(run.run_id, [Metric("m", 0.5, 10, 1), Metric("m", math.nan, 11, 2)])
    service.log_batch(run.run_id, [Metric("m", math.nan, 11, 2), Metric("m", 0.25, 12, 3)])
    history = service.get_metric_history(run.run_id, "m")
    assert [(m.step, m.timestamp) for m in history] == [(1, 10), (2, 11), (3, 12)]
    assert math.isnan(history[1].value) and service.get_run(run.run_id).metrics["m"].value == 0.25


def test_deleted_runs_are_hidden_and_refuse_logging(service: TrackingService) -> None:
    exp_id = service.create_experiment(_name())
    run = service.create_run(exp_id)
    service.delete_run(run.run_id)
    assert service.search_runs([exp_id]).runs == []
    assert [r.run_id for r in service.search_runs([exp_id], view_type=ViewType.DELETED_ONLY).runs] == [
        run.run_id
    ]
    with pytest.raises(InvalidInput):
        service.log_metric(run.run_id, "m", 1.0, 1)
    service.restore_run(run.run_id)
    assert [r.run_id for r in service.search_runs([exp_id]).runs] == [run.run_id]


def test_nested_runs_and_dataset_inputs(service: TrackingService) -> None:
    exp_id = service.create_experiment(_name())
    parent = service.create_run(exp_id, run_name="parent")
    child = service.create_run(exp_id, tags={"mlflow.parentRunId": parent.run_id})
    ds = DatasetInput("iris", "abc123", "local", "file:///iris.csv", '{"cols": []}', None, "training")
    service.log_inputs(child.run_id, [ds])
    service.log_inputs(child.run_id, [ds])  # the same input twice is recorded once
    got = service.get_run(child.run_id)
    assert [(d.name, d.digest, d.context) for d in got.inputs] == [("iris", "abc123", "training")]
    found = service.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent.run_id}'").runs
    assert [r.run_id for r in found] == [child.run_id]
    assert [r.run_id for r in service.search_runs([exp_id], "datasets.context = 'training'").runs] == [
        child.run_id
    ]


def _populate(service: TrackingService, n: int) -> tuple[str, list[str]]:
    exp_id = service.create_experiment(_name())
    ids = []
    for i in range(n):
        run = service.create_run(exp_id, run_name=f"run-{i}", start_time=1000 + i)
        service.log_batch(
            run.run_id,
            [Metric("acc", i / n, 1, 0), Metric("loss", 1 - i / n, 1, 0)],
            [Param("model", "rf" if i % 2 else "lr"), Param("depth", str(i % 3))],
            [RunTag("team", "Vision" if i % 3 == 0 else "nlp")],
        )
        ids.append(run.run_id)
    return exp_id, ids


def test_search_filters_order_and_pages(service: TrackingService) -> None:
    exp_id, ids = _populate(service, 12)

    def search(flt: str, order: tuple[str, ...] = ()) -> list[str]:
        return [r.run_id for r in service.search_runs([exp_id], flt, order_by=order).runs]

    assert search("") == ids[::-1]  # newest first
    assert search("metrics.acc >= 0.5", ("metrics.acc ASC",)) == ids[6:]
    assert search("metrics.acc > 0.5 AND params.model = 'rf'", ("metrics.acc DESC",)) == [
        ids[i] for i in (11, 9, 7)
    ]
    assert set(search("params.model != 'rf'")) == set(ids[0::2])
    assert set(search("params.depth IN ('0', '1')")) == {ids[i] for i in range(12) if i % 3 != 2}
    assert set(search("tags.team LIKE 'Vis%'")) == set(ids[0::3])
    assert search("tags.team LIKE 'vis%'") == []  # LIKE is case-sensitive
    assert set(search("tags.team ILIKE 'vis%'")) == set(ids[0::3])
    assert search("attributes.run_name = 'run-3'") == [ids[3]]
    assert search(f"attributes.run_id = '{ids[4]}'") == [ids[4]]
    assert set(search("attributes.start_time < 1003")) == set(ids[:3])
    assert search("", ("params.model ASC", "metrics.acc DESC"))[:2] == [ids[10], ids[8]]
    seen, token = [], None
    for _ in range(5):
        page = service.search_runs([exp_id], order_by=["metrics.loss ASC"], max_results=5, page_token=token)
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if token is None:
            break
    assert seen == ids[::-1]


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.acc > 'x'",
        "params.model > 1",
        "foo.bar = 1",
        "metrics.acc >",
        "metrics.a > 1 OR metrics.b < 1",
    ],
)
def test_bad_filters_name_the_problem(service: TrackingService, bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        service.search_runs(["0"], bad)
    assert err.value.details.get("field") == "filter"


def test_compare_runs(service: TrackingService) -> None:
    _, ids = _populate(service, 3)
    table = service.compare_runs(ids[:2])
    assert table.run_ids == ids[:2]
    assert table.param_keys == ["depth", "model"] and table.metric_keys == ["acc", "loss"]
    assert table.differing_params() == ["depth", "model"]
    assert table.metrics[1]["acc"] == pytest.approx(1 / 3)


def test_artifacts_roundtrip_and_dedupe(service: TrackingService, tmp_path: Path) -> None:
    run = service.create_run(service.create_experiment(_name()))
    src = tmp_path / "src"
    (src / "inner").mkdir(parents=True)
    (src / "a.txt").write_text("same bytes")
    (src / "inner" / "b.txt").write_text("same bytes")
    service.log_artifact(run.run_id, src, "bundle")
    service.log_artifact(run.run_id, src / "a.txt")
    service.put_artifact(run.run_id, "notes/readme.md", io.BytesIO(b"# hi"))
    top = {(f.path, f.is_dir) for f in service.list_artifacts(run.run_id)}
    assert top == {("bundle", True), ("a.txt", False), ("notes", True)}
    inner = service.list_artifacts(run.run_id, "bundle")
    assert {(f.path, f.is_dir) for f in inner} == {("bundle/a.txt", False), ("bundle/inner", True)}
    digests = {f.digest for f in service.list_artifacts(run.run_id, "bundle/inner")} | {
        f.digest for f in inner if not f.is_dir
    }
    assert len(digests) == 1  # identical content, one blob
    everything = service.list_artifacts(run.run_id, "bundle", recursive=True)
    assert [f.path for f in everything] == ["bundle/a.txt", "bundle/inner/b.txt"]
    assert service.list_artifacts(run.run_id, "a.txt", recursive=True) == []
    out = service.download_artifacts(run.run_id, "bundle", tmp_path / "out")
    assert (out / "inner" / "b.txt").read_text() == "same bytes"
    one = service.download_artifacts(run.run_id, "notes/readme.md", tmp_path / "one")
    assert one.read_text() == "# hi"
    assert b"".join(service.iter_artifact(run.run_id, "a.txt")) == b"same bytes"
    with pytest.raises(NotFound):
        b"".join(service.iter_artifact(run.run_id, "missing.txt"))


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a\\b", "%2e%2e/x", "%252e%252e/x", "C:/x"]
)
def test_artifact_paths_are_confined(service: TrackingService, path: str) -> None:
    run = service.create_run(service.create_experiment(_name()))
    with pytest.raises(InvalidInput):
        service.put_artifact(run.run_id, path, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput):
        service.list_artifacts(run.run_id, path)
