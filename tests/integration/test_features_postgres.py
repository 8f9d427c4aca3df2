"""PostgreSQL as a feature source and as the online store, against the real server the tests start."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.errors import InvalidInput
from loopml.features.definitions import Entity, FeatureService, FeatureView, Field, FileSource
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


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Exports go under this test's $LOOPML_HOME/tmp, not the checkout's."""
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


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


def _wide_table(conn: psycopg.Connection, rows: int, text_bytes: int = 8) -> str:
    """A table of ``rows`` drivers with every column type a source maps (and one it does not)."""
    name = f"wide_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE TABLE {name} (driver_id bigint, event_timestamp timestamptz, created timestamp, "
        "rate double precision, score real, amount numeric(12, 4), small smallint, day date, "
        "city text, code char(3), note varchar(4000), active boolean, tag uuid)"
    )
    conn.execute(
        f"INSERT INTO {name} SELECT i, TIMESTAMPTZ '2024-03-01 00:00+00' + i * INTERVAL '1 second', "
        "TIMESTAMP '2024-03-01 00:00' + i * INTERVAL '1 millisecond', i / 7.0, (i % 100) / 4.0, "
        "i * 1.2345, (i % 30000)::smallint, DATE '2024-01-01' + (i % 365), "
        "CASE WHEN i % 11 = 0 THEN NULL WHEN i % 13 = 0 THEN '' ELSE 'zürich, \"q\"' || E'\\n' || i END, "
        f"'a' || (i % 10), repeat('x', {text_bytes}), i % 3 = 0, "
        f"md5(i::text)::uuid FROM generate_series(1, {int(rows)}) AS i"
    )
    return name


def _expected_row(i: int, text_bytes: int = 8) -> dict[str, object]:
    city = None if i % 11 == 0 else "" if i % 13 == 0 else f'zürich, "q"\n{i}'
    return {
        "driver_id": i,
        "event_timestamp": T0 + pd.Timedelta(seconds=i),
        "created": pd.Timestamp("2024-03-01") + pd.Timedelta(milliseconds=i),
        "rate": i / 7.0,
        "score": (i % 100) / 4.0,
        "amount": float(Decimal(i) * Decimal("1.2345")),
        "small": i % 30000,
        "day": (pd.Timestamp("2024-01-01") + pd.Timedelta(days=i % 365)).date(),
        "city": city,
        "code": f"a{i % 10} ",  # char(3) is blank-padded, as PostgreSQL returns it
        "note": "x" * text_bytes,
        "active": i % 3 == 0,
    }


def test_a_source_is_fetched_in_batches_into_parquet_with_every_type_kept(
    pg_url: str, tmp_path: Path
) -> None:
    batches: list[int] = []
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        name = _wide_table(conn, 5000)
        try:
            source = PostgresSource(
                pg_url, table=name, batch_rows=1000, tmp_dir=tmp_path / "tmp", on_batch=batches.append
            )
            with source.snapshot() as path:
                assert path.parent == tmp_path / "tmp"
                assert pq.ParquetFile(path).metadata.num_row_groups == 5
                table = pq.read_table(path)
            assert not path.exists()
        finally:
            conn.execute(f"DROP TABLE {name}")
    assert batches == [1000] * 5
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("created").type == pa.timestamp("us")
    assert table.schema.field("tag").type == pa.string()  # a type without an Arrow mapping: text
    got = table.sort_by("driver_id").to_pylist()
    assert len(got) == 5000
    for i in (1, 11, 13, 4999, 5000):
        row = dict(got[i - 1])
        assert len(str(row.pop("tag"))) == 36
        row["event_timestamp"] = pd.Timestamp(row["event_timestamp"])
        row["created"] = pd.Timestamp(row["created"])
        assert row == _expected_row(i), i


def test_reading_a_source_keeps_memory_to_about_one_batch(pg_url: str, tmp_path: Path) -> None:
    rows, text_bytes = 20_000, 1000  # 20 MB of text
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        name = _wide_table(conn, rows, text_bytes)
        try:
            peaks = {}
            for batch in (500, rows):
                source = PostgresSource(pg_url, table=name, batch_rows=batch, tmp_dir=tmp_path)
                tracemalloc.start()
                try:
                    assert source.export(tmp_path / f"{batch}.parquet") == rows
                    peaks[batch] = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
        finally:
            conn.execute(f"DROP TABLE {name}")
    assert peaks[rows] > rows * text_bytes  # one batch of all the rows holds the whole table
    assert peaks[500] < peaks[rows] / 10, peaks


def test_a_postgres_source_joins_exactly_like_the_same_rows_in_parquet(pg_url: str, tmp_path: Path) -> None:
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        name = _wide_table(conn, 3000)
        try:
            pg = PostgresSource(pg_url, table=name, batch_rows=700, tmp_dir=tmp_path / "tmp")
            parquet = tmp_path / "same.parquet"
            pq.write_table(pg.read(), parquet)
            fields = [Field("rate", "float64"), Field("small", "int32"), Field("city", "string")]
            driver = Entity("driver", join_keys="driver_id", value_types="int64")
            views = [
                FeatureView("s", [driver], fields, source, created_timestamp_field="created")
                for source in (pg, FileSource(parquet))
            ]
            entity_df = pd.DataFrame(
                {"driver_id": [1, 11, 13, 2999, 3000, 5], "event_timestamp": [T0 + HOUR] * 5 + [T0]}
            )
            log = PushLog(tmp_path / "push")
            from_pg, from_file = (get_historical_features(entity_df, [v], push_log=log) for v in views)
        finally:
            conn.execute(f"DROP TABLE {name}")
    assert from_pg.equals(from_file)
    assert from_pg["rate"].to_pylist()[:2] == [1 / 7.0, 11 / 7.0]
    assert from_pg["city"].to_pylist()[1:3] == [None, ""] and from_pg["rate"].to_pylist()[5] is None
    assert list((tmp_path / "tmp").iterdir()) == []  # the export is removed once the join is done


def test_the_export_lives_as_long_as_its_duckdb_connection_and_goes_on_error(
    pg_url: str, table: str, tmp_path: Path
) -> None:
    con = duckdb.connect()
    relation = PostgresSource(pg_url, table=table).relation(con)
    [export] = (tmp_path / "home" / "tmp").iterdir()  # the default place: $LOOPML_HOME/tmp
    assert relation.count("*").fetchall() == [(4,)]
    del relation
    con.close()
    del con
    gc.collect()
    assert not export.exists()
    failing = PostgresSource(
        pg_url, query=f"SELECT driver_id, 1 / (driver_id - 2) AS x FROM {table}", batch_rows=1
    )
    with pytest.raises(InvalidInput, match="division by zero; fix the query"):
        failing.relation(duckdb.connect())
    with pytest.raises(InvalidInput, match=r"table 'missing_table'.*does not exist; fix the table"):
        PostgresSource(pg_url, table="missing_table").read()
    assert list((tmp_path / "home" / "tmp").iterdir()) == []
