"""Delayed labels: attached by request id, late, out of order, twice, corrected."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.errors import InvalidInput
from loopml.monitoring.labels import read_labels, write_labels
from loopml.monitoring.performance import joined
from loopml.serving.predlog import PredictionLog

T0 = 1_700_000_000_000


def _predictions(root: Path, n: int) -> None:
    with PredictionLog(root) as plog:
        for i in range(n):
            plog.append(
                {
                    "request_id": f"r{i}",
                    "endpoint": "churn",
                    "model_name": "churn",
                    "model_version": "1",
                    "variant": "primary",
                    "ts": T0 + i,
                    "inputs": {"x": [i]},
                    "outputs": [i % 2],
                    "latency_ms": 1.0,
                    "status": "ok",
                }
            )


def test_labels_late_out_of_order_and_twice_join_once(tmp_path: Path) -> None:
    _predictions(tmp_path / "predictions", 6)
    labels = tmp_path / "labels"
    assert all(row[3] is None for row in joined(tmp_path / "predictions", labels, "churn"))  # none yet
    write_labels(labels, ["r4", "r1"], [0, 1])  # out of order
    write_labels(labels, ["r1", "r0"], [1, 0])  # r1 again: idempotent
    write_labels(labels, ["unknown-request"], [1])  # a label for no prediction joins nothing
    rows = {r[0]: r[3] for r in joined(tmp_path / "predictions", labels, "churn")}
    assert len(rows) == 6
    assert rows == {"r0": "0", "r1": "1", "r2": None, "r3": None, "r4": "0", "r5": None}


def test_a_corrected_label_replaces_the_earlier_one(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    write_labels(labels, ["r1", "r2"], [0, 1])
    write_labels(labels, ["r1"], [1])
    write_labels(labels, ["r3", "r3"], ["a", "b"])  # within one call the last one wins
    assert read_labels(labels) == {"r1": 1, "r2": 1, "r3": "b"}


@pytest.mark.parametrize(
    ("ids", "labels", "field"),
    [
        (["r1"], [1, 2], "labels"),
        ("r1", [1], "request_ids"),
        ([""], [1], "request_ids"),
        (["r1"], [object()], "labels"),
    ],
)
def test_bad_labels_are_refused_naming_the_field(
    tmp_path: Path, ids: object, labels: list[object], field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        write_labels(tmp_path, ids, labels)  # type: ignore[arg-type]
    assert err.value.details["field"] == field
    assert not list(tmp_path.glob("*.parquet"))
