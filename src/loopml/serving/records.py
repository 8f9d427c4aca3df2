"""Typed records the serving capability takes and returns.

An **endpoint** is a name that routes requests to one or more model versions
(**variants**) under a **traffic policy**, optionally through a **micro-batcher**.
Every change of policy (by a user, or by the automatic rollback judge) is kept as
a **deployment event** with its evidence.

Traffic semantics, in one place:

* exactly one variant has role ``primary``: the stable version, where traffic
  returns on rollback;
* ``primary``, ``canary`` and ``b`` variants are *live*: they share the traffic in
  proportion to their ``weight`` (a canary of weight 10 next to a primary of 90
  gets 10% of requests);
* a ``shadow`` variant gets a copy of ``weight`` percent of requests; its outputs
  are logged and never returned.

>>> p = TrafficPolicy.canary("models:/churn@champion", "models:/churn@challenger", 10)
>>> [(v.name, v.role, v.weight) for v in p.variants]
[('primary', 'primary', 90.0), ('canary', 'canary', 10.0)]
>>> TrafficPolicy.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args

from loopml.errors import InvalidInput

Role = Literal["primary", "canary", "shadow", "b"]
EventKind = Literal["created", "updated", "rollback", "promoted", "deleted"]
QualitySignal = Literal["error_rate", "latency_ms", "quality"]

ROLES: tuple[str, ...] = get_args(Role)
LIVE_ROLES = frozenset({"primary", "canary", "b"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_name(name: object, what: str = "endpoint") -> str:
    """An endpoint or variant name: it appears in URLs, so letters, digits, ``_.-`` only."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{what} name {str(name)[:60]!r} is invalid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (it appears in URLs)",
            details={"field": "name"},
        )
    return name


def normalize_model_uri(uri: str) -> str:
    """``churn@champion`` and ``churn/3`` are shorthand for ``models:/churn@champion`` etc."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput("model URI must be a non-empty string", details={"field": "model_uri"})
    uri = uri.strip()
    return uri if ":/" in uri else f"models:/{uri}"


@dataclass(frozen=True, slots=True)
class Variant:
    """One model version an endpoint routes to.

    >>> Variant("primary", "churn@champion").model_uri
    'models:/churn@champion'
    """

    name: str
    model_uri: str
    weight: float = 100.0
    role: Role = "primary"

    def __post_init__(self) -> None:
        check_name(self.name, "variant")
        object.__setattr__(self, "model_uri", normalize_model_uri(self.model_uri))
        if self.role not in ROLES:
            raise InvalidInput(
                f"variant {self.name!r} has role {self.role!r}; use one of {', '.join(ROLES)}",
                details={"field": "role", "expected": list(ROLES)},
            )
        weight = float(self.weight)
        if not 0.0 <= weight <= (100.0 if self.role == "shadow" else 1e9):
            raise InvalidInput(
                f"variant {self.name!r} has weight {self.weight}; use a number >= 0"
                + (" and <= 100 (percent of requests copied)" if self.role == "shadow" else ""),
                details={"field": "weight"},
            )
        object.__setattr__(self, "weight", weight)

    @property
    def live(self) -> bool:
        """Whether its outputs are returned to callers (every role but ``shadow``)."""
        return self.role in LIVE_ROLES

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_uri": self.model_uri, "weight": self.weight, "role": self.role}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        return cls(
            name=str(data.get("name", "primary")),
            model_uri=str(data.get("model_uri", "")),
            weight=float(data.get("weight", 100.0)),
            role=cast(Role, data.get("role", "primary")),
        )


@dataclass(frozen=True, slots=True)
class RollbackPolicy:
    """When a canary is judged worse than the primary (all deltas are canary minus primary).

    The judge acts only after both variants have seen ``min_requests`` requests. A margin of
    ``None`` disables that check. ``quality`` is a per-request score reported by the caller
    (higher is better; ``POST /api/v1/endpoints/E/feedback``); ``max_quality_drop`` is how
    much lower the canary's mean may be.
    """

    enabled: bool = True
    min_requests: int = 100
    max_error_rate_delta: float | None = 0.05
    max_p99_latency_ratio: float | None = 2.0
    max_quality_drop: float | None = None

    def __post_init__(self) -> None:
        if int(self.min_requests) < 1:
            raise InvalidInput("rollback min_requests must be >= 1", details={"field": "min_requests"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "min_requests": self.min_requests,
            "max_error_rate_delta": self.max_error_rate_delta,
            "max_p99_latency_ratio": self.max_p99_latency_ratio,
            "max_quality_drop": self.max_quality_drop,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollbackPolicy:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """Variants plus how requests are assigned to them.

    ``sticky_header`` names the request header whose value assigns a caller to a live variant
    deterministically (A/B tests; without it, assignment is random per request).
    ``ab_metric`` is the metric the A/B significance test compares.
    """

    variants: tuple[Variant, ...]
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    sticky_header: str = "x-loopml-key"
    ab_metric: QualitySignal = "error_rate"

    def __post_init__(self) -> None:
        variants = tuple(self.variants)
        object.__setattr__(self, "variants", variants)
        primaries = [v for v in variants if v.role == "primary"]
        if len(primaries) != 1:
            raise InvalidInput(
                f"a traffic policy needs exactly one primary variant (the stable version), "
                f"got {len(primaries)}",
                details={"field": "variants"},
            )
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise InvalidInput(f"variant names must be unique, got {names}", details={"field": "variants"})
        if sum(v.weight for v in variants if v.live) <= 0:
            raise InvalidInput(
                "live variants (primary, canary, b) have zero total weight: no request could be served",
                details={"field": "weight"},
            )

    @property
    def primary(self) -> Variant:
        return next(v for v in self.variants if v.role == "primary")

    @property
    def live(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.live)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.role == "shadow")

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise InvalidInput(
            f"no variant {name!r}; variants are {', '.join(v.name for v in self.variants)}",
            details={"field": "variant"},
        )

    def stable_only(self) -> TrafficPolicy:
        """All live traffic to the primary (what a rollback applies); shadows are dropped too."""
        return replace(self, variants=(replace(self.primary, weight=100.0),))

    @classmethod
    def single(cls, model_uri: str) -> TrafficPolicy:
        """One model version gets every request."""
        return cls((Variant("primary", model_uri),))

    @classmethod
    def canary(cls, stable_uri: str, canary_uri: str, percent: float) -> TrafficPolicy:
        """``percent`` of requests to ``canary_uri``, the rest to ``stable_uri``."""
        if not 0.0 <= float(percent) <= 100.0:
            raise InvalidInput(
                f"canary percent {percent} must be between 0 and 100", details={"field": "canary"}
            )
        return cls(
            (
                Variant("primary", stable_uri, 100.0 - float(percent), "primary"),
                Variant("canary", canary_uri, float(percent), "canary"),
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": [v.to_dict() for v in self.variants],
            "rollback": self.rollback.to_dict(),
            "sticky_header": self.sticky_header,
            "ab_metric": self.ab_metric,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficPolicy:
        if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
            raise InvalidInput(
                "traffic policy must be an object with a 'variants' list", details={"field": "policy"}
            )
        return cls(
            variants=tuple(Variant.from_dict(v) for v in data["variants"]),
            rollback=RollbackPolicy.from_dict(data.get("rollback") or {}),
            sticky_header=str(data.get("sticky_header", "x-loopml-key")).lower(),
            ab_metric=cast(QualitySignal, data.get("ab_metric", "error_rate")),
        )


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Adaptive micro-batching for an endpoint (off by default).

    No request waits more than ``max_latency_ms`` for its batch to start; with more than
    ``max_queue`` requests waiting the server answers 503 with Retry-After.
    """

    enabled: bool = False
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    max_queue: int = 1024

    def __post_init__(self) -> None:
        if int(self.max_batch_size) < 1:
            raise InvalidInput("max_batch_size must be >= 1", details={"field": "max_batch_size"})
        if not 0.0 <= float(self.max_latency_ms) <= 60_000:
            raise InvalidInput(
                "max_latency_ms must be between 0 and 60000", details={"field": "max_latency_ms"}
            )
        if int(self.max_queue) < 1:
            raise InvalidInput("max_queue must be >= 1", details={"field": "max_queue"})

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "max_batch_size": self.max_batch_size,
            "max_latency_ms": self.max_latency_ms,
            "max_queue": self.max_queue,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> BatchingConfig:
        data = data or {}
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A named endpoint; ``revision`` grows by one on every update (hosts reload on change).

    ``trust_pickle`` lets hosts load its pickle-based (pyfunc) models, which run arbitrary code
    when loaded: off unless the operator says the models come from a trusted source.
    """

    name: str
    policy: TrafficPolicy
    batching: BatchingConfig
    created_at: int
    updated_at: int
    created_by: str
    description: str = ""
    revision: int = 1
    trust_pickle: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": self.policy.to_dict(),
            "batching": self.batching.to_dict(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
            "description": self.description,
            "revision": self.revision,
            "trust_pickle": self.trust_pickle,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Endpoint:
        return cls(
            name=str(data["name"]),
            policy=TrafficPolicy.from_dict(data["policy"]),
            batching=BatchingConfig.from_dict(data.get("batching")),
            created_at=int(data.get("created_at", 0)),
            updated_at=int(data.get("updated_at", 0)),
            created_by=str(data.get("created_by", "")),
            description=str(data.get("description", "")),
            revision=int(data.get("revision", 1)),
            trust_pickle=data.get("trust_pickle") is True,
        )


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """A change of an endpoint's traffic, with who/why and the evidence (for rollbacks: the
    per-variant request counts, error rates, p99 latencies and quality means that triggered it).

    >>> e = DeploymentEvent.new("churn", "rollback", reason="canary error rate 0.4 > 0.0 + 0.05")
    >>> e.kind, len(e.event_id)
    ('rollback', 32)
    """

    event_id: str
    endpoint: str
    kind: EventKind
    timestamp: int
    user: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    policy: TrafficPolicy | None = None  # the policy in force after the event

    @classmethod
    def new(
        cls,
        endpoint: str,
        kind: EventKind,
        *,
        reason: str = "",
        evidence: dict[str, Any] | None = None,
        policy: TrafficPolicy | None = None,
        user: str = "loopml",
    ) -> DeploymentEvent:
        """An event stamped now with a fresh id."""
        return cls(
            event_id=uuid.uuid4().hex,
            endpoint=endpoint,
            kind=kind,
            timestamp=int(time.time() * 1000),
            user=user,
            reason=reason,
            evidence=dict(evidence or {}),
            policy=policy,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "endpoint": self.endpoint,
            "kind": self.kind,
            "timestamp": self.timestamp,
            "user": self.user,
            "reason": self.reason,
            "evidence": self.evidence,
            "policy": self.policy.to_dict() if self.policy else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentEvent:
        policy = data.get("policy")
        return cls(
            event_id=str(data["event_id"]),
            endpoint=str(data["endpoint"]),
            kind=cast(EventKind, data["kind"]),
            timestamp=int(data["timestamp"]),
            user=str(data.get("user", "")),
            reason=str(data.get("reason", "")),
            evidence=dict(data.get("evidence") or {}),
            policy=TrafficPolicy.from_dict(policy) if policy else None,
        )
