"""Monitor definitions, rules, runs, alerts and triggers: plain records with to_dict/from_dict.

A :class:`Monitor` watches one endpoint (or one model's predictions across endpoints):
every ``schedule`` it takes the last ``window`` of the prediction log, computes drift and
data quality against a registered dataset version, performance with the labels that have
arrived, latency p99 and error rate, and checks its :class:`Rule` list. A violated rule
opens an :class:`Alert` (one per episode), which is delivered to the webhooks and may
create a :class:`Trigger` ("run pipeline NAME") for the pipelines capability.

Rules are written as text, e.g. in ``loopml monitor create --rule``:

==========================  ==========================================================
``drift_share>=0.3``        share of drifted features (dataset-level drift)
``drift:tenure``            the feature ``tenure`` is flagged as drifted
``quality_issues>=1``       number of data-quality issues (``quality_errors``: errors only)
``accuracy<0.8``            any performance metric (accuracy, f1, roc_auc, rmse, ...)
``latency_p99>250``         p99 latency in milliseconds
``error_rate>0.05``         share of failed requests
==========================  ==========================================================

>>> Rule.parse("accuracy<0.8")
Rule(metric='accuracy', op='<', threshold=0.8, feature=None)
>>> parse_interval("5m"), parse_interval("@hourly")
(300, 3600)
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_RULE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")
_INTERVAL = re.compile(r"^(?:every\s+)?(\d+)\s*(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAMED = {"@minutely": 60, "@hourly": 3600, "@daily": 86400, "@weekly": 7 * 86400}
OPS = (">=", "<=", ">", "<")
DATA_METRICS = ("drift_share", "quality_issues", "quality_errors", "latency_p99", "error_rate")
PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


def check_name(name: object) -> str:
    """A monitor name: 1-128 letters, digits, ``_.-``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"monitor name {name!r} must be 1-128 letters, digits, '_', '.' or '-'", details={"field": "name"}
        )
    return name


def parse_interval(value: int | float | str | None, field_name: str = "schedule") -> int | None:
    """Seconds from ``300``, ``"300"``, ``"5m"``, ``"every 2h"``, ``"@hourly"``; None stays None.

    >>> parse_interval("every 30s"), parse_interval(None)
    (30, None)
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{field_name} must be a duration like '5m'", details={"field": field_name})
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        text = value.strip().lower()
        match = _INTERVAL.match(text)
        if text in _NAMED:
            seconds = _NAMED[text]
        elif match:
            seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
        else:
            raise InvalidInput(
                f"{field_name} {value!r} is not a duration: write seconds, '30s', '5m', '2h', '1d', "
                "'every 10m' or @minutely/@hourly/@daily/@weekly",
                details={"field": field_name},
            )
    if seconds < 1:
        raise InvalidInput(
            f"{field_name} must be at least 1 second, got {value!r}", details={"field": field_name}
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Rule:
    """One condition that opens an alert while it holds.

    ``metric`` is a name from :data:`DATA_METRICS` or :data:`PERFORMANCE_METRICS`, or
    ``"drift"`` with ``feature`` set (the feature's drift verdict; op/threshold unused).
    """

    metric: str
    op: str = ">="
    threshold: float = 0.0
    feature: str | None = None

    @property
    def key(self) -> str:
        """The identity of the condition, used to de-duplicate alerts."""
        return (
            f"drift:{self.feature}" if self.metric == "drift" else f"{self.metric}{self.op}{self.threshold:g}"
        )

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``"accuracy<0.8"`` or ``"drift:tenure"`` (see the module doc for the names)."""
        if not isinstance(text, str):
            raise InvalidInput(f"rule {text!r} must be text like 'accuracy<0.8'", details={"field": "rules"})
        if text.strip().startswith("drift:"):
            return cls("drift", feature=text.strip().removeprefix("drift:").strip()).checked()
        match = _RULE.match(text)
        if not match:
            raise InvalidInput(
                f"rule {text!r} is not 'METRIC OP NUMBER' (e.g. 'drift_share>=0.3', 'accuracy<0.8') "
                "or 'drift:FEATURE'",
                details={"field": "rules"},
            )
        try:
            threshold = float(match.group(3))
        except ValueError:
            raise InvalidInput(
                f"rule {text!r}: {match.group(3)!r} is not a number", details={"field": "rules"}
            ) from None
        return cls(match.group(1), match.group(2), threshold).checked()

    def checked(self) -> Rule:
        if self.metric == "drift":
            if not self.feature:
                raise InvalidInput(
                    "rule 'drift:' needs a feature name, e.g. 'drift:tenure'", details={"field": "rules"}
                )
            return self
        if self.metric not in DATA_METRICS + PERFORMANCE_METRICS:
            raise InvalidInput(
                f"rule metric {self.metric!r} is unknown; use one of "
                f"{', '.join(DATA_METRICS + PERFORMANCE_METRICS)} or drift:FEATURE",
                details={"field": "rules"},
            )
        if self.op not in OPS:
            raise InvalidInput(
                f"rule operator {self.op!r} is not one of {', '.join(OPS)}", details={"field": "rules"}
            )
        return self

    def holds(self, value: float) -> bool:
        """Whether ``value`` violates the rule (the alert condition)."""
        return {
            ">=": value >= self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
        }[self.op]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold, "feature": self.feature}

    @classmethod
    def from_any(cls, value: Any) -> Rule:
        if isinstance(value, Rule):
            return value.checked()
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            return cls(
                str(value.get("metric", "")),
                str(value.get("op", ">=")),
                float(value.get("threshold", 0.0)),
                value.get("feature"),
            ).checked()
        raise InvalidInput(f"rule {value!r} must be text or a mapping", details={"field": "rules"})


@dataclass(frozen=True, slots=True)
class Monitor:
    """What to watch, against which reference, how often, and what to do when a rule holds.

    >>> m = Monitor("churn-drift", endpoint="churn", reference="churn@3", window_s=3600,
    ...             schedule_s=300, rules=[Rule.parse("drift_share>=0.3")])
    >>> Monitor.from_dict(m.to_dict()) == m
    True
    """

    name: str
    endpoint: str | None = None
    model: str | None = None
    reference: str | None = None
    features: list[str] | None = None
    window_s: int = 3600
    schedule_s: int | None = None
    rules: list[Rule] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)
    allow_private_webhooks: bool = False
    pipeline: str | None = None  # the action: run this registered pipeline when an alert opens
    thresholds: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    correction: str | None = None
    task: str = "auto"
    description: str = ""
    created_at: int = 0
    updated_at: int = 0
    created_by: str = ""
    last_run_at: int | None = None

    def checked(self) -> Monitor:
        """Validate the definition (webhook URLs are checked separately, they need DNS)."""
        check_name(self.name)
        if not self.endpoint and not self.model:
            raise InvalidInput(
                f"monitor {self.name!r} watches nothing: give endpoint= or model=",
                details={"field": "endpoint"},
            )
        if self.window_s < 1:
            raise InvalidInput(
                f"monitor {self.name!r}: window must be >= 1 second", details={"field": "window"}
            )
        needs_reference = any(
            r.metric in ("drift", "drift_share", "quality_issues", "quality_errors") for r in self.rules
        )
        if needs_reference and not self.reference:
            raise InvalidInput(
                f"monitor {self.name!r} has drift or quality rules but no reference dataset version; "
                "pass reference='name@version'",
                details={"field": "reference"},
            )
        if self.task not in ("auto", "classification", "regression"):
            raise InvalidInput(
                f"task {self.task!r} is not auto, classification or regression", details={"field": "task"}
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "model": self.model,
            "reference": self.reference,
            "features": list(self.features) if self.features is not None else None,
            "window_s": self.window_s,
            "schedule_s": self.schedule_s,
            "rules": [r.to_dict() for r in self.rules],
            "webhooks": list(self.webhooks),
            "allow_private_webhooks": self.allow_private_webhooks,
            "pipeline": self.pipeline,
            "thresholds": dict(self.thresholds),
            "methods": dict(self.methods),
            "correction": self.correction,
            "task": self.task,
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
            "last_run_at": self.last_run_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Monitor:
        """A monitor from its JSON form; durations may be given as text ('1h', '5m')."""
        try:
            return cls(
                name=d["name"],
                endpoint=d.get("endpoint") or None,
                model=d.get("model") or None,
                reference=d.get("reference") or None,
                features=list(d["features"]) if d.get("features") is not None else None,
                window_s=parse_interval(d.get("window_s", d.get("window", 3600)), "window") or 3600,
                schedule_s=parse_interval(d.get("schedule_s", d.get("schedule"))),
                rules=[Rule.from_any(r) for r in d.get("rules") or []],
                webhooks=[str(u) for u in d.get("webhooks") or []],
                allow_private_webhooks=bool(d.get("allow_private_webhooks", False)),
                pipeline=d.get("pipeline") or None,
                thresholds={str(k): float(v) for k, v in (d.get("thresholds") or {}).items()},
                methods={str(k): str(v) for k, v in (d.get("methods") or {}).items()},
                correction=d.get("correction") or None,
                task=str(d.get("task") or "auto"),
                description=str(d.get("description") or ""),
                created_at=int(d.get("created_at") or 0),
                updated_at=int(d.get("updated_at") or 0),
                created_by=str(d.get("created_by") or ""),
                last_run_at=d.get("last_run_at"),
            )
        except KeyError as exc:
            raise InvalidInput(
                f"monitor definition misses {exc.args[0]!r}", details={"field": exc.args[0]}
            ) from None
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"monitor definition is malformed: {exc}", details={"field": "monitor"}
            ) from None


@dataclass(frozen=True, slots=True)
class Alert:
    """One episode of a violated rule: ``firing`` while it holds, then ``resolved``."""

    alert_id: str
    monitor: str
    rule: str
    status: str
    message: str
    value: float | None
    opened_at: int
    last_seen_at: int
    resolved_at: int | None
    run_id: str
    delivery: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "monitor": self.monitor,
            "rule": self.rule,
            "status": self.status,
            "message": self.message,
            "value": self.value,
            "opened_at": self.opened_at,
            "last_seen_at": self.last_seen_at,
            "resolved_at": self.resolved_at,
            "run_id": self.run_id,
            "delivery": list(self.delivery),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        fields: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        return cls(**{**fields, "delivery": d.get("delivery") or []})


@dataclass(frozen=True, slots=True)
class Trigger:
    """A pending action an alert asked for: run ``pipeline`` (claimed once by its consumer)."""

    trigger_id: str
    alert_id: str
    monitor: str
    pipeline: str
    status: str
    created_at: int
    claimed_at: int | None = None
    claimed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trigger:
        fields: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class MonitorRun:
    """One execution: what was measured (``result``), which rules held, which alerts changed."""

    run_id: str
    monitor: str
    started_at: int
    finished_at: int
    status: str  # "ok", "no_data" (empty window) or "failed"
    result: dict[str, Any]

    @property
    def alerts_opened(self) -> list[str]:
        return list(self.result.get("alerts_opened", []))

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorRun:
        fields: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)
