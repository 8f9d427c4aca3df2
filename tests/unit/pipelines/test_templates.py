"""The continuous-training template on the embedded store: the synthetic data's shift, each stage's
refusals, stage replacement, and the same template as a loopml pipeline (cached on a rerun)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopml.data
import loopml.monitoring
import loopml.registry
import loopml.serving
from loopml import sdk
from loopml.errors import InvalidInput
from loopml.pipelines import engine, step
from loopml.pipelines.templates import CTConfig, continuous_training, synthetic
from loopml.pipelines.templates.pipeline import build_pipeline, continuous_training_pipeline
from loopml.pipelines.templates.records import STATUS_TAG
from loopml.pipelines.templates.stages import train as default_train

GATE = ("roc_auc >= 0.7", "roc_auc >= champion.roc_auc - 0.01")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _reset()
    yield tmp_path / "home"
    _reset()


def _reset() -> None:
    for module in (loopml.registry, loopml.monitoring, loopml.serving, loopml.data, engine):
        module.reset()
    sdk.reset()


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return synthetic.card_transactions(8_000, seed=3)


def _config(**changes: object) -> CTConfig:
    base = CTConfig(
        "fraud", "tx", synthetic.TARGET, features=synthetic.FEATURES, time_column=synthetic.TIMESTAMP,
        gate=GATE, params={"max_iter": 25},
    )  # fmt: skip
    return CTConfig.from_dict({**base.to_dict(), **changes})


def test_synthetic_data_is_seeded_sized_and_shifts_in_features_and_labels() -> None:
    first, again = synthetic.card_transactions(3_000, seed=7), synthetic.card_transactions(3_000, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(synthetic.card_transactions(3_000, seed=8))
    assert len(synthetic.card_transactions(1_234, seed=0)) == 1_234
    before, after = synthetic.split_at_shift(synthetic.card_transactions(20_000, seed=0))
    assert after["amount"].median() > 1.3 * before["amount"].median()
    assert after["tx_last_24h"].mean() > 1.5 * before["tx_last_24h"].mean()
    # The fraud pattern turns around: large amounts were risky, now small bursts are.
    assert np.corrcoef(np.log(before["amount"]), before[synthetic.TARGET])[0, 1] > 0.2
    assert np.corrcoef(np.log(after["amount"]), after[synthetic.TARGET])[0, 1] < -0.1
    with pytest.raises(InvalidInput, match="n_rows >= 1"):
        synthetic.card_transactions(0)


def test_config_round_trips_as_json_and_refuses_unknown_fields() -> None:
    config = _config(endpoint="fraud", canary_percent=20.0)
    assert CTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InvalidInput, match="no field 'epochs'") as err:
        CTConfig.from_dict({**config.to_dict(), "epochs": 3})
    assert err.value.details["field"] == "epochs"
    with pytest.raises(InvalidInput, match="holdout_fraction"):
        _config(holdout_fraction=1.5)
    with pytest.raises(InvalidInput, match="no stage 'tune'"):
        continuous_training(config, tune=lambda *a: None)


def test_a_canary_without_live_statistics_is_refused_before_anything_runs(
    home: Path, data: pd.DataFrame
) -> None:
    config = _config(endpoint="fraud")  # the local endpoints service has no live statistics
    with pytest.raises(InvalidInput, match="serving_url") as err:
        continuous_training(config).run(synthetic.between(data, 0, 40))
    assert err.value.details["field"] == "serving_url"
    assert loopml.data.list_datasets() == []


def test_retraining_after_the_shift_beats_the_champion_and_a_broken_train_stage_is_refused(
    home: Path, data: pd.DataFrame
) -> None:
    config = _config()
    first = continuous_training(config).run(synthetic.between(data, 0, 40))
    assert first.status == "promoted" and first.version == 1
    assert first.stages == [
        "ingest",
        "validate",
        "features",
        "train",
        "evaluate",
        "gate",
        "register",
        "decide",
    ]
    assert first.validation is not None and first.validation.drift is None  # no champion yet

    recent = synthetic.between(data, 40, 60)
    second = continuous_training(config).run(recent)
    assert second.status == "promoted" and second.version == 2
    assert second.validation is not None and second.validation.reference == "tx-model-train@1"
    assert (second.validation.drift_share or 0) >= 0.3  # validated against v1's training data
    assert second.gate is not None and second.gate.champion == 1
    svc = loopml.registry.service()
    assert svc.get_registered_model("fraud").aliases["champion"] == 2
    run = loopml.get_run(second.candidate.run_id)  # type: ignore[union-attr]
    assert run.metrics["roc_auc"].value > 0.75

    def shuffled_train(frame: pd.DataFrame, cfg: CTConfig) -> object:
        frame = frame.assign(**{cfg.target: np.random.default_rng(0).permutation(frame[cfg.target])})
        return default_train(frame, cfg)

    bad = continuous_training(config, train=shuffled_train).run(recent)
    assert bad.status == "rejected" and bad.version == 3
    assert "roc_auc >= champion.roc_auc - 0.01" in bad.reason and "deploy" not in bad.stages
    assert svc.get_model_version("fraud", 3).tags[STATUS_TAG] == "rejected"
    assert svc.get_registered_model("fraud").aliases["champion"] == 2


def test_validation_refuses_data_the_champion_cannot_be_trained_like(home: Path, data: pd.DataFrame) -> None:
    config = _config()
    assert continuous_training(config).run(synthetic.between(data, 0, 40)).status == "promoted"
    broken = synthetic.between(data, 40, 60).drop(columns=["merchant_risk"])
    result = continuous_training(config).run(broken)
    assert result.status == "invalid" and "merchant_risk" in result.reason
    assert result.stages == ["ingest"]  # nothing trained, nothing registered
    assert loopml.registry.service().get_latest_versions("fraud")[0].version == 1


def test_the_pipeline_form_runs_the_same_stages_caches_them_and_takes_a_replaced_step(
    home: Path, data: pd.DataFrame
) -> None:
    config = _config().to_dict()
    dv = loopml.data.register("tx-labelled", synthetic.between(data, 0, 40))
    first = continuous_training_pipeline.run({"data": dv.ref, "config": config})
    assert first.value["status"] == "promoted" and first.value["version"] == 1
    again = continuous_training_pipeline.run({"data": dv.ref, "config": config})
    assert {"ct_ingest", "ct_validate", "ct_features", "ct_train", "ct_evaluate"} <= set(again.cached_steps)
    assert "ct_gate" not in again.cached_steps  # acts on the registry: never cached
    assert again.value["champion"] == 1

    @step
    def constant_train(train: loopml.data.DatasetVersion, config: dict[str, Any]) -> Any:
        from sklearn.dummy import DummyClassifier

        frame = loopml.data.load(train.name, train.version)
        return DummyClassifier(strategy="prior").fit(frame[list(synthetic.FEATURES)], frame[synthetic.TARGET])

    refused = build_pipeline("ct-dummy", train=constant_train).run({"data": dv.ref, "config": config})
    assert refused.value["status"] == "rejected" and "roc_auc >= 0.7" in refused.value["reason"]
    with pytest.raises(InvalidInput, match="no stage 'tune'"):
        build_pipeline("x", tune=constant_train)


def test_the_features_stage_joins_the_feature_store_point_in_time(home: Path, data: pd.DataFrame) -> None:
    from loopml.features.definitions import DataFrameSource, Entity, FeatureService, FeatureView, Field

    # A card's average amount, known from day 10 on (updated on day 20): rows before day 10 get none.
    days = pd.to_datetime([synthetic.START + pd.Timedelta(days=d) for d in (10, 20)])
    cards = np.sort(data["card_id"].unique())
    stats = pd.DataFrame(
        {
            "card_id": np.repeat(cards, 2),
            "event_timestamp": np.tile(days, len(cards)),
            "card_avg_amount": np.tile([50.0, 80.0], len(cards)) + np.repeat(cards, 2) / 1000,
        }
    )
    view = FeatureView(
        "card_stats",
        entities=[Entity("card", join_keys="card_id")],
        fields=[Field("card_avg_amount", "float64")],
        source=DataFrameSource(stats),
    )
    service = FeatureService("fraud_features", features=["card_stats:card_avg_amount"], views=[view])
    config = CTConfig(
        "fraud", "tx", synthetic.TARGET, features=(*synthetic.FEATURES, "card_avg_amount"),
        time_column=synthetic.TIMESTAMP, gate=GATE, params={"max_iter": 25}, feature_service=service,
    )  # fmt: skip
    result = continuous_training(config).run(synthetic.between(data, 0, 30))
    assert result.status == "promoted" and result.data is not None
    table = loopml.data.load(result.data.train.name, result.data.train.version)
    raw = loopml.data.load(result.ingested.train.name, result.ingested.train.version)  # type: ignore[union-attr]
    assert list(table.columns) == [*synthetic.FEATURES, "card_avg_amount", synthetic.TARGET]
    day = (raw[synthetic.TIMESTAMP] - pd.Timestamp(synthetic.START)).dt.days
    expected = np.where(day < 10, np.nan, np.where(day < 20, 50.0, 80.0) + raw["card_id"] / 1000)
    np.testing.assert_allclose(table["card_avg_amount"].to_numpy(dtype=float), expected)
