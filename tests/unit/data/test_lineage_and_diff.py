"""Runs record dataset versions as inputs (both directions of lineage); diffs between versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopml
import loopml.data
from loopml.errors import InvalidInput


def frame(n: int = 2_000, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.normal(50 + shift, 10, n),
            "plan": rng.choice(["free", "pro"], n, p=[0.8, 0.2]),
            "age": rng.integers(18, 90, n),
        }
    )


def test_a_run_records_dataset_versions_and_each_version_lists_its_runs(home: Path) -> None:
    train = loopml.data.register("churn", frame())
    holdout = loopml.data.register("churn-holdout", frame(seed=1))
    with loopml.start_run() as first:
        loopml.data.log_input(train)
        loopml.data.log_input(holdout, context="evaluation")
    loopml.set_experiment("other")
    with loopml.start_run() as second:
        pass
    loopml.data.log_input(train, run_id=second.run_id)  # by id, after the run ended

    run = loopml.get_run(first.run_id)
    inputs = {i.digest: i for i in run.inputs}
    assert set(inputs) == {train.digest, holdout.digest}
    assert (
        inputs[train.digest].source == "loopml:dataset/churn/1"
        and inputs[train.digest].source_type == "loopml"
    )
    assert inputs[holdout.digest].context == "evaluation"
    assert {d: loopml.data.get_by_digest(d) for d in inputs} == {train.digest: train, holdout.digest: holdout}
    assert sorted(loopml.data.runs_using(train)) == sorted([first.run_id, second.run_id])
    assert loopml.data.runs_using(holdout) == [first.run_id]
    unused = loopml.data.register("churn", frame(seed=2))
    assert loopml.data.runs_using(unused) == []


def test_log_input_needs_a_run(home: Path) -> None:
    dv = loopml.data.register("churn", frame())
    with pytest.raises(InvalidInput, match="no active run"):
        loopml.data.log_input(dv)


def test_diff_reports_schema_changes_moved_statistics_and_drift(home: Path) -> None:
    a = loopml.data.register("churn", frame())
    shifted = frame(shift=8.0, seed=1).drop(columns="age")
    shifted["plan"] = np.where(np.arange(len(shifted)) % 2 == 0, "free", "pro")
    shifted["region"] = "eu"
    b = loopml.data.register("churn", shifted)

    d = loopml.data.diff(a, b)

    assert (d.a, d.b, d.num_rows) == ("churn@1", "churn@2", (2_000, 2_000))
    assert {(c.column, c.kind) for c in d.schema_changes} == {("age", "removed"), ("region", "added")}
    moved = {(c.column, c.stat) for c in d.stat_changes}
    assert {("income", "mean"), ("income", "p50"), ("plan", "top_values")} <= moved
    assert d.drift["income"] > 0.25 and d.drift["plan"] > 0.1
    assert set(d.drift) == {"income", "plan"} and not d.identical


def test_the_diff_of_a_version_with_itself_is_empty(home: Path) -> None:
    a = loopml.data.register("churn", frame())
    d = loopml.data.diff(a, a)
    assert d.identical and d.drift == {"income": 0.0, "plan": 0.0, "age": 0.0}


def test_a_type_change_is_a_schema_change(home: Path) -> None:
    df = frame()
    a = loopml.data.register("churn", df)
    b = loopml.data.register("churn", df.assign(age=df["age"].astype(float)))
    changes = loopml.data.diff(a, b).schema_changes
    assert [(c.column, c.kind, c.before, c.after) for c in changes] == [("age", "type", "int64", "double")]
