"""Traffic routing for an endpoint: single, shadow, canary, A/B, rollout, automatic rollback.

A :class:`TrafficRouter` holds an endpoint's :class:`~loopml.serving.records.TrafficPolicy`
and answers, per request, which live variant serves it and which shadows get a
copy (:meth:`TrafficRouter.choose`). The app reports each outcome back
(:meth:`TrafficRouter.observe`); the router keeps per-variant statistics in
constant memory and, while a canary runs, asks its :class:`RollbackJudge`
whether the canary is worse than the stable version. When it is, the router
sends all traffic to the primary at once and returns the
:class:`~loopml.serving.records.DeploymentEvent` (with the evidence) for the
app to record through ``EndpointService.rollback``.

Assignment with a request key (the policy's ``sticky_header``) hashes the key,
so a caller stays on one variant across requests, processes and restarts as
long as the weights do not change: that is what an A/B test needs.
:meth:`TrafficRouter.ab_report` compares each arm to the primary on the
policy's ``ab_metric`` (two-proportion z-test for the error rate, Welch's t-test
for latency or a reported quality score).

>>> from loopml.serving.records import TrafficPolicy
>>> router = TrafficRouter(TrafficPolicy.canary("churn/1", "churn/2", 10), endpoint="churn")
>>> router.choose("customer-42") == router.choose("customer-42")
True
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import InvalidInput
from loopml.serving.records import DeploymentEvent, QualitySignal, RollbackPolicy, TrafficPolicy, Variant

LATENCY_WINDOW = 1024
"""Latencies kept per variant for p99 (a ring buffer: the most recent requests)."""

LATENCY_FLOOR_MS = 1.0
"""A canary's p99 must exceed ``ratio * stable p99`` by this much too: sub-millisecond p99s
jitter by more than 2x with the scheduler alone, and that is no reason to roll back."""

_SHADOW_SALT = b"loopml-shadow:"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes: ``variant`` answers; each of ``shadows`` gets a copy."""

    variant: Variant
    shadows: list[Variant] = field(default_factory=list)


class _Running:
    """Mean and variance in O(1) per value (Welford), for the Welch tests."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


class VariantStats:
    """One variant's outcomes since it joined the policy: counts, latency, quality."""

    __slots__ = ("_filled", "_next", "_window", "errors", "latency", "quality", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = _Running()
        self.quality = _Running()
        self._window = [0.0] * LATENCY_WINDOW
        self._next = 0
        self._filled = 0

    def add(self, latency_ms: float, error: bool, quality: float | None) -> None:
        self.requests += 1
        self.errors += bool(error)
        self.latency.add(latency_ms)
        self._window[self._next] = latency_ms
        self._next = (self._next + 1) % LATENCY_WINDOW
        self._filled = min(self._filled + 1, LATENCY_WINDOW)
        if quality is not None and math.isfinite(quality):
            self.quality.add(float(quality))

    def add_quality(self, quality: float) -> None:
        """A score reported after the request was counted (a delayed label)."""
        if math.isfinite(quality):
            self.quality.add(float(quality))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile (ms) over the recent window; 0 with no requests."""
        if not self._filled:
            return 0.0
        ordered = sorted(self._window[: self._filled])
        return ordered[min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1)]

    def summary(self) -> dict[str, Any]:
        """Plain numbers for events, reports and ``/api``: requests, errors, rates, p50/p99."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "latency_mean_ms": round(self.latency.mean, 4),
            "latency_p50_ms": round(self.percentile(50), 4),
            "latency_p99_ms": round(self.percentile(99), 4),
            "quality_n": self.quality.n,
            "quality_mean": round(self.quality.mean, 6) if self.quality.n else None,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why the judge wants a rollback: one line per failed check, and the numbers behind it."""

    reasons: list[str]
    evidence: dict[str, Any]


class RollbackJudge:
    """Decides whether a canary is worse than the stable version, per a ``RollbackPolicy``.

    Nothing is judged before both arms have ``min_requests`` requests. Then the canary fails
    if its error rate exceeds stable's by more than ``max_error_rate_delta``, its p99 exceeds
    ``max_p99_latency_ratio`` times stable's (plus :data:`LATENCY_FLOOR_MS`), or its mean
    quality is lower by more than ``max_quality_drop`` (over ``min_requests`` scored requests).

    >>> judge = RollbackJudge(RollbackPolicy(min_requests=2))
    >>> stable, canary = VariantStats(), VariantStats()
    >>> for _ in range(2):
    ...     stable.add(1.0, False, None)
    ...     canary.add(1.0, True, None)
    >>> judge.judge(stable, canary).reasons
    ['error rate 1.0000 > stable 0.0000 + 0.05']
    """

    def __init__(self, policy: RollbackPolicy) -> None:
        self.policy = policy

    def ready(self, stable: VariantStats, canary: VariantStats) -> bool:
        n = self.policy.min_requests
        return self.policy.enabled and stable.requests >= n and canary.requests >= n

    def judge(self, stable: VariantStats, canary: VariantStats) -> Verdict | None:
        """A verdict when the canary fails a check, else ``None`` (also when not ready)."""
        if not self.ready(stable, canary):
            return None
        p = self.policy
        reasons: list[str] = []
        checks: list[dict[str, Any]] = []
        if p.max_error_rate_delta is not None:
            failed = canary.error_rate > stable.error_rate + p.max_error_rate_delta
            checks.append(
                _check("error_rate", stable.error_rate, canary.error_rate, p.max_error_rate_delta, failed)
            )
            if failed:
                reasons.append(
                    f"error rate {canary.error_rate:.4f} > stable {stable.error_rate:.4f} "
                    f"+ {p.max_error_rate_delta:g}"
                )
        if p.max_p99_latency_ratio is not None:
            s99, c99 = stable.percentile(99), canary.percentile(99)
            limit = s99 * p.max_p99_latency_ratio + LATENCY_FLOOR_MS
            failed = c99 > limit
            checks.append(_check("latency_p99_ms", s99, c99, p.max_p99_latency_ratio, failed))
            if failed:
                reasons.append(
                    f"p99 latency {c99:.2f} ms > {p.max_p99_latency_ratio:g} x stable {s99:.2f} ms "
                    f"+ {LATENCY_FLOOR_MS:g} ms"
                )
        if p.max_quality_drop is not None and min(stable.quality.n, canary.quality.n) >= p.min_requests:
            sq, cq = stable.quality.mean, canary.quality.mean
            failed = sq - cq > p.max_quality_drop
            checks.append(_check("quality", sq, cq, p.max_quality_drop, failed))
            if failed:
                reasons.append(f"quality {cq:.4f} < stable {sq:.4f} - {p.max_quality_drop:g}")
        if not reasons:
            return None
        evidence = {
            "min_requests": p.min_requests,
            "checks": checks,
            "stable": stable.summary(),
            "canary": canary.summary(),
        }
        return Verdict(reasons, evidence)


def _check(signal: str, stable: float, canary: float, margin: float, failed: bool) -> dict[str, Any]:
    return {"signal": signal, "stable": stable, "canary": canary, "margin": margin, "failed": failed}


@dataclass(frozen=True, slots=True)
class _Table:
    """An immutable routing table: swapped whole on update, so ``choose`` needs no lock."""

    policy: TrafficPolicy
    live: tuple[Variant, ...]
    cumulative: tuple[float, ...]
    shadows: tuple[Variant, ...]

    @classmethod
    def build(cls, policy: TrafficPolicy) -> _Table:
        live = tuple(v for v in policy.live if v.weight > 0)
        cumulative: list[float] = []
        total = 0.0
        for v in live:
            total += v.weight
            cumulative.append(total)
        return cls(policy, live, tuple(cumulative), tuple(s for s in policy.shadows if s.weight > 0))


class TrafficRouter:
    """Assigns requests to an endpoint's variants and rolls a failing canary back.

    ``choose`` is lock-free and O(variants); ``observe`` is O(1) per request (the judge's
    p99 sort over the latency window runs at most every ``check_every`` canary requests).

    >>> from loopml.serving.records import TrafficPolicy, RollbackPolicy
    >>> from dataclasses import replace
    >>> policy = TrafficPolicy.canary("churn/1", "churn/2", 50)
    >>> policy = replace(policy, rollback=RollbackPolicy(min_requests=5))
    >>> router = TrafficRouter(policy, endpoint="churn")
    >>> events = [router.observe("canary", 1.0, error=True) for _ in range(5)]
    >>> events = [router.observe("primary", 1.0, error=False) for _ in range(5)]
    >>> events[-1].kind, [v.name for v in router.policy.variants]
    ('rollback', ['primary'])
    """

    def __init__(
        self,
        policy: TrafficPolicy,
        *,
        endpoint: str = "endpoint",
        check_every: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.check_every = max(1, check_every)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._table = _Table.build(policy)
        self._stats: dict[str, VariantStats] = {v.name: VariantStats() for v in policy.variants}
        self._judge = RollbackJudge(policy.rollback)
        self._since_check = 0
        self.events: list[DeploymentEvent] = []

    @property
    def policy(self) -> TrafficPolicy:
        """The policy in force (after a rollback: the primary alone)."""
        return self._table.policy

    def choose(self, request_key: str | None = None) -> Decision:
        """The variant that answers this request and the shadows that get a copy.

        With a ``request_key`` the choice is a stable hash of the key (sticky: same key, same
        variant while the weights stay the same); without one it is random per request.
        """
        table = self._table
        if request_key is None:
            point, shadow_point = self._rng.random(), self._rng.random()
        else:
            point, shadow_point = (
                _unit_hash(request_key.encode()),
                _unit_hash(_SHADOW_SALT + request_key.encode()),
            )
        variant = table.live[0]
        if len(table.live) > 1:
            index = bisect_right(table.cumulative, point * table.cumulative[-1])
            variant = table.live[min(index, len(table.live) - 1)]
        shadows = [s for s in table.shadows if shadow_point * 100.0 < s.weight]
        return Decision(variant, shadows)

    def update(self, policy: TrafficPolicy) -> None:
        """Apply a new policy now (no restart). A variant keeps its statistics if its name and
        model are unchanged (a canary going from 10% to 50% keeps its evidence); a new or
        re-pointed variant starts from zero."""
        with self._lock:
            old = {v.name: v.model_uri for v in self._table.policy.variants}
            self._stats = {
                v.name: self._stats[v.name]
                if old.get(v.name) == v.model_uri and v.name in self._stats
                else VariantStats()
                for v in policy.variants
            }
            self._judge = RollbackJudge(policy.rollback)
            self._since_check = 0
            self._table = _Table.build(policy)

    def observe(
        self,
        variant: Variant | str,
        latency_ms: float,
        error: bool = False,
        quality: float | None = None,
    ) -> DeploymentEvent | None:
        """Record one request's outcome on ``variant``; returns the rollback event if this
        observation made the judge roll the canary back (the router has already applied it).

        Outcomes for a variant no longer in the policy (requests in flight during an update)
        are ignored.
        """
        name = variant if isinstance(variant, str) else variant.name
        with self._lock:
            stats = self._stats.get(name)
            if stats is None:
                return None
            if not isinstance(variant, str) and self._uri_of(name) != variant.model_uri:
                return None
            stats.add(latency_ms, error, quality)
            return self._maybe_roll_back()

    def observe_quality(self, variant: Variant, quality: float) -> DeploymentEvent | None:
        """Record a quality score for a request already counted by :meth:`observe` (feedback
        that arrives after the answer: the request is not counted twice). Returns the rollback
        event if the score made the judge roll the canary back; ignored like :meth:`observe`
        for a variant that left the policy or was re-pointed."""
        with self._lock:
            stats = self._stats.get(variant.name)
            if stats is None or self._uri_of(variant.name) != variant.model_uri:
                return None
            stats.add_quality(quality)
            return self._maybe_roll_back()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-variant summaries (requests, error rate, p50/p99, quality) for reports and APIs."""
        with self._lock:
            return {name: s.summary() for name, s in self._stats.items()}

    def ab_report(self, metric: QualitySignal | None = None, *, alpha: float = 0.05) -> dict[str, Any]:
        """Compare every other live variant with the primary on ``metric`` (default: the policy's
        ``ab_metric``): per-arm figures, the difference, the test, its p-value, and whether it is
        significant at ``alpha``."""
        metric = metric or self.policy.ab_metric
        primary = self.policy.primary.name
        with self._lock:
            base = self._stats[primary]
            arms = {
                v.name: compare(base, self._stats[v.name], metric, alpha)
                for v in self.policy.live
                if v.name != primary
            }
            return {
                "endpoint": self.endpoint,
                "metric": metric,
                "alpha": alpha,
                "baseline": primary,
                "arms": arms,
            }

    def _uri_of(self, name: str) -> str | None:
        for v in self._table.policy.variants:
            if v.name == name:
                return v.model_uri
        return None

    def _maybe_roll_back(self) -> DeploymentEvent | None:
        policy = self._table.policy
        canaries = [v for v in policy.variants if v.role == "canary" and v.weight > 0]
        if not canaries or not policy.rollback.enabled:
            return None
        # The judge's p99 sorts the latency window: amortise it over check_every observations.
        self._since_check += 1
        if self._since_check < self.check_every:
            return None
        self._since_check = 0
        stable = self._stats[policy.primary.name]
        for canary in canaries:
            verdict = self._judge.judge(stable, self._stats[canary.name])
            if verdict is not None:
                return self._apply_rollback(canary, verdict)
        return None

    def _apply_rollback(self, canary: Variant, verdict: Verdict) -> DeploymentEvent:
        policy = self._table.policy
        stable_policy = policy.stable_only()
        primary = policy.primary
        reason = (
            f"canary {canary.name!r} ({canary.model_uri}) is worse than {primary.name!r} "
            f"({primary.model_uri}): {'; '.join(verdict.reasons)}; all traffic returned to "
            f"{primary.name!r}"
        )
        evidence = {
            **verdict.evidence,
            "canary_variant": canary.name,
            "canary_model_uri": canary.model_uri,
            "stable_variant": primary.name,
            "stable_model_uri": primary.model_uri,
        }
        event = DeploymentEvent.new(
            self.endpoint, "rollback", reason=reason, evidence=evidence, policy=stable_policy
        )
        self._stats = {primary.name: self._stats[primary.name]}
        self._table = _Table.build(stable_policy)
        self._judge = RollbackJudge(stable_policy.rollback)
        self.events.append(event)
        return event


def _unit_hash(data: bytes) -> float:
    """A stable hash of ``data`` mapped to [0, 1): the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


# --- significance tests ------------------------------------------------------------------------


def compare(
    base: VariantStats, arm: VariantStats, metric: QualitySignal, alpha: float = 0.05
) -> dict[str, Any]:
    """One arm against the baseline on ``metric``.

    ``error_rate``: two-proportion z-test (pooled). ``latency_ms`` and ``quality``: Welch's
    t-test on the per-request values. The p-value is two-sided; with too few requests for the
    test (fewer than 2 per arm, or no variance at all) it is ``None`` and nothing is significant.

    >>> a, b = VariantStats(), VariantStats()
    >>> for i in range(200):
    ...     a.add(1.0, i % 10 == 0, None)
    ...     b.add(1.0, i % 2 == 0, None)
    >>> compare(a, b, "error_rate")["significant"]
    True
    """
    if metric == "error_rate":
        stat, p_value = two_proportion_z(base.errors, base.requests, arm.errors, arm.requests)
        base_value, arm_value, test = base.error_rate, arm.error_rate, "two-proportion z-test"
    elif metric in ("latency_ms", "quality"):
        a, b = (base.latency, arm.latency) if metric == "latency_ms" else (base.quality, arm.quality)
        stat, p_value = welch_t(a.mean, a.variance, a.n, b.mean, b.variance, b.n)
        base_value, arm_value, test = a.mean, b.mean, "Welch's t-test"
    else:
        raise InvalidInput(
            f"A/B metric {metric!r} is unknown; use error_rate, latency_ms or quality",
            details={"field": "ab_metric", "expected": ["error_rate", "latency_ms", "quality"]},
        )
    return {
        "test": test,
        "baseline": base_value,
        "value": arm_value,
        "difference": arm_value - base_value,
        "baseline_n": base.requests if metric != "quality" else base.quality.n,
        "n": arm.requests if metric != "quality" else arm.quality.n,
        "statistic": stat,
        "p_value": p_value,
        "significant": p_value is not None and p_value < alpha,
    }


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """Pooled two-proportion z-test: (z, two-sided p). ``(None, None)`` when undefined.

    >>> z, p = two_proportion_z(10, 100, 30, 100)
    >>> round(z, 3), round(p, 5)
    (3.536, 0.00041)
    """
    if n1 < 2 or n2 < 2:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (x2 / n2 - x1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def welch_t(
    mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int
) -> tuple[float | None, float | None]:
    """Welch's unequal-variance t-test from summary statistics: (t, two-sided p).

    >>> t, p = welch_t(0.0, 1.0, 50, 0.5, 1.0, 50)
    >>> round(t, 4), round(p, 4)
    (2.5, 0.0141)
    """
    if n1 < 2 or n2 < 2:
        return None, None
    s1, s2 = var1 / n1, var2 / n2
    se2 = s1 + s2
    if se2 <= 0:
        return None, None
    t = (mean2 - mean1) / math.sqrt(se2)
    df = se2**2 / (s1**2 / (n1 - 1) + s2**2 / (n2 - 1))
    return t, 2.0 * student_t_sf(abs(t), df)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom, t >= 0 (no SciPy needed).

    >>> round(student_t_sf(2.0, 10), 6)
    0.036694
    """
    x = df / (df + t * t)
    return 0.5 * _betainc(df / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by Lentz's continued fraction (Numerical Recipes)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast only below the mean; use the symmetry above it.
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
