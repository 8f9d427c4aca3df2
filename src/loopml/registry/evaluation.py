"""Metrics of a candidate and of the champion on the same held-out dataset version.

The models are loaded with :func:`loopml.models.load` (digests verified) and the rows with
:func:`loopml.data.load` (exactly the registered ones), so an evaluation names the data it saw
by version and content hash.

>>> ev = loopml.registry.evaluate("churn", 4, dataset="churn-holdout@2", target="churned")  # doctest: +SKIP
>>> ev.metrics["roc_auc"], ev.champion_metrics["roc_auc"]                                   # doctest: +SKIP
(0.912, 0.905)
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from loopml.errors import InvalidInput
from loopml.registry.records import Evaluation
from loopml.registry.service import RegistryService

LATENCY_SAMPLE = 50  # single-row predictions timed per model: bounded, whatever the dataset size
_TASKS = ("auto", "classification", "regression")


def evaluate(
    registry: RegistryService,
    name: str,
    version: int | str,
    dataset: str,
    target: str,
    *,
    task: str = "auto",
    user: str | None = None,
    trust_pickle: bool = False,
) -> Evaluation:
    """Compute and record the metrics of ``name`` ``version`` and of the current champion on
    ``dataset`` (``"name@version"``), with ``target`` as the label column."""
    import loopml.data as data
    import loopml.models as models

    candidate = registry.get_model_version(name, version)
    ds_name, ds_version = data.parse_ref(dataset)
    dv = data.get(ds_name, ds_version)
    frame = data.load(dv.name, dv.version, format="pandas")
    if target not in frame.columns:
        raise InvalidInput(
            f"dataset {dv.ref} has no column {target!r}; columns are {', '.join(map(str, frame.columns))}",
            details={"field": "target"},
        )
    features, labels = frame.drop(columns=[target]), frame[target].to_numpy()
    kind = _task(task, labels)
    metrics = model_metrics(
        models.load(f"models:/{name}/{candidate.version}", trust_pickle=trust_pickle), features, labels, kind
    )
    champion = registry.champion(name)
    champ_metrics: dict[str, float] = {}
    if champion is not None and champion.version != candidate.version:
        loaded = models.load(f"models:/{name}/{champion.version}", trust_pickle=trust_pickle)
        champ_metrics = model_metrics(loaded, features, labels, kind)
    return registry.record_evaluation(
        name,
        candidate.version,
        dv.name,
        dv.version,
        dv.digest,
        metrics,
        champion_version=None
        if champion is None or champion.version == candidate.version
        else champion.version,
        champion_metrics=champ_metrics,
        user=user,
    )


def _task(task: str, labels: np.ndarray[Any, Any]) -> str:
    if task not in _TASKS:
        raise InvalidInput(f"task {task!r} is not one of {', '.join(_TASKS)}", details={"field": "task"})
    if task != "auto":
        return task
    if labels.dtype.kind != "f":
        return "classification"  # labels, booleans and integers name classes
    # Floats holding a few whole numbers (0.0/1.0 read from CSV) are classes too; else a quantity.
    finite = labels[~np.isnan(labels)]
    whole = bool(np.all(finite == np.round(finite)))
    return "classification" if whole and len(np.unique(finite)) <= 20 else "regression"


def model_metrics(model: Any, features: Any, labels: np.ndarray[Any, Any], task: str) -> dict[str, float]:
    """Quality metrics of ``model`` on ``features`` against ``labels``, plus single-row latency."""
    predictions = np.asarray(model.predict(features)).reshape(len(labels), -1)
    predictions = predictions[:, 0] if predictions.shape[1] == 1 else predictions
    if task == "classification":
        out = _classification(model, features, labels, predictions)
    else:
        out = _regression(labels, predictions)
    out.update(latency(model, features))
    return {k: float(v) for k, v in out.items() if math.isfinite(float(v))}


def _classification(
    model: Any, features: Any, labels: np.ndarray[Any, Any], predictions: np.ndarray[Any, Any]
) -> dict[str, float]:
    from sklearn import metrics as skm

    classes = np.unique(labels)
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    pos = classes[-1] if binary else 1
    out = {
        "accuracy": skm.accuracy_score(labels, predictions),
        "precision": skm.precision_score(
            labels, predictions, average=average, pos_label=pos, zero_division=0
        ),
        "recall": skm.recall_score(labels, predictions, average=average, pos_label=pos, zero_division=0),
        "f1": skm.f1_score(labels, predictions, average=average, pos_label=pos, zero_division=0),
    }
    proba = _probabilities(model, features, len(classes))
    if proba is not None:
        if binary:
            out["roc_auc"] = skm.roc_auc_score(labels, proba[:, 1])
        else:
            out["roc_auc"] = skm.roc_auc_score(
                labels, proba, multi_class="ovr", average="macro", labels=classes
            )
        out["log_loss"] = skm.log_loss(labels, np.clip(proba, 1e-15, 1.0), labels=classes)
    return out


def _probabilities(model: Any, features: Any, n_classes: int) -> np.ndarray[Any, Any] | None:
    """Class probabilities in sorted-label order, when the model gives them for every class."""
    if not hasattr(model, "predict_proba"):
        return None
    try:
        proba = np.asarray(model.predict_proba(features), dtype=float)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None  # e.g. a pyfunc model without probabilities
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        return None
    return proba


def _regression(labels: np.ndarray[Any, Any], predictions: np.ndarray[Any, Any]) -> dict[str, float]:
    from sklearn import metrics as skm

    y, p = labels.astype(float), predictions.astype(float)
    return {
        "rmse": math.sqrt(skm.mean_squared_error(y, p)),
        "mae": skm.mean_absolute_error(y, p),
        "r2": skm.r2_score(y, p),
    }


def latency(model: Any, features: Any, sample: int = LATENCY_SAMPLE) -> dict[str, float]:
    """p50 and p99 of single-row ``predict`` in milliseconds over up to ``sample`` rows."""
    n = min(sample, len(features))
    if n == 0:
        return {}
    rows = [features.iloc[i : i + 1] if hasattr(features, "iloc") else features[i : i + 1] for i in range(n)]
    model.predict(rows[0])  # warm-up: first-call costs (lazy init, caches) are not serving latency
    times = []
    for row in rows:
        start = time.perf_counter()
        model.predict(row)
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "latency_p50_ms": float(np.percentile(times, 50)),
        "latency_p99_ms": float(np.percentile(times, 99)),
    }
