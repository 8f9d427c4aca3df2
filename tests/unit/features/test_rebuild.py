"""Definitions rebuilt from the registry: retrieval by service name without the user's defs.py."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.features.definitions import (
    DataFrameSource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    RequestSource,
)
from loopml.features.materialize import get_online_features, materialize
from loopml.features.offline import get_historical_features
from loopml.features.online_sqlite import SqliteOnlineStore
from loopml.features.registry import FeatureRegistry, canonical, kind_of, load_definitions
from loopml.store.db import Database

T0 = pd.Timestamp("2024-03-01", tz="UTC")

DEFS = """
from datetime import timedelta
import pandas as pd
from loopml.features.definitions import (
    Entity, FeatureService, FeatureView, Field, FileSource, OnDemandFeatureView, RequestSource,
)

driver = Entity("driver", join_keys="driver_id")
stats = FeatureView(
    "stats", entities=[driver], fields=[Field("rate", "float64"), Field("trips", "int64")],
    source=FileSource({path!r}), ttl=timedelta(days=2),
)
request = RequestSource("req", [Field("factor", "float64")])


def scaled(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"rate_x": df["rate"] * df["factor"]}})


scaled_rate = OnDemandFeatureView("scaled", [stats, request], [Field("rate_x", "float64")], scaled)
churn = FeatureService("churn", [stats, "scaled:rate_x"])

if __name__ == "__main__":
    raise SystemExit("the main block must not run when loopml rebuilds the transform")
"""


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "event_timestamp": [T0, T0 + pd.Timedelta(hours=5), T0 + pd.Timedelta(hours=1)],
            "rate": [0.5, 0.7, 0.2],
            "trips": [3, 4, 9],
        }
    )


@pytest.fixture
def registry(tmp_path: Path) -> FeatureRegistry:
    return FeatureRegistry(Database(f"sqlite:///{tmp_path / 'meta.db'}"), user="ana")


def _defs_file(tmp_path: Path) -> Path:
    data = tmp_path / "stats.parquet"
    _rows().to_parquet(data)
    path = tmp_path / "defs.py"
    path.write_text(DEFS.format(path=str(data)))
    return path


def _entities() -> pd.DataFrame:
    stamps = [T0 + pd.Timedelta(hours=6), T0 + pd.Timedelta(hours=2), T0 - pd.Timedelta(hours=1)]
    return pd.DataFrame({"driver_id": [1, 2, 1], "event_timestamp": stamps, "factor": [2.0, 3.0, 1.0]})


def test_a_service_rebuilt_from_the_registry_retrieves_what_the_definitions_do(
    registry: FeatureRegistry, tmp_path: Path
) -> None:
    defined = load_definitions(_defs_file(tmp_path))
    registry.apply(defined)
    original = next(d for d in defined if isinstance(d, FeatureService))

    service = registry.resolve_service("churn")
    assert service.refs == original.refs
    assert {v.name for v in service.views} == {"stats", "scaled"}
    expected = get_historical_features(_entities(), service=original, views=service.views)
    assert get_historical_features(_entities(), service=service).equals(expected)
    assert expected["rate_x"].to_pylist() == [1.4, 0.6000000000000001, None]
    # Every rebuilt object has the spec that was stored, so re-applying it changes nothing.
    for definition in registry.definitions():
        assert canonical(definition.spec()) == canonical(
            registry.get(kind_of(definition), definition.name).spec
        )
    assert [c.action for c in registry.apply(registry.definitions()).changes] == ["unchanged"] * 4


def test_feature_refs_resolve_to_registered_views(registry: FeatureRegistry, tmp_path: Path) -> None:
    registry.apply(load_definitions(_defs_file(tmp_path)))
    views = registry.resolve_views(["stats:rate", "scaled:rate_x"])
    assert [type(v) for v in views] == [FeatureView, OnDemandFeatureView]
    table = get_historical_features(_entities(), ["stats:rate"], views=views)
    assert table["rate"].to_pylist() == [0.7, 0.2, None]
    with pytest.raises(NotFound, match="'speed'"):
        registry.resolve_views(["speed:x"])
    with pytest.raises(NotFound, match="'nope'"):
        registry.resolve_service("nope")


def test_a_changed_or_missing_transform_is_refused_naming_the_view_and_the_fix(
    registry: FeatureRegistry, tmp_path: Path
) -> None:
    path = _defs_file(tmp_path)
    registry.apply(load_definitions(path))
    path.write_text(path.read_text().replace('df["rate"] * df["factor"]', 'df["rate"] + df["factor"]'))
    os.utime(path, (1, 1))  # a new modification time, whatever the file system's resolution
    with pytest.raises(Conflict, match=r"'scaled'.*changed since it was applied.*re-apply"):
        registry.resolve_service("churn")
    registry.apply(load_definitions(path))  # re-applying registers the new transform
    rebuilt = registry.resolve_service("churn")
    assert get_historical_features(_entities(), service=rebuilt)["rate_x"].to_pylist()[0] == 2.7
    path.unlink()
    with pytest.raises(InvalidInput, match=r"'scaled'.*cannot be imported.*re-apply"):
        registry.definition("on_demand_feature_view", "scaled")
    # Data-only definitions do not need the file.
    assert registry.definition("feature_view", "stats").ttl == pd.Timedelta(days=2)


def test_a_transform_in_an_importable_module_is_imported_by_name(
    registry: FeatureRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "my_transforms.py"
    package.write_text(
        textwrap.dedent(
            """
            import pandas as pd

            def doubled(df: pd.DataFrame) -> pd.DataFrame:
                return pd.DataFrame({"x2": df["x"] * 2})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_transforms  # type: ignore[import-not-found]

    request = RequestSource("req", [Field("x", "float64")])
    odfv = OnDemandFeatureView("doubled", [request], [Field("x2", "float64")], my_transforms.doubled)
    assert odfv.spec()["udf_ref"] == "my_transforms:doubled"
    registry.apply([odfv])
    rebuilt = registry.definition("on_demand_feature_view", "doubled")
    assert isinstance(rebuilt, OnDemandFeatureView)
    assert rebuilt.transform(pd.DataFrame({"x": [1.5]}))["x2"].tolist() == [3.0]


def test_a_lambda_transform_cannot_be_rebuilt_and_says_how_to_fix_it(registry: FeatureRegistry) -> None:
    request = RequestSource("req", [Field("x", "float64")])
    odfv = OnDemandFeatureView("lam", [request], [Field("y", "float64")], lambda df: df.rename({"x": "y"}))
    registry.apply([odfv])
    with pytest.raises(InvalidInput, match=r"'lam'.*module-level function and re-apply"):
        registry.definitions()


def test_a_dataframe_view_rebuilt_serves_online_but_refuses_offline(
    registry: FeatureRegistry, tmp_path: Path
) -> None:
    driver = Entity("driver", join_keys="driver_id")
    fields = [Field("rate", "float64"), Field("trips", "int64")]
    view = FeatureView("stats", [driver], fields, DataFrameSource(_rows()), ttl=pd.Timedelta(days=2))
    registry.apply([FeatureService("churn", [view])])
    store = SqliteOnlineStore(tmp_path / "online.db")
    try:
        materialize(view, store, None, T0 + pd.Timedelta(days=1))
        service = registry.resolve_service("churn")
        now = T0 + pd.Timedelta(days=1)
        online = get_online_features(
            [{"driver_id": 1}, {"driver_id": 3}], service=service, store=store, now=now
        )
        assert online.values["rate"] == [0.7, None]
        assert online.statuses["rate"] == ["present", "missing"]
    finally:
        store.close()
    with pytest.raises(InvalidInput, match=r"'stats'.*in-memory DataFrame"):
        get_historical_features(_entities(), service=service)


def test_an_older_version_is_rebuilt_with_the_definitions_of_its_time(registry: FeatureRegistry) -> None:
    driver = Entity("driver", join_keys="driver_id")
    source = DataFrameSource(pa.Table.from_pandas(_rows(), preserve_index=False))
    v1 = FeatureView("stats", [driver], [Field("rate", "float64")], source)
    registry.apply([FeatureService("churn", ["stats:rate"]), v1])
    time.sleep(0.01)  # versions are stamped in milliseconds
    v2 = FeatureView("stats", [driver], [Field("rate", "float64"), Field("trips", "int64")], source)
    registry.apply([v2, FeatureService("churn", ["stats:rate", "stats:trips"])])
    old = registry.resolve_service("churn", version=1)
    assert old.refs == ("stats:rate",)
    assert [v.feature_names for v in old.views] == [("rate",)]
    assert [v.feature_names for v in registry.resolve_service("churn").views] == [("rate", "trips")]
