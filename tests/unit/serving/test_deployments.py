"""Traffic routing (single, shadow, canary, A/B, rollout), the rollback judge and the A/B tests."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest
from scipy import stats as scipy_stats

from loopml.errors import InvalidInput
from loopml.serving.deployments import (
    TrafficRouter,
    VariantStats,
    compare,
    student_t_sf,
    two_proportion_z,
    welch_t,
)
from loopml.serving.records import RollbackPolicy, TrafficPolicy, Variant


def canary(percent: float, **rollback: object) -> TrafficPolicy:
    policy = TrafficPolicy.canary("churn/1", "churn/2", percent)
    return replace(policy, rollback=RollbackPolicy(**rollback)) if rollback else policy  # type: ignore[arg-type]


def split(router: TrafficRouter, n: int, keyed: bool = False) -> Counter[str]:
    return Counter(router.choose(f"user-{i}" if keyed else None).variant.name for i in range(n))


def test_single_variant_gets_everything() -> None:
    router = TrafficRouter(TrafficPolicy.single("churn@champion"))
    decisions = [router.choose(None) for _ in range(100)]
    assert {d.variant.name for d in decisions} == {"primary"}
    assert all(d.shadows == [] for d in decisions)


@pytest.mark.parametrize("keyed", [False, True])
def test_canary_share_is_within_tolerance(keyed: bool) -> None:
    router = TrafficRouter(canary(10), rng=random.Random(7))
    counts = split(router, 10_000, keyed)
    # 10% of 10,000: binomial sd = 30, so +-150 is 5 sd
    assert abs(counts["canary"] - 1000) < 150


def test_update_changes_the_split_without_a_new_router() -> None:
    router = TrafficRouter(canary(10), rng=random.Random(1))
    router.update(canary(50))
    assert abs(split(router, 4000)["canary"] - 2000) < 200
    router.update(TrafficPolicy.single("churn/2"))  # full rollout
    assert split(router, 200) == Counter({"primary": 200})
    assert router.choose().variant.model_uri == "models:/churn/2"


def test_ab_assignment_is_sticky_by_key_and_independent_of_process() -> None:
    policy = TrafficPolicy((Variant("primary", "churn/1", 50, "primary"), Variant("b", "churn/2", 50, "b")))
    first, second = TrafficRouter(policy, rng=random.Random(1)), TrafficRouter(policy, rng=random.Random(2))
    keys = [f"customer-{i}" for i in range(500)]
    assignment = [first.choose(k).variant.name for k in keys]
    assert assignment == [first.choose(k).variant.name for k in keys]
    assert assignment == [second.choose(k).variant.name for k in keys]
    assert 200 < assignment.count("b") < 300


def test_shadow_gets_a_copy_and_never_answers() -> None:
    policy = TrafficPolicy((Variant("primary", "churn/1"), Variant("shadow", "churn/2", 25, "shadow")))
    router = TrafficRouter(policy, rng=random.Random(3))
    decisions = [router.choose(None) for _ in range(4000)]
    assert {d.variant.name for d in decisions} == {"primary"}
    copied = sum(1 for d in decisions if [s.name for s in d.shadows] == ["shadow"])
    assert abs(copied - 1000) < 150


def error_rate_rollback(min_requests: int = 50) -> TrafficRouter:
    return TrafficRouter(
        canary(50, min_requests=min_requests, max_error_rate_delta=0.05, max_p99_latency_ratio=None),
        endpoint="churn",
        check_every=1,
    )


def test_failing_canary_rolls_back_only_after_min_requests_with_evidence() -> None:
    router = error_rate_rollback(50)
    for _ in range(49):
        assert router.observe("canary", 1.0, error=True) is None
        assert router.observe("primary", 1.0, error=False) is None
    assert router.observe("primary", 1.0) is None  # stable has 50, canary 49: not yet
    event = router.observe("canary", 1.0, error=True)
    assert event is not None
    assert (event.kind, event.endpoint) == ("rollback", "churn")
    assert "error rate 1.0000 > stable 0.0000 + 0.05" in event.reason
    assert "models:/churn/2" in event.reason
    assert event.evidence["canary"]["requests"] == 50
    assert event.evidence["canary"]["error_rate"] == 1.0
    assert event.evidence["stable"]["requests"] == 50
    assert event.evidence["canary_model_uri"] == "models:/churn/2"
    assert event.policy is not None and [v.name for v in event.policy.variants] == ["primary"]
    # applied at once: every request now goes to the stable version
    assert split(router, 500) == Counter({"primary": 500})
    assert router.events == [event]
    # late outcomes of in-flight canary requests are ignored, not a second rollback
    assert router.observe("canary", 1.0, error=True) is None


def test_healthy_canary_is_not_rolled_back() -> None:
    router = error_rate_rollback(20)
    for i in range(500):
        assert router.observe("primary", 1.0, error=i % 50 == 0) is None
        assert router.observe("canary", 1.0, error=i % 40 == 0) is None
    assert [v.name for v in router.policy.variants] == ["primary", "canary"]


def test_slow_canary_rolls_back_on_p99() -> None:
    router = TrafficRouter(
        canary(50, min_requests=100, max_error_rate_delta=None, max_p99_latency_ratio=2.0), check_every=10
    )
    event = None
    for i in range(200):
        event = event or router.observe("primary", 5.0 + i % 3)
        event = event or router.observe("canary", 5.0 if i % 10 else 80.0)
    assert event is not None
    check = next(c for c in event.evidence["checks"] if c["signal"] == "latency_p99_ms")
    assert check["failed"] and check["canary"] == 80.0 and check["stable"] == 7.0
    assert "p99 latency 80.00 ms > 2 x stable 7.00 ms" in event.reason


def test_canary_with_worse_quality_rolls_back() -> None:
    router = TrafficRouter(
        canary(
            50, min_requests=30, max_error_rate_delta=None, max_p99_latency_ratio=None, max_quality_drop=0.1
        ),
        check_every=1,
    )
    event = None
    for _ in range(30):
        event = event or router.observe("primary", 1.0, quality=0.9)
        event = event or router.observe("canary", 1.0, quality=0.6)
    assert event is not None and "quality 0.6000 < stable 0.9000 - 0.1" in event.reason


def test_rollback_disabled_never_fires() -> None:
    router = TrafficRouter(canary(50, enabled=False, min_requests=1), check_every=1)
    for _ in range(100):
        assert router.observe("canary", 1.0, error=True) is None
        assert router.observe("primary", 1.0) is None


def test_update_keeps_evidence_for_an_unchanged_canary_and_resets_a_new_one() -> None:
    router = TrafficRouter(canary(10), check_every=1000)
    for _ in range(10):
        router.observe("canary", 1.0, error=True)
    router.update(canary(50))
    assert router.stats()["canary"]["requests"] == 10
    router.update(TrafficPolicy.canary("churn/1", "churn/3", 50))
    assert router.stats()["canary"]["requests"] == 0
    # an outcome from a request still running on the replaced version is not counted
    assert router.observe(Variant("canary", "churn/2", 50, "canary"), 1.0) is None
    assert router.stats()["canary"]["requests"] == 0


def test_ab_report_finds_a_real_difference_and_not_a_null_one() -> None:
    policy = replace(
        TrafficPolicy((Variant("primary", "m/1", 50, "primary"), Variant("b", "m/2", 50, "b"))),
        ab_metric="quality",
    )
    router = TrafficRouter(policy)
    rng = random.Random(11)
    for _ in range(400):
        router.observe("primary", rng.gauss(10, 1), quality=rng.gauss(0.50, 0.1))
        router.observe("b", rng.gauss(10, 1), quality=rng.gauss(0.55, 0.1))
    report = router.ab_report()
    arm = report["arms"]["b"]
    assert (report["metric"], report["baseline"], arm["test"]) == ("quality", "primary", "Welch's t-test")
    assert arm["significant"] and arm["p_value"] < 0.001 and arm["difference"] > 0
    latency = router.ab_report("latency_ms")["arms"]["b"]
    assert latency["n"] == 400 and not latency["significant"]


def test_significance_tests_agree_with_scipy() -> None:
    t, p = welch_t(1.0, 4.0, 30, 2.5, 9.0, 45)
    ref = scipy_stats.ttest_ind_from_stats(2.5, 3.0, 45, 1.0, 2.0, 30, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-9)
    for tv, df in [(0.0, 5), (0.7, 3.3), (2.0, 10), (4.5, 120), (12.0, 2)]:
        assert student_t_sf(tv, df) == pytest.approx(scipy_stats.t.sf(tv, df), rel=1e-9, abs=1e-15)
    z, p = two_proportion_z(40, 500, 62, 500)
    assert p == pytest.approx(2 * scipy_stats.norm.sf(abs(z)))


def test_too_few_requests_give_no_verdict() -> None:
    a, b = VariantStats(), VariantStats()
    a.add(1.0, False, None)
    assert compare(a, b, "error_rate")["p_value"] is None
    assert not compare(a, b, "latency_ms")["significant"]
    with pytest.raises(InvalidInput) as excinfo:
        compare(a, b, "revenue")  # type: ignore[arg-type]
    assert excinfo.value.details["field"] == "ab_metric"
