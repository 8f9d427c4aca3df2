"""The local feature store service: entity-row checks, pushed JSON columns, the model's record of
its feature service, definitions picked up after an apply, and building a model input from keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.features.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from loopml.features.service import (
    LocalFeatureStoreService,
    ServiceColumns,
    as_rows,
    check_entity_rows,
    rows_to_table,
    service_record,
)
from loopml.models.signature import Column, Schema, Signature
from loopml.serving.entity_keys import EntityKeyInput

NOW = pd.Timestamp("2024-05-10 12:00", tz="UTC")
DRIVER = Entity("driver", join_keys="driver_id")


def _view(source: Path) -> FeatureView:
    return FeatureView(
        "stats",
        entities=[DRIVER],
        fields=[Field("rate", "float64"), Field("trips", "int64"), Field("blob", "bytes")],
        source=FileSource(source),
        ttl=timedelta(days=1),
    )


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[LocalFeatureStoreService]:
    source = tmp_path / "stats.parquet"
    pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": [NOW - pd.Timedelta(hours=1), NOW - pd.Timedelta(days=3)],
            "rate": [0.5, 0.7],
            "trips": [4, 9],
            "blob": [b"\x00a", b"b"],
        }
    ).to_parquet(source)
    settings = Settings.load(env={"LOOPML_HOME": str(tmp_path / "home")})
    svc = LocalFeatureStoreService.from_settings(settings)
    svc.cache_s = 0.0
    view = _view(source)
    svc.registry.apply([DRIVER, view, FeatureService("svc", features=["stats:rate", "stats:trips"])])
    svc.materialize(NOW)
    yield svc
    svc.close()


def test_entity_rows_as_rows_or_columns() -> None:
    assert as_rows({"driver_id": [1, 2], "x": ["a", "b"]}) == [
        {"driver_id": 1, "x": "a"},
        {"driver_id": 2, "x": "b"},
    ]
    assert as_rows([{"driver_id": 1}]) == [{"driver_id": 1}]
    with pytest.raises(InvalidInput, match="entity column 'driver_id' is not a list"):
        as_rows({"driver_id": 5})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput, match="different lengths"):
        as_rows({"driver_id": [1, 2], "x": ["a"]})
    with pytest.raises(InvalidInput, match="entity row 0 is a int"):
        as_rows([1])  # type: ignore[list-item]


def test_entity_row_types_checked_by_the_entity(tmp_path: Path) -> None:
    view = _view(tmp_path / "none.parquet")
    check_entity_rows([{"driver_id": np.int64(3)}, {"driver_id": None}], [view])  # numpy ints and nulls pass
    with pytest.raises(InvalidInput, match=r"'driver_id' holds a bool.*expects int64"):
        check_entity_rows([{"driver_id": True}], [view])
    with pytest.raises(InvalidInput, match="entity row 1 has no join key 'driver_id'"):
        check_entity_rows([{"driver_id": 1}, {}], [view])


def test_pushed_json_columns_typed_like_the_view(tmp_path: Path) -> None:
    view = _view(tmp_path / "none.parquet")
    table = rows_to_table(
        view,
        {
            "driver_id": [1, 2],
            "event_timestamp": ["2024-05-10T14:00:00+02:00", "2024-05-10T12:00:00.123456789"],
            "rate": [1, 0.5],
            "blob": [base64.b64encode(b"\xff").decode(), None],
        },
    )
    stamps = table.column("event_timestamp").to_pylist()
    assert stamps[0] == NOW.to_pydatetime() and stamps[1].microsecond == 123456
    assert table.column("rate").to_pylist() == [1.0, 0.5] and table.column("blob").to_pylist() == [
        b"\xff",
        None,
    ]
    with pytest.raises(InvalidInput, match="'trips' does not hold int64") as bad:
        rows_to_table(view, {"trips": [1.5]})
    assert bad.value.details["field"] == "trips"
    with pytest.raises(InvalidInput, match="'event_timestamp' does not hold timestamp"):
        rows_to_table(view, {"event_timestamp": ["yesterday"]})


def _columns_signature(*names: str) -> dict[str, object]:
    return Signature(Schema("columns", tuple(Column(n, "float64") for n in names))).to_dict()


def test_service_record_accepts_feature_request_and_key_columns_only() -> None:
    cols = ServiceColumns(
        "svc",
        3,
        join_keys={"driver_id": "int64"},
        request_fields={"amount": "float64"},
        outputs={"rate": "float64"},
        refs=("stats:rate",),
        full_outputs={"stats__rate": "float64"},
    )
    record = service_record(cols, _columns_signature("rate", "amount"))
    assert (record["name"], record["version"], record["full_feature_names"]) == ("svc", 3, False)
    assert service_record(cols, _columns_signature("stats__rate"))["outputs"] == {"stats__rate": "float64"}
    with pytest.raises(InvalidInput, match=r"\['speed'\] are neither features of service 'svc'"):
        service_record(cols, _columns_signature("rate", "speed"))
    tensor = Signature(Schema("tensor", dtype="float64", shape=(-1, 2))).to_dict()
    with pytest.raises(InvalidInput, match="signature of named columns"):
        service_record(cols, tensor)


def test_online_read_sees_a_new_version_of_the_service(fs: LocalFeatureStoreService) -> None:
    first = fs.get_online_features({"driver_id": [1, 2, 3]}, service="svc", now=NOW)
    assert list(first.values) == ["driver_id", "rate", "trips"]
    assert first.statuses["rate"] == ["present", "outside_ttl", "missing"]
    fs.registry.apply([FeatureService("svc", features=["stats:blob"])])
    second = fs.get_online_features({"driver_id": [1]}, service="svc", now=NOW)
    assert second.values == {"driver_id": [1], "blob": [b"\x00a"]}
    pinned = fs.get_online_features({"driver_id": [1]}, service="svc", service_version=1, now=NOW)
    assert list(pinned.values) == ["driver_id", "rate", "trips"]
    with pytest.raises(NotFound, match="has no version 5; latest is 2"):
        fs.get_online_features({"driver_id": [1]}, service="svc", service_version=5, now=NOW)


def test_unregistered_definitions_can_be_given(tmp_path: Path, fs: LocalFeatureStoreService) -> None:
    extra = FeatureService("adhoc", features=["stats:trips"])
    given = LocalFeatureStoreService(fs.registry, fs.store, definitions=[extra])
    assert given.get_online_features([{"driver_id": 1}], service="adhoc", now=NOW).values["trips"] == [4]
    with pytest.raises(NotFound, match="known: svc"):
        fs.get_online_features([{"driver_id": 1}], service="adhoc", now=NOW)


class _Fixed(LocalFeatureStoreService):
    """Reads as of NOW, as a served model would at that time."""

    def get_online_features(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        return super().get_online_features(*args, now=NOW, **kwargs)  # type: ignore[arg-type]


def _keyed(fs: LocalFeatureStoreService, trips_dtype: str) -> EntityKeyInput:
    columns = (Column("trips", trips_dtype), Column("rate", "float64"))
    signature = Signature(Schema("columns", columns))
    record = service_record(fs.describe_service("svc"), signature.to_dict())
    store = _Fixed(fs.registry, fs.store)
    return EntityKeyInput(record, signature, store)


def test_model_input_from_entity_keys_in_signature_order(fs: LocalFeatureStoreService) -> None:
    keyed = _keyed(fs, "float64")
    assert [c.name for c in keyed.signature.inputs.columns] == ["driver_id"]
    frame = keyed.model_input(pd.DataFrame({"driver_id": [1, 2]}))
    assert list(frame.columns) == ["trips", "rate"]  # the signature's order, not the service's
    assert frame["trips"].tolist()[0] == 4.0 and np.isnan(frame["trips"][1])  # float: the model gets NaN
    assert frame["rate"].tolist()[0] == 0.5


def test_missing_entity_refused_when_the_signature_cannot_hold_null(fs: LocalFeatureStoreService) -> None:
    keyed = _keyed(fs, "int64")
    assert keyed.model_input(pd.DataFrame({"driver_id": [1]}))["trips"].dtype == np.int64
    with pytest.raises(NotFound, match=r"\{'driver_id': 2\}: trips outside_ttl") as missing:
        keyed.model_input(pd.DataFrame({"driver_id": [1, 2, 3]}))
    assert missing.value.details["entities"] == [{"driver_id": 2}, {"driver_id": 3}]


def test_a_read_runs_inline_only_with_fresh_cached_stored_views_and_an_idle_store(
    fs: LocalFeatureStoreService,
) -> None:
    fs.cache_s = 60.0
    refs = ["stats:rate"]
    assert not fs.reads_inline(refs, None)  # nothing cached yet: the first read queries the registry
    first = fs.get_online_features({"driver_id": [1]}, refs, now=NOW)
    assert fs.reads_inline(refs, None)
    assert not fs.reads_inline(["other:rate"], None)
    assert not fs.reads_inline("stats:rate", None)
    assert not fs.reads_inline(None, "svc")
    fs.get_online_features({"driver_id": [1]}, service="svc", now=NOW)
    assert fs.reads_inline(None, "svc")
    with fs.store._lock:  # type: ignore[attr-defined]  # a write in progress
        assert not fs.reads_inline(refs, None)
    fs.cache_s = 0.0  # the registry must be checked for new definitions first
    assert not fs.reads_inline(refs, None)
    assert fs.get_online_features({"driver_id": [1]}, refs, now=NOW).values == first.values
