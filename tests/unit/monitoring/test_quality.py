"""Data quality of a batch against a reference dataset version."""

from __future__ import annotations

import pyarrow as pa

from loopml.data.profile import profile_table
from loopml.data.records import DatasetVersion, Field
from loopml.monitoring.quality import check_quality
from loopml.monitoring.records import QualityReport


def _reference() -> DatasetVersion:
    t = pa.table(
        {
            "age": pa.array([20, 30, 40, 50], pa.int64()),
            "income": [1.0, 2.0, None, 4.0],
            "city": ["a", "b", "a", "c"],
            "id": pa.array([1, 2, 3, 4], pa.int64()),
        }
    )
    schema = [
        Field("age", "int64", nullable=False),
        Field("income", "double"),
        Field("city", "string"),
        Field("id", "int64"),
    ]
    return DatasetVersion("people", 2, "d", 4, schema, profile_table(t), "", "", 0)


def test_clean_batch_passes_with_no_issue() -> None:
    batch = pa.table(
        {"age": pa.array([25, 45], pa.int32()), "income": [2.0, 3.0], "city": ["a", "c"], "id": [2, 3]}
    )
    report = check_quality(_reference(), batch)
    assert report.passed and report.issues == [] and report.columns_checked == 4


def test_every_kind_of_issue_is_found_and_named() -> None:
    batch = pa.table(
        {
            "age": pa.array([25, None, 99], pa.int64()),  # null in a non-nullable column, above max
            "income": pa.array([None, None, None], pa.float64()),  # all null
            "city": ["a", "zz", "zz"],  # unseen category
            "extra": [1, 2, 3],
        }
    )
    report = check_quality(_reference(), batch)
    kinds = {(i.column, i.kind, i.severity) for i in report.issues}
    assert kinds == {
        ("id", "missing_column", "error"),
        ("age", "null_rate", "error"),
        ("age", "out_of_range", "warning"),
        ("income", "null_rate", "error"),
        ("city", "unseen_category", "warning"),
        ("extra", "extra_column", "warning"),
    }
    assert not report.passed
    unseen = report.by_kind("unseen_category")[0]
    assert unseen.observed["examples"] == ["zz"] and "'city'" in unseen.message
    assert report.by_kind("out_of_range")[0].observed["above"] == 1
    assert QualityReport.from_dict(report.to_dict()) == report


def test_type_change_and_empty_batch() -> None:
    batch = pa.table({"age": ["20"], "income": [1.0], "city": ["a"], "id": [1]})
    report = check_quality(_reference(), batch)
    assert [(i.column, i.kind) for i in report.issues] == [("age", "type_change")]
    assert "cast it back" in report.issues[0].message
    empty = check_quality(_reference(), batch.slice(0, 0).set_column(0, "age", pa.array([], pa.int64())))
    assert [i.kind for i in empty.issues] == ["empty_batch"] and empty.passed


def test_null_rate_jump_is_a_warning_beyond_tolerance() -> None:
    batch = pa.table(
        {"age": [30, 30, 30, 30], "income": [1.0, None, None, 2.0], "city": ["a"] * 4, "id": [1] * 4}
    )
    report = check_quality(_reference(), batch)
    issue = report.by_kind("null_rate")[0]
    assert (issue.severity, issue.observed, issue.expected) == ("warning", 0.5, 0.25)
    assert check_quality(_reference(), batch, null_tolerance=0.5).issues == []
