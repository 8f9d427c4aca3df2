"""``loopml data``: register, list, show and diff dataset versions.

    $ loopml data register churn data/churn.parquet --description "Q3 snapshot"
    $ loopml data list
    $ loopml data show churn@2 --json
    $ loopml data diff churn@1 churn@2

loopml.data (numpy, pyarrow) is imported inside each command, so building the CLI stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopml.cli._common import JsonOption

if TYPE_CHECKING:
    from rich.table import Table

    from loopml.data.records import DatasetDiff, DatasetVersion

app = typer.Typer(help="Register, list, show and diff dataset versions.", no_args_is_help=True)

RefArgument = Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="e.g. churn@2 (default: latest).")]


def _version(ref: str) -> DatasetVersion:
    import loopml.data

    name, version = loopml.data.parse_ref(ref)
    return loopml.data.get(name, version)


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    path: Annotated[Path, typer.Argument(help="A Parquet or CSV file, or a directory of them.")],
    description: Annotated[str, typer.Option(help="What this version holds.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Register the rows of a file or directory as the next version of NAME."""
    import loopml.data
    from loopml.errors import InvalidInput

    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--tag {item!r} must look like KEY=VALUE", details={"field": "tag"})
        tags[key] = value
    dv = loopml.data.register(name, path, description=description, tags=tags)
    if as_json:
        _print_json(dv.to_dict())
    else:
        typer.echo(f"{dv.ref}  {dv.num_rows} rows  digest {dv.digest[:12]}")


@app.command("list")
def list_datasets(
    name: Annotated[str | None, typer.Argument(help="List this dataset's versions instead.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List datasets with their latest version, or the versions of NAME."""
    import loopml.data
    from loopml.cli import render

    if name is None:
        _print_names(loopml.data.list_datasets(), as_json)
        return
    versions = loopml.data.list_versions(name)
    if as_json:
        _print_json([_summary(dv) for dv in versions])
        return
    table = _table("Version", "Rows", "Columns", "Digest", "Created", "By", "Source")
    for dv in versions:
        s = _summary(dv)
        cells = [str(s[k]) for k in ("version", "num_rows", "columns", "digest")]
        cells += [render.fmt_time(dv.created_at), dv.created_by, dv.source]
        table.add_row(*(escape(c) for c in cells))
    render.print_table(table)


def _print_names(found: list[tuple[str, int]], as_json: bool) -> None:
    from loopml.cli import render

    if as_json:
        _print_json([{"name": n, "latest_version": v} for n, v in found])
        return
    table = _table("Name", "Latest")
    for n, v in found:
        table.add_row(escape(n), str(v))
    render.print_table(table)


@app.command("show")
def show(ref: RefArgument, as_json: JsonOption = False) -> None:
    """Show one version: schema, row count, digest and the profile of every column."""
    from loopml.cli import render

    dv = _version(ref)
    if as_json:
        _print_json(dv.to_dict())
        return
    typer.echo(f"{dv.ref}  {dv.num_rows} rows  digest {dv.digest}")
    typer.echo(f"source {dv.source}  snapshot {dv.size_bytes} bytes  by {dv.created_by}")
    if dv.description:
        typer.echo(dv.description)
    table = _table("Column", "Type", "Null", "Count", "Nulls", "Summary")
    for f in dv.schema:
        col = dv.profile.columns.get(f.name)
        counts = ("", "") if col is None else (str(col.count), str(col.nulls))
        table.add_row(escape(f.name), f.type, "yes" if f.nullable else "no", *counts, escape(_brief(col)))
    render.print_table(table)


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(metavar="NAME@A", help="The reference version.")],
    b: Annotated[str, typer.Argument(metavar="NAME@B", help="The version to compare with it.")],
    as_json: JsonOption = False,
) -> None:
    """Schema and profile differences from version A to version B, with PSI drift per column."""
    import loopml.data

    result = loopml.data.diff(_version(a), _version(b))
    if as_json:
        _print_json(result.to_dict())
    else:
        _print_diff(result)


def _print_diff(d: DatasetDiff) -> None:
    from loopml.cli import render

    typer.echo(f"{d.a} -> {d.b}: rows {d.num_rows[0]} -> {d.num_rows[1]}")
    if d.identical:
        typer.echo("no schema or profile differences")
    if d.schema_changes:
        table = _table("Column", "Change", "Before", "After", title="Schema")
        for c in d.schema_changes:
            table.add_row(escape(c.column), c.kind, c.before or "", c.after or "")
        render.print_table(table)
    if d.stat_changes:
        table = _table("Column", "Statistic", "Before", "After", title="Profile")
        for s in d.stat_changes:
            table.add_row(escape(s.column), s.stat, _fmt(s.before), _fmt(s.after))
        render.print_table(table)
    if d.drift:
        table = _table("Column", "PSI", "", title="Drift")
        for column, value in sorted(d.drift.items(), key=lambda kv: -kv[1]):
            label = "significant" if value > 0.25 else "moderate" if value > 0.1 else ""
            table.add_row(escape(column), f"{value:.4f}", label)
        render.print_table(table)


def _table(*columns: str, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    return Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _fmt(value: Any) -> str:
    from loopml.cli import render

    if isinstance(value, float):
        return render.fmt_float(value)
    return escape("" if value is None else str(value))


def _brief(col: Any) -> str:
    if col is None:
        return ""
    if col.kind == "numeric" and col.count:
        return f"mean {col.mean:.6g}  std {col.std or 0:.6g}  min {col.min:.6g}  max {col.max:.6g}"
    if col.kind == "categorical":
        top = ", ".join(f"{v}={c}" for v, c in col.top[:3])
        return f"{col.distinct} distinct; {top}"
    return ""


def _summary(v: DatasetVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "num_rows": v.num_rows,
        "columns": len(v.schema),
        "digest": v.digest[:12],
        "created_at": v.created_at,
        "created_by": v.created_by,
        "source": v.source,
    }


def _print_json(data: Any) -> None:
    from loopml.cli import render

    render.print_json(data)
