"""Registry records to and from JSON-ready dicts (the database's JSON columns, the HTTP API).

>>> r = GateResult(True, [ThresholdResult("acc >= 0.9", "acc", 0.93, 0.9, True)])
>>> gate_result_from_dict(to_dict(r)) == r
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from loopml.registry.records import (
    DatasetLineage,
    Evaluation,
    Gate,
    GateResult,
    Lineage,
    ModelStage,
    ModelVersion,
    Promotion,
    PromotionRequest,
    RegisteredModel,
    RequestStatus,
    RunLineage,
    ThresholdResult,
    Transition,
)


def to_dict(record: Any) -> dict[str, Any]:
    """Any registry record as plain JSON types (stages and statuses as their strings)."""
    out: dict[str, Any] = dataclasses.asdict(record)
    return out


def gate_result_from_dict(d: dict[str, Any]) -> GateResult:
    return GateResult(
        passed=bool(d["passed"]),
        results=[ThresholdResult(**r) for r in d.get("results", [])],
        evaluation_id=d.get("evaluation_id"),
        note=d.get("note", ""),
    )


def model_version_from_dict(d: dict[str, Any]) -> ModelVersion:
    return ModelVersion(**{**d, "current_stage": ModelStage.parse(d["current_stage"])})


def registered_model_from_dict(d: dict[str, Any]) -> RegisteredModel:
    latest = [model_version_from_dict(v) for v in d.get("latest_versions", [])]
    return RegisteredModel(**{**d, "latest_versions": latest})


def gate_from_dict(d: dict[str, Any]) -> Gate:
    return Gate(**d)


def evaluation_from_dict(d: dict[str, Any]) -> Evaluation:
    return Evaluation(**d)


def request_from_dict(d: dict[str, Any]) -> PromotionRequest:
    return PromotionRequest(
        **{
            **d,
            "to_stage": ModelStage.parse(d["to_stage"]),
            "status": RequestStatus(d["status"]),
            "gate": gate_result_from_dict(d["gate"]),
        }
    )


def transition_from_dict(d: dict[str, Any]) -> Transition:
    gate = d.get("gate")
    return Transition(
        **{
            **d,
            "from_stage": ModelStage.parse(d["from_stage"]),
            "to_stage": ModelStage.parse(d["to_stage"]),
            "gate": None if gate is None else gate_result_from_dict(gate),
        }
    )


def promotion_from_dict(d: dict[str, Any]) -> Promotion:
    return Promotion(
        version=model_version_from_dict(d["version"]),
        gate=gate_result_from_dict(d["gate"]),
        transition=None if d.get("transition") is None else transition_from_dict(d["transition"]),
        request=None if d.get("request") is None else request_from_dict(d["request"]),
    )


def lineage_from_dict(d: dict[str, Any]) -> Lineage:
    return Lineage(
        model=model_version_from_dict(d["model"]),
        run=None if d.get("run") is None else RunLineage(**d["run"]),
        datasets=[DatasetLineage(**x) for x in d.get("datasets", [])],
        features=list(d.get("features", [])),
        signature=d.get("signature"),
        flavor=d.get("flavor"),
    )
