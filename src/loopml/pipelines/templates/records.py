"""Typed records of the continuous-training template: its config and what each stage returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from loopml.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.data.records import DatasetVersion
    from loopml.monitoring.records import DriftResult, QualityReport
    from loopml.registry.records import GateResult, ModelVersion

Status = Literal["promoted", "rejected", "rolled_back", "registered", "invalid"]
CHALLENGER = "challenger"
STATUS_TAG = "loopml.ct.status"


@dataclass(frozen=True)
class CTConfig:
    """What the template trains, where it registers and ships it, and how strict it is.

    ``features`` are the model's input columns (default: every column but the target, the
    time column and ``exclude``). ``endpoint`` enables the canary stages; without it a version
    that passes the gate is promoted in the registry only. ``serving_url`` is the loopml
    server hosting the endpoint, when the stages run elsewhere (its live statistics are read
    over HTTP).
    """

    model_name: str
    dataset: str
    target: str
    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    time_column: str | None = None
    holdout_fraction: float = 0.2
    reference: str | None = None
    gate: tuple[str, ...] | None = None
    experiment: str = "continuous-training"
    endpoint: str | None = None
    serving_url: str | None = None
    canary_percent: float = 50.0
    canary_min_requests: int = 100
    max_quality_drop: float = 0.05
    max_error_rate_delta: float | None = 0.05
    max_p99_latency_ratio: float | None = None
    canary_timeout_s: float = 120.0
    feature_service: Any = None
    feature_views: tuple[Any, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a pipeline parameter); the feature service and views are not in it."""
        skip = {"feature_service", "feature_views"}
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}
        return {k: list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v
                for k, v in out.items()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CTConfig:
        """A config from its JSON form; unknown keys are refused by name."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInput(
                f"continuous-training config has no field {unknown[0]!r}; fields: "
                f"{', '.join(cls.__dataclass_fields__)}",
                details={"field": unknown[0]},
            )
        tuples = ("features", "exclude", "gate", "feature_views")
        values: dict[str, Any] = {
            k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()
        }
        return cls(**values)

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise InvalidInput(
                f"holdout_fraction must be between 0 and 1, got {self.holdout_fraction}",
                details={"field": "holdout_fraction"},
            )
        if not 0.0 < self.canary_percent < 100.0:
            raise InvalidInput(
                f"canary_percent must be between 0 and 100, got {self.canary_percent}",
                details={"field": "canary_percent"},
            )


@dataclass(frozen=True)
class Ingested:
    """The two dataset versions one run trains and evaluates on."""

    train: DatasetVersion
    holdout: DatasetVersion


@dataclass(frozen=True)
class ModelData:
    """The model-ready tables (feature columns and target) the candidate is fitted and gated on,
    registered as ``DATASET-model-train`` and ``DATASET-model-holdout``."""

    train: DatasetVersion
    holdout: DatasetVersion


@dataclass(frozen=True)
class Validation:
    """Quality and drift of the new training rows against the reference version."""

    reference: str | None
    quality: QualityReport | None
    drift: DriftResult | None

    @property
    def drift_share(self) -> float | None:
        return None if self.drift is None else self.drift.drift_share


@dataclass(frozen=True)
class Candidate:
    """A trained model: its tracked run, where it was logged, and its held-out metrics."""

    run_id: str
    model_uri: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class GateOutcome:
    """The registered candidate version and the gate's verdict against the champion."""

    version: ModelVersion
    result: GateResult
    champion: int | None

    @property
    def passed(self) -> bool:
        return self.result.passed

    def reason(self) -> str:
        """One clause per failed threshold, e.g. ``roc_auc >= champion.roc_auc - 0.01: 0.61 < 0.87``."""
        failed = [r for r in self.result.results if not r.passed]
        clauses = [
            f"{r.threshold}: {_num(r.value)} vs limit {_num(r.limit)} {r.note}".strip() for r in failed
        ]
        return "; ".join(clauses) or (self.result.note or "gate failed")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Decision:
    """How the rollout ended: ``promoted`` or ``rolled_back``, why, and the live evidence."""

    status: Literal["promoted", "rolled_back"]
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class CTResult:
    """What one run of the template did, stage by stage."""

    status: Status
    reason: str = ""
    ingested: Ingested | None = None
    data: ModelData | None = None
    validation: Validation | None = None
    candidate: Candidate | None = None
    gate: GateOutcome | None = None
    decision: Decision | None = None
    stages: list[str] = field(default_factory=list)

    @property
    def version(self) -> int | None:
        return None if self.gate is None else self.gate.version.version


class LiveTraffic(Protocol):
    """Per-variant live statistics of an endpoint (``HttpEndpointService.traffic``)."""

    def traffic(self, name: str, metric: str | None = None, alpha: float = 0.05) -> dict[str, Any]: ...
