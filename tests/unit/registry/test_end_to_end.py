"""The whole loop on real components: loopml.data versions, loopml.models packages, the registry's
evaluation, gate, lineage both ways, model card, and the CLI as a CI gate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import loopml
import loopml.data
import loopml.models
import loopml.registry as registry
from loopml import sdk
from loopml.cli import app
from loopml.errors import GateFailed
from loopml.registry.records import ModelStage
from loopml.tracking import capture

FEATURES = [f"f{i}" for i in range(4)]


@dataclass
class World:
    x: pd.DataFrame
    strong: object
    train_ref: str
    holdout_ref: str


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "ana")
    monkeypatch.chdir(tmp_path)
    sdk.set_tracking_uri(None)
    yield tmp_path / "home"
    registry.reset()
    sdk.reset()


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    label = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return pd.DataFrame(x, columns=FEATURES).assign(label=label)


def _train(model: object, train: pd.DataFrame, dataset: loopml.data.DatasetVersion, commit: str) -> str:
    model.fit(train[FEATURES], train["label"])  # type: ignore[attr-defined]
    tags = {capture.GIT_COMMIT: commit, capture.GIT_BRANCH: "main", capture.GIT_DIRTY: "true"}
    with loopml.start_run(run_name=f"train-{commit}", tags=tags, capture_env=False):
        loopml.data.log_input(dataset, context="training")
        info = loopml.models.log_model(model, input_example=train[FEATURES].head(5))
        loopml.log_metric("train_rows", len(train))
    return info.model_uri


@pytest.fixture
def world(home: Path) -> World:
    train, holdout = _frame(400, 1), _frame(200, 2)
    train_dv = loopml.data.register("train", train)
    holdout_dv = loopml.data.register("holdout", holdout)
    strong = make_pipeline(StandardScaler(), LogisticRegression())
    weak = DummyClassifier(strategy="prior")
    v1 = registry.register("churn", _train(strong, train, train_dv, "c0ffee1"), description="churn model")
    v2 = registry.register("churn", _train(weak, train, train_dv, "badbad2"))
    assert (v1.version, v2.version) == (1, 2)
    registry.set_gate(
        "churn", ["accuracy >= 0.6", "roc_auc >= champion.roc_auc - 0.005", "latency_p99_ms <= 2000"]
    )
    return World(holdout[FEATURES], strong, train_dv.ref, holdout_dv.ref)


def test_evaluate_promote_and_load_the_champion(world: World) -> None:
    first = registry.evaluate("churn", 1, dataset=world.holdout_ref, target="label")
    assert first.champion_version is None and first.dataset_name == "holdout"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "latency_p99_ms"} <= set(
        first.metrics
    )
    assert first.metrics["roc_auc"] > 0.8
    done = registry.promote("churn", 1, reason="first model")
    assert done.version.current_stage is ModelStage.PRODUCTION and done.version.aliases == ["champion"]
    champion = loopml.models.load("models:/churn@champion")
    np.testing.assert_array_equal(champion.predict(world.x), world.strong.predict(world.x))  # type: ignore[attr-defined]
    # The weak model is measured on the same rows next to the champion, and the gate refuses it.
    second = registry.evaluate("churn", 2, dataset=world.holdout_ref, target="label")
    assert second.champion_version == 1
    assert second.champion_metrics["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    with pytest.raises(GateFailed) as err:
        registry.promote("churn", 2)
    assert "roc_auc >= champion.roc_auc - 0.005: value 0.5" in err.value.message
    assert registry.service().get_model_version("churn", 1).current_stage is ModelStage.PRODUCTION


def test_cli_promote_exits_non_zero_listing_each_threshold(world: World) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["models", "promote", "churn", "2"]).exit_code == 3  # no evaluation yet
    evaluated = runner.invoke(
        app, ["models", "evaluate", "churn", "2", "--data", world.holdout_ref, "--target", "label"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    registry.service().record_evaluation(
        "churn", 2, "holdout", 1, "d" * 64, {"accuracy": 0.4, "roc_auc": 0.5}
    )
    failed = runner.invoke(app, ["models", "promote", "churn", "2", "--to", "production"])
    assert failed.exit_code == 3
    assert "accuracy >= 0.6: value 0.4, limit 0.6, FAIL" in failed.output
    assert (
        "roc_auc >= champion.roc_auc - 0.005" in failed.output and "latency_p99_ms <= 2000" in failed.output
    )
    runner.invoke(app, ["models", "evaluate", "churn", "1", "--data", world.holdout_ref, "--target", "label"])
    passed = runner.invoke(app, ["models", "promote", "churn", "1", "--reason", "ci"])
    assert passed.exit_code == 0 and "is now in Production" in passed.output
    missing = runner.invoke(app, ["models", "show", "churn", "9"])
    assert missing.exit_code == 1 and "has no version 9; latest is 2" in missing.output


def test_lineage_both_ways_and_model_card(world: World, tmp_path: Path) -> None:
    lineage = registry.lineage("churn", 1)
    assert lineage.run is not None
    assert (lineage.run.commit, lineage.run.branch, lineage.run.dirty) == ("c0ffee1", "main", True)
    assert lineage.run.metrics == {"train_rows": 400.0}
    assert [(d.ref, d.context, d.num_rows) for d in lineage.datasets] == [(world.train_ref, "training", 400)]
    assert lineage.flavor == "sklearn" and lineage.signature is not None
    assert lineage.model.digest == registry.service().get_model_version("churn", 1).digest
    trained = registry.models_trained_on("train", 1)
    assert [(v.name, v.version) for v in trained] == [("churn", 1), ("churn", 2)]
    assert registry.models_trained_on("holdout", 1) == []
    registry.evaluate("churn", 1, dataset=world.holdout_ref, target="label")
    registry.promote("churn", 1, reason="first model")
    out = tmp_path / "card.md"
    result = CliRunner().invoke(app, ["models", "card", "churn", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    card = out.read_text()
    for expected in (
        "# churn — version 1",
        "churn model",
        "c0ffee1",
        "train@1",
        "holdout@1",
        "roc_auc",
        "`f0: float64`",
        "accuracy >= 0.6",
        "None → Production",
        "first model",
        lineage.model.digest,
    ):
        assert expected in card, expected  # fmt: skip
    shown = CliRunner().invoke(app, ["models", "lineage", "--dataset", "train@1", "--json"])
    assert shown.exit_code == 0 and '"version": 2' in shown.output
