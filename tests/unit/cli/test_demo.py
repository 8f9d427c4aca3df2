"""The demo sweep: real sklearn models, tracked runs, and an honest leaderboard."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

import loopml
import loopml.models
from loopml import demo
from loopml.cli import app


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_full_grid_is_a_small_sweep_over_three_families() -> None:
    configs = demo.grid()
    assert 12 <= len(configs) <= 20
    assert {c.family for c in configs} == {"logistic_regression", "random_forest", "gradient_boosting"}
    assert len({c.name for c in configs}) == len(configs)


def test_demo_tracks_every_config_and_reports_the_true_best(home: Path) -> None:
    console = _quiet()
    result = demo.main(quick=True, console=console)

    children = loopml.search_runs(
        f"tags.mlflow.parentRunId = '{result.parent_run_id}'", experiment_names=[demo.EXPERIMENT]
    )
    assert sorted(r.run_id for r in children) == sorted(result.child_run_ids)
    assert len(children) == len(demo.grid(quick=True))
    for run in children:
        assert run.info.status == "FINISHED"
        assert {"accuracy", "f1", "roc_auc"} <= set(run.metrics)
        assert 0.5 < run.metrics["roc_auc"].value <= 1.0
        assert run.tags["model_family"] == run.params["model_family"]
        contexts = {d.name: d.context for d in run.inputs}
        assert contexts == {demo.TRAIN_DATASET: "training", demo.HOLDOUT_DATASET: "evaluation"}
        assert {d.digest for d in run.inputs} == {result.data.train.digest, result.data.holdout.digest}  # type: ignore[union-attr]

    best = max(children, key=lambda r: r.metrics["roc_auc"].value)
    assert result.best.metrics["roc_auc"].value == best.metrics["roc_auc"].value
    ranked = [r.metrics["roc_auc"].value for r in result.top]
    assert ranked == sorted(ranked, reverse=True)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"loopml runs show {result.best.run_id}" in printed


def test_demo_ships_the_best_model_through_the_gate_with_its_lineage(home: Path) -> None:
    first = demo.main(quick=True, console=_quiet())
    shipment = first.shipment
    assert shipment is not None and shipment.promoted
    assert shipment.version.version == 1 and shipment.champion == 1
    assert shipment.version.run_id == first.best.run_id
    assert {r.threshold for r in shipment.gate.results} == set(demo.GATE)
    assert {(d.ref, d.context) for d in shipment.lineage.datasets} == {
        (f"{demo.TRAIN_DATASET}@1", "training"),
        (f"{demo.HOLDOUT_DATASET}@1", "evaluation"),
    }
    model = loopml.models.load(f"models:/{demo.MODEL_NAME}@champion")
    assert first.data is not None
    expected = first.data.y_test.to_numpy()
    assert (model.predict(first.data.x_test) == expected).mean() == first.best.metrics["accuracy"].value

    second = demo.main(quick=True, console=_quiet())  # same data, same seeds: ties the champion
    assert second.data is not None and second.data.train.version == 1  # the rows were already registered
    assert second.shipment is not None and second.shipment.promoted and second.shipment.champion == 2
    [vs_champion] = [r for r in second.shipment.gate.results if "champion" in r.threshold]
    assert vs_champion.limit is not None and vs_champion.passed


def test_gradient_boosting_logs_a_learning_curve(home: Path) -> None:
    result = demo.main(quick=True, console=_quiet())
    [gbm] = [r for r in result.top if r.params["model_family"] == "gradient_boosting"]
    history = loopml.service().get_metric_history(gbm.run_id, "val_roc_auc")
    assert [m.step for m in history] == list(range(5, 51, 5))


def test_demo_is_deterministic(home: Path) -> None:
    first = demo.main(quick=True, console=_quiet())
    second = demo.main(quick=True, console=_quiet())

    def scores(result: demo.SweepResult) -> dict[str, float]:
        return {r.info.run_name: r.metrics["roc_auc"].value for r in result.top}

    assert scores(first) == scores(second)


def test_loopml_demo_command(home: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--quick"])
    assert result.exit_code == 0, result.output
    assert "best run" in result.stdout
