"""``loopml demo``: the whole loop, narrated: ship, serve, drift, retrain by trigger, canary,
promote, refuse a bad candidate at the gate and roll a stale one back on live traffic (about
two minutes on two cores, offline).

    $ loopml demo                 # or: make demo / python -m loopml.demo
    $ loopml demo --quick         # the 3-run hyper-parameter sweep only (no server)
    $ loopml demo --sweep         # the full 13-run sweep only

The story itself is :class:`loopml.pipelines.templates.closed_loop.ClosedLoop`; this module
starts the live server it needs, prints each act with progress bars, and ends with the
commands that show what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from loopml.pipelines.templates.closed_loop import LoopConfig, LoopResult

_STYLE = {
    "promoted": "bold green",
    "rejected": "bold red",
    "rolled_back": "bold red",
    "alert": "bold red",
    "trigger_pending": "yellow",
    "trigger_started": "yellow",
    "trigger_skipped": "dim yellow",
    "monitor_run": "cyan",
    "monitor": "cyan",
    "resolved": "green",
    "pipeline": "magenta",
}
ACTS = 6
_ICON = {"promoted": "✔", "rejected": "✘", "rolled_back": "↩", "alert": "⚠", "trigger_started": "⚡"}


def demo(
    quick: Annotated[bool, typer.Option(help="Only the 3-run sweep (no server), as before.")] = False,
    sweep: Annotated[bool, typer.Option(help="Only the full hyper-parameter sweep.")] = False,
    rows: Annotated[int, typer.Option(min=6000, help="Synthetic transactions to generate.")] = 24_000,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Server port (0: any free one).")] = 0,
) -> None:
    """Run the closed loop on the embedded store: v1 shipped, drift detected, v2 retrained by
    trigger, canaried and promoted, a bad candidate refused by the gate, a stale one rolled
    back by the canary. --quick/--sweep: the old sweep."""
    if quick or sweep:
        from loopml.demo import main as run_sweep

        run_sweep(quick=quick)
        return
    from loopml.pipelines.templates.closed_loop import LoopConfig

    run_closed_loop(LoopConfig(rows=rows), port=port or None)


def run_closed_loop(
    config: LoopConfig, *, port: int | None = None, console: Console | None = None
) -> LoopResult:
    """Start ``loopml server``, play the story against it, print it; return what happened."""
    from rich.console import Console

    from loopml.config import Settings
    from loopml.pipelines.templates.closed_loop import ClosedLoop, live_server

    console = console or Console()
    settings = Settings.load()
    started = time.monotonic()
    _intro(console, settings.home)
    with _narration(console, started) as (on_event, on_progress, act):
        on_event("server", "starting loopml server on 127.0.0.1 (schedulers off: the demo paces them)", {})
        with live_server(settings, port) as url:
            loop = ClosedLoop(url, config, on_event, on_progress, settings=settings)
            try:
                result = _play(loop, act, url)
            finally:
                loop.close()
    result.seconds = time.monotonic() - started
    _summary(console, result, config, settings.home)
    return result


def _play(loop: Any, act: Callable[[str], None], url: str) -> LoopResult:
    from loopml.pipelines.templates import synthetic

    act(f"1 · v1: the continuous-training pipeline trains, gates, registers and ships (server {url})")
    loop.reset()
    reference = loop.first_model()
    act("2 · Live traffic before the shift: predictions, labels arriving late, a quiet monitor")
    loop.create_monitor(reference)
    loop.watch("before the shift", synthetic.between(loop.data, 30, 40))
    act("3 · The world shifts: new amounts, night-time bursts, a new fraud pattern")
    loop.watch("after the shift", synthetic.between(loop.data, 40, 50), retrain_on=True)
    act("4 · The alert's trigger starts retraining: v2 gated against v1, canaried on live traffic")
    loop.retrain_on_trigger()
    act("5 · A deliberately bad candidate (its training labels shuffled)")
    loop.bad_candidate()
    act("6 · A candidate retrained on last month's data by mistake: it passes its gate, then goes live")
    loop.stale_candidate()
    result: LoopResult = loop.result
    return result


def _intro(console: Console, home: Any) -> None:
    from rich.panel import Panel

    text = (
        "A fraud model in production, on synthetic card transactions whose amounts, timing and "
        "fraud pattern change on day 40. Everything runs here, offline, on the embedded store "
        f"[bold]{home}[/]: a live [bold]loopml server[/] serves the model and watches it; the "
        "continuous-training [bold]pipeline[/] does every model change."
    )
    console.print(Panel(text, title="loopml demo: the closed loop", expand=False))


@contextmanager
def _narration(
    console: Console, started: float
) -> Iterator[tuple[Callable[..., None], Callable[[str, int, int], None], Callable[[str], None]]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("  {task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}
        loop_task = progress.add_task("[bold]closed loop", total=ACTS)
        acts = [0]

        def act(title: str) -> None:
            if acts[0]:
                progress.advance(loop_task)
            acts[0] += 1
            progress.console.rule(f"[bold]{title}", align="left")

        def on_event(kind: str, message: str, data: dict[str, Any]) -> None:
            _print_event(progress, started, kind, message, data)

        def on_progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done, total=total)

        yield on_event, on_progress, act
        progress.update(loop_task, completed=ACTS)


def _print_event(progress: Progress, started: float, kind: str, message: str, data: dict[str, Any]) -> None:
    console = progress.console
    clock = f"[dim]{time.monotonic() - started:6.1f}s[/]"
    if kind.startswith("step:"):
        console.print(f"{clock}   [dim]· {message}[/]")
        return
    style = _STYLE.get(kind, "")
    icon = _ICON.get(kind, "·")
    text = f"[{style}]{icon} {message}[/]" if style else f"{icon} {message}"
    console.print(f"{clock} {text}")
    gate = data.get("gate")
    if gate is not None and kind in ("promoted", "rejected", "rolled_back") and gate.results:
        console.print(_gate_table(gate), style="dim" if kind == "promoted" else "")


def _gate_table(gate: Any) -> Any:
    from rich.table import Table

    table = Table(title="gate", title_justify="left", box=None, padding=(0, 2))
    for col in ("threshold", "value", "limit", "result"):
        table.add_column(col, justify="right" if col in ("value", "limit") else "left")
    for r in gate.results:
        verdict = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        value = "-" if r.value is None else f"{r.value:.4f}"
        limit = "-" if r.limit is None else f"{r.limit:.4f}"
        table.add_row(r.threshold, value, limit, f"{verdict} {r.note}".strip())
    return table


def _summary(console: Console, result: LoopResult, config: LoopConfig, home: Any) -> None:
    from rich.table import Table

    table = Table(title=f"The loop in {result.seconds:.0f} s", title_justify="left")
    table.add_column("model change")
    table.add_column("version", justify="right")
    table.add_column("outcome")
    for who, verdict in result.verdicts.items():
        style = _STYLE.get(verdict["status"], "")
        reason = str(verdict.get("reason") or "")
        outcome = f"[{style}]{verdict['status']}[/] {reason[:240]}" if style else verdict["status"]
        table.add_row(who, str(verdict.get("version", "-")), outcome)
    console.print(table)
    name, endpoint, monitor, pipe = config.model_name, config.endpoint, config.monitor, config.pipeline
    v2 = result.verdicts.get("v2", {}).get("version", 2)
    commands = [
        ("the model's versions and gates", f"loopml models versions {name}"),
        ("v2's lineage (run, data)", f"loopml models lineage {name} {v2}"),
        ("the endpoint's canary and promotion", f"loopml endpoints show {endpoint}"),
        ("the alerts", f"loopml monitor alerts --monitor {monitor}"),
        ("the trigger that retrained", f"loopml pipeline triggers --pipeline {pipe}"),
        ("the pipeline runs and their steps", "loopml pipeline list"),
        ("the training runs", "loopml runs list --experiment demo-continuous-training"),
        ("the web UI", "loopml server --port 5000   then open http://127.0.0.1:5000/"),
    ]
    console.print(f"Everything is stored in [bold]{home}[/] (LOOPML_HOME). Inspect it:")
    for what, command in commands:
        console.print(f"  {what:<38}[cyan]{command}[/]")
