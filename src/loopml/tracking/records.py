"""Typed records the tracking service takes and returns.

Metrics, params and tags are named tuples (cheap to build in the ingest hot
path, and rows as they are for ``executemany``); the rest are dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class ViewType(StrEnum):
    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"

    def stages(self) -> tuple[str, ...]:
        return {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",)}.get(
            self.value, ("active", "deleted")
        )


class Metric(NamedTuple):
    key: str
    value: float
    timestamp: int
    step: int = 0


# What ingest accepts: any (key, value, timestamp, step) tuple; Metric is one.
MetricTuple = tuple[str, float, int, int]


class Param(NamedTuple):
    key: str
    value: str


class RunTag(NamedTuple):
    key: str
    value: str


@dataclass(slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class DatasetInput:
    """A dataset a run consumed; ``context`` is e.g. ``training`` or ``evaluation``."""

    name: str
    digest: str
    source_type: str = "local"
    source: str = ""
    schema: str | None = None
    profile: str | None = None
    context: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ModelOutput:
    model_id: str
    step: int = 0


@dataclass(slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str


@dataclass(slots=True)
class Run:
    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[DatasetInput] = field(default_factory=list)
    outputs: list[ModelOutput] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.info.run_id


@dataclass(slots=True)
class RunPage:
    runs: list[Run]
    next_page_token: str | None = None


@dataclass(slots=True)
class ExperimentPage:
    experiments: list[Experiment]
    next_page_token: str | None = None


@dataclass(slots=True)
class Comparison:
    """The params/metrics table of a set of runs: one row per run, one column per key."""

    run_ids: list[str]
    run_names: list[str]
    param_keys: list[str]
    metric_keys: list[str]
    params: list[dict[str, str]]
    metrics: list[dict[str, float]]

    def differing_params(self) -> list[str]:
        """Param keys whose values are not the same in every run."""
        return [k for k in self.param_keys if len({p.get(k) for p in self.params}) > 1]


@dataclass(slots=True)
class LoggedModel:
    """An MLflow 3 logged model: an artifact tree with its own id, params and tags."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: str
    creation_timestamp: int
    last_updated_timestamp: int
    source_run_id: str | None = None
    model_type: str | None = None
    status_message: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


JSONDict = dict[str, Any]
