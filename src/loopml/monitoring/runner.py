"""What one monitor run measures over its window of the prediction log.

:func:`measure` reads the window once with DuckDB (inputs, outputs, latency, status),
rebuilds the model inputs as a table, and computes drift and data quality against the
reference dataset version (:mod:`loopml.monitoring.drift`, :mod:`loopml.monitoring.quality`),
performance on the rows whose labels have arrived (:mod:`loopml.monitoring.performance`),
latency p99 and error rate. :func:`evaluate_rules` turns that into rule verdicts.

A rule whose value cannot be measured in this window (no rows, no labels yet, a feature
not present) is ``unknown``: it neither opens nor resolves an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from loopml.monitoring import performance as perf
from loopml.monitoring.drift import compute_drift
from loopml.monitoring.monitors import Monitor, Rule
from loopml.monitoring.quality import check_quality

if TYPE_CHECKING:
    import pandas as pd

    from loopml.data.records import DatasetVersion


@dataclass(slots=True)
class Window:
    """The rows of one window: model inputs as a table, outputs, latency and status per request."""

    start: int
    end: int
    inputs: pd.DataFrame
    requests: int
    errors: int
    latency_ms: np.ndarray


@dataclass(slots=True)
class Measurements:
    """Everything a run measured; ``values`` holds the numbers rules compare against."""

    values: dict[str, float | None]
    drifted: dict[str, bool] = field(default_factory=dict)
    drift: Any = None  # loopml.monitoring.records.DriftResult
    quality: Any = None  # loopml.monitoring.records.QualityReport
    performance: perf.WindowPerformance | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": dict(self.values),
            "drifted": dict(self.drifted),
            "drift": self.drift.to_dict() if self.drift is not None else None,
            "quality": self.quality.to_dict() if self.quality is not None else None,
            "performance": self.performance.to_dict() if self.performance is not None else None,
            "notes": list(self.notes),
        }


def read_window(predictions_root: Path, monitor: Monitor, start: int, end: int) -> Window:
    """The monitor's requests with ``start <= ts < end`` (all statuses), inputs decoded."""
    import duckdb
    import pandas as pd

    con = duckdb.connect()
    try:
        perf._predictions_view(con, Path(predictions_root))
        where, params = _scope(monitor)
        rows = con.execute(
            f"SELECT inputs, latency_ms, status FROM predictions WHERE {where} AND ts >= ? AND ts < ?",
            [*params, start, end],
        ).fetchall()
    finally:
        con.close()
    frames: dict[str, list[Any]] = {}
    total = 0
    for inputs, _lat, status in rows:
        if status == "ok" and inputs:
            total = _extend(frames, orjson.loads(inputs), total)
    table = pd.DataFrame({k: v + [None] * (total - len(v)) for k, v in frames.items()})
    latency = np.asarray([r[1] for r in rows if r[1] is not None], dtype=float)
    errors = sum(1 for r in rows if r[2] != "ok")
    return Window(start, end, table, len(rows), errors, latency)


def _scope(monitor: Monitor) -> tuple[str, list[Any]]:
    if monitor.endpoint and monitor.model:
        return "endpoint = ? AND model_name = ?", [monitor.endpoint, monitor.model]
    if monitor.endpoint:
        return "endpoint = ?", [monitor.endpoint]
    return "model_name = ?", [monitor.model]


def _extend(columns: dict[str, list[Any]], value: Any, total: int) -> int:
    # Logged inputs are columnar ({"col": [v, ...]}), one record ({"col": v}) or records
    # ([{"col": v}, ...]); columns a request lacks are padded with None.
    records = value if isinstance(value, list) else None
    if isinstance(value, dict):
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        n = lengths.pop() if len(lengths) == 1 else 1
        if n == 1 and not lengths:
            value = {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        for name, col in value.items():
            cells = col if isinstance(col, list) and len(col) == n else [col] * n
            columns.setdefault(name, [None] * total).extend(cells)
        total += n
    elif records is not None:
        for record in records:
            if isinstance(record, dict):
                for name, cell in record.items():
                    columns.setdefault(name, [None] * total).append(cell)
                total += 1
    for col in columns.values():
        col.extend([None] * (total - len(col)))
    return total


def measure(
    monitor: Monitor,
    window: Window,
    reference: DatasetVersion | None,
    predictions_root: Path,
    labels_root: Path,
) -> Measurements:
    """Drift, quality, performance, latency p99 and error rate of ``window``."""
    values: dict[str, float | None] = {
        "requests": float(window.requests),
        "rows": float(len(window.inputs)),
        "error_rate": window.errors / window.requests if window.requests else None,
        "latency_p99": float(np.percentile(window.latency_ms, 99)) if window.latency_ms.size else None,
    }
    out = Measurements(values)
    if reference is not None and len(window.inputs):
        _drift_and_quality(monitor, window, reference, out)
    elif reference is not None:
        out.notes.append("no successful prediction in the window: drift and quality not computed")
    report = (
        perf.performance(
            predictions_root,
            labels_root,
            monitor.endpoint or "",
            start=window.start,
            end=window.end,
            task=monitor.task,  # type: ignore[arg-type]
        )
        if monitor.endpoint
        else None
    )
    if report is not None and report.windows:
        out.performance = report.windows[0]
        values.update({k: v for k, v in report.windows[0].metrics.items()})
        out.notes.extend(report.windows[0].notes)
    return out


def _drift_and_quality(
    monitor: Monitor, window: Window, reference: DatasetVersion, out: Measurements
) -> None:
    columns = monitor.features
    if columns is None:
        known = {f.name for f in reference.schema} if getattr(reference, "schema", None) else None
        columns = [c for c in window.inputs.columns if known is None or c in known]
    out.drift = compute_drift(
        reference,
        window.inputs,
        columns=columns,
        methods=monitor.methods or None,
        thresholds=monitor.thresholds or None,
        correction=monitor.correction,
    )
    out.values["drift_share"] = float(out.drift.drift_share)
    out.drifted = {f.column: bool(f.drifted) for f in out.drift.features}
    out.quality = check_quality(reference, window.inputs)
    out.values["quality_issues"] = float(len(out.quality.issues))
    out.values["quality_errors"] = float(sum(1 for i in out.quality.issues if i.severity == "error"))


def evaluate_rules(rules: list[Rule], m: Measurements) -> list[dict[str, Any]]:
    """One verdict per rule: ``{"rule", "state": "firing"|"ok"|"unknown", "value", "message"}``."""
    verdicts = []
    for rule in rules:
        if rule.metric == "drift":
            known = rule.feature in m.drifted
            value = float(m.drifted[rule.feature]) if known else None  # type: ignore[index]
            holds = bool(value) if known else None
            message = f"feature {rule.feature!r} drifted" if holds else f"feature {rule.feature!r} is stable"
        else:
            value = m.values.get(rule.metric)
            holds = rule.holds(value) if value is not None else None
            message = f"{rule.metric} = {value:.6g} ({rule.key})" if value is not None else ""
        if holds is None:
            message = f"{rule.key}: not measurable in this window ({rule.metric} unavailable)"
        state = "unknown" if holds is None else ("firing" if holds else "ok")
        verdicts.append({"rule": rule.key, "state": state, "value": value, "message": message})
    return verdicts
