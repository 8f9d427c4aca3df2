"""Point-in-time retrieval checked against a brute-force pandas reference on generated data."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.errors import InvalidInput, NotFound
from loopml.features.definitions import (
    DataFrameSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
)
from loopml.features.offline import get_historical_features

T0 = pd.Timestamp("2024-03-01", tz="UTC")
DRIVER = Entity("driver", join_keys=["driver_id"])
CITY = Entity("city", join_keys=["city"])


def _driver_rows(rng: np.random.Generator, n: int = 400, keys: int = 15) -> pd.DataFrame:
    """Event times on an hourly grid (many ties per key), created times unique so ties resolve."""
    return pd.DataFrame(
        {
            "driver_id": rng.integers(0, keys, n),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 72, n), unit="h"),
            # a late-arriving row is one whose created time is far after its event time
            "created": T0 + pd.to_timedelta(rng.permutation(n) * 7, unit="min"),
            "rate": rng.normal(size=n),
            "trips": rng.integers(0, 100, n),
        }
    )


def _entities(rng: np.random.Generator, n: int = 300, keys: int = 18) -> pd.DataFrame:
    """Keys beyond the source's range are missing entities; some rows repeat exactly."""
    df = pd.DataFrame(
        {
            "driver_id": rng.integers(0, keys, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(-5, 80, n), unit="h"),
        }
    )
    return pd.concat([df, df.iloc[:40]], ignore_index=True)


def _reference(
    entities: pd.DataFrame,
    rows: pd.DataFrame,
    key: str,
    features: list[str],
    ttl: timedelta | None,
    created: str | None,
) -> pd.DataFrame:
    out: dict[str, list[object]] = {f: [] for f in features}
    for k, t in zip(entities[key], entities["event_timestamp"], strict=True):
        ok = (rows[key] == k) & (rows["event_timestamp"] <= t)
        if ttl is not None:
            ok &= rows["event_timestamp"] >= t - ttl
        hits = rows[ok].sort_values(["event_timestamp", *([created] if created else [])])
        for f in features:
            out[f].append(None if hits.empty else hits[f].iloc[-1])
    return pd.DataFrame(out)


def _stats(rows: pd.DataFrame, ttl: timedelta | None = timedelta(hours=6)) -> FeatureView:
    return FeatureView(
        "driver_stats",
        entities=[DRIVER],
        fields=[Field("rate", "float64"), Field("trips", "int64")],
        source=DataFrameSource(rows),
        created_timestamp_field="created",
        ttl=ttl,
    )


def _city_view(rng: np.random.Generator) -> tuple[FeatureView, pd.DataFrame]:
    n = 60
    rows = pd.DataFrame(
        {
            "city": rng.choice(["paris", "lyon"], n),
            "event_timestamp": T0 + pd.to_timedelta(rng.permutation(n) * 67, unit="min"),
            "demand": rng.normal(size=n),
        }
    )
    view = FeatureView(
        "city_stats",
        entities=[CITY],
        fields=[Field("demand", "float64")],
        source=DataFrameSource(rows),
    )
    return view, rows


def _assert_equal(got: pa.Table, want: pd.DataFrame, columns: dict[str, str]) -> None:
    for out, ref in columns.items():
        assert got.column(out).to_pylist() == [None if v is None or pd.isna(v) else v for v in want[ref]], out


def test_matches_brute_force_across_views_ties_ttl_and_missing_entities() -> None:
    rng = np.random.default_rng(7)
    rows = _driver_rows(rng)
    city, city_rows = _city_view(rng)
    entities = _entities(rng)
    got = get_historical_features(
        entities,
        ["driver_stats:rate", "driver_stats:trips", "city_stats:demand"],
        views=[_stats(rows), city],
        full_feature_names=True,
    )
    want = _reference(entities, rows, "driver_id", ["rate", "trips"], timedelta(hours=6), "created")
    _assert_equal(got, want, {"driver_stats__rate": "rate", "driver_stats__trips": "trips"})
    want_city = _reference(entities, city_rows, "city", ["demand"], None, None)
    _assert_equal(got, want_city, {"city_stats__demand": "demand"})
    # the reference must exercise every case, or the comparison proves little
    assert want["rate"].isna().any() and want["rate"].notna().any()
    assert got.num_rows == len(entities)


def test_entity_rows_are_kept_unchanged_in_input_order() -> None:
    rng = np.random.default_rng(1)
    entities = _entities(rng)
    got = get_historical_features(entities, service=FeatureService("s", [_stats(_driver_rows(rng))]))
    assert got.column_names == ["driver_id", "city", "event_timestamp", "rate", "trips"]
    assert got.select(["driver_id", "city", "event_timestamp"]).to_pandas().equals(entities)


def test_ttl_window_is_inclusive_at_both_ends() -> None:
    rows = pd.DataFrame(
        {
            "driver_id": [1],
            "event_timestamp": [T0],
            "created": [T0],
            "rate": [0.5],
            "trips": [3],
        }
    )
    entities = pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 1],
            "event_timestamp": [
                T0 - timedelta(microseconds=1),
                T0,
                T0 + timedelta(hours=6),
                T0 + timedelta(hours=6, microseconds=1),
            ],
        }
    )
    got = get_historical_features(entities, ["driver_stats:rate"], views=[_stats(rows)])
    assert got.column("rate").to_pylist() == [None, 0.5, 0.5, None]


def test_timestamps_of_any_precision_and_zone_compare_as_utc(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "driver_id": [1, 1],
            # naive microseconds in a Parquet file are read as UTC
            "event_timestamp": pd.to_datetime(["2024-03-01 10:00", "2024-03-01 12:00"]).as_unit("us"),
            "created": pd.to_datetime(["2024-03-01 10:00", "2024-03-01 12:00"]).as_unit("us"),
            "rate": [1.0, 2.0],
            "trips": [1, 2],
        }
    )
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / "stats.parquet")
    view = FeatureView(
        "driver_stats",
        entities=[DRIVER],
        fields=[Field("rate", "float64"), Field("trips", "int64")],
        source=FileSource(tmp_path / "stats.parquet"),
        created_timestamp_field="created",
    )
    # 12:30 in Paris is 11:30 UTC: only the 10:00 row had happened; pandas' default ns unit
    when = pd.to_datetime(["2024-03-01 12:30", "2024-03-01 13:30"]).as_unit("ns")
    entities = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": when.tz_localize("Europe/Paris")})
    got = get_historical_features(entities, ["driver_stats:rate"], views=[view])
    assert got.column("rate").to_pylist() == [1.0, 2.0]


def test_entity_df_without_the_timestamp_column_is_refused_naming_it() -> None:
    entities = pd.DataFrame({"driver_id": [1]})
    with pytest.raises(InvalidInput, match="event_timestamp") as info:
        get_historical_features(
            entities, ["driver_stats:rate"], views=[_stats(_driver_rows(np.random.default_rng(0)))]
        )
    assert info.value.details["field"] == "event_timestamp"


def test_wrong_types_are_refused_naming_the_column() -> None:
    view = _stats(_driver_rows(np.random.default_rng(0)))
    text_time = pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-03-01"]})
    with pytest.raises(InvalidInput) as info:
        get_historical_features(text_time, ["driver_stats:rate"], views=[view])
    assert info.value.details["field"] == "event_timestamp"
    text_key = pd.DataFrame({"driver_id": ["1"], "event_timestamp": [T0]})
    with pytest.raises(InvalidInput, match="driver_id") as info:
        get_historical_features(text_key, ["driver_stats:rate"], views=[view])
    assert info.value.details["field"] == "driver_id"
    no_key = pd.DataFrame({"event_timestamp": [T0]})
    with pytest.raises(InvalidInput, match="driver_id"):
        get_historical_features(no_key, ["driver_stats:rate"], views=[view])


def test_unknown_view_or_feature_is_not_found_naming_the_known_ones() -> None:
    view = _stats(_driver_rows(np.random.default_rng(0)))
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0]})
    with pytest.raises(NotFound, match="driver_stats"):
        get_historical_features(entities, ["nope:rate"], views=[view])
    with pytest.raises(NotFound, match="rate, trips"):
        get_historical_features(entities, ["driver_stats:speed"], views=[view])


def test_same_feature_name_in_two_views_needs_full_names() -> None:
    rows = _driver_rows(np.random.default_rng(0))
    other = FeatureView(
        "driver_other",
        entities=[DRIVER],
        fields=[Field("rate", "float64")],
        source=DataFrameSource(rows),
    )
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [T0 + timedelta(days=2)]})
    with pytest.raises(InvalidInput, match="full_feature_names"):
        get_historical_features(
            entities, ["driver_stats:rate", "driver_other:rate"], views=[_stats(rows), other]
        )
    got = get_historical_features(
        entities,
        ["driver_stats:rate", "driver_other:rate"],
        views=[_stats(rows), other],
        full_feature_names=True,
    )
    assert got.column_names[-2:] == ["driver_stats__rate", "driver_other__rate"]


def test_on_demand_view_runs_its_transform_on_request_data_and_point_in_time_features() -> None:
    rng = np.random.default_rng(3)
    rows = _driver_rows(rng)
    stats = _stats(rows)
    request = RequestSource("req", [Field("bonus", "float64")])
    boosted = OnDemandFeatureView(
        "boosted",
        sources=[stats, request],
        schema=[Field("boosted_rate", "float64")],
        udf=lambda df: pd.DataFrame({"boosted_rate": df["rate"] + df["bonus"]}),
    )
    entities = _entities(rng).assign(bonus=lambda df: np.arange(len(df), dtype=float))
    got = get_historical_features(
        entities, ["driver_stats:rate", "boosted:boosted_rate"], views=[stats, boosted]
    )
    want = _reference(entities, rows, "driver_id", ["rate"], timedelta(hours=6), "created")
    expected = [None if pd.isna(r) else r + b for r, b in zip(want["rate"], entities["bonus"], strict=True)]
    assert [None if pd.isna(v) else v for v in got.column("boosted_rate").to_pylist()] == expected
    no_bonus = entities.drop(columns=["bonus"])
    with pytest.raises(InvalidInput, match="bonus"):
        get_historical_features(no_bonus, ["boosted:boosted_rate"], views=[boosted])
