"""Records to and from JSON-ready dicts: the native API's wire format.

Non-finite floats travel as the strings "NaN", "Infinity" and "-Infinity"
(the protobuf JSON convention), so every metric value round-trips.

>>> run = Run(RunInfo("r", "0", "n", "u", "RUNNING", 1, None, "a", "active"))
>>> run_from_dict(run_to_dict(run)).info.run_id
'r'
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from loopml.store.artifacts import FileInfo
from loopml.tracking.records import (
    Comparison,
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    ModelOutput,
    Run,
    RunInfo,
)

JSON = dict[str, Any]


def float_to_json(value: float) -> float | str:
    if not isinstance(value, float | int) or isinstance(value, bool):
        return value  # not a number: passed through for the server to reject by name
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def float_from_json(value: float | int | str) -> float:
    return float(value)


def metric_to_dict(m: Metric) -> JSON:
    return {"key": m.key, "value": float_to_json(m.value), "timestamp": m.timestamp, "step": m.step}


def metric_from_dict(d: JSON) -> Metric:
    return Metric(d["key"], float_from_json(d["value"]), int(d["timestamp"]), int(d.get("step", 0)))


def run_to_dict(run: Run) -> JSON:
    return {
        "info": asdict(run.info),
        "params": run.params,
        "metrics": [metric_to_dict(m) for m in run.metrics.values()],
        "tags": run.tags,
        "inputs": [asdict(d) for d in run.inputs],
        "outputs": [asdict(o) for o in run.outputs],
    }


def run_from_dict(d: JSON) -> Run:
    metrics = [metric_from_dict(m) for m in d.get("metrics", [])]
    return Run(
        info=RunInfo(**d["info"]),
        params=dict(d.get("params", {})),
        metrics={m.key: m for m in metrics},
        tags=dict(d.get("tags", {})),
        inputs=[DatasetInput(**i) for i in d.get("inputs", [])],
        outputs=[ModelOutput(**o) for o in d.get("outputs", [])],
    )


def experiment_to_dict(e: Experiment) -> JSON:
    return asdict(e)


def experiment_from_dict(d: JSON) -> Experiment:
    return Experiment(**d)


def file_info_to_dict(f: FileInfo) -> JSON:
    return asdict(f)


def file_info_from_dict(d: JSON) -> FileInfo:
    return FileInfo(**d)


def logged_model_to_dict(m: LoggedModel) -> JSON:
    return asdict(m)


def logged_model_from_dict(d: JSON) -> LoggedModel:
    return LoggedModel(**d)


def comparison_to_dict(c: Comparison) -> JSON:
    out = asdict(c)
    out["metrics"] = [{k: float_to_json(v) for k, v in row.items()} for row in c.metrics]
    return out


def comparison_from_dict(d: JSON) -> Comparison:
    d = dict(d)
    d["metrics"] = [{k: float_from_json(v) for k, v in row.items()} for row in d["metrics"]]
    return Comparison(**d)
