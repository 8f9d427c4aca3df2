"""Performance on predictions joined with labels equals sklearn.metrics on the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from loopml.monitoring.labels import write_labels
from loopml.monitoring.performance import evaluate, performance
from loopml.serving.predlog import PredictionLog

T0 = 1_700_000_000_000


def _log(root: Path, outputs: list[object]) -> None:
    with PredictionLog(root) as plog:
        for i, out in enumerate(outputs):
            plog.append(
                {
                    "request_id": f"r{i}",
                    "endpoint": "e",
                    "model_name": "m",
                    "model_version": "1",
                    "variant": "p",
                    "ts": T0 + i * 1000,
                    "inputs": {"x": [i]},
                    "outputs": [out],
                    "latency_ms": 1.0,
                    "status": "ok",
                }
            )


def test_binary_metrics_equal_sklearn_on_the_labelled_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p1 = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    _log(tmp_path / "predictions", [[1 - p, p] for p in p1.tolist()])
    labelled = rng.permutation(400)[:300]  # a quarter never gets a label
    write_labels(tmp_path / "labels", [f"r{i}" for i in labelled[::-1]], y[labelled[::-1]].tolist())
    report = performance(tmp_path / "predictions", tmp_path / "labels", "e")
    w = report.windows[0]
    assert (w.predictions, w.labelled, w.task) == (400, 300, "classification")
    idx = np.sort(labelled)
    yt, pp = y[idx], p1[idx]
    pred = (pp >= 0.5).astype(int)
    assert w.metrics["accuracy"] == pytest.approx(skm.accuracy_score(yt, pred), abs=1e-12)
    assert w.metrics["precision"] == pytest.approx(skm.precision_score(yt, pred), abs=1e-12)
    assert w.metrics["recall"] == pytest.approx(skm.recall_score(yt, pred), abs=1e-12)
    assert w.metrics["f1"] == pytest.approx(skm.f1_score(yt, pred), abs=1e-12)
    assert w.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(yt, pp), abs=1e-12)
    assert w.metrics["log_loss"] == pytest.approx(skm.log_loss(yt, np.column_stack([1 - pp, pp])), abs=1e-12)
    assert w.proxy["mean_confidence"] == pytest.approx(np.maximum(p1, 1 - p1).mean())


def test_multiclass_macro_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200).tolist()
    pred = [v if rng.random() < 0.7 else int(rng.integers(0, 3)) for v in y]
    w = evaluate(pred, y, task="classification")
    assert w.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert w.metrics["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert w.metrics["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert w.metrics["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert w.metrics["roc_auc"] is None and w.notes


def test_regression_metrics_equal_sklearn_and_windows_split_by_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(10, 3, 120)
    pred = y + rng.normal(0, 1, 120)
    _log(tmp_path / "predictions", pred.tolist())
    write_labels(tmp_path / "labels", [f"r{i}" for i in range(120)], y.tolist())
    report = performance(tmp_path / "predictions", tmp_path / "labels", "e", window_s=60)
    assert [w.predictions for w in report.windows] == [60, 60]
    w = report.windows[1]
    yt, pt = y[60:], pred[60:]
    assert w.task == "regression"
    assert w.metrics["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yt, pt)), abs=1e-12)
    assert w.metrics["mae"] == pytest.approx(skm.mean_absolute_error(yt, pt), abs=1e-12)
    assert w.metrics["r2"] == pytest.approx(skm.r2_score(yt, pt), abs=1e-12)


def test_before_labels_arrive_only_proxy_signals_with_a_reason(tmp_path: Path) -> None:
    _log(tmp_path / "predictions", [[0.2, 0.8], [0.9, 0.1]])
    w = performance(tmp_path / "predictions", tmp_path / "labels", "e").windows[0]
    assert w.labelled == 0 and w.metrics == {}
    assert "no labels" in w.notes[0]
    assert w.proxy["class_share"] == {"0": 0.5, "1": 0.5}


def test_undefined_metrics_are_none_with_a_note_not_nan() -> None:
    w = evaluate([[0.4, 0.6], [0.3, 0.7]], [1, 1], task="classification")
    assert w.metrics["roc_auc"] is None and any("one class" in n for n in w.notes)
    r = evaluate([1.0, 2.0], [3.0, 3.0], task="regression")
    assert r.metrics["r2"] is None and r.metrics["mae"] == 1.5
