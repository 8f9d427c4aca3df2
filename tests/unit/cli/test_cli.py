"""The ``loopml`` commands against a real embedded store, driven as a user would."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

import loopml
from loopml.cli import app, render
from loopml.tracking.records import DatasetInput


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def assert_clean_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def runs(home: Path) -> list[str]:
    """Three finished runs in experiment 'sweep': (rf, 0.8), (lr, 0.9), (rf, 0.95); the second has a NaN."""
    loopml.set_experiment("sweep")
    ids = []
    for i, (model, acc) in enumerate([("rf", 0.8), ("lr", 0.9), ("rf", 0.95)]):
        with loopml.start_run(run_name=f"run-{i}", capture_env=False) as run:
            loopml.log_params({"model": model, "seed": 7})
            loopml.log_metrics({"acc": acc})
            for step in range(3):
                loopml.log_metric("loss", 1 - acc + 0.1 * (2 - step), step=step)
            if i == 1:
                loopml.log_metric("unstable", math.nan)
                iris = DatasetInput("iris", "d" * 64, source="s3://bucket/iris.csv")
                loopml.log_input(iris, context="training")
        ids.append(run.run_id)
    return ids


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"loopml {loopml.__version__}"


def test_unknown_option_is_a_usage_error() -> None:
    assert cli("runs", "list", "--bogus").exit_code == 2


def test_experiments_create_then_list(home: Path) -> None:
    created = cli("experiments", "create", "churn", "--tag", "team=ml", "--tag", "owner=ana=b", "--json")
    exp = as_json(created)
    assert exp["name"] == "churn" and exp["tags"] == {"team": "ml", "owner": "ana=b"}

    table = cli("experiments", "list")
    assert table.exit_code == 0
    assert "churn" in table.stdout and "team=ml" in table.stdout
    listed = as_json(cli("experiments", "list", "--json"))
    assert {e["name"]: e["experiment_id"] for e in listed} == {"churn": exp["experiment_id"], "Default": "0"}


def test_experiments_list_all_includes_deleted(home: Path) -> None:
    exp_id = as_json(cli("experiments", "create", "old", "--json"))["experiment_id"]
    loopml.service().delete_experiment(exp_id)
    assert "old" not in [e["name"] for e in as_json(cli("experiments", "list", "--json"))]
    everything = as_json(cli("experiments", "list", "--all", "--json"))
    assert {e["name"]: e["lifecycle_stage"] for e in everything}["old"] == "deleted"
    assert "deleted" in cli("experiments", "list", "--all").stdout


def test_experiments_create_twice_is_a_clean_error(home: Path) -> None:
    assert cli("experiments", "create", "churn").exit_code == 0
    assert_clean_error(cli("experiments", "create", "churn"), 1, "churn")


def test_experiments_create_rejects_a_tag_without_equals(home: Path) -> None:
    result = cli("experiments", "create", "churn", "--tag", "team")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr


def test_runs_list_by_name_or_id(runs: list[str]) -> None:
    by_name = as_json(cli("runs", "list", "--experiment", "sweep", "--json"))
    assert sorted(r["info"]["run_id"] for r in by_name) == sorted(runs)
    exp_id = by_name[0]["info"]["experiment_id"]
    by_id = as_json(cli("runs", "list", "-e", exp_id, "--json"))
    assert [r["info"]["run_id"] for r in by_id] == [r["info"]["run_id"] for r in by_name]
    assert len(as_json(cli("runs", "list", "--max", "2", "--json"))) == 2


def test_runs_list_table_shows_whole_run_ids(runs: list[str]) -> None:
    result = cli("runs", "list", "--experiment", "sweep")
    assert result.exit_code == 0
    for run_id in runs:
        assert run_id in result.stdout
    assert "3 runs" in result.stdout


def test_runs_list_unknown_experiment(runs: list[str]) -> None:
    result = cli("runs", "list", "--experiment", "nope")
    assert_clean_error(result, 1, "experiment 'nope' does not exist")


def test_runs_show_json_has_params_metrics_tags_and_inputs(runs: list[str]) -> None:
    shown = as_json(cli("runs", "show", runs[1], "--json"))
    assert shown["info"]["run_id"] == runs[1]
    assert shown["params"] == {"model": "lr", "seed": "7"}
    metrics = {m["key"]: m for m in shown["metrics"]}
    assert metrics["acc"]["value"] == 0.9
    assert metrics["unstable"]["value"] == "NaN"  # not bare NaN: strict JSON parsers accept it
    assert metrics["loss"]["step"] == 2  # the latest value
    assert shown["tags"]["mlflow.runName"] == "run-1"
    assert [(d["name"], d["context"]) for d in shown["inputs"]] == [("iris", "training")]


def test_runs_show_table(runs: list[str]) -> None:
    result = cli("runs", "show", runs[1])
    assert result.exit_code == 0
    for text in (runs[1], "sweep", "model", "lr", "unstable", "nan", "iris", "s3://bucket/iris.csv"):
        assert text in result.stdout


def test_runs_show_unknown_run(home: Path) -> None:
    assert_clean_error(cli("runs", "show", "0123456789abcdef"), 1, "0123456789abcdef")


def test_runs_compare_json(runs: list[str]) -> None:
    compared = as_json(cli("runs", "compare", runs[2], runs[0], runs[1], "--json"))
    assert compared["run_ids"] == [runs[2], runs[0], runs[1]]
    assert compared["param_keys"] == ["model", "seed"]
    assert [p["model"] for p in compared["params"]] == ["rf", "rf", "lr"]
    assert [m["acc"] for m in compared["metrics"]] == [0.95, 0.8, 0.9]
    assert compared["metrics"][2]["unstable"] == "NaN"


def test_runs_compare_table_highlights_differing_params(runs: list[str]) -> None:
    result = cli("runs", "compare", *runs)
    assert result.exit_code == 0
    assert all(name in result.stdout for name in ("run-0", "run-1", "run-2", "params.model", "metrics.acc"))
    table = render.comparison_table(loopml.compare_runs(runs))
    labels = [str(cell) for cell in table.columns[0].cells]
    styles = dict(zip(labels, [row.style for row in table.rows], strict=True))
    assert styles["params.model"] == "bold yellow"
    assert styles["params.seed"] is None


def test_runs_compare_needs_two_runs(runs: list[str]) -> None:
    result = cli("runs", "compare", runs[0])
    assert result.exit_code == 2
    assert "at least two" in result.stderr


def test_runs_compare_unknown_run(runs: list[str]) -> None:
    assert_clean_error(cli("runs", "compare", runs[0], "missing-run"), 1, "missing-run")


def test_runs_search_filters_and_orders(runs: list[str]) -> None:
    found = as_json(
        cli("runs", "search", "metrics.acc > 0.85", "-e", "sweep", "--order-by", "metrics.acc DESC", "--json")
    )
    assert [r["info"]["run_id"] for r in found] == [runs[2], runs[1]]
    rf = as_json(cli("runs", "search", "params.model = 'rf'", "--order-by", "metrics.acc ASC", "--json"))
    assert [r["info"]["run_id"] for r in rf] == [runs[0], runs[2]]
    assert len(as_json(cli("runs", "search", "params.model = 'rf'", "--max", "1", "--json"))) == 1


def test_runs_search_bad_filter_names_the_filter(runs: list[str]) -> None:
    result = cli("runs", "search", "metrics.acc >> 1")
    assert_clean_error(result, 2, "invalid filter 'metrics.acc >> 1'")


def test_runs_search_bad_order_by_names_the_option(runs: list[str]) -> None:
    result = cli("runs", "search", "", "--order-by", "colour.red DESC")
    assert_clean_error(result, 2, "--order-by", "colour")


def test_server_command_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import loopml.server.main

    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(loopml.server.main, "serve", lambda *args: calls.append(args))
    assert cli("server", "--port", "5055", "--workers", "2").exit_code == 0
    assert calls == [("127.0.0.1", 5055, 2)]
    assert cli("server", "--port", "70000").exit_code == 2


def test_console_script_prints_one_line_and_exit_code(home: Path) -> None:
    env = {**os.environ, "LOOPML_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "runs", "show", "nope"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: run 'nope' does not exist"]
