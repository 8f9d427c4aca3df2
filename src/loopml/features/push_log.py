"""The offline log of pushed rows: Parquet segments that offline retrieval reads with the source.

``push`` writes fresh rows to the online store *and* appends them here, one segment per push under
``$LOOPML_HOME/features/push/<view>/``, so a value served online is also in the training data
``get_historical_features`` builds (it reads a view's batch source UNION ALL its pushed rows).
Segments hold the view's columns with canonical types (join keys and features as declared,
timestamps as UTC microseconds), are written to a temporary file and renamed, and are only
published once the online write succeeded. Once a view has ``COMPACT_AT`` segments, a push
merges them into one (:meth:`PushLog.compact`), so a stream of small pushes does not leave
thousands of files for offline reads to open.

>>> import tempfile
>>> PushLog(tempfile.mkdtemp()).segments("stats")
[]
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.config import Settings
from loopml.errors import InvalidInput
from loopml.features.definitions import DTYPES, FeatureView

if TYPE_CHECKING:
    import duckdb

_UTC_US = pa.timestamp("us", tz="UTC")
COMPACT_AT = 64


class PushLog:
    """Pushed rows of every view under ``root`` (default ``$LOOPML_HOME/features/push``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PushLog:
        """The log under the configured home."""
        settings = settings or Settings.load()
        return cls(settings.home / "features" / "push")

    def segments(self, view: str) -> list[Path]:
        """The view's published segments, oldest first."""
        folder = self.root / view
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def stage(self, view: FeatureView, rows: pa.Table) -> Path:
        """Write ``rows`` (canonical columns, see :func:`canonical_rows`) to a hidden temporary
        segment; :meth:`publish` makes it visible, :meth:`discard` drops it."""
        folder = self.root / view.name
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{time.time_ns():020d}-{uuid.uuid4().hex}.parquet.tmp"
        pq.write_table(rows, temp)
        return temp

    def publish(self, temp: Path) -> Path:
        final = temp.with_name(temp.name.removeprefix(".").removesuffix(".tmp"))
        os.replace(temp, final)
        return final

    def discard(self, temp: Path) -> None:
        temp.unlink(missing_ok=True)

    def compact(self, view: FeatureView) -> int:
        """Merge the view's segments into one; returns how many were merged (0: nothing to do).

        Safe alongside readers and pushes: the merged segment is published before the old ones
        are removed, and a row seen twice meanwhile is harmless (the point-in-time join and
        materialization pick one row per entity and time).
        """
        segments = self.segments(view.name)
        if len(segments) < 2:
            return 0
        tables = [pq.read_table(path) for path in segments]
        merged = pa.concat_tables(tables, promote_options="permissive")
        self.publish(self.stage(view, merged))
        for path in segments:
            path.unlink(missing_ok=True)
        return len(segments)

    def relation(self, view: FeatureView, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation | None:
        """The view's pushed rows as a DuckDB relation, or ``None`` when nothing was pushed."""
        files = [str(p) for p in self.segments(view.name)]
        if not files:
            return None
        return con.read_parquet(files, union_by_name=True)


def canonical_rows(view: FeatureView, table: pa.Table) -> pa.Table:
    """The view's columns of pushed ``table``, cast to their declared types (timestamps to UTC
    microseconds); InvalidInput names a missing column or one whose values do not fit."""
    types: dict[str, pa.DataType] = {}
    for entity in view.entities:
        types.update({k: DTYPES[t] for k, t in zip(entity.join_keys, entity.value_types, strict=True)})
    types[view.timestamp_field] = _UTC_US
    if view.created_timestamp_field and view.created_timestamp_field in table.column_names:
        types[view.created_timestamp_field] = _UTC_US
    types.update({f.name: f.arrow_type for f in view.fields})
    columns = {}
    for name, kind in types.items():
        if name not in table.column_names:
            raise InvalidInput(
                f"pushed rows have no column {name!r}, needed by feature view {view.name!r}; add it",
                details={"field": name, "feature_view": view.name},
            )
        columns[name] = _cast(view, name, table.column(name), kind)
    return pa.table(columns)


def _cast(view: FeatureView, name: str, column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    try:
        if pa.types.is_timestamp(kind) and pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # naive means UTC
        if pa.types.is_timestamp(kind) and pa.types.is_timestamp(column.type):
            return column.cast(kind, safe=False)  # sub-microsecond digits dropped, as offline
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"pushed column {name!r} of feature view {view.name!r} holds {column.type} values that "
            f"do not fit {kind} ({exc}); fix the rows",
            details={"field": name, "feature_view": view.name, "type": str(column.type)},
        ) from None


def with_pushed(
    view: FeatureView, con: duckdb.DuckDBPyConnection, log: PushLog | None, name: str
) -> duckdb.DuckDBPyRelation:
    """The view's batch source UNION ALL (by column name) its pushed rows, as relation ``name``."""
    base = view.source.relation(con)
    pushed = None if log is None else log.relation(view, con)
    if pushed is None:
        return base
    base.create_view(f"{name}_batch", replace=True)
    pushed.create_view(f"{name}_pushed", replace=True)
    return con.sql(f"SELECT * FROM {name}_batch UNION ALL BY NAME SELECT * FROM {name}_pushed")
