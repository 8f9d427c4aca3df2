"""The feature registry: versions, diffs, breaking changes, and source checks at apply time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.features.definitions import (
    DataFrameSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
)
from loopml.features.registry import FeatureRegistry
from loopml.store.db import Database

DRIVER = Entity("driver", join_keys="driver_id")


def _source() -> DataFrameSource:
    frame = pd.DataFrame(
        {
            "driver_id": pd.Series([1, 2], dtype="int32"),
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "rate": [0.5, 0.7],
            "trips": [3, 4],
            "city": ["a", "b"],
        }
    )
    return DataFrameSource(frame)


def _view(*fields: Field, ttl: timedelta = timedelta(days=2)) -> FeatureView:
    fields = fields or (Field("rate", "float64"), Field("trips", "int64"))
    return FeatureView("stats", entities=[DRIVER], fields=fields, source=_source(), ttl=ttl)


@pytest.fixture
def registry(tmp_path: Path) -> FeatureRegistry:
    return FeatureRegistry(Database(f"sqlite:///{tmp_path / 'meta.db'}"), user="ana")


def test_apply_registers_held_definitions_and_keeps_unchanged_versions(registry: FeatureRegistry) -> None:
    result = registry.apply([FeatureService("churn", [_view()])])
    assert [(c.kind, c.name, c.action, c.version) for c in result.changes] == [
        ("entity", "driver", "create", 1),
        ("feature_view", "stats", "create", 1),
        ("feature_service", "churn", "create", 1),
    ]
    again = registry.apply([FeatureService("churn", [_view()])])
    assert [c.action for c in again.changes] == ["unchanged"] * 3
    assert registry.get("feature_view", "stats").created_by == "ana"


def test_a_compatible_change_is_a_new_version_with_a_diff(registry: FeatureRegistry) -> None:
    registry.apply([_view()])
    result = registry.apply(
        [_view(ttl=timedelta(days=3)), _view().__class__("x", [DRIVER], [Field("city", "string")], _source())]
    )
    change = next(c for c in result.changes if c.name == "stats")
    assert (change.action, change.version, change.previous_version) == ("update", 2, 1)
    assert change.diff == ("~ ttl_seconds: 172800.0 -> 259200.0",)
    assert [r.version for r in registry.versions("feature_view", "stats")] == [1, 2]
    assert registry.get("feature_view", "stats", 1).spec["ttl_seconds"] == 172800.0


def test_a_breaking_change_is_refused_unless_forced(registry: FeatureRegistry) -> None:
    registry.apply([_view()])
    narrowed = _view(Field("rate", "float64"))
    retyped = _view(Field("rate", "float64"), Field("trips", "float64"))
    with pytest.raises(Conflict, match="'trips' removed"):
        registry.apply([narrowed])
    with pytest.raises(Conflict, match="'trips' type changed from int64 to float64"):
        registry.apply([retyped])
    assert registry.get("feature_view", "stats").version == 1  # nothing written
    forced = registry.apply([narrowed], force=True)
    assert forced.changes[-1].breaking == ("feature 'trips' removed",)
    assert registry.get("feature_view", "stats").version == 2


def test_a_dry_run_reports_without_writing(registry: FeatureRegistry) -> None:
    result = registry.apply([_view()], dry_run=True)
    assert result.changed and registry.list_definitions() == []


def test_a_source_that_disagrees_with_the_definition_is_refused_at_apply(
    registry: FeatureRegistry, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"'speed' is missing.*'city' is \w*string, not int64") as info:
        registry.apply([_view(Field("speed", "float64"), Field("city", "int64"))])
    assert info.value.details["field"] == "source"
    frame = _source().frame
    frame.to_csv(tmp_path / "stats.csv", index=False)
    csv_view = FeatureView(
        "csv_stats", [DRIVER], [Field("rate", "float32")], FileSource(tmp_path / "stats.csv")
    )
    assert registry.apply([csv_view]).changes[-1].action == "create"
    assert registry.list_definitions() != []


def test_a_service_reference_must_resolve(registry: FeatureRegistry) -> None:
    with pytest.raises(NotFound, match="no feature view 'nope'"):
        registry.apply([FeatureService("churn", ["nope:rate"])])
    registry.apply([_view()])
    with pytest.raises(NotFound, match="features rate, trips"):
        registry.apply([FeatureService("churn", ["stats:speed"])])
    assert registry.apply([FeatureService("churn", ["stats:trips"])]).changes[0].action == "create"


def test_lookup_errors_name_what_exists(registry: FeatureRegistry) -> None:
    registry.apply([_view()])
    with pytest.raises(NotFound, match="known: stats"):
        registry.get("feature_view", "stat")
    with pytest.raises(NotFound, match="latest is 1"):
        registry.get("feature_view", "stats", 5)
    assert [(r.kind, r.name) for r in registry.list_definitions()] == [
        ("entity", "driver"),
        ("feature_view", "stats"),
    ]


def test_two_different_definitions_of_one_name_are_refused(registry: FeatureRegistry) -> None:
    with pytest.raises(InvalidInput, match="defined twice"):
        registry.apply([_view(), _view(ttl=timedelta(days=1))])
