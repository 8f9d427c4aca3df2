"""Materialization, pushes and online retrieval: the online path agrees with the offline one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInput, NotFound
from loopml.features.definitions import (
    DataFrameSource,
    Entity,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
)
from loopml.features.materialize import (
    get_online_features,
    materialize,
    materialize_incremental,
    push,
)
from loopml.features.offline import get_historical_features
from loopml.features.online import (
    MISSING,
    OUTSIDE_TTL,
    PRESENT,
    OnlineStore,
    encode_key,
    encode_values,
    open_online_store,
)
from loopml.features.online_sqlite import SqliteOnlineStore
from loopml.features.push_log import PushLog

DRIVER = Entity("driver", join_keys="driver_id")
T0 = pd.Timestamp("2024-03-01", tz="UTC")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OnlineStore]:
    backend = SqliteOnlineStore(tmp_path / "online.db")
    yield backend
    backend.close()


@pytest.fixture(params=["sqlite", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    backend = open_online_store(url, home=tmp_path)
    if url:
        backend.delete("stats")  # the Redis server is shared by the session
    yield backend
    backend.close()


def _generated(seed: int = 7, drivers: int = 40, rows: int = 600) -> pd.DataFrame:
    """Rows with duplicate event times (ties broken by created time), in nanoseconds, Berlin time."""
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 6 * 24 * 60, rows)
    event = (T0 + pd.to_timedelta(minutes, unit="min")).tz_convert("Europe/Berlin")
    frame = pd.DataFrame(
        {
            "driver_id": rng.integers(0, drivers, rows),
            "event_timestamp": event,
            "created": event + pd.to_timedelta(rng.integers(0, 3, rows), unit="s"),
            "rate": rng.random(rows),
            "trips": rng.integers(0, 1000, rows),
        }
    )
    # Corrections: same entity and event time, created later, other values; they must win.
    fixes = frame.sample(frac=0.3, random_state=seed)
    fixes = fixes.assign(created=fixes["created"] + pd.Timedelta(seconds=5), rate=fixes["rate"] + 10)
    return pd.concat([fixes, frame], ignore_index=True)


def _views(frame: pd.DataFrame) -> tuple[FeatureView, OnDemandFeatureView]:
    stats = FeatureView(
        "stats",
        entities=[DRIVER],
        fields=[Field("rate", "float64"), Field("trips", "int64")],
        source=DataFrameSource(frame),
        created_timestamp_field="created",
        ttl=timedelta(hours=20),
    )
    scaled = OnDemandFeatureView(
        "scaled",
        sources=[stats, RequestSource("req", [Field("factor", "float64")])],
        schema=[Field("rate_x", "float64")],
        udf=lambda df: pd.DataFrame({"rate_x": df["rate"] * df["factor"] + df["trips"]}),
    )
    return stats, scaled


@pytest.mark.parametrize("hours", [30, 77, 143])
def test_online_after_materializing_to_t_equals_offline_at_t(any_store: OnlineStore, hours: int) -> None:
    frame = _generated()
    stats, scaled = _views(frame)
    at = T0 + pd.Timedelta(hours=hours, minutes=17)
    store = any_store
    materialize(stats, store, None, at)
    ids = list(range(45))  # 40 known drivers and 5 that never appear
    entity_df = pd.DataFrame({"driver_id": ids, "event_timestamp": [at] * len(ids), "factor": 1.5})
    refs = ["stats:rate", "stats:trips", "scaled:rate_x"]
    offline = get_historical_features(entity_df, refs, views=[stats, scaled]).to_pydict()
    rows = [{"driver_id": i, "factor": 1.5} for i in ids]
    online = get_online_features(rows, refs, views=[stats, scaled], store=store, now=at)
    for column in ("rate", "trips", "rate_x"):
        assert online.values[column] == offline[column], column
    assert online.values["driver_id"] == ids
    assert set(online.statuses["rate"][40:]) == {MISSING}
    assert OUTSIDE_TTL in online.statuses["rate"] and PRESENT in online.statuses["rate"]
    assert any(v is not None and v > 10 for v in online.values["rate"])  # a correction won a tie


def test_incremental_materialization_reads_only_new_rows(store: OnlineStore, tmp_path: Path) -> None:
    day = pd.Timedelta(days=1)
    first = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [T0, T0], "rate": [1.0, 2.0]})
    path = tmp_path / "stats"
    path.mkdir()
    first.to_parquet(path / "a.parquet")
    stats = FeatureView(
        "stats", entities=[DRIVER], fields=[Field("rate", "float64")], source=FileSource(path), ttl=None
    )
    assert materialize_incremental(stats, store, T0 + day).rows == 2
    later = pd.DataFrame({"driver_id": [2], "event_timestamp": [T0 + 1.5 * day], "rate": [2.5]})
    later.to_parquet(path / "b.parquet")
    again = materialize_incremental(stats, store, T0 + 2 * day)
    assert (again.rows, again.written) == (1, 1)
    assert materialize_incremental(stats, store, T0 + 3 * day).rows == 0
    online = get_online_features(
        [{"driver_id": 1}, {"driver_id": 2}], ["stats:rate"], views=[stats], store=store
    )
    assert online.values["rate"] == [1.0, 2.5]


def test_an_older_pushed_row_never_overwrites_a_newer_value(store: OnlineStore, tmp_path: Path) -> None:
    stats, _ = _views(_generated())
    stats = FeatureView("pushed", entities=[DRIVER], fields=list(stats.fields), source=stats.source)
    newer = pd.DataFrame(
        {"driver_id": [1], "event_timestamp": [T0 + pd.Timedelta(hours=2)], "rate": [0.9], "trips": [9]}
    )
    older = newer.assign(event_timestamp=[T0], rate=[0.1], trips=[1])
    log = PushLog(tmp_path / "push")
    assert push(stats, newer, store, push_log=log) == 1
    assert push(stats, older, store, push_log=log) == 0
    online = get_online_features([{"driver_id": 1}], [stats], store=store, now=T0 + pd.Timedelta(hours=3))
    assert (online.values["rate"], online.values["trips"]) == ([0.9], [9])


def test_pushed_rows_without_a_feature_column_are_refused(store: OnlineStore, tmp_path: Path) -> None:
    stats, _ = _views(_generated())
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0], "rate": [0.5]})
    with pytest.raises(InvalidInput, match="'trips'"):
        push(stats, rows, store, push_log=PushLog(tmp_path))
    assert not list(tmp_path.rglob("*.parquet*"))


def test_bad_online_requests_name_what_is_wrong(store: OnlineStore) -> None:
    stats, scaled = _views(_generated())
    with pytest.raises(NotFound, match="known: scaled, stats"):
        get_online_features([{"driver_id": 1}], ["nope:rate"], views=[stats, scaled], store=store)
    with pytest.raises(InvalidInput, match="'driver_id'"):
        get_online_features([{"id": 1}], ["stats:rate"], views=[stats], store=store)
    with pytest.raises(InvalidInput, match="'factor'"):
        get_online_features([{"driver_id": 1}], ["scaled:rate_x"], views=[stats, scaled], store=store)


def test_an_unknown_online_store_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="sqlite:///PATH, redis://"):
        open_online_store("mongodb://x")
    open_online_store(f"sqlite:///{tmp_path / 'o.db'}").close()
    assert (tmp_path / "o.db").exists()


def test_non_finite_floats_and_huge_int_keys_round_trip(store: OnlineStore) -> None:
    view = FeatureView(
        "wide",
        entities=[Entity("big", join_keys="big_id")],
        fields=[Field("x", "float64")],
        source=DataFrameSource(pd.DataFrame({"big_id": [1], "event_timestamp": [T0], "x": [0.0]})),
        ttl=None,
    )
    values = [math.nan, math.inf, -math.inf, 0.1]
    keys = [(2**70,), (1,), (-3,), (4,)]
    store.write_encoded(
        "wide",
        [(encode_key(k), 1, 1, encode_values(view, {"x": v})) for k, v in zip(keys, values, strict=True)],
    )
    got = [r.values["x"] for r in store.read(view, keys, now_us=2)]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 0.1]
    assert encode_key((1, "a")) == '[1,"a"]' and encode_key((np.int64(7),)) == "[7]"
