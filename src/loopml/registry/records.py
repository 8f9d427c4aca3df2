"""Typed records the registry service takes and returns.

They mirror MLflow's registry entities where MLflow has them (``RegisteredModel``,
``ModelVersion``, stages, aliases) and add what MLflow lacks: gates, evaluations,
promotion requests with approvals, the audit trail of transitions, and lineage.

>>> ModelStage.parse("production")
<ModelStage.PRODUCTION: 'Production'>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loopml.errors import InvalidInput

CHAMPION_ALIAS = "champion"


class ModelStage(StrEnum):
    """MLflow's stages, spelled as MLflow spells them on the wire."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @classmethod
    def parse(cls, text: str | ModelStage) -> ModelStage:
        """Case-insensitive: ``"production"``, ``"Production"`` and ``"PRODUCTION"`` are one stage."""
        if isinstance(text, ModelStage):
            return text
        for stage in cls:
            if stage.value.lower() == str(text).strip().lower():
                return stage
        raise InvalidInput(
            f"stage {text!r} is not one of {', '.join(s.value for s in cls)}",
            details={"field": "stage"},
        )


# The legal stage graph. Archived -> Production is deliberately absent: a retired version goes
# back through Staging (and so through evaluation against the current champion) before it can
# serve again. Same-stage moves are not transitions and are refused as well.
LEGAL_TRANSITIONS: dict[ModelStage, frozenset[ModelStage]] = {
    ModelStage.NONE: frozenset({ModelStage.STAGING, ModelStage.PRODUCTION, ModelStage.ARCHIVED}),
    ModelStage.STAGING: frozenset({ModelStage.NONE, ModelStage.PRODUCTION, ModelStage.ARCHIVED}),
    ModelStage.PRODUCTION: frozenset({ModelStage.STAGING, ModelStage.ARCHIVED}),
    ModelStage.ARCHIVED: frozenset({ModelStage.NONE, ModelStage.STAGING}),
}


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a registered model.

    ``source`` is the URI the version was created from (as given); ``storage_location`` is the
    ``mlflow-artifacts:/`` URI its files live under (what MLflow's get-download-uri answers);
    ``digest`` is the sha256 that identifies the model's artifacts (see ``LocalRegistryService``).
    """

    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: ModelStage
    source: str
    storage_location: str
    run_id: str | None
    digest: str
    user_id: str
    description: str = ""
    status: str = "READY"
    model_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model: its versions are numbered 1..n; ``aliases`` maps alias -> version."""

    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    # The newest version in each stage (MLflow's ``latest_versions``).
    latest_versions: list[ModelVersion] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegisteredModelPage:
    models: list[RegisteredModel]
    next_page_token: str | None = None


@dataclass(frozen=True, slots=True)
class ModelVersionPage:
    versions: list[ModelVersion]
    next_page_token: str | None = None


@dataclass(frozen=True, slots=True)
class Gate:
    """The thresholds a version must meet to reach Production (see ``loopml.registry.gates``)."""

    name: str
    thresholds: list[str]
    require_approval: bool = False
    updated_by: str = ""
    updated_at: int = 0


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """One threshold checked: ``value`` of the candidate against ``limit``; ``note`` says why
    when the check could not be made as written (no champion, metric missing)."""

    threshold: str
    metric: str
    value: float | None
    limit: float | None
    passed: bool
    note: str = ""

    def line(self) -> str:
        """``accuracy >= 0.9: value 0.93, limit 0.9, pass``."""
        value = "missing" if self.value is None else f"{self.value:.6g}"
        limit = "-" if self.limit is None else f"{self.limit:.6g}"
        verdict = "pass" if self.passed else "FAIL"
        note = f" ({self.note})" if self.note else ""
        return f"{self.threshold}: value {value}, limit {limit}, {verdict}{note}"


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict of a gate on one evaluation; ``passed`` iff every threshold passed."""

    passed: bool
    results: list[ThresholdResult] = field(default_factory=list)
    evaluation_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Metrics of a candidate and of the champion of the day, on the same dataset version."""

    evaluation_id: str
    name: str
    version: int
    dataset_name: str
    dataset_version: int
    dataset_digest: str
    metrics: dict[str, float]
    champion_version: int | None
    champion_metrics: dict[str, float]
    user: str
    created: int


@dataclass(frozen=True, slots=True)
class PromotionRequest:
    """A promotion waiting for (or decided by) a second person."""

    request_id: str
    name: str
    version: int
    to_stage: ModelStage
    status: RequestStatus
    requested_by: str
    requested_at: int
    reason: str
    gate: GateResult
    decided_by: str | None = None
    decided_at: int | None = None
    decision_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of the audit trail: who moved which version where, when, why, on what evidence."""

    transition_id: str
    name: str
    version: int
    from_stage: ModelStage
    to_stage: ModelStage
    user: str
    timestamp: int
    reason: str
    digest: str
    gate: GateResult | None = None
    request_id: str | None = None
    approved_by: str | None = None


@dataclass(frozen=True, slots=True)
class Promotion:
    """What ``promote`` did: applied (``transition`` set) or waiting (``request`` set)."""

    version: ModelVersion
    gate: GateResult
    transition: Transition | None = None
    request: PromotionRequest | None = None

    @property
    def pending(self) -> bool:
        return self.request is not None and self.request.status is RequestStatus.PENDING


@dataclass(frozen=True, slots=True)
class RunLineage:
    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    status: str
    user: str
    commit: str | None
    branch: str | None
    repo: str | None
    dirty: bool | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DatasetLineage:
    """A run input; ``version`` and ``num_rows`` are set when loopml.data knows the digest."""

    name: str
    digest: str
    context: str | None
    version: int | None = None
    num_rows: int | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        if self.version is None:
            return f"{self.name} ({self.digest[:12]})"
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class Lineage:
    """model version -> run -> commit -> dataset versions -> feature definitions."""

    model: ModelVersion
    run: RunLineage | None
    datasets: list[DatasetLineage] = field(default_factory=list)
    # Filled once loopml.features exists; the shape is reserved now so callers need not change.
    features: list[str] = field(default_factory=list)
    # The input/output schema of the model, when loopml.models logged it.
    signature: dict[str, Any] | None = None
    flavor: str | None = None
