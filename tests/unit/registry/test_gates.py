"""Threshold grammar and the gate's verdict, without a database."""

from __future__ import annotations

import pytest

from loopml.errors import InvalidInput
from loopml.registry.gates import check, failure_message, parse_threshold, parse_thresholds


@pytest.mark.parametrize(
    ("text", "metric", "op", "constant", "champion", "offset"),
    [
        ("accuracy >= 0.90", "accuracy", ">=", 0.9, None, 0.0),
        ("latency_p99_ms<=20", "latency_p99_ms", "<=", 20.0, None, 0.0),
        ("roc_auc >= champion.roc_auc - 0.005", "roc_auc", ">=", None, "roc_auc", -0.005),
        ("rmse < champion.rmse + 1e-3", "rmse", "<", None, "rmse", 0.001),
        ("r2 > champion.r2", "r2", ">", None, "r2", 0.0),
    ],
)
def test_thresholds_parse(
    text: str, metric: str, op: str, constant: float | None, champion: str | None, offset: float
) -> None:
    t = parse_threshold(text)
    assert (t.metric, t.op, t.constant, t.champion_metric, t.offset) == (
        metric,
        op,
        constant,
        champion,
        offset,
    )


@pytest.mark.parametrize(
    "text",
    ["accuracy => 0.9", "accuracy >= ", ">= 0.9", "champion.acc >= 0.9", "acc >= champion.", "acc >= 0.9 and x",
     "acc == 0.9", "acc >= champion.acc * 2", "acc >= nan"],
)  # fmt: skip
def test_bad_thresholds_name_themselves_and_the_grammar(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_threshold(text)
    assert repr(text) in err.value.message and "<metric> <op> <number>" in err.value.message
    assert err.value.details["field"] == "thresholds"


def test_a_bad_threshold_refuses_the_whole_list() -> None:
    with pytest.raises(InvalidInput, match="'nope'"):
        parse_thresholds(["accuracy >= 0.9", "nope"])


def test_each_threshold_reports_value_limit_and_verdict() -> None:
    thresholds = parse_thresholds(
        ["accuracy >= 0.90", "roc_auc >= champion.roc_auc - 0.005", "latency_p99_ms <= 20"]
    )
    result = check(thresholds, {"accuracy": 0.91, "roc_auc": 0.80, "latency_p99_ms": 25.0}, {"roc_auc": 0.9},
                   has_champion=True)  # fmt: skip
    assert not result.passed
    assert [(r.value, r.limit, r.passed) for r in result.results] == [
        (0.91, 0.9, True),
        (0.80, pytest.approx(0.895), False),
        (25.0, 20.0, False),
    ]
    message = failure_message("churn", 4, result)
    assert "roc_auc >= champion.roc_auc - 0.005: value 0.8, limit 0.895, FAIL" in message
    assert "accuracy >= 0.90: value 0.91, limit 0.9, pass" in message


def test_champion_thresholds_without_a_champion_pass_with_a_note() -> None:
    result = check(
        parse_thresholds(["roc_auc >= champion.roc_auc"]), {"roc_auc": 0.5}, {}, has_champion=False
    )
    assert result.passed and result.results[0].note == "no champion to compare with"


def test_missing_metrics_fail() -> None:
    result = check(
        parse_thresholds(["f1 >= 0.5", "auc >= champion.auc"]), {"auc": 0.9}, {}, has_champion=True
    )
    assert [r.passed for r in result.results] == [False, False]
    assert "candidate has no metric 'f1'" in result.results[0].note
    assert "champion has no metric 'auc'" in result.results[1].note


def test_nan_never_passes() -> None:
    assert not check(parse_thresholds(["rmse <= 1"]), {"rmse": float("nan")}, {}, has_champion=False).passed
