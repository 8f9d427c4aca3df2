"""``loopml monitor``: create monitors, run them, list their alerts, write reports.

    $ loopml monitor create churn-drift --endpoint churn --reference churn@3 --window 1h \\
          --schedule 5m --rule "drift_share>=0.3" --rule "accuracy<0.8" --webhook https://hooks.example.com/x
    $ loopml monitor run churn-drift
    $ loopml monitor alerts --monitor churn-drift
    $ loopml monitor report churn-drift --out churn.html     # or churn.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption

if TYPE_CHECKING:
    from loopml.monitoring.service import MonitorService

app = typer.Typer(help="Monitors: drift, quality, performance, alerts and reports.", no_args_is_help=True)


def _service() -> MonitorService:
    from loopml.monitoring.api import service

    return service()


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@app.command()
def create(
    name: str,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint whose predictions are watched.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (across endpoints) to watch.")] = None,
    reference: Annotated[str | None, typer.Option(help="Reference dataset version, e.g. churn@3.")] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="Feature to watch (repeatable).")
    ] = None,
    window: Annotated[str, typer.Option(help="Window length: 3600, 30m, 1h, 1d.")] = "1h",
    schedule: Annotated[str | None, typer.Option(help="Run every: 5m, @hourly (none: on demand).")] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="e.g. 'drift_share>=0.3' (repeatable).")
    ] = None,
    webhook: Annotated[
        list[str] | None, typer.Option("--webhook", help="Alert webhook URL (repeatable).")
    ] = None,
    allow_private_webhooks: Annotated[
        bool, typer.Option(help="Allow webhooks on loopback/private addresses (internal receivers).")
    ] = False,
    pipeline: Annotated[str | None, typer.Option(help="Pipeline to trigger when an alert opens.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Create a monitor (rules: drift_share, drift:FEATURE, quality_issues, accuracy, latency_p99, ...)."""
    from loopml.monitoring.monitors import Monitor

    spec = {
        "name": name,
        "endpoint": endpoint,
        "model": model,
        "reference": reference,
        "features": feature or None,
        "window": window,
        "schedule": schedule,
        "rules": rule or [],
        "webhooks": webhook or [],
        "allow_private_webhooks": allow_private_webhooks,
        "pipeline": pipeline,
    }
    found = _service().create_monitor(Monitor.from_dict(spec))
    if json_out:
        _echo_json(found.to_dict())
    else:
        typer.echo(f"created monitor {found.name} ({len(found.rules)} rule(s))")


@app.command("list")
def list_(json_out: JsonOption = False) -> None:
    """List monitors."""
    found = _service().list_monitors()
    if json_out:
        _echo_json([m.to_dict() for m in found])
        return
    for m in found:
        every = f"every {m.schedule_s}s" if m.schedule_s else "on demand"
        target = m.endpoint or f"model {m.model}"
        typer.echo(f"{m.name}\t{target}\t{m.reference or '-'}\t{every}\t{', '.join(r.key for r in m.rules)}")


@app.command()
def run(name: str, json_out: JsonOption = False) -> None:
    """Run a monitor once now; exits 1 when a rule is firing."""
    result = _service().run_monitor(name)
    if json_out:
        _echo_json(result.to_dict())
    else:
        requests = result.result.get("values", {}).get("requests") or 0
        typer.echo(f"monitor {name}: {result.status}, {requests:.0f} request(s)")
        if result.result.get("error"):
            typer.echo(f"  error: {result.result['error']}")
        for verdict in result.result.get("rules", []):
            typer.echo(f"  [{verdict['state']}] {verdict['message']}")
        opened = len(result.result.get("alerts_opened", []))
        if opened:
            typer.echo(f"  {opened} new alert(s); see `loopml monitor alerts --monitor {name}`")
    if result.status == "failed" or any(v["state"] == "firing" for v in result.result.get("rules", [])):
        raise typer.Exit(1)


@app.command()
def alerts(
    monitor: Annotated[str | None, typer.Option(help="Only this monitor's alerts.")] = None,
    status: Annotated[str | None, typer.Option(help="firing or resolved (default: both).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    json_out: JsonOption = False,
) -> None:
    """List alerts, newest first."""
    found = _service().list_alerts(monitor, status, limit)
    if json_out:
        _echo_json([a.to_dict() for a in found])
        return
    for a in found:
        delivered = sum(1 for d in a.delivery if d.get("ok"))
        typer.echo(
            f"{a.alert_id[:12]}\t{a.monitor}\t{a.status}\t{a.rule}\t{a.message}\twebhooks ok: {delivered}"
        )


@app.command()
def report(
    name: str,
    out: Annotated[Path, typer.Option(help="Output file: .html (self-contained) or .json.")] = Path(
        "report.html"
    ),
) -> None:
    """Write the monitor's latest drift, quality and performance as an HTML or JSON report."""
    from loopml.errors import InvalidInput
    from loopml.monitoring.records import DriftResult, QualityReport
    from loopml.monitoring.report import write_report

    svc = _service()
    runs = svc.list_runs(name, limit=1) or [svc.run_monitor(name)]
    result = runs[0].result
    if not result.get("drift"):
        why = result.get("error") or "no reference or empty window"
        raise InvalidInput(
            f"monitor {name!r}'s latest run has no drift result ({why}); "
            "give it a reference dataset version and traffic, then `loopml monitor run`",
            details={"monitor": name},
        )
    drift = DriftResult.from_dict(result["drift"])
    quality = QualityReport.from_dict(result["quality"]) if result.get("quality") else None
    monitor = svc.get_monitor(name)
    perf = svc.performance(monitor.endpoint, window_s=monitor.window_s) if monitor.endpoint else None
    path = write_report(out, drift, quality=quality, performance=perf)
    typer.echo(f"wrote {path}")
