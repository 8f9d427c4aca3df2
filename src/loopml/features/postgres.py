"""PostgreSQL for the feature store: a source (a table or query) and an online store.

DuckDB's ``postgres`` extension must be downloaded, which an offline machine cannot do, so a
:class:`PostgresSource` is read through psycopg, in bounded memory: a server-side (named) cursor
fetches ``batch_rows`` rows at a time (timestamps as epoch microseconds, so no zone parsing is
involved), each batch is appended to a temporary Parquet file under ``$LOOPML_HOME/tmp``, and
DuckDB reads that file. The file lives as long as the DuckDB connection that reads it (it is
removed when the connection is released, and at once when the export fails), so a source larger
than memory is joined and materialized like a Parquet :class:`FileSource`.

:class:`PostgresOnlineStore` keeps the online values in one table; a bulk write is a COPY into a
temporary table and one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` newer-wins statement, so
concurrent writers cannot make an older event win.

A URL's password is left out of the source's spec (the registry stores specs); a source rebuilt
from the registry connects with libpq's own password sources (``PGPASSWORD``, ``~/.pgpass``).

>>> PostgresSource("postgresql://u:secret@db/x", table="stats").spec()["url"]
'postgresql://u@db/x'
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from loopml.config import Settings
from loopml.errors import InvalidInput, Unavailable
from loopml.features.definitions import Source
from loopml.features.online import OnlineStore

if TYPE_CHECKING:
    import duckdb

BATCH_ROWS = 100_000
"""Rows per fetch from the server-side cursor (and per Parquet row group) of a PostgresSource."""

# PostgreSQL type OIDs -> the Arrow type of the column; any other type travels as text.
_TS_US = pa.timestamp("us")
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1700: pa.float64(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    1082: pa.date32(),
    1114: _TS_US,
    1184: pa.timestamp("us", tz="UTC"),
}
_TIMESTAMPS = (1114, 1184)
_EPOCH_US = "(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it (a SQLAlchemy ``postgresql+psycopg://`` prefix removed)."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise InvalidInput(
            f"{url!r} is not a PostgreSQL URL; use postgresql://USER@HOST:PORT/DB",
            details={"field": "url"},
        )
    return f"postgresql://{rest}"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class PostgresSource(Source):
    """Rows of a PostgreSQL ``table`` (optionally ``schema.table``) or of a SELECT ``query``.

    ``batch_rows`` rows are fetched at a time into a temporary Parquet file under ``tmp_dir``
    (default ``$LOOPML_HOME/tmp``); ``on_batch(rows)`` is called after each batch is written (a
    progress hook). None of the three is part of the spec the registry versions.

    >>> PostgresSource("postgresql://db/x", query="SELECT * FROM stats").kind
    'postgres'
    """

    url: str
    table: str | None = None
    query: str | None = None
    batch_rows: int = field(default=BATCH_ROWS, compare=False, repr=False)
    tmp_dir: str | Path | None = field(default=None, compare=False, repr=False)
    on_batch: Callable[[int], None] | None = field(default=None, compare=False, repr=False)
    kind = "postgres"

    def __post_init__(self) -> None:
        libpq_url(self.url)
        if (self.table is None) == (self.query is None):
            raise InvalidInput(
                "a PostgreSQL source needs exactly one of table= or query=", details={"field": "table"}
            )
        if not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            raise InvalidInput(
                f"batch_rows must be a positive number of rows, not {self.batch_rows!r}",
                details={"field": "batch_rows"},
            )

    def _select(self) -> sql.Composable:
        if self.query is not None:
            return sql.SQL(self.query)  # type: ignore[arg-type]  # the user's own query, by design
        return sql.SQL("SELECT * FROM {}").format(sql.Identifier(*str(self.table).split(".")))

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(libpq_url(self.url), autocommit=True)
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"PostgreSQL source {_redacted(self.url)} is unreachable ({exc}); check the URL",
                details={"field": "url"},
            ) from None

    def _columns(self, conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
        inner = sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(self._select())
        with self._failures(), conn.cursor() as cur:
            cur.execute(inner)
            return [(d.name, d.type_code) for d in cur.description or []]

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """A failing read as a loopml error naming the source (not a psycopg traceback)."""
        what = f"table {self.table!r}" if self.table is not None else "query"
        try:
            yield
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"reading the {what} of PostgreSQL source {_redacted(self.url)} failed ({exc}); "
                "check the server",
                details={"field": "url"},
            ) from None
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            fix = "table" if self.table is not None else "query"
            raise InvalidInput(
                f"reading the {what} of PostgreSQL source {_redacted(self.url)} failed: {reason}; "
                f"fix the {fix}",
                details={"field": fix},
            ) from None

    def _tmp_root(self) -> Path:
        root = Path(self.tmp_dir) if self.tmp_dir is not None else Settings.load().home / "tmp"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def export(self, path: str | Path) -> int:
        """Write all the rows to the Parquet file ``path``, ``batch_rows`` at a time through a
        server-side cursor (memory stays bounded by one batch); returns how many rows."""
        total = 0
        with self._connect() as conn:
            columns = self._columns(conn)
            schema = pa.schema([(name, _TYPES.get(oid, pa.string())) for name, oid in columns])
            select = sql.SQL("SELECT {} FROM ({}) AS q").format(
                sql.SQL(", ").join(_sent(name, oid) for name, oid in columns), self._select()
            )
            cursor_name = f"loopml_source_{uuid.uuid4().hex}"
            with (
                self._failures(),
                conn.transaction(),
                conn.cursor(name=cursor_name, binary=True) as cur,  # binary: no text parsing of numbers
                pq.ParquetWriter(str(path), schema, use_dictionary=False) as writer,  # 10x faster to write
                _without_gc(),
            ):
                cur.execute(select)
                while rows := cur.fetchmany(self.batch_rows):
                    writer.write_table(_batch(rows, columns, schema))
                    total += len(rows)
                    if self.on_batch is not None:
                        self.on_batch(len(rows))
        return total

    @contextmanager
    def snapshot(self) -> Iterator[Path]:
        """The rows as a temporary Parquet file (see :meth:`export`), removed on exit.

        >>> with PostgresSource(url, table="stats").snapshot() as path:  # doctest: +SKIP
        ...     duckdb.read_parquet(str(path)).count("*")
        """
        path = self._temp_file()
        try:
            self.export(path)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _temp_file(self) -> Path:
        fd, name = tempfile.mkstemp(prefix="postgres-source-", suffix=".parquet", dir=self._tmp_root())
        os.close(fd)
        return Path(name)

    def read(self) -> pa.Table:
        """All the rows as an Arrow table, in memory (:meth:`relation` does not load them)."""
        with self.snapshot() as path:
            return pq.read_table(path)

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        """The rows, exported to a temporary Parquet file that lives as long as ``con``."""
        path = self._temp_file()
        try:
            self.export(path)
            found = con.read_parquet(str(path))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        # A relation holds its connection, so the file outlives every relation reading it.
        weakref.finalize(con, _remove, str(path))
        return found

    def arrow_schema(self) -> pa.Schema:
        with self._connect() as conn:
            columns = self._columns(conn)
        return pa.schema([(name, _TYPES.get(oid, pa.string())) for name, oid in columns])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": _redacted(self.url), "table": self.table, "query": self.query}


def _sent(name: str, oid: int) -> sql.Composable:
    """How column ``name`` is selected: timestamps as epoch microseconds, NUMERIC as float8 (no
    Decimal objects), types without an Arrow mapping as text."""
    col = sql.Identifier(name)
    if oid in _TIMESTAMPS:
        expr: sql.Composable = sql.SQL(_EPOCH_US).format(col=col)
    elif oid == 1700:
        expr = sql.SQL("{}::float8").format(col)
    elif oid not in _TYPES:
        expr = sql.SQL("{}::text").format(col)
    else:
        return col
    return expr + sql.SQL(" AS ") + col


def _batch(rows: Sequence[tuple[Any, ...]], columns: list[tuple[str, int]], schema: pa.Schema) -> pa.Table:
    """One fetched batch of rows as an Arrow table of ``schema``."""
    arrays = []
    for values, (_, oid), target in zip(zip(*rows, strict=True), columns, schema, strict=True):
        if oid in _TIMESTAMPS:
            arrays.append(pa.array(values, pa.int64()).cast(target.type))
        else:
            arrays.append(pa.array(values, target.type))
    return pa.Table.from_arrays(arrays, schema=schema)


@contextmanager
def _without_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: each batch allocates ``batch_rows`` row tuples, which
    trigger collections that traverse them all again (a third of the export time); the batches
    make no reference cycles, so nothing is left for it meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS loopml_online_values (
    view TEXT NOT NULL, entity_key TEXT NOT NULL, event_ts BIGINT NOT NULL,
    created_ts BIGINT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (view, entity_key)
);
CREATE TABLE IF NOT EXISTS loopml_online_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS loopml_online_in (
    ord BIGINT, entity_key TEXT, event_ts BIGINT, created_ts BIGINT, payload TEXT
) ON COMMIT DELETE ROWS
"""
# Within one batch the last of equal rows wins (as sequential writes would); across writers the
# WHERE keeps a stored newer event.
_MERGE = """
INSERT INTO loopml_online_values AS t (view, entity_key, event_ts, created_ts, payload)
SELECT DISTINCT ON (entity_key) %s, entity_key, event_ts, created_ts, payload FROM loopml_online_in
ORDER BY entity_key, event_ts DESC, created_ts DESC, ord DESC
ON CONFLICT (view, entity_key) DO UPDATE SET
    event_ts = excluded.event_ts, created_ts = excluded.created_ts, payload = excluded.payload
WHERE excluded.event_ts > t.event_ts
   OR (excluded.event_ts = t.event_ts AND excluded.created_ts >= t.created_ts)
"""


class PostgresOnlineStore(OnlineStore):
    """Online values in PostgreSQL at ``url`` (``postgresql://user@host:port/db``)."""

    def __init__(self, url: str) -> None:
        self._url = _redacted(url)
        try:
            self._conn = psycopg.connect(libpq_url(url), autocommit=True)
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"the PostgreSQL online store at {self._url} is unreachable ({exc}); start it or fix the URL",
                details={"field": "online_store", "url": self._url},
            ) from None
        self._lock = threading.Lock()
        with self._lock:
            for statement in _SCHEMA.split(";"):
                self._conn.execute(statement)  # type: ignore[call-overload]

    def _write(self, view_name: str, items: list[tuple[str, int, int, str]]) -> int:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(_STAGE)  # type: ignore[call-overload]
            with cur.copy("COPY loopml_online_in FROM STDIN") as copy:
                for ord_, (key, event_ts, created_ts, payload) in enumerate(items):
                    copy.write_row((ord_, key, event_ts, created_ts, payload))
            cur.execute(_MERGE, (view_name,))  # type: ignore[call-overload]
            return max(cur.rowcount, 0)

    def _read(self, view_name: str, keys: list[str]) -> list[tuple[int, str] | None]:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(
                "SELECT entity_key, event_ts, payload FROM loopml_online_values "
                "WHERE view = %s AND entity_key = ANY(%s)",
                (view_name, list(dict.fromkeys(keys))),
            )
            found = {key: (int(ts), payload) for key, ts, payload in cur.fetchall()}
        return [found.get(key) for key in keys]

    def delete(self, view_name: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM loopml_online_values WHERE view = %s", (view_name,))

    def get_meta(self, name: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM loopml_online_meta WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO loopml_online_meta (name, value) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
