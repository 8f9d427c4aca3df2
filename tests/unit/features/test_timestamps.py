"""Timestamps of any precision and zone (pandas' nanoseconds included) mean the same instant on
every path: the batch source, the entity dataframe, pushes, materialization and online reads."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.features.definitions import Entity, FeatureView, Field, FileSource
from loopml.features.materialize import get_online_features, materialize, materialize_incremental, push
from loopml.features.offline import get_historical_features
from loopml.features.online_sqlite import SqliteOnlineStore
from loopml.features.push_log import PushLog

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def _stamps(values: list[pd.Timestamp], unit: str, zone: str | None) -> pd.Series:
    series = pd.Series(values).dt.tz_convert(zone) if zone else pd.Series(values).dt.tz_convert(None)
    return series.astype(f"datetime64[{unit}, {zone}]" if zone else f"datetime64[{unit}]")


@pytest.mark.parametrize(
    ("unit", "zone"),
    [("ns", None), ("ns", "Europe/Berlin"), ("us", "UTC"), ("ms", "Asia/Kolkata"), ("s", None)],
)
def test_every_path_agrees_on_instants_whatever_the_unit_and_zone(
    unit: str, zone: str | None, tmp_path: Path
) -> None:
    hours = [pd.Timedelta(hours=h) for h in (0, 1, 2)]
    source = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "event_timestamp": _stamps([T0 + h for h in hours], unit, zone),
            "rate": [0.1, 0.2, 0.3],
            "seen": _stamps([T0 - h for h in hours], unit, zone),
        }
    )
    source.to_parquet(tmp_path / "stats.parquet")
    driver = Entity("driver", join_keys="driver_id")
    view = FeatureView(
        "stats",
        [driver],
        [Field("rate", "float64"), Field("seen", "timestamp")],
        FileSource(tmp_path / "stats.parquet"),
        ttl=timedelta(hours=1),
    )
    log, store = PushLog(tmp_path / "push"), SqliteOnlineStore(tmp_path / "online.db")
    try:
        # Exactly at the edge of the ttl in another zone and unit: still inside.
        at = (T0 + pd.Timedelta(hours=2)).tz_convert("America/New_York")
        materialize(view, store, None, at)
        entity_df = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": _stamps([at, at], unit, zone)})
        offline = get_historical_features(entity_df, [view], push_log=log).to_pydict()
        online = get_online_features([{"driver_id": 1}, {"driver_id": 2}], [view], store=store, now=at)
        assert offline["rate"] == online.values["rate"] == [0.2, 0.3]
        assert [pd.Timestamp(v) for v in offline["seen"]] == [pd.Timestamp(v) for v in online.values["seen"]]
        # A push in yet another representation, one hour later, wins on both paths.
        later = pd.DataFrame(
            {
                "driver_id": [1],
                "event_timestamp": _stamps([T0 + pd.Timedelta(hours=3)], unit, zone),
                "rate": [0.9],
                "seen": [T0],
            }
        )
        assert push(view, later, store, push_log=log) == 1
        at3 = T0 + pd.Timedelta(hours=3)
        entity_df = pd.DataFrame({"driver_id": [1], "event_timestamp": _stamps([at3], unit, zone)})
        assert get_historical_features(entity_df, ["stats:rate"], views=[view], push_log=log)[
            "rate"
        ].to_pylist() == [0.9]
        assert get_online_features(
            [{"driver_id": 1}], ["stats:rate"], views=[view], store=store, now=at3
        ).values["rate"] == [0.9]
        assert materialize_incremental(view, store, at3.as_unit("ns"), push_log=log).rows == 1
    finally:
        store.close()
