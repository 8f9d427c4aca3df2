"""``loopml pipeline``: run, resume, inspect and schedule pipelines.

$ loopml pipeline run flows/churn.py:training -p alpha=0.5 -p n_estimators=200
$ loopml pipeline run training --executor process:2 --no-cache
$ loopml pipeline resume 4c1e...                 # from the failed step, reusing the rest
$ loopml pipeline logs 4c1e... train             # stdout, stderr and traceback of a step
$ loopml pipeline show 4c1e... --json
$ loopml pipeline register flows/churn.py:training --cron "0 3 * * *" --on-dataset churn
$ loopml pipeline list
$ loopml pipeline triggers --pipeline training
$ loopml scheduler                               # cron, dataset and alert triggers, alone
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption
from loopml.errors import InvalidInput

if TYPE_CHECKING:
    from loopml.config import Settings
    from loopml.pipelines.records import PipelineRunRecord, StepRecord
    from loopml.pipelines.store import PipelineStore

app = typer.Typer(help="Pipelines: run, resume, logs, schedules and triggers.", no_args_is_help=True)

ParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Parameter as key=value (repeatable).")
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(help="inprocess, process[:N], ray[:N] or ray://HOST:PORT (default: LOOPML_EXECUTOR)."),
]
_STYLE = {"SUCCEEDED": "green", "CACHED": "cyan", "FAILED": "red", "RUNNING": "yellow"}


def _store() -> tuple[Settings, PipelineStore]:
    from loopml.config import Settings
    from loopml.pipelines.engine import context

    settings = Settings.load()
    return settings, context(settings)[0]


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (types are the pipeline's to coerce)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"parameter {item!r} is not key=value", details={"field": "param"})
        out[key.strip()] = value
    return out


def _progress(json_out: bool) -> Any:
    if json_out:
        return None

    def show(step: StepRecord) -> None:
        style = _STYLE.get(step.status, "white")
        label = "cached" if step.cached else step.status.lower()
        took = f" {step.duration_s:.2f}s" if step.duration_s is not None and not step.cached else ""
        retry = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        typer.secho(f"  {label:>9}  {step.step}{took}{retry}", fg=style, err=True)

    return show


def _finish(record: PipelineRunRecord, json_out: bool) -> None:
    from loopml.cli.render import print_json

    if json_out:
        print_json(record.to_dict())
    else:
        cached = sum(1 for s in record.steps if s.cached)
        took = f" in {record.duration_s:.2f}s" if record.duration_s is not None else ""
        typer.secho(
            f"run {record.run_id} {record.status}{took}: {len(record.steps)} steps, {cached} cached",
            fg=_STYLE.get(record.status),
        )
        if record.error:
            typer.echo(f"error: {record.error}", err=True)
    if record.status != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="Registered name, FILE.py[:NAME] or MODULE:NAME.")],
    param: ParamOption = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse cached step outputs (--no-cache runs every step).")
    ] = True,
    executor: ExecutorOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run a pipeline now (a manual trigger, recorded in the trigger history)."""
    from loopml.pipelines.loader import resolve
    from loopml.pipelines.records import TriggerRecord, new_id, now_ms

    settings, store = _store()
    pipe = resolve(target, store)
    trigger = TriggerRecord(
        new_id(), pipe.name, "manual", f"loopml pipeline run {target}", "started", None, "", now_ms()
    )
    store.record_trigger(trigger)
    if not json_out:
        typer.echo(f"pipeline {pipe.name} ({pipe.target or target})", err=True)
    try:
        result = pipe.run(
            parse_params(param), cache=cache, executor=executor, settings=settings,
            trigger_id=trigger.trigger_id, raise_on_failure=False, progress=_progress(json_out),
        )  # fmt: skip
    except Exception as exc:
        store.update_trigger(trigger.trigger_id, "failed", None, str(exc))
        raise
    store.update_trigger(trigger.trigger_id, "started", result.run_id, f"run {result.status}")
    _finish(result.record, json_out)


@app.command()
def resume(
    run_id: str,
    executor: ExecutorOption = None,
    json_out: JsonOption = False,
) -> None:
    """Re-run a failed run from its failed step, reusing the steps that finished."""
    from loopml.pipelines import resume as resume_run

    settings, _ = _store()
    result = resume_run(
        run_id, settings, executor=executor, raise_on_failure=False, progress=_progress(json_out)
    )
    _finish(result.record, json_out)


@app.command()
def logs(
    run_id: str,
    step: Annotated[str | None, typer.Argument(help="One step (default: every step that logged).")] = None,
    stream: Annotated[str, typer.Option(help="stdout, stderr, traceback or all.")] = "all",
) -> None:
    """Print the captured stdout, stderr and traceback of a run's steps."""
    if stream not in ("stdout", "stderr", "traceback", "all"):
        raise InvalidInput(
            f"--stream {stream!r}: use stdout, stderr, traceback or all", details={"field": "stream"}
        )
    _, store = _store()
    steps = [store.get_step(run_id, step)] if step else store.get_run(run_id).steps
    printed = False
    for s in steps:
        for name in ("stdout", "stderr", "traceback"):
            digest = s.logs.get(name)
            if digest is None or stream not in ("all", name):
                continue
            typer.secho(f"==> {s.step} {name} <==", bold=True, err=True)
            typer.echo(store.blobs.read_bytes(digest).decode(errors="replace").rstrip("\n"))
            printed = True
    if not printed:
        typer.echo(
            f"no {stream if stream != 'all' else ''} logs for {step or 'any step'} of run {run_id}", err=True
        )


@app.command()
def show(run_id: str, json_out: JsonOption = False) -> None:
    """A run: its parameters, status and every step (cached, attempts, duration)."""
    from loopml.cli.render import _table, fmt_time, print_json, print_table

    _, store = _store()
    record = store.get_run(run_id)
    if json_out:
        print_json(record.to_dict())
        return
    typer.echo(f"run {record.run_id} of pipeline {record.pipeline}: {record.status}")
    typer.echo(f"  started {fmt_time(record.started_at)}  executor {record.executor}  params {record.params}")
    if record.resumed_from:
        typer.echo(f"  resumed from {record.resumed_from}")
    if record.error:
        typer.echo(f"  error: {record.error}")
    table = _table("Step", "Status", "Cached", "Attempts", "Duration", "Outputs")
    for s in record.steps:
        outputs = ", ".join(o["kind"] for o in s.outputs or [])
        took = "" if s.duration_s is None else f"{s.duration_s:.2f}s"
        style = _STYLE.get(s.status, "white")
        table.add_row(
            s.step, f"[{style}]{s.status}[/]", "yes" if s.cached else "", str(s.attempts), took, outputs
        )
    print_table(table)


@app.command("list")
def list_pipelines(
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many runs.")] = 20,
    json_out: JsonOption = False,
) -> None:
    """Registered pipelines (with their triggers) and the latest runs."""
    from loopml.cli.render import _table, fmt_duration, fmt_time, print_json, print_table

    _, store = _store()
    definitions = store.list_definitions()
    runs = store.list_runs(pipeline, limit)
    if json_out:
        print_json({"pipelines": [d.to_dict() for d in definitions], "runs": [r.to_dict() for r in runs]})
        return
    table = _table("Pipeline", "Target", "Cron", "On dataset", "On alert", title="Registered pipelines")
    for d in definitions:
        table.add_row(d.name, d.target, d.schedule or "", d.on_dataset or "", "yes" if d.on_alert else "")
    print_table(table)
    table = _table("Run", "Pipeline", "Status", "Started", "Duration", "Trigger", title="Runs")
    for r in runs:
        style = _STYLE.get(r.status, "white")
        duration = fmt_duration(r.started_at, r.finished_at)
        table.add_row(
            r.run_id,
            r.pipeline,
            f"[{style}]{r.status}[/]",
            fmt_time(r.started_at),
            duration,
            r.trigger_id or "",
        )
    print_table(table)


@app.command()
def triggers(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline's triggers.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOption = False,
) -> None:
    """Trigger history: manual, cron, dataset and alert firings, and the run each started."""
    from loopml.cli.render import _table, fmt_time, print_json, print_table

    _, store = _store()
    items = store.list_triggers(pipeline, limit)
    if json_out:
        print_json([t.to_dict() for t in items])
        return
    table = _table("When", "Pipeline", "Kind", "Detail", "Status", "Run", "Message")
    for t in items:
        table.add_row(
            fmt_time(t.created_at), t.pipeline, t.kind, t.detail, t.status, t.run_id or "", t.message
        )
    print_table(table)


@app.command()
def register(
    target: Annotated[str, typer.Argument(help="FILE.py[:NAME] or MODULE:NAME.")],
    name: Annotated[
        str | None, typer.Option(help="Register under this name (default: the pipeline's).")
    ] = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule, e.g. '0 3 * * *'.")] = None,
    on_dataset: Annotated[str | None, typer.Option(help="Run when this dataset gets a new version.")] = None,
    on_alert: Annotated[bool, typer.Option(help="Run when a monitoring alert names this pipeline.")] = True,
    param: ParamOption = None,
    json_out: JsonOption = False,
) -> None:
    """Register a pipeline by name with its triggers (update it by registering again)."""
    from loopml.cli.render import print_json
    from loopml.pipelines import register as register_pipeline

    settings, _ = _store()
    saved = register_pipeline(
        target, name=name, schedule=cron, on_dataset=on_dataset, on_alert=on_alert,
        params=parse_params(param), settings=settings,
    )  # fmt: skip
    if json_out:
        print_json(saved.to_dict())
    else:
        typer.echo(f"registered pipeline {saved.name} -> {saved.target}")


@app.command()
def unregister(name: str) -> None:
    """Remove a registered pipeline (its runs and trigger history stay)."""
    _, store = _store()
    store.delete_definition(name)
    typer.echo(f"unregistered pipeline {name}")


@app.command()
def unlock(name: str) -> None:
    """Release a pipeline's run lock left by a process that died (its run is marked FAILED)."""
    _, store = _store()
    run_id = store.unlock(name)
    typer.echo(f"pipeline {name}: " + (f"released the lock of run {run_id}" if run_id else "was not locked"))


def scheduler(
    tick: Annotated[float, typer.Option(min=0.1, help="Seconds between checks.")] = 10.0,
    once: Annotated[bool, typer.Option(help="Check once, run what is due, and exit.")] = False,
) -> None:
    """Run the pipeline scheduler (cron, new dataset versions, monitoring alerts) in the foreground."""
    from loopml.monitoring.local import LocalMonitorService
    from loopml.pipelines.triggers import PipelineScheduler, check_local

    settings, _ = _store()
    check_local(settings)
    sched = PipelineScheduler(settings, tick_s=tick, monitor=LocalMonitorService.from_settings(settings))
    if once:
        for rec in sched.tick():
            typer.echo(f"{rec.kind} {rec.pipeline}: {rec.status} {rec.run_id or ''} {rec.message}")
        return
    typer.echo(f"pipeline scheduler: checking every {tick:g}s (Ctrl+C to stop)", err=True)
    try:
        while True:
            for rec in sched.tick():
                typer.echo(f"{rec.kind} {rec.pipeline}: {rec.status} {rec.run_id or ''} {rec.message}")
            time.sleep(tick)
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
