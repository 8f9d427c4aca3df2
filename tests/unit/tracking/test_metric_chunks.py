"""The packed metric chunk: validation, the latest point, de-duplicated history."""

from __future__ import annotations

import math

import pytest

from loopml.errors import InvalidInput
from loopml.tracking.metric_chunks import build, digest, history, pack, unpack

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def test_pack_round_trips_extremes_and_special_floats() -> None:
    steps, stamps, values = [INT64_MIN, 0, INT64_MAX], [1, -1, 2], [math.inf, -math.inf, -0.0]
    got = unpack(pack(steps, stamps, values))
    assert (list(got[0]), list(got[1]), list(got[2])) == (steps, stamps, values)
    assert math.isnan(unpack(pack([0], [0], [math.nan]))[2][0])


def test_build_makes_a_chunk_and_a_latest_point_per_key() -> None:
    chunks, latest = build([("a", 1.0, 10, 0), ("b", 5.0, 10, 0), ("a", 3.0, 9, 1), ("a", 2.0, 11, 1)])
    assert [(key, n) for key, _, n, _ in chunks] == [("a", 3), ("b", 1)]
    assert all(d == digest(data) for _, d, _, data in chunks)
    # greatest step, then timestamp, then value
    assert latest == [("a", 1, 11, 2.0, False), ("b", 0, 10, 5.0, False)]


def test_the_same_points_give_the_same_digest() -> None:
    first, _ = build([("m", 0.5, 1, 0), ("m", 0.25, 2, 1)])
    again, _ = build([("m", 0.5, 1, 0), ("m", 0.25, 2, 1)])
    other, _ = build([("m", 0.5, 1, 0), ("m", 0.75, 2, 1)])
    assert first[0][1] == again[0][1] != other[0][1]


def test_nan_orders_as_zero_when_choosing_the_latest_point() -> None:
    _, latest = build([("m", math.nan, 5, 3), ("m", -1.0, 5, 3)])
    assert latest == [("m", 3, 5, 0.0, True)]
    _, latest = build(
        [("m", math.nan, 5, 3), ("m", 2.0, 5, 3), ("m", math.inf, 1, 0), ("m", -math.inf, 1, 0)]
    )
    assert latest == [("m", 3, 5, 2.0, False)]


def test_protobuf_json_strings_are_accepted() -> None:
    chunks, latest = build([("m", "NaN", "7", "3"), ("m", "Infinity", "8", 4)])
    steps, stamps, values = unpack(chunks[0][3])
    assert list(steps) == [3, 4] and list(stamps) == [7, 8]
    assert math.isnan(values[0]) and values[1] == math.inf
    assert latest == [("m", 4, 8, math.inf, False)]


@pytest.mark.parametrize(
    ("metric", "field"),
    [
        (("m", "oops", 1, 0), "metrics.value"),
        (("m", True, 1, 0), "metrics.value"),
        (("m", 1.0, 1, 1.5), "metric step"),
        (("m", 1.0, 1, True), "metric step"),
        (("m", 1.0, 2**63, 0), "metric timestamp"),
        (("m", 1.0, None, 0), "metric timestamp"),
        (("bad key!", 1.0, 1, 0), "metric"),
        ((7, 1.0, 1, 0), "metric"),
    ],
)
def test_bad_points_name_their_field(metric: tuple[object, object, object, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        build([("ok", 1.0, 1, 0), metric])  # type: ignore[list-item]
    assert err.value.details["field"] == field


def test_history_merges_chunks_and_drops_repeated_points() -> None:
    first, _ = build([("m", 0.5, 10, 2), ("m", math.nan, 11, 2)])
    second, _ = build([("m", math.nan, 11, 2), ("m", 0.1, 1, 0), ("m", 0.5, 10, 2)])
    got = history("m", [first[0][3], second[0][3]])
    assert [(p.key, p.step, p.timestamp) for p in got] == [("m", 0, 1), ("m", 2, 10), ("m", 2, 11)]
    assert got[1].value == 0.5 and math.isnan(got[2].value)
