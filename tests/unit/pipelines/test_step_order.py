"""A run's steps are listed in DAG order, whatever their millisecond start times say."""

from __future__ import annotations

from loopml.pipelines.records import StepRecord
from loopml.pipelines.store import in_dag_order


def _step(name: str, started: int | None, *upstream: str) -> StepRecord:
    return StepRecord("run", name, "SUCCEEDED", started_at=started, upstream=list(upstream))


def test_a_step_follows_its_inputs_even_when_started_in_the_same_millisecond() -> None:
    # a cached chain: all three "started" in one millisecond, read back in any order
    steps = [_step("train", 7, "features"), _step("load", 7), _step("features", 7, "load")]
    assert [s.step for s in in_dag_order(steps)] == ["load", "features", "train"]


def test_independent_branches_keep_start_order_then_name() -> None:
    steps = [
        _step("join", 9, "b", "a"),
        _step("b", 3),
        _step("a", 5),
        _step("c", 3),
        _step("pending", None, "join"),  # never started (the run failed before it)
        _step("orphan", 4, "deleted-step"),  # an input that is not in this run
    ]
    assert [s.step for s in in_dag_order(steps)] == ["b", "c", "orphan", "a", "join", "pending"]
