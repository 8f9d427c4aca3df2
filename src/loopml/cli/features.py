"""``loopml features``: apply, list and show feature definitions; materialize, read online, push.

    $ loopml features apply defs.py            # shows the diff; refuses breaking changes
    $ loopml features apply defs.py --force    # ... unless forced
    $ loopml features list
    $ loopml features show feature_view stats --json
    $ loopml features materialize --start 2024-01-01 --end 2024-02-01 --views stats
    $ loopml features materialize --incremental --online redis://127.0.0.1:6379/0
    $ loopml features online --service churn -e driver_id=1 -e driver_id=2
    $ loopml features online --features stats:rate,stats:trips --rows drivers.csv --json
    $ loopml features push stats fresh.parquet

``online`` and ``push`` go through ``feature_store()``, so they work on the embedded store and, with
LOOPML_TRACKING_URI=http://..., against a server. Text values (``--entity KEY=VALUE``, CSV cells)
are typed as the join keys, request fields and features are declared.

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
    import pyarrow as pa

    from loopml.features.definitions import FeatureView
    from loopml.features.materialize import MaterializeResult
    from loopml.features.registry import ApplyResult, DefinitionRecord, FeatureRegistry
    from loopml.features.service import FeatureStoreService

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


# ---- online reads ------------------------------------------------------------------------------

_TRUE, _FALSE = frozenset({"true", "t", "1", "yes"}), frozenset({"false", "f", "0", "no"})


def _typed(text: str, dtype: str | None) -> Any:
    """``text`` as a value of ``dtype`` (a join key or request field type); ValueError if not."""
    if dtype in ("int32", "int64"):
        return int(text)
    if dtype in ("float32", "float64"):
        return float(text)
    if dtype == "bool":
        if text.lower() not in _TRUE | _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    return text  # string, bytes (sent as text) and names no view reads (the service names them)


def _column_types(
    svc: FeatureStoreService, service: str | None, version: int | None, refs: list[str]
) -> dict[str, tuple[str, str]]:
    """Each entity-row column the read needs: (type, what declares it)."""
    cols = svc.describe_service(service, version) if service else svc.describe_features(refs)
    types = {k: (t, "request field") for k, t in cols.request_fields.items()}
    return types | {k: (t, "join key") for k, t in cols.join_keys.items()}


def _bad_value(text: str, key: str, kind: tuple[str, str] | None) -> str:
    dtype, what = kind or ("", "")
    return f"{text!r} is not a valid {dtype} for {what} {key!r}; fix the value"


def _entity_columns(pairs: list[str], types: dict[str, tuple[str, str]]) -> dict[str, list[Any]]:
    """``KEY=VALUE`` options as typed columns: a key given again adds a row."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE, e.g. driver_id=42", param_hint="--entity")
        key = key.strip()
        try:
            value = _typed(text, types.get(key, ("", ""))[0])
        except ValueError:
            raise typer.BadParameter(_bad_value(text, key, types.get(key)), param_hint="--entity") from None
        columns.setdefault(key, []).append(value)
    counts = {k: len(v) for k, v in columns.items()}
    if len(set(counts.values())) > 1:
        given = ", ".join(f"{k} {n}" for k, n in counts.items())
        raise typer.BadParameter(
            f"every key needs one value per row (given: {given}); repeat --entity KEY=VALUE for each",
            param_hint="--entity",
        )
    return columns


def _typed_rows(rows: list[dict[str, Any]], types: dict[str, tuple[str, str]], path: Path) -> None:
    """Turn text values of typed columns into their type, in place (an empty CSV cell is null)."""
    from loopml.errors import InvalidInput

    for i, row in enumerate(rows):
        for key, value in row.items():
            dtype = types.get(key, ("", ""))[0]
            if not isinstance(value, str) or dtype in ("", "string", "bytes"):
                continue
            try:
                row[key] = None if value == "" else _typed(value, dtype)
            except ValueError:
                raise InvalidInput(
                    f"{path} row {i + 1}: {_bad_value(value, key, types.get(key))}",
                    details={"field": key, "row": i},
                ) from None


def _rows_file(path: Path, types: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Entity rows from a .json (``[{...}]`` or ``{column: [values]}``) or .csv file."""
    import csv

    from loopml.errors import InvalidInput

    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows: list[dict[str, Any]] = [dict(r) for r in csv.DictReader(f)]
    elif path.suffix.lower() == ".json":
        import orjson

        from loopml.features.service import as_rows

        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{path} is not valid JSON ({exc})", details={"field": "rows"}) from None
        if not isinstance(doc, list | dict):
            raise InvalidInput(
                f"{path} holds a JSON {type(doc).__name__}; give [{{column: value}}] or {{column: [values]}}",
                details={"field": "rows"},
            )
        rows = [dict(r) for r in as_rows(doc)]
    else:
        raise InvalidInput(f"{path}: entity rows must be a .json or .csv file", details={"field": "rows"})
    _typed_rows(rows, types, path)
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 16 else f"{value[:16].hex()}… ({len(value)} bytes)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


_STATUS_STYLE = {"present": "green", "missing": "dim", "outside_ttl": "yellow"}


def _print_online(values: dict[str, list[Any]], statuses: dict[str, list[str]], n: int) -> None:
    """One row per entity row: its keys, then each feature's value above its status."""
    from rich.markup import escape
    from rich.table import Table

    from loopml.cli import render

    table = Table(*values)
    for i in range(n):
        cells = []
        for name, column in values.items():
            value = column[i]
            if name not in statuses:
                cells.append(escape(_shown(value)))
                continue
            status = statuses[name][i]
            style = _STATUS_STYLE.get(status, "")
            cells.append(f"{'-' if value is None else escape(_shown(value))}\n[{style}]{status}[/]")
        table.add_row(*cells)
    render.print_table(table)


def _online_json(found: Any) -> dict[str, Any]:
    """The service's answer as JSON: bytes base64, NaN/inf as text, times ISO (as the API sends)."""
    import base64
    import math
    from datetime import datetime

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        return value

    values = {name: [plain(v) for v in column] for name, column in found.values.items()}
    return {"values": values, "statuses": found.statuses, "types": getattr(found, "types", {})}


@app.command("online")
def online(
    service: Annotated[str | None, typer.Option("--service", help="A registered feature service.")] = None,
    features: Annotated[
        str | None, typer.Option("--features", help="Comma-separated references view:feature.")
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", "-e", help="KEY=VALUE of an entity row; repeat a key for more rows."),
    ] = None,
    rows: Annotated[
        Path | None,
        typer.Option("--rows", exists=True, dir_okay=False, help="Entity rows in a .json or .csv file."),
    ] = None,
    service_version: Annotated[
        int | None, typer.Option("--service-version", min=1, help="Default: the latest.")
    ] = None,
    full_names: Annotated[bool, typer.Option("--full-names", help="Name columns view__feature.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Judge ttl at this time (default: now).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Online feature values of entity rows, with a status each (present, missing, outside_ttl).

    $ loopml features online --service churn -e driver_id=1 -e driver_id=2
    $ loopml features online --features stats:rate,stats:trips --rows drivers.csv --json
    """
    from loopml.features.service import feature_store

    if (service is None) == (features is None):
        raise typer.BadParameter("give --service NAME or --features view:feature,...", param_hint="--service")
    if (entity is None) == (rows is None):
        raise typer.BadParameter("give --entity KEY=VALUE (repeatable) or --rows FILE", param_hint="--entity")
    now_us = _micros_option(now, "--now")
    refs = [r.strip() for r in (features or "").split(",") if r.strip()]
    svc = feature_store()
    types = _column_types(svc, service, service_version, refs)
    entity_rows: Any = (
        _entity_columns(entity, types) if entity is not None else _rows_file(Path(str(rows)), types)
    )
    found = svc.get_online_features(
        entity_rows,
        refs if features is not None else None,
        service=service,
        service_version=service_version,
        full_feature_names=full_names,
        now=now_us,
    )
    if as_json:
        from loopml.cli import render

        render.print_json(_online_json(found))
        return
    n = len(next(iter(entity_rows.values()), [])) if isinstance(entity_rows, dict) else len(entity_rows)
    _print_online(found.values, found.statuses, n)


# ---- pushes ------------------------------------------------------------------------------------


def _push_types(svc: FeatureStoreService, view: str) -> tuple[dict[str, str], list[str]]:
    """The declared type of each column of feature ``view`` (timestamps as ``timestamp``) and its
    join keys; an unknown view is NotFound naming the known ones."""
    from loopml.errors import InvalidInput, NotFound

    try:
        spec = svc.get_definition("feature_view", view).spec
    except NotFound:
        try:
            svc.get_definition("on_demand_feature_view", view)
        except NotFound:
            known = [r.name for r in svc.list_definitions("feature_view")]
            raise NotFound(
                f"no feature view {view!r}; known: {', '.join(known) or 'none (run loopml features apply)'}",
                details={"feature_view": view, "known": known},
            ) from None
        raise InvalidInput(
            f"{view!r} is an on-demand feature view, computed at request time; push to a feature view",
            details={"field": "view"},
        ) from None
    types = {f["name"]: f["dtype"] for f in spec["fields"]}
    keys: list[str] = []
    for name in spec["entities"]:
        entity = svc.get_definition("entity", name).spec
        keys += entity["join_keys"]
        types.update(zip(entity["join_keys"], entity["value_types"], strict=True))
    for stamp in (spec["timestamp_field"], spec.get("created_timestamp_field")):
        if stamp:
            types[stamp] = "timestamp"
    return types, keys


def _read_push_file(path: Path, types: dict[str, str]) -> pa.Table:
    """The rows of a .parquet file as stored, or of a .csv file typed as the view declares."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from loopml.errors import InvalidInput

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidInput(f"{path} is not a Parquet file ({exc})", details={"field": "file"}) from None
    if suffix != ".csv":
        raise InvalidInput(f"{path}: rows must be a .parquet or .csv file", details={"field": "file"})
    import csv

    import pyarrow.csv as pacsv

    with path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    try:  # all text first, then each column typed here, so a bad value names its column
        text = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise InvalidInput(f"{path} is not a readable CSV file ({exc})", details={"field": "file"}) from None
    return pa.table({n: _csv_column(path, n, text.column(n), types.get(n)) for n in text.column_names})


def _csv_column(
    path: Path, name: str, column: pa.ChunkedArray, dtype: str | None
) -> pa.ChunkedArray | pa.Array:
    """A CSV column of text as ``dtype``; InvalidInput names the column when a value does not fit."""
    import pandas as pd
    import pyarrow as pa

    from loopml.errors import InvalidInput
    from loopml.features.definitions import DTYPES

    if dtype is None or dtype in ("string", "bytes"):
        return column if dtype != "bytes" else column.cast(pa.binary())
    try:
        if dtype == "timestamp":
            stamps = pd.to_datetime(column.to_pylist(), utc=True, format="ISO8601")
            utc = stamps.tz_convert(None).to_numpy()
            return pa.array(utc, from_pandas=True).cast(pa.timestamp("us", tz="UTC"))
        return column.cast(DTYPES[dtype])
    except (ValueError, TypeError, pa.ArrowException):
        raise InvalidInput(
            f"{path}: column {name!r} holds values that are not {dtype} (declared by the feature view); "
            "fix the file",
            details={"field": name, "expected": dtype},
        ) from None


def _entity_count(table: pa.Table, keys: list[str]) -> int:
    """How many distinct entities (join-key tuples) ``table`` holds."""
    present = [k for k in keys if k in table.column_names]
    if not present or table.num_rows == 0:
        return int(table.num_rows)
    return int(table.select(present).group_by(present).aggregate([]).num_rows)


@app.command("push")
def push_command(
    view: Annotated[str, typer.Argument(help="The feature view the rows belong to.")],
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Rows in a .parquet or .csv file.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Push fresh rows of a feature view: online (newer wins) and into its offline log.

    The file holds the view's join keys, timestamp and features; CSV cells are typed as declared.

    Timestamps are ISO 8601 (naive means UTC). Bad rows write nothing.

    $ loopml features push stats fresh.parquet
    """
    from loopml.features.service import feature_store

    svc = feature_store()
    types, keys = _push_types(svc, view)
    table = _read_push_file(path, types)
    written = svc.push(view, table)
    entities = _entity_count(table, keys)
    result = {
        "view": view,
        "rows": table.num_rows,
        "entities": entities,
        "written": written,
        "skipped_older": max(entities - written, 0),
    }
    if as_json:
        from loopml.cli import render

        render.print_json(result)
        return
    superseded = table.num_rows - entities
    typer.echo(
        f"pushed {table.num_rows} rows to {view!r}: {written} written online, "
        f"{result['skipped_older']} skipped (older than the stored value)"
        + (f", {superseded} superseded by a newer row of the same entity in the file" if superseded else "")
        + f"; {table.num_rows} appended to the offline log"
    )
