"""PostgreSQL for the feature store: a source (a table or query) and an online store.

DuckDB's ``postgres`` extension must be downloaded, which an offline machine cannot do, so a
:class:`PostgresSource` is read through psycopg: ``COPY (query) TO STDOUT`` as CSV, parsed by
Arrow with the column types PostgreSQL reports (timestamps travel as epoch microseconds, so no
text parsing of zones is involved). The rows are read when a query runs (into memory: for
sources beyond memory, export to Parquet and use a FileSource).

:class:`PostgresOnlineStore` keeps the online values in one table; a bulk write is a COPY into a
temporary table and one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` newer-wins statement, so
concurrent writers cannot make an older event win.

A URL's password is left out of the source's spec (the registry stores specs); a source rebuilt
from the registry connects with libpq's own password sources (``PGPASSWORD``, ``~/.pgpass``).

>>> PostgresSource("postgresql://u:secret@db/x", table="stats").spec()["url"]
'postgresql://u@db/x'
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from loopml.errors import InvalidInput, Unavailable
from loopml.features.definitions import Source
from loopml.features.online import OnlineStore

if TYPE_CHECKING:
    import duckdb

# PostgreSQL type OIDs -> how the column is sent (SQL around the column) and its Arrow type.
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

    >>> PostgresSource("postgresql://db/x", query="SELECT * FROM stats").kind
    'postgres'
    """

    url: str
    table: str | None = None
    query: str | None = None
    kind = "postgres"

    def __post_init__(self) -> None:
        libpq_url(self.url)
        if (self.table is None) == (self.query is None):
            raise InvalidInput(
                "a PostgreSQL source needs exactly one of table= or query=", details={"field": "table"}
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
        with conn.cursor() as cur:
            cur.execute(inner)
            return [(d.name, d.type_code) for d in cur.description or []]

    def read(self) -> pa.Table:
        """All the rows as an Arrow table (one COPY)."""
        with self._connect() as conn:
            columns = self._columns(conn)
            exprs = [
                sql.SQL(_EPOCH_US).format(col=sql.Identifier(name)) + sql.SQL(" AS ") + sql.Identifier(name)
                if oid in (1114, 1184)
                else sql.Identifier(name)
                for name, oid in columns
            ]
            copy = sql.SQL("COPY (SELECT {} FROM ({}) AS q) TO STDOUT (FORMAT csv, HEADER false)").format(
                sql.SQL(", ").join(exprs), self._select()
            )
            buffer = io.BytesIO()
            with conn.cursor() as cur, cur.copy(copy) as stream:
                for chunk in stream:
                    buffer.write(chunk)
        return _parse_csv(buffer.getvalue(), columns)

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        return con.from_arrow(self.read())

    def arrow_schema(self) -> pa.Schema:
        with self._connect() as conn:
            columns = self._columns(conn)
        return pa.schema([(name, _TYPES.get(oid, pa.string())) for name, oid in columns])

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": _redacted(self.url), "table": self.table, "query": self.query}


def _parse_csv(data: bytes, columns: list[tuple[str, int]]) -> pa.Table:
    names = [name for name, _ in columns]
    sent = {
        name: pa.int64() if oid in (1114, 1184) else _TYPES.get(oid, pa.string()) for name, oid in columns
    }
    if not data:
        table = pa.table({n: pa.array([], sent[n]) for n in names})
    else:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(
                column_types=sent,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
    for i, (name, oid) in enumerate(columns):
        if oid in (1114, 1184):
            table = table.set_column(i, name, table.column(name).cast(_TYPES[oid]))
    return table


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
