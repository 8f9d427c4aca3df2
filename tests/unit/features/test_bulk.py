"""Bulk materialization: values of every type and keys of any text come back exactly as written."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.features.definitions import Entity, FeatureView, Field, FileSource
from loopml.features.materialize import materialize, materialize_incremental
from loopml.features.online import OnlineRow, OnlineStore, open_online_store
from tests.support.pgdb import scratch_database

T0 = pd.Timestamp("2024-05-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)
FIELDS = [
    Field("i32", "int32"),
    Field("i64", "int64"),
    Field("f32", "float32"),
    Field("f64", "float64"),
    Field("s", "string"),
    Field("b", "bool"),
    Field("raw", "bytes"),
    Field("at", "timestamp"),
]
CITIES = ["oslo", 'qu"ote', "back\\slash", "zürich", "東京", "tab\there", ""]


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    url = None if request.param == "sqlite" else request.getfixturevalue(f"{request.param}_store_url")
    backend = open_online_store(url, home=tmp_path)
    backend.delete("typed")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def postgres_store_url(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, "bulk") as url:
        yield url


@pytest.fixture
def redis_store_url(redis_url: str) -> str:
    return redis_url


def _rows(n: int = 400, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    f64 = rng.standard_normal(n) * 10.0 ** rng.integers(-200, 200, n)
    f64[:4] = [math.nan, math.inf, -math.inf, 0.1]
    f32 = pa.array(rng.standard_normal(n), pa.float32(), mask=np.arange(n) % 11 == 0)
    # Hourly event times, so many entities have several rows at their latest time: the created
    # time (distinct per row) decides those.
    event = T0.value // 1000 + rng.integers(0, 48, n) * 3_600_000_000  # epoch microseconds
    us = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "city": pa.array([CITIES[i] for i in rng.integers(0, len(CITIES), n)]),
            "zone": pa.array(rng.integers(-3, 3, n), pa.int32()),
            "event_timestamp": pa.array(event, us),
            "created": pa.array(event + rng.permutation(n), pa.timestamp("us")),
            "i32": pa.array(rng.integers(-(2**31), 2**31 - 1, n), pa.int32()),
            "i64": pa.array(rng.integers(-(2**62), 2**62, n)),
            "f32": f32,
            "f64": pa.array(f64, mask=np.arange(n) % 13 == 5),
            "s": pa.array([None if i % 7 == 0 else f'v"{i}\\ü\n' for i in range(n)]),
            "b": pa.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)]),
            "raw": pa.array([bytes([i % 256, 0, 255]) for i in range(n)]),
            "at": pa.array(event + 86_400_000_000, us),
        }
    )


def _latest(table: pa.Table, end: pd.Timestamp) -> dict[tuple[object, ...], dict[str, object]]:
    """Brute force: per (city, zone) the row with the greatest (event, created) at or before end."""
    best: dict[tuple[object, ...], dict[str, object]] = {}
    for row in table.to_pylist():
        if row["event_timestamp"] > end:
            continue
        key = (row["city"], row["zone"])
        rank = (row["event_timestamp"], row["created"])
        if key not in best or rank >= (best[key]["event_timestamp"], best[key]["created"]):
            best[key] = row
    return best


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_materialized_values_of_every_type_equal_the_source_rows(store: OnlineStore, tmp_path: Path) -> None:
    table = _rows()
    pq.write_table(table, tmp_path / "typed.parquet")
    entity = Entity("place", join_keys=["city", "zone"], value_types=["string", "int32"])
    view = FeatureView(
        "typed", [entity], FIELDS, FileSource(tmp_path / "typed.parquet"), created_timestamp_field="created"
    )
    end = T0 + 30 * HOUR
    result = materialize(view, store, None, end)
    expected = _latest(table, end)
    assert result.rows == result.written == len(expected)
    keys = list(expected)
    reads = store.read(view, keys, now_us=0)
    for key, read in zip(keys, reads, strict=True):
        row = expected[key]
        for f in FIELDS:
            want = row[f.name]
            if f.dtype == "float32" and want is not None:
                want = float(np.float32(want))
            if f.dtype == "timestamp":
                want = want.astimezone(UTC)
            assert _same(read.values[f.name], want), (key, f.name, read.values[f.name], want)
    # The keys the query encoded are the keys a lookup encodes: every city was found.
    assert {k[0] for k in keys} == set(CITIES)
    # An incremental run over the same rows stores nothing new and keeps the values.
    store.set_meta("materialized_until:typed", str(int(T0.value // 1000) - 1))
    again = materialize_incremental(view, store, end)
    assert again.rows == len(expected)
    assert store.read(view, keys[:1], now_us=0)[0].values["i64"] == expected[keys[0]]["i64"]


def test_a_bulk_write_and_a_row_write_agree_on_key_text(store: OnlineStore, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "city": CITIES,
            "zone": np.arange(len(CITIES), dtype="int32"),
            "event_timestamp": [T0] * len(CITIES),
            "i64": np.arange(len(CITIES)),
        }
    )
    frame.to_parquet(tmp_path / "k.parquet")
    entity = Entity("place", join_keys=["city", "zone"], value_types=["string", "int32"])
    view = FeatureView("typed", [entity], [Field("i64", "int64")], FileSource(tmp_path / "k.parquet"))
    older = int((T0 - HOUR).value // 1000)
    rows = [OnlineRow((c, z), {"i64": 100 + z}, older) for z, c in enumerate(CITIES)]
    assert store.write_batch(view, rows) == len(CITIES)
    # The newer materialized values replace them only if both writes name the keys identically.
    assert materialize(view, store, None, T0).written == len(CITIES)
    keys = [(c, z) for z, c in enumerate(CITIES)]
    assert [r.values["i64"] for r in store.read(view, keys, now_us=0)] == list(range(len(CITIES)))
