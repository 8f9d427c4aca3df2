"""Materialization into the online store, pushes from a stream, and online retrieval.

``materialize(view, store, start, end)`` writes, per entity, the latest row of the view's source
whose event time is in ``[start, end]``; ``materialize_incremental(view, store, end)`` continues
from the end of the previous run (remembered in the store's metadata), so it reads only rows it
has not written yet. ``push`` writes fresh rows straight to the online store. All of them go
through the store's newer-wins write, so their order never lets an older event win.

``get_online_features`` reads the latest values with a status per value and runs on-demand
transforms through the same :meth:`OnDemandFeatureView.transform` the offline join calls; the
timestamps are normalised to UTC microseconds exactly as offline, so for the same entity and time
both paths return the same values.

>>> materialize(stats, store, "2024-01-01", "2024-01-31")  # doctest: +SKIP
MaterializeResult(view='stats', start_us=..., end_us=..., rows=100000, written=100000)
>>> get_online_features([{"driver_id": 1}], ["stats:rate"], views=[stats], store=store)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from loopml.errors import InvalidInput
from loopml.features import bulk
from loopml.features.definitions import FeatureService, FeatureView, OnDemandFeatureView, View
from loopml.features.offline import _as_arrow, _Plan, _plan, _requested, _with_service_views
from loopml.features.online import (
    MISSING,
    PRESENT,
    OnlineRead,
    OnlineStore,
    to_utc_micros,
)
from loopml.features.push_log import COMPACT_AT, PushLog, canonical_rows, with_pushed

_BATCH = 100_000


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    """What a materialization read (``rows``: one per entity) and stored (``written``: newer ones)."""

    view: str
    start_us: int | None
    end_us: int
    rows: int
    written: int


def _write_latest(
    view: FeatureView,
    store: OnlineStore,
    relation: Callable[[duckdb.DuckDBPyConnection], duckdb.DuckDBPyRelation],
    bounds: list[bulk.Bound],
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write the latest row (per entity) of ``relation`` matching ``where`` into ``store``.

    DuckDB picks and encodes the rows (:mod:`loopml.features.bulk`); each batch is one bulk,
    newer-wins write. Returns (rows read, rows stored).
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        relation(con).create_view("__loopml_src", replace=True)
        types = bulk.source_types(con, "__loopml_src")
        check_columns(view, types)
        reader = con.sql(bulk.latest_sql(view, "__loopml_src", types, bounds)).to_arrow_reader(_BATCH)
        rows = written = 0
        for items in bulk.encoded_items(view, reader):
            rows += len(items)
            written += store.write_encoded(view.name, items)
            if on_batch is not None:
                on_batch(len(items))
        return rows, written
    finally:
        con.close()


def check_columns(view: FeatureView, types: dict[str, str]) -> None:
    """InvalidInput naming the first column the view needs that the rows lack."""
    needed = [*view.join_keys, view.timestamp_field, *view.feature_names]
    needed += [view.created_timestamp_field] if view.created_timestamp_field else []
    for column in needed:
        if column not in types:
            raise InvalidInput(
                f"the rows of feature view {view.name!r} have no column {column!r} (columns: "
                f"{', '.join(types)}); fix the definition or the rows",
                details={"field": column, "feature_view": view.name},
            )


def _watermark_name(view: FeatureView) -> str:
    return f"materialized_until:{view.name}"


def materialize(
    view: FeatureView,
    store: OnlineStore,
    start: Any,
    end: Any,
    on_batch: Callable[[int], None] | None = None,
    *,
    push_log: PushLog | None = None,
) -> MaterializeResult:
    """Write the latest row per entity with event time in ``[start, end]`` (``start=None``: all).

    ``on_batch(rows)`` is called after each batch is stored (for a progress bar). The view's
    pushed rows (``push_log``, default ``$LOOPML_HOME/features/push``) count as source rows.

    >>> materialize(stats, store, None, "2024-02-01")  # doctest: +SKIP
    """
    start_us = None if start is None else to_utc_micros(start)
    end_us = to_utc_micros(end)
    bounds = [("<=", end_us)] + ([] if start_us is None else [(">=", start_us)])
    rows, written = _write_latest(view, store, _source(view, push_log), bounds, on_batch)
    _advance(view, store, end_us)
    return MaterializeResult(view.name, start_us, end_us, rows, written)


def _source(
    view: FeatureView, push_log: PushLog | None
) -> Callable[[duckdb.DuckDBPyConnection], duckdb.DuckDBPyRelation]:
    log = push_log if push_log is not None else PushLog.from_settings()
    return lambda con: with_pushed(view, con, log, "__loopml_in")


def materialize_incremental(
    view: FeatureView,
    store: OnlineStore,
    end: Any,
    on_batch: Callable[[int], None] | None = None,
    *,
    push_log: PushLog | None = None,
) -> MaterializeResult:
    """Write the rows with event time after the previous run's end and up to ``end``.

    The first run starts at ``end - ttl`` (older values would be outside the ttl anyway), or at
    the beginning when the view has no ttl. Rows arriving late, with an event time before the
    previous end, are not picked up: materialize that range again, or push them.
    """
    end_us = to_utc_micros(end)
    last = store.get_meta(_watermark_name(view))
    if last is not None:
        bounds: list[bulk.Bound] = [(">", int(last)), ("<=", end_us)]
        start_us: int | None = int(last) + 1
    elif view.ttl is not None:
        start_us = end_us - int(view.ttl.total_seconds() * 1_000_000)
        bounds = [(">=", start_us), ("<=", end_us)]
    else:
        start_us, bounds = None, [("<=", end_us)]
    rows, written = _write_latest(view, store, _source(view, push_log), bounds, on_batch)
    _advance(view, store, end_us)
    return MaterializeResult(view.name, start_us, end_us, rows, written)


def _advance(view: FeatureView, store: OnlineStore, end_us: int) -> None:
    last = store.get_meta(_watermark_name(view))
    if last is None or int(last) < end_us:  # a backfill of an older range keeps the watermark
        store.set_meta(_watermark_name(view), str(end_us))


def push(view: FeatureView, rows: Any, store: OnlineStore, *, push_log: PushLog | None = None) -> int:
    """Write fresh rows (a DataFrame or Arrow table shaped like the view's source) to the store,
    and append them to the offline log (``push_log``, default ``$LOOPML_HOME/features/push``) so
    that offline retrieval sees them too.

    Only the latest row per entity is written online, and only where it is newer than the stored
    one, so an event arriving late from a stream never replaces a newer value (the offline log
    keeps every row; the point-in-time join picks the right one). Returns how many entities got
    a new online value. The log segment is published only after the online write succeeded.

    >>> fresh = pd.DataFrame({"driver_id": [1], "event_timestamp": [now], "rate": [0.3]})  # doctest: +SKIP
    >>> push(stats, fresh, store)  # doctest: +SKIP
    """
    table = canonical_rows(view, _as_arrow(rows))
    if view.created_timestamp_field and view.created_timestamp_field not in table.column_names:
        view = replace(view, created_timestamp_field=None)
    if table.num_rows == 0:
        return 0
    log = push_log if push_log is not None else PushLog.from_settings()
    staged = log.stage(view, table)
    try:
        _, written = _write_latest(view, store, lambda con: con.from_arrow(table), [])
    except BaseException:
        log.discard(staged)
        raise
    log.publish(staged)
    if len(log.segments(view.name)) >= COMPACT_AT:
        log.compact(view)
    return written


@dataclass(frozen=True)
class OnlineFeatures:
    """Column-wise online values: the entity rows' join keys, then one column per feature.

    ``statuses`` has one list per feature column: ``"present"``, ``"missing"`` (never written,
    or an on-demand value that came out null) or ``"outside_ttl"``.
    """

    values: dict[str, list[Any]]
    statuses: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, list[Any]]:
        return dict(self.values)

    def to_arrow(self) -> pa.Table:
        return pa.table(self.values)


def get_online_features(
    entity_rows: Sequence[Mapping[str, Any]],
    features: Sequence[str | View] | None = None,
    *,
    store: OnlineStore,
    service: FeatureService | None = None,
    views: Sequence[View] = (),
    full_feature_names: bool = False,
    now: Any = None,
) -> OnlineFeatures:
    """The latest stored values for each entity row, with on-demand features computed on the fly.

    ``entity_rows`` hold the join keys (and the request fields on-demand views read);
    ``features``/``service``/``views`` mean what they mean for ``get_historical_features``.
    ttl is enforced against ``now`` (default: the current time).

    >>> get_online_features([{"driver_id": 1}], service=churn_v1, store=store)  # doctest: +SKIP
    """
    plans = _plan(_requested(features, service), _with_service_views(views, service), full_feature_names)
    now_us = int(time.time() * 1_000_000) if now is None else to_utc_micros(now)
    rows = list(entity_rows)
    keys = sorted({k for p in plans if isinstance(p.view, FeatureView) for k in p.view.join_keys})
    out = OnlineFeatures({k: [_key_value(row, k, i) for i, row in enumerate(rows)] for k in keys})
    cache: dict[str, list[OnlineRead]] = {}
    for plan in plans:
        if isinstance(plan.view, FeatureView):
            reads = _reads(plan.view, rows, store, now_us, cache)
            for name, output in zip(plan.features, plan.outputs, strict=True):
                out.values[output] = [r.values[name] for r in reads]
                out.statuses[output] = [r.statuses[name] for r in reads]
        else:
            _on_demand(out, plan, plan.view, rows, store, now_us, cache)
    return out


def _key_value(row: Mapping[str, Any], key: str, index: int) -> Any:
    if key not in row:
        raise InvalidInput(
            f"entity row {index} has no {key!r} (it has {', '.join(row) or 'nothing'}); add it",
            details={"field": key, "row": index},
        )
    return row[key]


def _reads(
    view: FeatureView,
    rows: list[Mapping[str, Any]],
    store: OnlineStore,
    now_us: int,
    cache: dict[str, list[OnlineRead]],
) -> list[OnlineRead]:
    """Every feature of ``view`` for every row, read once per call however many plans need it."""
    if view.name not in cache:
        keys = [tuple(_key_value(row, k, i) for k in view.join_keys) for i, row in enumerate(rows)]
        cache[view.name] = store.read(view, keys, None, now_us=now_us)
    return cache[view.name]


def _on_demand(
    out: OnlineFeatures,
    plan: _Plan,
    view: OnDemandFeatureView,
    rows: list[Mapping[str, Any]],
    store: OnlineStore,
    now_us: int,
    cache: dict[str, list[OnlineRead]],
) -> None:
    """Build the same typed input frame the offline join builds, then call the same transform."""
    inputs: dict[str, pa.Array] = {}
    for source in view.sources:
        if isinstance(source, FeatureView):
            reads = _reads(source, rows, store, now_us, cache)
            for f in source.fields:
                inputs[f.name] = pa.array([r.values[f.name] for r in reads], f.arrow_type)
        else:
            for f in source.fields:
                column = [_key_value(row, f.name, i) for i, row in enumerate(rows)]
                inputs[f.name] = pa.array(column, f.arrow_type, from_pandas=True)
    result = view.transform(pa.table(inputs).to_pandas())
    for name, output in zip(plan.features, plan.outputs, strict=True):
        column = pa.array(result[name], from_pandas=True).to_pylist()
        out.values[output] = column
        out.statuses[output] = [MISSING if v is None else PRESENT for v in column]
