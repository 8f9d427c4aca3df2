"""Model performance over time windows, from the prediction log joined with delayed labels.

Predictions (``serving.predlog``) and labels (:mod:`loopml.monitoring.labels`) are both
Parquet segments; DuckDB joins them on ``request_id`` (the latest label per id). Each time
window reports:

* classification: accuracy, precision, recall, F1 (binary for labels {0, 1}, macro average
  otherwise), ROC AUC and log loss when the model output probabilities;
* regression: RMSE, MAE, R2;
* proxy signals over *every* prediction, labelled or not (what there is before labels
  arrive): the distribution of predicted values or classes and the mean confidence.

A metric that cannot be computed is ``None`` with the reason in ``notes`` (no labels yet,
one class only for ROC AUC, constant labels for R2), never NaN.

>>> report = performance(home / "predictions", home / "labels", "churn", window_s=3600)  # doctest: +SKIP
>>> report.windows[-1].metrics["accuracy"]                                              # doctest: +SKIP
0.91
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from loopml.errors import InvalidInput
from loopml.monitoring import labels as labels_mod
from loopml.serving import predlog

Task = Literal["auto", "classification", "regression"]
_EPS = float(np.finfo(np.float64).eps)  # log-loss clipping, as sklearn.metrics.log_loss
_MAX_CLASSES = 20  # integer labels with more distinct values than this are a regression target


@dataclass(frozen=True, slots=True)
class WindowPerformance:
    """One time window: counts, metrics on the labelled rows, proxy signals on all rows."""

    start: int
    end: int
    predictions: int
    labelled: int
    task: str
    metrics: dict[str, float | None]
    proxy: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "task": self.task,
            "metrics": dict(self.metrics),
            "proxy": dict(self.proxy),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """Performance of an endpoint's predictions, window by window (oldest first)."""

    endpoint: str
    windows: list[WindowPerformance]

    @property
    def overall(self) -> WindowPerformance | None:
        """The last window (the most recent performance), or None without predictions."""
        return self.windows[-1] if self.windows else None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "windows": [w.to_dict() for w in self.windows]}


@dataclass(slots=True)
class _Rows:
    ts: list[int] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)  # None where no label arrived yet


def joined(
    predictions_root: Path,
    labels_root: Path,
    endpoint: str,
    start: int | None = None,
    end: int | None = None,
) -> list[tuple[str, int, str | None, str | None]]:
    """(request_id, ts, outputs JSON, label JSON or None) of the endpoint's successful
    predictions with ``start <= ts < end`` (ms), oldest first.

    >>> joined(home / "predictions", home / "labels", "churn")   # doctest: +SKIP
    [('r1', 1700000000000, '[1]', '1'), ('r2', 1700000000100, '[0]', None)]
    """
    import duckdb

    con = duckdb.connect()
    try:
        _predictions_view(con, Path(predictions_root))
        labels_mod.register_view(con, Path(labels_root))
        sql = (
            "SELECT p.request_id, p.ts, p.outputs, l.label FROM predictions p "
            "LEFT JOIN labels l ON l.request_id = p.request_id "
            "WHERE p.endpoint = ? AND p.status = 'ok' AND p.ts >= ? AND p.ts < ? ORDER BY p.ts"
        )
        lo, hi = start if start is not None else -(2**62), end if end is not None else 2**62
        rows: list[tuple[str, int, str | None, str | None]] = con.execute(sql, [endpoint, lo, hi]).fetchall()
        return rows
    finally:
        con.close()


def _predictions_view(con: Any, root: Path) -> None:
    if any(root.glob("*/date=*/*.parquet")):
        pattern = str(root / "*" / "date=*" / "*.parquet").replace("'", "''")
        con.execute(
            f"CREATE VIEW predictions AS SELECT * FROM read_parquet('{pattern}', "
            "hive_partitioning = true, union_by_name = true)"
        )
    else:
        con.register("predictions", predlog.schema().empty_table())


def performance(
    predictions_root: Path,
    labels_root: Path,
    endpoint: str,
    *,
    start: int | None = None,
    end: int | None = None,
    window_s: float | None = None,
    task: Task = "auto",
) -> PerformanceReport:
    """Performance of ``endpoint`` between ``start`` and ``end`` (ms), split in windows of
    ``window_s`` seconds (one window when None).

    >>> performance(root / "predictions", root / "labels", "churn").overall.metrics  # doctest: +SKIP
    {'accuracy': 0.91, 'precision': 0.88, ...}
    """
    if task not in ("auto", "classification", "regression"):
        raise InvalidInput(
            f"task {task!r} is not auto, classification or regression", details={"field": "task"}
        )
    if window_s is not None and window_s <= 0:
        raise InvalidInput(f"window_s must be > 0, got {window_s}", details={"field": "window_s"})
    rows = joined(predictions_root, labels_root, endpoint, start, end)
    if not rows:
        return PerformanceReport(endpoint, [])
    first = start if start is not None else rows[0][1]
    last = end if end is not None else rows[-1][1] + 1
    width = int(window_s * 1000) if window_s else max(last - first, 1)
    buckets: dict[int, _Rows] = {}
    for _rid, ts, outputs, label in rows:
        _add(buckets.setdefault((ts - first) // width, _Rows()), ts, outputs, label)
    windows = [
        evaluate(
            b.outputs, b.labels, task=task, start=first + k * width, end=min(first + (k + 1) * width, last)
        )
        for k, b in sorted(buckets.items())
    ]
    return PerformanceReport(endpoint, windows)


def _add(rows: _Rows, ts: int, outputs: str | None, label: str | None) -> None:
    outs = output_rows(orjson.loads(outputs) if outputs else None)
    labs: list[Any] = [None] * len(outs)
    if label is not None:
        value = orjson.loads(label)
        labs = value if isinstance(value, list) and len(outs) != 1 else [value]
        if len(labs) != len(outs):  # a label that does not match the request's rows is unusable
            labs = [None] * len(outs)
    rows.ts.extend([ts] * len(outs))
    rows.outputs.extend(outs)
    rows.labels.extend(labs)


def output_rows(value: Any) -> list[Any]:
    """A logged ``outputs`` value as one entry per row: a scalar (prediction) or a list of
    class probabilities.

    >>> output_rows([[0.2, 0.8], [0.9, 0.1]]), output_rows({"predictions": [1, 0]}), output_rows(3.5)
    ([[0.2, 0.8], [0.9, 0.1]], [1, 0], [3.5])
    """
    if isinstance(value, dict):
        if not value:
            return []
        value = value.get("predictions", next(iter(value.values())))
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def evaluate(
    outputs: Sequence[Any],
    labels: Sequence[Any],
    *,
    task: Task = "auto",
    start: int = 0,
    end: int = 0,
) -> WindowPerformance:
    """Metrics over the rows that have a label, proxy signals over all rows.

    >>> evaluate([1, 0, 1], [1, 0, 0], task="classification").metrics["accuracy"]
    0.6666666666666666
    """
    notes: list[str] = []
    pairs = [(o, y) for o, y in zip(outputs, labels, strict=True) if y is not None and o is not None]
    kind = task if task != "auto" else _infer_task(outputs, [y for _, y in pairs])
    proxy = _proxy(outputs, kind)
    if not pairs:
        notes.append("no labels have arrived for this window yet: only proxy signals")
        return WindowPerformance(start, end, len(outputs), 0, kind, {}, proxy, notes)
    outs, ys = [o for o, _ in pairs], [y for _, y in pairs]
    if kind == "regression":
        metrics = regression_metrics(
            np.asarray(ys, dtype=float), np.asarray([_scalar(o) for o in outs]), notes
        )
    else:
        metrics = classification_metrics(outs, ys, notes)
    return WindowPerformance(start, end, len(outputs), len(pairs), kind, metrics, proxy, notes)


def _scalar(output: Any) -> float:
    if isinstance(output, list):
        return float(output[0]) if len(output) == 1 else float(np.argmax(output))
    return float(output)


def _infer_task(outputs: Sequence[Any], labels: Sequence[Any]) -> str:
    sample = [y for y in labels if y is not None] or [o for o in outputs if o is not None]
    if any(isinstance(o, list) and len(o) > 1 for o in outputs[:100]):
        return "classification"  # probability vectors
    if any(isinstance(y, str | bool) for y in sample):
        return "classification"
    values = [float(y) for y in sample if isinstance(y, int | float)]
    if values and all(v.is_integer() for v in values) and len(set(values)) <= _MAX_CLASSES:
        return "classification"
    return "regression"


def classification_metrics(
    outputs: Sequence[Any], labels: Sequence[Any], notes: list[str]
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss (the last two need probabilities).

    >>> classification_metrics([[0.9, 0.1], [0.2, 0.8]], [0, 1], [])["roc_auc"]
    1.0
    """
    y = np.asarray([_label_key(v) for v in labels], dtype=object)
    probs = _probabilities(outputs)
    if probs is not None:
        pred = np.asarray([_label_key(v) for v in probs.argmax(axis=1)], dtype=object)
    else:
        pred = np.asarray([_label_key(_hard(o)) for o in outputs], dtype=object)
    classes = sorted(set(y.tolist()) | set(pred.tolist()), key=str)
    metrics: dict[str, float | None] = {"accuracy": float(np.mean(y == pred))}
    binary = set(classes) <= {0, 1}
    positives = [1] if binary else classes
    p, r, f = _prf(y, pred, positives)
    metrics.update(precision=p, recall=r, f1=f)
    if not binary:
        notes.append(f"precision, recall and F1 are macro averages over {len(classes)} classes")
    metrics["roc_auc"], metrics["log_loss"] = None, None
    if probs is None:
        notes.append("ROC AUC and log loss need probabilities; the model logged hard predictions")
    elif binary and probs.shape[1] == 2:
        metrics["roc_auc"] = _roc_auc(y.astype(int), probs[:, 1], notes)
        metrics["log_loss"] = _log_loss(y.astype(int), probs)
    elif all(isinstance(c, int) and 0 <= c < probs.shape[1] for c in set(y.tolist())):
        metrics["log_loss"] = _log_loss(y.astype(int), probs)
        notes.append("ROC AUC is reported for binary classification only")
    return metrics


def _label_key(value: Any) -> Any:
    # 1, 1.0 and True are the same class; strings stay strings.
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _hard(output: Any) -> Any:
    if isinstance(output, list):
        return output[0] if len(output) == 1 else int(np.argmax(output))
    if isinstance(output, float) and 0.0 <= output <= 1.0 and not output.is_integer():
        return int(output >= 0.5)  # a single probability of the positive class
    return output


def _probabilities(outputs: Sequence[Any]) -> np.ndarray | None:
    if all(isinstance(o, list) and len(o) > 1 for o in outputs):
        try:
            return np.asarray(outputs, dtype=float)
        except ValueError:
            return None
    if all(isinstance(o, float) and 0.0 <= o <= 1.0 for o in outputs) and not all(
        float(o).is_integer() for o in outputs
    ):
        p = np.asarray(outputs, dtype=float)
        return np.column_stack([1.0 - p, p])
    return None


def _prf(y: np.ndarray, pred: np.ndarray, positives: Sequence[Any]) -> tuple[float, float, float]:
    # Per class, 0/0 counts as 0 like sklearn's zero_division default (without its warning).
    ps, rs, fs = [], [], []
    for c in positives:
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        ps.append(p)
        rs.append(r)
        fs.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(ps)), float(np.mean(rs)), float(np.mean(fs))


def _roc_auc(y: np.ndarray, score: np.ndarray, notes: list[str]) -> float | None:
    from scipy.stats import rankdata  # type: ignore[import-untyped]

    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        notes.append("ROC AUC is undefined when the labelled rows hold one class only")
        return None
    # Mann-Whitney U with average ranks for ties: equal to sklearn.metrics.roc_auc_score.
    ranks = rankdata(score)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _log_loss(y: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs / probs.sum(axis=1, keepdims=True), _EPS, 1 - _EPS)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def regression_metrics(y: np.ndarray, pred: np.ndarray, notes: list[str]) -> dict[str, float | None]:
    """RMSE, MAE and R2 (None with a note when the labels are constant).

    >>> regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0]), [])["mae"]
    0.5
    """
    err = pred - y
    total = float(np.sum((y - y.mean()) ** 2))
    r2: float | None = 1.0 - float(np.sum(err**2)) / total if total > 0 else None
    if r2 is None:
        notes.append("R2 is undefined when every label in the window is the same value")
    return {"rmse": math.sqrt(float(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "r2": r2}


def _proxy(outputs: Sequence[Any], kind: str) -> dict[str, Any]:
    present = [o for o in outputs if o is not None]
    if not present:
        return {}
    probs = _probabilities(present) if kind == "classification" else None
    if probs is not None:
        conf = probs.max(axis=1)
        counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
        return {
            "mean_confidence": float(conf.mean()),
            "low_confidence_share": float(np.mean(conf < 0.6)),
            "class_share": {str(i): float(c) / len(present) for i, c in enumerate(counts)},
        }
    if kind == "classification":
        keys = [str(_label_key(_hard(o))) for o in present]
        uniq, counts = np.unique(np.asarray(keys), return_counts=True)
        return {"class_share": {str(k): float(c) / len(keys) for k, c in zip(uniq, counts, strict=True)}}
    values = np.asarray([_scalar(o) for o in present])
    q = np.quantile(values, [0.05, 0.5, 0.95])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p05": float(q[0]),
        "p50": float(q[1]),
        "p95": float(q[2]),
    }
