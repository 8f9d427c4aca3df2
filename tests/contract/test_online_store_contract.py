"""One behavioural suite for every online store: SQLite (default), Redis (a real redis-server) and
PostgreSQL (a real server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.errors import NotFound
from loopml.features.definitions import DataFrameSource, Entity, FeatureView, Field
from loopml.features.online import (
    MISSING,
    OUTSIDE_TTL,
    PRESENT,
    OnlineRow,
    OnlineStore,
    to_utc_micros,
)
from loopml.features.online_redis import RedisOnlineStore
from loopml.features.online_sqlite import SqliteOnlineStore
from loopml.features.postgres import PostgresOnlineStore
from tests.support.pgdb import scratch_database

HOUR = 3_600_000_000
T0 = to_utc_micros("2024-03-01T00:00:00Z")


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        backend: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    elif request.param == "redis":
        backend = RedisOnlineStore(request.getfixturevalue("redis_url"))
    else:
        backend = PostgresOnlineStore(request.getfixturevalue("features_pg_url"))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def features_pg_url(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, "online_contract") as url:
        yield url


def _view(ttl: timedelta | None = None) -> FeatureView:
    # A fresh name per test: the Redis server is shared by the whole session.
    return FeatureView(
        f"v_{uuid.uuid4().hex[:8]}",
        entities=[Entity("driver", join_keys="driver_id")],
        fields=[
            Field("rate", "float64"),
            Field("trips", "int64"),
            Field("city", "string"),
            Field("blob", "bytes"),
            Field("seen", "timestamp"),
        ],
        source=DataFrameSource(pd.DataFrame({"driver_id": [1]})),
        ttl=ttl,
    )


def test_values_round_trip_with_their_types(store: OnlineStore) -> None:
    view = _view()
    seen = pd.Timestamp("2024-02-29T23:59:59.123456Z")
    values = {"rate": 0.1 + 0.2, "trips": 2**40, "city": "Zürich", "blob": b"\x00\xff", "seen": seen}
    store.write_batch(view, [OnlineRow((7,), values, T0)])
    [got] = store.read(view, [(7,)], now_us=T0)
    assert got.values == {**values, "seen": seen.to_pydatetime()}
    assert set(got.statuses.values()) == {PRESENT}
    assert got.event_ts == T0


def test_unknown_keys_are_missing_and_order_is_kept(store: OnlineStore) -> None:
    view = _view()
    store.write_batch(view, [OnlineRow((1,), {"rate": 1.0}, T0), OnlineRow((2,), {"rate": 2.0}, T0)])
    reads = store.read(view, [(2,), (99,), (1,)], ["rate"], now_us=T0)
    assert [r.values["rate"] for r in reads] == [2.0, None, 1.0]
    assert [r.statuses["rate"] for r in reads] == [PRESENT, MISSING, PRESENT]


def test_an_older_event_never_replaces_a_newer_one(store: OnlineStore) -> None:
    view = _view()
    assert store.write_batch(view, [OnlineRow((1,), {"rate": 2.0}, T0 + HOUR)]) == 1
    assert store.write_batch(view, [OnlineRow((1,), {"rate": 1.0}, T0)]) == 0
    assert store.read(view, [(1,)], ["rate"], now_us=T0 + HOUR)[0].values == {"rate": 2.0}
    assert store.write_batch(view, [OnlineRow((1,), {"rate": 3.0}, T0 + 2 * HOUR)]) == 1
    assert store.read(view, [(1,)], ["rate"], now_us=T0 + 2 * HOUR)[0].values == {"rate": 3.0}


def test_same_event_time_breaks_ties_by_created_timestamp(store: OnlineStore) -> None:
    view = _view()
    store.write_batch(view, [OnlineRow((1,), {"rate": 2.0}, T0, created_ts=T0 + 5)])
    store.write_batch(view, [OnlineRow((1,), {"rate": 1.0}, T0, created_ts=T0 + 1)])
    assert store.read(view, [(1,)], ["rate"], now_us=T0)[0].values == {"rate": 2.0}
    store.write_batch(view, [OnlineRow((1,), {"rate": 9.0}, T0, created_ts=T0 + 9)])
    assert store.read(view, [(1,)], ["rate"], now_us=T0)[0].values == {"rate": 9.0}


def test_within_one_batch_the_newest_event_wins_whatever_the_order(store: OnlineStore) -> None:
    view = _view()
    rows = [OnlineRow((1,), {"rate": float(h)}, T0 + h * HOUR) for h in (2, 5, 1, 3)]
    store.write_batch(view, rows)
    assert store.read(view, [(1,)], ["rate"], now_us=T0 + 5 * HOUR)[0].values == {"rate": 5.0}


def test_ttl_is_enforced_on_read(store: OnlineStore) -> None:
    view = _view(ttl=timedelta(hours=2))
    store.write_batch(view, [OnlineRow((1,), {"rate": 1.0}, T0)])
    inside = store.read(view, [(1,)], ["rate"], now_us=T0 + 2 * HOUR)[0]
    outside = store.read(view, [(1,)], ["rate"], now_us=T0 + 2 * HOUR + 1)[0]
    assert (inside.values, inside.statuses) == ({"rate": 1.0}, {"rate": PRESENT})
    assert (outside.values, outside.statuses) == ({"rate": None}, {"rate": OUTSIDE_TTL})


def test_keys_of_any_integer_type_name_the_same_entity(store: OnlineStore) -> None:
    import numpy as np

    view = _view()
    store.write_batch(view, [OnlineRow((np.int64(4),), {"rate": 4.0}, T0)])
    assert store.read(view, [(4,)], ["rate"], now_us=T0)[0].values == {"rate": 4.0}


def test_unknown_feature_names_the_known_ones(store: OnlineStore) -> None:
    view = _view()
    with pytest.raises(NotFound, match="known: rate, trips"):
        store.read(view, [(1,)], ["nope"])


def test_delete_drops_one_view_only(store: OnlineStore) -> None:
    kept, dropped = _view(), _view()
    store.write_batch(kept, [OnlineRow((1,), {"rate": 1.0}, T0)])
    store.write_batch(dropped, [OnlineRow((1,), {"rate": 1.0}, T0)])
    store.delete(dropped.name)
    assert store.read(dropped, [(1,)], ["rate"], now_us=T0)[0].statuses == {"rate": MISSING}
    assert store.read(kept, [(1,)], ["rate"], now_us=T0)[0].statuses == {"rate": PRESENT}


def test_metadata_round_trips(store: OnlineStore) -> None:
    name = f"wm_{uuid.uuid4().hex[:8]}"
    assert store.get_meta(name) is None
    store.set_meta(name, "1")
    store.set_meta(name, "2")
    assert store.get_meta(name) == "2"
