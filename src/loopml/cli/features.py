"""``loopml features``: apply, list and show versioned feature definitions; materialize them.

    $ loopml features apply defs.py            # shows the diff; refuses breaking changes
    $ loopml features apply defs.py --force    # ... unless forced
    $ loopml features list
    $ loopml features show feature_view stats --json
    $ loopml features materialize --start 2024-01-01 --end 2024-02-01 --views stats
    $ loopml features materialize --incremental --online redis://127.0.0.1:6379/0

The definitions file is ordinary Python; every Entity, FeatureView, OnDemandFeatureView and
FeatureService bound to a module-level name is applied. loopml.features (pyarrow, SQLAlchemy) is
imported inside each command, so building the CLI stays light.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption

if TYPE_CHECKING:
    from loopml.features.definitions import FeatureView
    from loopml.features.materialize import MaterializeResult
    from loopml.features.registry import ApplyResult, DefinitionRecord, FeatureRegistry

app = typer.Typer(help="Apply, list and show feature definitions.", no_args_is_help=True)


def _registry() -> FeatureRegistry:
    from loopml.config import Settings
    from loopml.features.registry import FeatureRegistry

    return FeatureRegistry.from_settings(Settings.load())


def _record_dict(record: DefinitionRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "name": record.name,
        "version": record.version,
        "digest": record.digest,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "spec": record.spec,
    }


@app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(help="A Python file defining the features.")],
    force: Annotated[bool, typer.Option("--force", help="Apply breaking changes too.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff, write nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Register the definitions in PATH: new versions for changed ones, with their diff."""
    from loopml.features.registry import load_definitions

    registry = _registry()
    try:
        result = registry.apply(load_definitions(path), force=force, dry_run=dry_run)
    finally:
        registry.close()
    if as_json:
        from loopml.cli import render

        render.print_json([change.__dict__ for change in result.changes])
        return
    _print_apply(result)


def _print_apply(result: ApplyResult) -> None:
    for c in result.changes:
        version = f"v{c.version}" if c.previous_version is None else f"v{c.previous_version} -> v{c.version}"
        typer.echo(
            f"{c.action:9} {c.kind} {c.name} {version if c.action != 'unchanged' else f'v{c.version}'}"
        )
        for line in c.diff:
            typer.echo(f"    {line}")
        for line in c.breaking:
            typer.echo(f"    ! breaking: {line}")
    if result.dry_run:
        typer.echo("dry run: nothing was written")


@app.command("list")
def list_definitions(
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind, e.g. feature_view.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The latest version of every registered definition."""
    from loopml.cli import render

    registry = _registry()
    try:
        records = registry.list_definitions(kind)
    finally:
        registry.close()
    if as_json:
        render.print_json([_record_dict(r) for r in records])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("Kind", "Name", "Version", "Features", "Updated", "By")
    for r in records:
        features = ", ".join(f["name"] for f in r.spec.get("fields", []))
        cells = [r.kind, r.name, str(r.version), features, render.fmt_time(r.created_at), r.created_by]
        table.add_row(*(escape(c) for c in cells))
    render.print_table(table)


@app.command("show")
def show(
    kind: Annotated[
        str, typer.Argument(help="entity, feature_view, on_demand_feature_view or feature_service.")
    ],
    name: Annotated[str, typer.Argument(help="The definition's name.")],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, help="Default: latest.")] = None,
    as_json: JsonOption = False,
) -> None:
    """One version of a definition, with its full spec."""
    from loopml.cli import render

    registry = _registry()
    try:
        record = registry.get(kind, name, version)
    finally:
        registry.close()
    if as_json:
        render.print_json(_record_dict(record))
        return
    typer.echo(f"{record.kind} {record.name} v{record.version}  by {record.created_by}")
    typer.echo(f"updated {render.fmt_time(record.created_at)}  digest {record.digest}")
    render.print_json(record.spec)


def _micros_option(value: str | None, option: str) -> int | None:
    """A timestamp option as UTC microseconds; a bad one is a usage error naming the option."""
    from loopml.errors import InvalidInput
    from loopml.features.online import to_utc_micros

    if value is None:
        return None
    try:
        return to_utc_micros(value)
    except InvalidInput:
        raise typer.BadParameter(
            f"{value!r} is not a timestamp; use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00+00:00",
            param_hint=option,
        ) from None


def _chosen_views(registry: FeatureRegistry, names: str | None) -> list[FeatureView]:
    from loopml.features.definitions import FeatureView
    from loopml.features.rebuild import DetachedSource

    if names:
        found = [registry.definition("feature_view", n.strip()) for n in names.split(",") if n.strip()]
    else:
        found = registry.definitions("feature_view")
        detached = [v.name for v in found if isinstance(getattr(v, "source", None), DetachedSource)]
        if detached:  # their rows were an in-memory DataFrame: nothing to read here
            typer.echo(f"skipped (in-memory DataFrame source): {', '.join(detached)}", err=True)
        found = [v for v in found if v.name not in detached]
    views = [v for v in found if isinstance(v, FeatureView)]
    if not views:
        raise typer.BadParameter(
            "no feature view is registered; run loopml features apply", param_hint="--views"
        )
    return views


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str, int], None]]:
    """A transient progress bar (views done, rows written) shown once a run lasts over 2 s on a
    terminal; yields ``advance(view, rows)`` (``rows=0`` when a view is finished)."""
    from rich.progress import Progress

    start = time.monotonic()
    state: dict[str, Any] = {"bar": None, "views": 0, "rows": 0}
    interactive = enabled and sys.stderr.isatty()

    def advance(view: str, rows: int) -> None:
        state["rows"] += rows
        state["views"] += 0 if rows else 1
        label = f"{view}: {state['rows']:,} rows"
        if state["bar"] is None and interactive and time.monotonic() - start > 2.0:
            bar = Progress(transient=True)
            bar.start()
            bar.add_task(label, total=total, completed=state["views"])
            state["bar"] = bar
        elif state["bar"] is not None:
            state["bar"].update(state["bar"].task_ids[0], completed=state["views"], description=label)

    try:
        yield advance
    finally:
        if state["bar"] is not None:
            state["bar"].stop()


@app.command("materialize")
def materialize_command(
    start: Annotated[
        str | None, typer.Option("--start", help="Oldest event time to load (default: all).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Newest event time to load (default: now).")
    ] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Continue from the end of the previous run.")
    ] = False,
    views: Annotated[
        str | None, typer.Option("--views", help="Comma-separated feature views (default: all).")
    ] = None,
    online: Annotated[
        str | None, typer.Option("--online", help="Online store URL (default: LOOPML_ONLINE_STORE).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load the latest value per entity of registered feature views into the online store."""
    from loopml.config import Settings
    from loopml.features.materialize import materialize, materialize_incremental
    from loopml.features.online import open_online_store

    if incremental and start is not None:
        raise typer.BadParameter("give --start or --incremental, not both", param_hint="--start")
    start_us = _micros_option(start, "--start")
    end_us = _micros_option(end, "--end") or int(time.time() * 1_000_000)
    if start_us is not None and start_us > end_us:
        raise typer.BadParameter(f"{start!r} is after the end ({end or 'now'})", param_hint="--start")
    settings = Settings.load()
    registry = _registry()
    try:
        chosen = _chosen_views(registry, views)
    finally:
        registry.close()
    store = open_online_store(online or settings.online_store, home=settings.home)
    results: list[tuple[MaterializeResult, float]] = []
    try:
        with _progress(len(chosen), not as_json) as advance:
            for view in chosen:
                began = time.perf_counter()

                def on_batch(rows: int, name: str = view.name) -> None:
                    advance(name, rows)

                if incremental:
                    result = materialize_incremental(view, store, end_us, on_batch)
                else:
                    result = materialize(view, store, start_us, end_us, on_batch)
                advance(view.name, 0)
                results.append((result, time.perf_counter() - began))
    finally:
        store.close()
    _print_materialized(results, "incremental" if incremental else "range", as_json)


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(micros / 1_000_000, UTC).isoformat()


def _print_materialized(results: list[tuple[MaterializeResult, float]], mode: str, as_json: bool) -> None:
    from loopml.cli import render

    rows = [
        {
            "view": r.view,
            "mode": mode,
            "start": _iso(r.start_us),
            "end": _iso(r.end_us),
            "rows": r.rows,
            "written": r.written,
            "seconds": round(seconds, 3),
        }
        for r, seconds in results
    ]
    if as_json:
        render.print_json(rows)
        return
    from rich.table import Table

    table = Table("View", "Mode", "Start", "End", "Rows", "Written", "Seconds")
    for row in rows:
        cells = [row["view"], mode, row["start"] or "(all)", row["end"], row["rows"], row["written"]]
        table.add_row(*(str(c) for c in cells), f"{row['seconds']:.2f}")
    render.print_table(table)
