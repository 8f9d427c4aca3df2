"""Monitors on a real store: one alert per episode, webhooks retried, triggers claimed once,
``loopml monitor run`` end to end on a prediction log against a registered dataset version."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml.config import Settings
from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.monitoring import webhooks
from loopml.monitoring.local import LocalMonitorService
from loopml.monitoring.monitors import Monitor, Rule
from loopml.monitoring.scheduler import Scheduler
from loopml.serving.predlog import PredictionLog
from tests.unit.monitoring.test_webhooks import Receiver

T0 = 1_700_000_000_000
MIN = 60_000


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LocalMonitorService]:
    service = LocalMonitorService.from_settings(Settings.load(env={"LOOPML_HOME": str(tmp_path)}))
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
    service.data.register("ref", ref)
    yield service
    service.close()


def log_window(
    root: Path, start: int, shift: float, n: int = 1500, *, latency: float = 2.0, seed: int = 1
) -> None:
    """n one-row requests from start (ms) on, x shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    with PredictionLog(root) as plog:
        for i in range(n):
            plog.append(
                {
                    "request_id": f"{start}-{i}",
                    "endpoint": "churn",
                    "model_name": "churn",
                    "model_version": "1",
                    "variant": "primary",
                    "ts": start + i * 20,
                    "latency_ms": latency,
                    "status": "ok",
                    "inputs": {"x": [float(rng.normal(shift, 1))], "c": [str(rng.choice(["a", "b"]))]},
                    "outputs": [int(rng.integers(0, 2))],
                }
            )


def monitor(**kw: object) -> Monitor:
    spec = {
        "name": "churn-drift",
        "endpoint": "churn",
        "reference": "ref@1",
        "window": "1m",
        "rules": ["drift:x", "drift_share>=0.5"],
        "methods": {"x": "psi"},
        **kw,
    }
    return Monitor.from_dict(spec)


def test_an_alert_fires_once_per_episode_and_its_webhook_is_retried(
    svc: LocalMonitorService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "BACKOFF_S", 0.01)
    receiver = Receiver(fail=2)
    try:
        svc.create_monitor(monitor(webhooks=[receiver.url], allow_private_webhooks=True, pipeline="retrain"))
        root = svc.predictions_root
        for k, shift in enumerate([3.0, 3.0, 3.0, 0.0, 3.0]):  # drift persists, clears, returns
            log_window(root, T0 + k * MIN, shift, seed=k)
        runs = [svc.run_monitor("churn-drift", now=T0 + (k + 1) * MIN) for k in range(5)]
    finally:
        receiver.close()
    assert [r.status for r in runs] == ["ok"] * 5
    states = [{v["rule"]: v["state"] for v in r.result["rules"]}["drift:x"] for r in runs]
    assert states == ["firing", "firing", "firing", "ok", "firing"]
    x_alerts = [a for a in svc.list_alerts("churn-drift") if a.rule == "drift:x"]
    assert [a.status for a in x_alerts] == ["firing", "resolved"]  # newest first: a second episode
    first = x_alerts[1]
    assert (
        first.opened_at == T0 + MIN
        and first.last_seen_at == T0 + 3 * MIN
        and first.resolved_at == T0 + 4 * MIN
    )
    opened = [d for d in first.delivery if d["event"] == "opened"]
    assert opened[0]["ok"] and opened[0]["attempts"] == 3  # two 503s, then delivered
    assert [b["event"] for b in receiver.bodies].count("opened") == 4  # 2 rules x 2 episodes
    triggers = svc.list_triggers()
    assert {t.pipeline for t in triggers} == {"retrain"} and len(triggers) == 4
    claimed = svc.claim_trigger(triggers[0].trigger_id, "pipelines")
    assert claimed.status == "claimed" and claimed.claimed_by == "pipelines"
    with pytest.raises(Conflict, match="already claimed"):
        svc.claim_trigger(triggers[0].trigger_id, "someone-else")
    assert len(svc.list_triggers()) == 3


def test_an_empty_window_changes_no_alert(svc: LocalMonitorService) -> None:
    svc.create_monitor(monitor())
    log_window(svc.predictions_root, T0, 3.0)
    assert svc.run_monitor("churn-drift", now=T0 + MIN).result["alerts_opened"]
    empty = svc.run_monitor("churn-drift", now=T0 + 10 * MIN)
    assert empty.status == "no_data"
    assert {v["state"] for v in empty.result["rules"]} == {"unknown"}
    assert [a.status for a in svc.list_alerts("churn-drift")] == ["firing", "firing"]


def test_latency_and_error_rules(svc: LocalMonitorService) -> None:
    svc.create_monitor(monitor(name="lat", reference=None, rules=["latency_p99>100", "error_rate>0.1"]))
    log_window(svc.predictions_root, T0, 0.0, latency=250.0)
    run = svc.run_monitor("lat", now=T0 + MIN)
    verdicts = {v["rule"]: v for v in run.result["rules"]}
    assert verdicts["latency_p99>100"]["state"] == "firing" and verdicts["latency_p99>100"]["value"] == 250.0
    assert verdicts["error_rate>0.1"]["state"] == "ok"


def test_bad_definitions_are_refused_naming_the_field(svc: LocalMonitorService) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_monitor(monitor(webhooks=["http://169.254.169.254/"]))
    assert err.value.details["field"] == "webhooks"
    with pytest.raises(InvalidInput, match="reference"):
        svc.create_monitor(monitor(reference=None))
    with pytest.raises(InvalidInput, match="not 'METRIC OP NUMBER'"):
        Rule.parse("accuracy about 0.8")
    with pytest.raises(InvalidInput, match="schedule"):
        monitor(schedule="sometimes")
    with pytest.raises(NotFound, match="does not exist"):
        svc.run_monitor("nope")
    assert svc.list_monitors() == []


def test_the_scheduler_runs_due_monitors_once(svc: LocalMonitorService) -> None:
    svc.create_monitor(monitor(schedule="5m"))
    svc.create_monitor(monitor(name="manual"))
    sched = Scheduler(svc)
    assert sched.run_due(now=T0) == ["churn-drift"]
    assert sched.run_due(now=T0 + MIN) == []  # not due yet
    assert sched.run_due(now=T0 + 5 * MIN) == ["churn-drift"]
    assert len(svc.list_runs("churn-drift")) == 2 and svc.list_runs("manual") == []


def test_cli_monitor_run_end_to_end(svc: LocalMonitorService, tmp_path: Path) -> None:
    import time

    now = int(time.time() * 1000)
    log_window(svc.predictions_root, now - 40_000, 3.0, n=1500)
    env = {**os.environ, "LOOPML_HOME": str(tmp_path)}
    env.pop("LOOPML_TRACKING_URI", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "loopml.cli", "monitor", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    made = cli(
        "create", "m1", "--endpoint", "churn", "--reference", "ref@1", "--window", "1h", "--rule", "drift:x"
    )
    assert made.returncode == 0, made.stderr
    ran = cli("run", "m1")
    assert ran.returncode == 1, ran.stderr  # a firing rule exits 1 (usable in cron/CI)
    assert "[firing] feature 'x' drifted" in ran.stdout
    listed = cli("alerts", "--monitor", "m1")
    assert "drift:x" in listed.stdout and "firing" in listed.stdout
    out = tmp_path / "report.html"
    reported = cli("report", "m1", "--out", str(out))
    assert reported.returncode == 0, reported.stderr
    assert "<html" in out.read_text()[:2000].lower()
    refused = cli("create", "m2", "--endpoint", "churn", "--webhook", "http://10.0.0.1/x")
    assert refused.returncode == 2 and "private address" in refused.stderr
