"""Typed records of pipeline runs, steps, definitions and triggers (what the API and CLI show)."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

# A run or step is in one of these states; the last three are final.
RUNNING, SUCCEEDED, FAILED, CACHED = "RUNNING", "SUCCEEDED", "FAILED", "CACHED"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class StepRecord:
    """One step of one run: ``cached`` when its outputs came from an earlier execution."""

    run_id: str
    step: str
    status: str
    cached: bool = False
    attempts: int = 0
    cache_key: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    outputs: list[dict[str, Any]] | None = None
    logs: dict[str, str] = field(default_factory=dict)
    tracking_run_id: str | None = None
    error: str | None = None
    upstream: list[str] | None = None  # the steps whose outputs it consumed (DAG edges)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at) / 1000

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


@dataclass(slots=True)
class PipelineRunRecord:
    """One run of a pipeline, with its parameters and (when read with steps) its steps."""

    run_id: str
    pipeline: str
    target: str
    status: str
    params: dict[str, Any]
    executor: str
    use_cache: bool
    created_by: str
    started_at: int
    finished_at: int | None = None
    error: str | None = None
    trigger_id: str | None = None
    resumed_from: str | None = None
    tracking_run_id: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started_at) / 1000

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = [s.to_dict() for s in self.steps]
        out["duration_s"] = self.duration_s
        return out


@dataclass(slots=True)
class Definition:
    """A registered pipeline: how to load it and what triggers it."""

    name: str
    target: str
    schedule: str | None = None
    on_dataset: str | None = None
    on_alert: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    cron_cursor: int | None = None
    dataset_cursor: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TriggerRecord:
    """One firing: manual, cron, dataset or alert; the run it started, or why none (skipped)."""

    trigger_id: str
    pipeline: str
    kind: str
    detail: str
    status: str  # "started", "skipped" or "failed"
    run_id: str | None
    message: str
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
