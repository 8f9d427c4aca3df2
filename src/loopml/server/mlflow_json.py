"""MLflow's JSON shapes for loopml records, and MLflow's error bodies."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from loopml.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    LoopmlError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from loopml.server.responses import JSONResponse
from loopml.tracking.codec import float_to_json
from loopml.tracking.records import Experiment, LoggedModel, Metric, Run, RunInfo

JSON = dict[str, Any]

# Fixed table: our class -> MLflow's error_code (MLflow clients branch on the code, not the class).
MLFLOW_CODES: dict[type[LoopmlError], str] = {
    NotFound: "RESOURCE_DOES_NOT_EXIST",
    AlreadyExists: "RESOURCE_ALREADY_EXISTS",
    InvalidInput: "INVALID_PARAMETER_VALUE",
    Conflict: "INVALID_PARAMETER_VALUE",
    PermissionDenied: "PERMISSION_DENIED",
    Unavailable: "TEMPORARILY_UNAVAILABLE",
}


def error_response(exc: LoopmlError) -> Response:
    code = next((c for cls, c in MLFLOW_CODES.items() if isinstance(exc, cls)), "INTERNAL_ERROR")
    body: JSON = {"error_code": code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return JSONResponse(body, status_code=exc.status_code)


def pairs(items: list[Any]) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items}


def _kv(mapping: dict[str, str]) -> list[JSON]:
    return [{"key": k, "value": v} for k, v in mapping.items()]


def experiment_json(e: Experiment) -> JSON:
    out: JSON = {
        "experiment_id": e.experiment_id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage,
        "last_update_time": e.last_update_time,
        "creation_time": e.creation_time,
    }
    if e.tags:
        out["tags"] = _kv(e.tags)
    return out


def metric_json(m: Metric) -> JSON:
    return {"key": m.key, "value": float_to_json(m.value), "timestamp": m.timestamp, "step": m.step}


def run_info_json(i: RunInfo) -> JSON:
    out: JSON = {
        "run_uuid": i.run_id,
        "run_id": i.run_id,
        "experiment_id": i.experiment_id,
        "run_name": i.run_name,
        "user_id": i.user_id,
        "status": i.status,
        "start_time": i.start_time,
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle_stage,
    }
    if i.end_time is not None:
        out["end_time"] = i.end_time
    return out


def run_json(run: Run) -> JSON:
    data: JSON = {}
    if run.metrics:
        data["metrics"] = [metric_json(m) for m in run.metrics.values()]
    if run.params:
        data["params"] = _kv(run.params)
    if run.tags:
        data["tags"] = _kv(run.tags)
    inputs: JSON = {}
    if run.inputs:
        inputs["dataset_inputs"] = [
            {
                "tags": _kv(d.tags),
                "dataset": {
                    "name": d.name,
                    "digest": d.digest,
                    "source_type": d.source_type,
                    "source": d.source,
                    "schema": d.schema or "",
                    "profile": d.profile or "",
                },
            }
            for d in run.inputs
        ]
    outputs: JSON = {}
    if run.outputs:
        outputs["model_outputs"] = [{"model_id": o.model_id, "step": o.step} for o in run.outputs]
    return {"info": run_info_json(run.info), "data": data, "inputs": inputs, "outputs": outputs}


def logged_model_json(m: LoggedModel) -> JSON:
    info: JSON = {
        "model_id": m.model_id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "creation_timestamp_ms": m.creation_timestamp,
        "last_updated_timestamp_ms": m.last_updated_timestamp,
        "artifact_uri": m.artifact_location,
        "status": m.status,
        "model_type": m.model_type or "",
        "tags": _kv(m.tags),
    }
    if m.source_run_id:
        info["source_run_id"] = m.source_run_id
    if m.status_message:
        info["status_message"] = m.status_message
    return {"info": info, "data": {"params": _kv(m.params)}}
