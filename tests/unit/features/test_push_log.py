"""Pushes reach the offline log too: a pushed value is in the training data, point in time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.errors import InvalidInput
from loopml.features.definitions import Entity, FeatureView, Field, FileSource
from loopml.features.materialize import get_online_features, materialize, push
from loopml.features.offline import get_historical_features
from loopml.features.online import OnlineStore
from loopml.features.online_sqlite import SqliteOnlineStore
from loopml.features.push_log import COMPACT_AT, PushLog

T0 = pd.Timestamp("2024-03-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OnlineStore]:
    backend = SqliteOnlineStore(tmp_path / "online.db")
    yield backend
    backend.close()


def _view(tmp_path: Path) -> FeatureView:
    batch = pd.DataFrame(
        {
            "driver_id": pd.Series([1, 2], dtype="int32"),
            "event_timestamp": [T0, T0],
            "created": [T0, T0],
            "rate": [0.1, 0.2],
        }
    )
    batch.to_parquet(tmp_path / "stats.parquet")
    driver = Entity("driver", join_keys="driver_id")
    source = FileSource(tmp_path / "stats.parquet")
    return FeatureView(
        "stats",
        [driver],
        [Field("rate", "float64")],
        source,
        created_timestamp_field="created",
        ttl=timedelta(days=1),
    )


def _at(*hours: float) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [1] * len(hours), "event_timestamp": [T0 + h * HOUR for h in hours]})


def test_a_pushed_value_is_visible_offline_at_its_time_and_online(store: OnlineStore, tmp_path: Path) -> None:
    view, log = _view(tmp_path), PushLog(tmp_path / "push")
    # Nanoseconds in Berlin time, as a stream hands them over; no created time column.
    fresh = pd.DataFrame(
        {
            "driver_id": [1],
            "event_timestamp": [(T0 + 3 * HOUR).tz_convert("Europe/Berlin").as_unit("ns")],
            "rate": [0.9],
        }
    )
    assert push(view, fresh, store, push_log=log) == 1
    assert len(log.segments("stats")) == 1
    offline = get_historical_features(_at(1, 3, 5), ["stats:rate"], views=[view], push_log=log)
    assert offline["rate"].to_pylist() == [0.1, 0.9, 0.9]
    # A late event (older than the stored one) never wins online, but offline it is in the past
    # where it belongs.
    late = fresh.assign(event_timestamp=[T0 + 2 * HOUR], rate=[0.5])
    assert push(view, late, store, push_log=log) == 0
    offline = get_historical_features(_at(1, 2.5, 5), ["stats:rate"], views=[view], push_log=log)
    assert offline["rate"].to_pylist() == [0.1, 0.5, 0.9]
    online = get_online_features(
        [{"driver_id": 1}], ["stats:rate"], views=[view], store=store, now=T0 + 5 * HOUR
    )
    assert online.values["rate"] == [0.9]
    # Without the log the batch source alone answers.
    assert get_historical_features(_at(5), ["stats:rate"], views=[view], push_log=PushLog(tmp_path / "x"))[
        "rate"
    ].to_pylist() == [0.1]


def test_materializing_again_restores_pushed_values_from_the_log(store: OnlineStore, tmp_path: Path) -> None:
    view, log = _view(tmp_path), PushLog(tmp_path / "push")
    fresh = pd.DataFrame({"driver_id": [2], "event_timestamp": [T0 + HOUR], "rate": [0.7]})
    push(view, fresh, store, push_log=log)
    store.delete("stats")
    result = materialize(view, store, None, T0 + 2 * HOUR, push_log=log)
    assert result.rows == 2
    rows = [{"driver_id": 1}, {"driver_id": 2}]
    online = get_online_features(rows, ["stats:rate"], views=[view], store=store, now=T0 + 2 * HOUR)
    assert online.values["rate"] == [0.1, 0.7]


def test_a_failed_push_leaves_no_segment_and_bad_values_are_refused(tmp_path: Path) -> None:
    view, log = _view(tmp_path), PushLog(tmp_path / "push")
    closed = SqliteOnlineStore(tmp_path / "closed.db")
    closed.close()
    fresh = pd.DataFrame({"driver_id": [2], "event_timestamp": [T0 + HOUR], "rate": [0.7]})
    with pytest.raises(Exception, match="closed"):
        push(view, fresh, closed, push_log=log)
    assert not list((tmp_path / "push").rglob("*"))[1:]  # the view's folder at most, empty
    assert log.segments("stats") == []
    with pytest.raises(InvalidInput, match="'rate'"):
        push(view, fresh.assign(rate=["fast"]), closed, push_log=log)


def test_many_small_pushes_are_compacted_without_losing_a_row(store: OnlineStore, tmp_path: Path) -> None:
    view, log = _view(tmp_path), PushLog(tmp_path / "push")
    for i in range(COMPACT_AT + 3):
        one = pd.DataFrame(
            {"driver_id": [i % 2 + 1], "event_timestamp": [T0 + (i + 1) * HOUR], "rate": [float(i)]}
        )
        push(view, one, store, push_log=log)
    assert 1 <= len(log.segments("stats")) <= 4
    hours = [h + 1.5 for h in range(COMPACT_AT + 3)]
    entity_df = pd.DataFrame(
        {"driver_id": [1] * len(hours), "event_timestamp": [T0 + h * HOUR for h in hours]}
    )
    offline = get_historical_features(entity_df, ["stats:rate"], views=[view], push_log=log)[
        "rate"
    ].to_pylist()
    # Driver 1 got the even pushes: at hour i + 1.5 its latest is push i (even) or i - 1.
    assert offline == [float(i - i % 2) for i in range(COMPACT_AT + 3)]
