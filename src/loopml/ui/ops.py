"""Monitoring: drift per feature over time, reference vs current histograms, performance once
labels arrive, and alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from loopml.monitoring.service import MonitorService
from loopml.ui._common import empty_state, page

router = APIRouter()
RUNS_SHOWN = 100


def _svc(request: Request) -> MonitorService:
    svc: MonitorService = request.app.state.monitoring
    return svc


@router.get("/monitoring")
def monitoring(request: Request) -> Response:
    svc = _svc(request)
    monitors = svc.list_monitors()
    if not monitors:
        return empty_state(
            request,
            "monitoring",
            "No monitors yet",
            [
                "A monitor compares an endpoint's recent requests with a reference dataset version "
                "(drift, data quality), joins delayed labels for performance, and raises alerts.",
            ],
            [
                "loopml monitor create churn-drift --endpoint churn --reference churn@1 "
                "--rule 'drift_share>=0.3'",
                "loopml monitor run churn-drift",
            ],
        )
    alerts = svc.list_alerts(limit=100)
    return page(request, "monitoring.html", "monitoring", monitors=monitors, alerts=alerts)


def _window_end(run: Any) -> int:
    """The end of the window a run measured (what its numbers describe), else when it finished."""
    window = (run.result or {}).get("window") or {}
    end = window.get("end") if isinstance(window, dict) else None
    return int(end) if isinstance(end, int | float) else int(run.finished_at)


def _drift_series(runs: list[Any]) -> dict[str, Any]:
    """Per feature, its drift statistic at each run (oldest first), and each run's verdict."""
    times: list[int] = []
    series: dict[str, list[float | None]] = {}
    for i, run in enumerate(runs):
        drift = (run.result or {}).get("drift")
        times.append(_window_end(run))
        for f in (drift or {}).get("features", []):
            values = series.setdefault(f["column"], [None] * len(runs))
            values[i] = f.get("statistic")
    return {"times": times, "series": series}


def _performance_series(runs: list[Any]) -> dict[str, Any]:
    """Per performance metric (once labels arrived), its value at each run."""
    times: list[int] = []
    series: dict[str, list[float | None]] = {}
    for i, run in enumerate(runs):
        perf = (run.result or {}).get("performance") or {}
        times.append(_window_end(run))
        metrics = perf.get("metrics") if isinstance(perf, dict) else None
        for key, value in (metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, [None] * len(runs))[i] = float(value)
    return {"times": times, "series": series}


@router.get("/monitoring/{name}")
def monitor_page(request: Request, name: str) -> Response:
    svc = _svc(request)
    monitor = svc.get_monitor(name)
    runs = svc.list_runs(name, limit=RUNS_SHOWN)[::-1]
    latest = next((r for r in reversed(runs) if (r.result or {}).get("drift")), None)
    histograms = (latest.result["drift"]["features"] if latest is not None else [])[:30]
    return page(
        request,
        "monitor.html",
        "monitoring",
        monitor=monitor,
        runs=runs[::-1],
        drift=_drift_series(runs),
        performance=_performance_series(runs),
        histograms=histograms,
        latest=latest,
        alerts=svc.list_alerts(monitor=name, limit=100),
    )
