"""PostgreSQL as a feature source and as the online store, against the real server the tests start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from loopml.errors import InvalidInput
from loopml.features.definitions import Entity, FeatureService, FeatureView, Field
from loopml.features.materialize import get_online_features, materialize
from loopml.features.offline import get_historical_features
from loopml.features.online import OnlineStore, open_online_store
from loopml.features.postgres import PostgresSource, libpq_url
from loopml.features.push_log import PushLog
from loopml.features.registry import FeatureRegistry
from loopml.store.db import Database
from tests.support.pgdb import scratch_database

T0 = pd.Timestamp("2024-03-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def pg_url(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, "features") as url:
        yield url


@pytest.fixture
def table(pg_url: str) -> Iterator[str]:
    name = f"stats_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} (driver_id integer, event_timestamp timestamptz, created timestamp, "
            "rate double precision, trips bigint, city text, active boolean)"
        )
        conn.execute(
            f"INSERT INTO {name} VALUES "
            "(1, '2024-03-01 00:00+00', '2024-03-01 00:00', 0.1, 3, 'oslo', true), "
            "(1, '2024-03-01 02:00+02', '2024-03-01 00:00', 0.30000000000000004, 4, '', false), "
            "(1, '2024-03-01 02:00+02', '2024-03-01 00:05', 0.5, 5, 'zürich, \"q\"', NULL), "
            "(2, '2024-03-01 01:00+00', NULL, NULL, NULL, NULL, NULL)"
        )
        yield name
        conn.execute(f"DROP TABLE {name}")


@pytest.fixture
def online(pg_url: str) -> Iterator[OnlineStore]:
    store = open_online_store(pg_url)
    yield store
    store.close()


def _view(source: PostgresSource) -> FeatureView:
    fields = [
        Field("rate", "float64"),
        Field("trips", "int64"),
        Field("city", "string"),
        Field("active", "bool"),
    ]
    driver = Entity("driver", join_keys="driver_id", value_types="int32")
    return FeatureView(
        "pg_stats", [driver], fields, source, created_timestamp_field="created", ttl=timedelta(days=1)
    )


def test_a_postgres_table_feeds_offline_and_online_alike(
    pg_url: str, table: str, online: OnlineStore, tmp_path: Path
) -> None:
    view = _view(PostgresSource(pg_url, table=table))
    log = PushLog(tmp_path / "push")
    entity_df = pd.DataFrame(
        {"driver_id": [1, 1, 2], "event_timestamp": [T0 + HOUR / 2, T0 + 2 * HOUR, T0 + 2 * HOUR]}
    )
    offline = get_historical_features(entity_df, [view], push_log=log).to_pydict()
    # 00:00 UTC+02 is the same instant as 00:00 UTC: the later created row wins the tie.
    assert offline["rate"] == [0.5, 0.5, None]
    assert offline["city"] == ['zürich, "q"', 'zürich, "q"', None]
    assert offline["active"] == [None, None, None]
    online.delete(view.name)
    result = materialize(view, online, None, T0 + 2 * HOUR, push_log=log)
    assert (result.rows, result.written) == (2, 2)
    rows = [{"driver_id": 1}, {"driver_id": 2}]
    got = get_online_features(rows, [view], store=online, now=T0 + 2 * HOUR)
    for column in ("rate", "trips", "city", "active"):
        assert got.values[column] == offline[column][1:], column


def test_a_postgres_query_source_is_registered_checked_and_rebuilt(
    pg_url: str, table: str, tmp_path: Path
) -> None:
    query = (
        f"SELECT driver_id, event_timestamp, created, rate, trips, city, active FROM {table} WHERE trips > 3"
    )
    view = _view(PostgresSource(pg_url, query=query))
    registry = FeatureRegistry(Database(f"sqlite:///{tmp_path / 'meta.db'}"))
    registry.apply([FeatureService("pg", [view])])  # the schema is checked against PostgreSQL
    service = registry.resolve_service("pg")
    entity_df = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0 + HOUR]})
    out = get_historical_features(entity_df, service=service, push_log=PushLog(tmp_path))
    assert out["trips"].to_pylist() == [5]
    wrong = FeatureView(
        "pg_wrong",
        [Entity("driver", join_keys="driver_id", value_types="int32")],
        [Field("city", "int64")],
        PostgresSource(pg_url, table=table),
    )
    with pytest.raises(InvalidInput, match="'city'"):
        registry.apply([wrong])
    with pytest.raises(InvalidInput, match="exactly one of table= or query="):
        PostgresSource(pg_url)
