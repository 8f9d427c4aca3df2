"""MLflow's filter language: what parses, and what is refused with a message naming it."""

from __future__ import annotations

import pytest

from loopml.errors import InvalidInput
from loopml.tracking.search import (
    Clause,
    OrderKey,
    decode_page_token,
    encode_page_token,
    parse_filter,
    parse_order_by,
)


def test_mlflow_syntax_parses() -> None:
    flt = (
        "metrics.acc >= 0.9 and params.`learning rate` = '0.1' AND tags.\"mlflow.user\" LIKE 'an%' "
        "AND attributes.status IN ('FINISHED', 'RUNNING') AND run_name != 'x' AND datasets.context = 'training'"
        " AND metrics.loss < -1e-3 AND params.model NOT IN ('a') AND tags.t ILIKE 'O''Brien'"
    )
    assert parse_filter(flt) == [
        Clause("metrics", "acc", ">=", 0.9),
        Clause("params", "learning rate", "=", "0.1"),
        Clause("tags", "mlflow.user", "LIKE", "an%"),
        Clause("attributes", "status", "IN", ["FINISHED", "RUNNING"]),
        Clause("attributes", "run_name", "!=", "x"),
        Clause("datasets", "context", "=", "training"),
        Clause("metrics", "loss", "<", -0.001),
        Clause("params", "model", "NOT IN", ["a"]),
        Clause("tags", "t", "ILIKE", "O'Brien"),
    ]


def test_numeric_attributes_become_integers() -> None:
    assert parse_filter("attributes.start_time > 1700000000000") == [
        Clause("attributes", "start_time", ">", 1700000000000)
    ]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("metrics.acc > 'high'", "compares with a number"),
        ("params.p > 1", "does not support"),
        ("nope.x = 1", "unknown entity"),
        ("acc > 1", "needs a prefix"),
        ("metrics.a > 1 OR metrics.b > 2", "OR is not supported"),
        ("metrics.a >", "ends early"),
        ("attributes.colour = 'red'", "unknown attribute"),
        ("params.p IN 'a'", "IN needs a list"),
        ("metrics.a ~ 1", "cannot parse"),
    ],
)
def test_bad_filters_say_what_is_wrong(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment) as err:
        parse_filter(bad)
    assert err.value.details["field"] == "filter"


def test_order_by() -> None:
    assert parse_order_by(["metrics.acc DESC", "params.`a b`", "start_time asc"]) == [
        OrderKey("metrics", "acc", False),
        OrderKey("params", "a b", True),
        OrderKey("attributes", "start_time", True),
    ]
    with pytest.raises(InvalidInput):
        parse_order_by(["datasets.name"])


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    assert decode_page_token(encode_page_token(300)) == 300
    assert decode_page_token(None) == 0
    with pytest.raises(InvalidInput, match="page_token"):
        decode_page_token("not-a-token")
