"""Output: rich tables for people, JSON (and nothing else on stdout) for programs."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from loopml.tracking.records import Comparison, Experiment, Run

_MISSING = "[dim]-[/]"
_MAX_METRICS_IN_LIST = 4
_WIDE = 120  # below this many columns, the run list leaves out the start time


def console() -> Console:
    """A console on the current stdout (looked up per call, so test runners can capture it)."""
    return Console(highlight=False)


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def print_table(table: Table) -> None:
    console().print(table)


def fmt_time(ms: int | None) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def fmt_duration(start: int | None, end: int | None) -> str:
    if not start or not end:
        return ""
    seconds = (end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


def fmt_float(value: float) -> str:
    return f"{value:.6g}"


def _table(*columns: str | Column, title: str | None = None) -> Table:
    return Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")


def experiments_table(exps: Sequence[Experiment], show_stage: bool = False) -> Table:
    columns = ["ID", "Name", "Created", "Tags"] + (["Stage"] if show_stage else [])
    table = _table(*columns)
    for e in exps:
        tags = ", ".join(f"{k}={v}" for k, v in sorted(e.tags.items()) if not k.startswith("mlflow."))
        row = [e.experiment_id, escape(e.name), fmt_time(e.creation_time), escape(tags)]
        table.add_row(*row, *([e.lifecycle_stage] if show_stage else []))
    if not exps:
        table.caption = "no experiments"
    return table


def print_runs(runs: Sequence[Run], experiment_names: Mapping[str, str]) -> None:
    out = console()
    out.print(runs_table(runs, experiment_names, wide=out.width >= _WIDE))


def runs_table(runs: Sequence[Run], experiment_names: Mapping[str, str], wide: bool = True) -> Table:
    """One row per run; experiment and start time only when there is room and reason to show them."""
    show_exp = len({r.info.experiment_id for r in runs}) > 1
    table = _table(
        # Ids are what people copy into the next command: never truncate or wrap them.
        Column("Run ID", no_wrap=True, min_width=32),
        Column("Name", min_width=12, max_width=28, overflow="ellipsis"),
        *([Column("Experiment", max_width=20, overflow="ellipsis")] if show_exp else []),
        Column("Status", no_wrap=True),
        *([Column("Started", no_wrap=True)] if wide else []),
        Column("Metrics", min_width=18, no_wrap=True, overflow="ellipsis"),
    )
    for r in runs:
        i = r.info
        exp = [escape(experiment_names.get(i.experiment_id, i.experiment_id))] if show_exp else []
        started = [fmt_time(i.start_time)] if wide else []
        table.add_row(
            i.run_id, escape(i.run_name), *exp, _status(i.status), *started, escape(_metrics_summary(r))
        )
    table.caption = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
    return table


def _metrics_summary(run: Run) -> str:
    keys = sorted(run.metrics)
    shown = [f"{k}={run.metrics[k].value:.4g}" for k in keys[:_MAX_METRICS_IN_LIST]]
    more = len(keys) - _MAX_METRICS_IN_LIST
    return "\n".join(shown + ([f"+{more} more"] if more > 0 else []))


def _status(status: str) -> str:
    color = {"FINISHED": "green", "RUNNING": "cyan", "FAILED": "red", "KILLED": "yellow"}.get(status)
    return f"[{color}]{status}[/]" if color else status


def print_run(run: Run, experiment_name: str) -> None:
    out = console()
    i = run.info
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    for key, value in [
        ("run id", i.run_id),
        ("name", escape(i.run_name)),
        ("experiment", f"{escape(experiment_name)} (id {i.experiment_id})"),
        ("status", _status(i.status)),
        ("user", escape(i.user_id)),
        ("started", fmt_time(i.start_time)),
        ("ended", fmt_time(i.end_time)),
        ("duration", fmt_duration(i.start_time, i.end_time)),
        ("artifacts", escape(i.artifact_uri)),
    ]:
        info.add_row(key, value)
    out.print(info)
    out.print(_key_values("Params", run.params))
    metrics = _table("Metric", "Value", "Step", "Logged", title="Metrics")
    for key in sorted(run.metrics):
        m = run.metrics[key]
        metrics.add_row(escape(key), fmt_float(m.value), str(m.step), fmt_time(m.timestamp))
    out.print(metrics)
    out.print(_key_values("Tags", run.tags))
    inputs = _table("Dataset", "Digest", "Source", "Context", title="Inputs")
    for d in run.inputs:
        inputs.add_row(escape(d.name), d.digest[:12], escape(d.source), escape(d.context or ""))
    out.print(inputs)


def _key_values(title: str, items: Mapping[str, str]) -> Table:
    table = _table("Key", "Value", title=title)
    for key in sorted(items):
        table.add_row(escape(key), escape(items[key]))
    return table


def comparison_table(c: Comparison) -> Table:
    """One column per run; params first (differing ones highlighted), then metrics."""
    table = _table(
        "", *(f"{escape(n)}\n[dim]{rid[:8]}[/]" for n, rid in zip(c.run_names, c.run_ids, strict=True))
    )
    differing = set(c.differing_params())
    for key in c.param_keys:
        style = "bold yellow" if key in differing else None
        values = [escape(p[key]) if key in p else _MISSING for p in c.params]
        table.add_row(f"params.{escape(key)}", *values, style=style)
    if c.param_keys and c.metric_keys:
        table.add_section()
    for key in c.metric_keys:
        values = [fmt_float(m[key]) if key in m else _MISSING for m in c.metrics]
        table.add_row(f"metrics.{escape(key)}", *values)
    if differing:
        table.caption = "[bold yellow]highlighted[/]: params that differ between runs"
    return table
