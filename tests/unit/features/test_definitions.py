"""Feature definitions: validated at construction, described by a stable spec."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

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
    SqlSource,
)

DRIVER = Entity("driver", join_keys="driver_id")


def _view(source: object, **kwargs: object) -> FeatureView:
    return FeatureView(
        "stats",
        entities=[DRIVER],
        fields=[Field("rate", "float64"), Field("trips", "int64")],
        source=source,  # type: ignore[arg-type]
        ttl=timedelta(days=2),
        **kwargs,  # type: ignore[arg-type]
    )


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "rate": [0.5, 0.7],
            "trips": [3, 4],
        }
    )


def test_an_entity_defaults_its_join_key_to_its_name_and_checks_types() -> None:
    assert Entity("driver").join_keys == ("driver",)
    with pytest.raises(InvalidInput, match="known types"):
        Entity("driver", value_types="decimal")
    with pytest.raises(InvalidInput, match="one value type per join key"):
        Entity("trip", join_keys=["a", "b", "c"], value_types=["int64", "string"])


def test_a_field_with_an_unknown_type_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="float64") as info:
        Field("rate", "double")
    assert info.value.details["field"] == "dtype"


def test_a_feature_view_refuses_a_field_that_shadows_a_join_key_or_bad_ttl() -> None:
    with pytest.raises(InvalidInput, match="driver_id"):
        FeatureView("v", [DRIVER], [Field("driver_id", "int64")], DataFrameSource(_frame()))
    with pytest.raises(InvalidInput, match="ttl"):
        _view(DataFrameSource(_frame())).__class__(
            "v", [DRIVER], [Field("rate", "float64")], DataFrameSource(_frame()), ttl=timedelta(0)
        )


def test_an_unknown_feature_names_the_known_ones() -> None:
    view = _view(DataFrameSource(_frame()))
    with pytest.raises(NotFound, match="rate, trips"):
        view.field("speed")


def test_sources_report_their_schema_without_loading_rows(tmp_path: Path) -> None:
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    pq.write_table(table, tmp_path / "part-0.parquet")
    _frame().to_csv(tmp_path / "stats.csv", index=False)
    assert FileSource(tmp_path / "part-0.parquet").arrow_schema().field("rate").type == pa.float64()
    assert FileSource(tmp_path).arrow_schema().names == table.schema.names
    assert FileSource(tmp_path / "stats.csv").arrow_schema().field("trips").type == pa.int64()
    query = f"SELECT * FROM read_parquet('{tmp_path / 'part-0.parquet'}')"
    assert SqlSource(query).arrow_schema().names == table.schema.names
    assert DataFrameSource(_frame()).arrow_schema().names == table.schema.names


def test_a_missing_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        FileSource(tmp_path / "nope.parquet").arrow_schema()


def test_a_service_expands_views_into_ordered_unique_refs() -> None:
    view = _view(DataFrameSource(_frame()))
    service = FeatureService("churn", features=["stats:trips", view])
    assert service.refs == ("stats:trips", "stats:rate")
    with pytest.raises(InvalidInput, match="view:feature"):
        FeatureService("bad", features=["rate"])


def test_an_on_demand_view_runs_its_transform_and_checks_the_output() -> None:
    request = RequestSource("req", [Field("amount", "float64")])
    view = _view(DataFrameSource(_frame()))

    def ratio(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"per_trip": df["amount"] / df["trips"]})

    odfv = OnDemandFeatureView("ratio", [view, request], [Field("per_trip", "float64")], ratio)
    out = odfv.transform(pd.DataFrame({"amount": [6.0], "trips": [3]}))
    assert out["per_trip"].tolist() == [2.0]
    assert "def ratio" in odfv.spec()["udf"]
    broken = OnDemandFeatureView("broken", [request], [Field("x", "float64")], lambda df: df)
    with pytest.raises(InvalidInput, match="must return"):
        broken.transform(pd.DataFrame({"amount": [1.0]}))
