"""A retrieval registered as a dataset version records its feature definitions; lineage reaches them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import loopml
import loopml.data
import loopml.models
import loopml.registry as registry
from loopml import sdk
from loopml.cli import app
from loopml.config import Settings
from loopml.features.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from loopml.features.offline import get_historical_features
from loopml.features.push_log import PushLog
from loopml.features.registry import FeatureRegistry
from loopml.features.training import FEATURES_TAG, dataset_features, register_training_set

T0 = pd.Timestamp("2024-03-01", tz="UTC")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    sdk.set_tracking_uri(None)
    yield tmp_path
    registry.reset()
    sdk.reset()


def _view(tmp_path: Path, trips_type: str = "int64") -> FeatureView:
    frame = pd.DataFrame(
        {
            "driver_id": list(range(20)),
            "event_timestamp": [T0] * 20,
            "rate": [i / 20 for i in range(20)],
            "trips": list(range(20)),
        }
    )
    frame.to_parquet(tmp_path / "stats.parquet")
    driver = Entity("driver", join_keys="driver_id")
    fields = [Field("rate", "float64"), Field("trips", trips_type)]
    return FeatureView(
        "stats", [driver], fields, FileSource(tmp_path / "stats.parquet"), ttl=timedelta(days=1)
    )


def test_a_training_set_records_the_definitions_and_versions_it_came_from(home: Path) -> None:
    features = FeatureRegistry.from_settings(Settings.load())
    view = _view(home)
    features.apply([FeatureService("churn", [view])])
    features.apply([FeatureService("churn", ["stats:rate", "stats:trips"], description="v2")])
    service = features.resolve_service("churn")
    entity_df = pd.DataFrame(
        {"driver_id": list(range(20)), "event_timestamp": [T0 + pd.Timedelta(hours=1)] * 20}
    )
    table = get_historical_features(entity_df, service=service, push_log=PushLog(home / "push"))
    labelled = table.append_column("label", pa.array([i % 2 for i in range(20)]))
    dv = register_training_set(labelled, "churn_train", service=service, registry=features)
    assert dataset_features(dv.tags) == [
        "feature_service churn v2",
        "feature_view stats v1",
        "stats:rate",
        "stats:trips",
    ]
    assert "feature_service churn v2" in dv.description
    # A view that differs from every registered version says so instead of naming a version.
    other = _view(home, trips_type="float64")
    again = register_training_set(table, "adhoc", features=["stats:trips"], views=[other], registry=features)
    assert json.loads(again.tags[FEATURES_TAG])[0].startswith(
        "feature_view stats (not registered, spec sha256"
    )
    features.close()

    # A model trained on the dataset reaches the feature views through lineage.
    with loopml.start_run(capture_env=False):
        loopml.data.log_input(loopml.data.get("churn_train"), context="training")
        frame = labelled.to_pandas()
        model = LogisticRegression().fit(frame[["rate", "trips"]], frame["label"])
        info = loopml.models.log_model(model, input_example=frame[["rate", "trips"]].head(3))
    registry.register("churn_model", info.model_uri)
    assert registry.lineage("churn_model", 1).features[:2] == [
        "feature_service churn v2",
        "feature_view stats v1",
    ]
    shown = CliRunner().invoke(app, ["data", "show", "churn_train", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "feature_view stats v1" in shown.stdout
