"""``loopml features``: apply, list and show versioned feature definitions.

    $ loopml features apply defs.py            # shows the diff; refuses breaking changes
    $ loopml features apply defs.py --force    # ... unless forced
    $ loopml features list
    $ loopml features show feature_view stats --json

The definitions file is ordinary Python; every Entity, FeatureView, OnDemandFeatureView and
FeatureService bound to a module-level name is applied. loopml.features (pyarrow, SQLAlchemy) is
imported inside each command, so building the CLI stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption

if TYPE_CHECKING:
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
