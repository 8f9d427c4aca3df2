"""The closed loop, smaller than ``make demo``, against a real ``loopml server``: every transition
the demo narrates is asserted on the stores, not on its printout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import loopml.data
import loopml.monitoring
import loopml.pipelines
import loopml.registry
import loopml.serving
from loopml import sdk
from loopml.config import Settings
from loopml.pipelines import engine
from loopml.pipelines.templates.closed_loop import ClosedLoop, LoopConfig, LoopResult, live_server
from loopml.pipelines.templates.records import STATUS_TAG

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

SMALL = LoopConfig(rows=12_000, traffic_rows=400, canary_min_requests=40, max_iter=30, workers=3)


def _reset() -> None:
    for module in (loopml.registry, loopml.monitoring, loopml.serving, loopml.data, engine):
        module.reset()
    sdk.reset()


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopResult, Settings]]:
    home = tmp_path_factory.mktemp("closed-loop") / "home"
    mp = pytest.MonkeyPatch()
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        mp.delenv(var, raising=False)
    mp.setenv("LOOPML_HOME", str(home))
    _reset()
    settings = Settings.load()
    try:
        with live_server(settings) as url:
            loop = ClosedLoop(url, SMALL, settings=settings)
            try:
                yield loop.run(), settings
            finally:
                loop.close()
    finally:
        _reset()
        mp.undo()


def test_v1_goes_to_production_and_the_monitor_stays_quiet_before_the_shift(
    played: tuple[LoopResult, Settings],
) -> None:
    result, _ = played
    v1 = result.verdicts["v1"]
    assert v1["status"] == "promoted" and v1["version"] == 1
    quiet = result.monitor_runs["before the shift"]
    assert quiet.status == "ok" and quiet.result["values"]["requests"] > 0
    assert {r["state"] for r in quiet.result["rules"]} == {"ok"}  # labels arrived: accuracy measured
    assert quiet.alerts_opened == [] and quiet.result["triggers"] == []


def test_the_shift_opens_drift_and_accuracy_alerts_that_trigger_retraining(
    played: tuple[LoopResult, Settings],
) -> None:
    result, _ = played
    drifted = result.monitor_runs["after the shift"]
    firing = {r["rule"] for r in drifted.result["rules"] if r["state"] == "firing"}
    assert firing == {"drift_share>=0.3", "accuracy<0.75"}
    assert drifted.result["values"]["accuracy"] < 0.75
    assert len(drifted.alerts_opened) == 2 and len(drifted.result["triggers"]) == 2
    triggers = {t.trigger_id: t for t in loopml.monitoring.service().list_triggers(status=None)}
    assert {triggers[t].status for t in drifted.result["triggers"]} == {"claimed"}
    kinds = result.kinds()
    assert kinds.count("trigger_started") == 1 and kinds.count("trigger_skipped") == 1  # no duplicate run
    started = next(t.data["record"] for t in result.transitions if t.kind == "trigger_started")
    assert any(alert in started.detail for alert in drifted.alerts_opened)
    run = loopml.pipelines.get_run(started.run_id)
    assert run.pipeline == "fraud-retrain" and run.trigger_id == started.trigger_id == result.trigger_id
    assert run.status == "SUCCEEDED"


def test_v2_is_gated_against_v1_canaried_and_promoted(played: tuple[LoopResult, Settings]) -> None:
    result, _ = played
    v2 = result.verdicts["v2"]
    assert v2["status"] == "promoted" and v2["version"] == 2 and v2["champion"] == 1
    svc = loopml.registry.service()
    evaluation = svc.list_evaluations("fraud", 2)[0]
    assert evaluation.champion_version == 1
    assert evaluation.metrics["roc_auc"] > evaluation.champion_metrics["roc_auc"] + 0.2
    assert svc.get_registered_model("fraud").aliases["champion"] == 2
    assert svc.get_model_version("fraud", 2).tags[STATUS_TAG] == "champion"
    events = loopml.serving.service().list_events("fraud")  # newest first
    split = ["models:/fraud/1", "models:/fraud/2"]
    canary = next(e for e in events if e.policy and [v.model_uri for v in e.policy.variants] == split)
    assert [v.role for v in canary.policy.variants] == ["primary", "canary"]  # type: ignore[union-attr]
    promoted = next(e for e in reversed(events) if e.kind == "promoted" and "canary" in e.reason)
    assert promoted.timestamp >= canary.timestamp and "canary live quality" in promoted.reason
    assert [v.model_uri for v in loopml.serving.service().get_endpoint("fraud").policy.variants] == [
        "models:/fraud/2"
    ]
    assert not [e for e in events if e.kind == "rollback" and e.timestamp < promoted.timestamp]


def test_the_bad_candidate_is_refused_by_the_gate_with_the_reason(
    played: tuple[LoopResult, Settings],
) -> None:
    result, _ = played
    bad = result.verdicts["bad candidate"]
    assert bad["status"] == "rejected" and not bad["passed"]
    assert "roc_auc >= champion.roc_auc - 0.01" in bad["reason"]
    svc = loopml.registry.service()
    assert svc.get_model_version("fraud", bad["version"]).tags[STATUS_TAG] == "rejected"
    assert svc.get_registered_model("fraud").aliases["champion"] == 2  # nothing moved
    assert loopml.serving.service().get_endpoint("fraud").policy.primary.model_uri == "models:/fraud/2"


def test_the_stale_candidate_passes_its_gate_and_the_canary_rolls_it_back(
    played: tuple[LoopResult, Settings],
) -> None:
    result, _ = played
    stale = result.verdicts["stale candidate"]
    assert stale["passed"] and stale["status"] == "rolled_back"
    assert "quality" in stale["reason"] and f"models:/fraud/{stale['version']}" in stale["reason"]
    svc = loopml.registry.service()
    assert svc.get_model_version("fraud", stale["version"]).tags[STATUS_TAG] == "rolled_back"
    assert svc.get_registered_model("fraud").aliases["champion"] == 2
    events = loopml.serving.service().list_events("fraud")
    rollback = next(e for e in events if e.kind == "rollback")
    assert rollback.evidence["canary_model_uri"] == f"models:/fraud/{stale['version']}"
    checks = {c["signal"]: c for c in rollback.evidence["checks"]}
    assert checks["quality"]["failed"] and checks["quality"]["canary"] < checks["quality"]["stable"] - 0.05
    policy = loopml.serving.service().get_endpoint("fraud").policy
    assert [v.model_uri for v in policy.variants] == ["models:/fraud/2"]


def test_the_monitor_follows_the_new_champion_and_the_story_is_complete(
    played: tuple[LoopResult, Settings],
) -> None:
    result, settings = played
    monitor = loopml.monitoring.service().get_monitor("fraud-live")
    assert monitor.reference == "card-transactions-model-train@2"
    healthy = result.monitor_runs["with v2 in production"]
    assert {r["state"] for r in healthy.result["rules"]} == {"ok"}
    assert len(healthy.result["alerts_resolved"]) == 2
    assert loopml.monitoring.service().list_alerts("fraud-live", status="firing") == []
    assert "challenger" not in loopml.registry.service().get_registered_model("fraud").aliases
    assert result.kinds()[-2:] == ["rejected", "rolled_back"]
    assert Path(settings.home, "demo-server.log").is_file()
