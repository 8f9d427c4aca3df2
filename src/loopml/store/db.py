"""Engines, transactions and automatic migrations for the metadata store.

SQLite (the default) is opened in WAL mode with a 30 s busy timeout, and every
write runs in a ``BEGIN IMMEDIATE`` transaction so concurrent writers queue
instead of failing half-way. PostgreSQL is used as it is.

>>> db = Database("sqlite:///:memory:")
>>> with db.write() as conn:
...     _ = conn.exec_driver_sql("select 1")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, create_engine, event, func, inspect, pool, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import ColumnElement

# The newest migration; a test asserts it matches Alembic's head.
SCHEMA_HEAD = "0010"
BUSY_TIMEOUT_MS = 30_000
_WRITE = "loopml_write"
_CHANGES = "loopml_changes_at_begin"

WriteHook = Callable[["Database", Connection], None]
_write_hooks: list[WriteHook] = []


def next_stamp(conn: Connection, column: Column[Any], where: ColumnElement[bool], wanted: int) -> int:
    """``wanted``, or one millisecond after the latest stamp in ``where`` if that is not earlier.

    Histories read by time (stage transitions, evaluations, deployment events) keep the order
    their records were written in, even when two land in the same millisecond."""
    last = conn.execute(select(func.max(column)).where(where)).scalar()
    return wanted if last is None else max(wanted, int(last) + 1)


def add_write_hook(hook: WriteHook) -> None:
    """Run ``hook(db, conn)`` at the end of every write transaction, before it commits."""
    if hook not in _write_hooks:
        _write_hooks.append(hook)


class Database:
    """One metadata database: an engine plus read and write transactions."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # DBAPI placeholder for hand-written hot-path SQL: sqlite3 takes ?, psycopg %s.
        self.placeholder = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._writer = self.engine.execution_options(**{_WRITE: True})
        if migrate:
            ensure_schema(self)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (deferred on SQLite: it never blocks writers)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; all of it commits or none of it does. The write hooks run
        inside it, after its body and before the commit (the audit log appends there)."""
        with self._writer.connect() as conn, conn.begin():
            if _write_hooks:
                conn.info[_CHANGES] = self._total_changes(conn)
            yield conn
            for hook in _write_hooks:
                hook(self, conn)

    def wrote(self, conn: Connection) -> bool:
        """Whether the write transaction ``conn`` has changed anything so far."""
        if self.is_sqlite:
            return bool(self._total_changes(conn) != conn.info.get(_CHANGES))
        return conn.exec_driver_sql("select txid_current_if_assigned()").scalar() is not None

    @staticmethod
    def _total_changes(conn: Connection) -> int:
        dbapi = conn.connection.dbapi_connection
        return int(getattr(dbapi, "total_changes", 0))

    def sql(self, statement: str) -> str:
        """Adapt a ``?``-placeholder statement to this database's driver."""
        return statement if self.placeholder == "?" else statement.replace("?", "%s")

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
            url = str(parsed.set(drivername="postgresql+psycopg"))
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    else:
        engine = create_engine(url, poolclass=pool.StaticPool)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (the pysqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA case_sensitive_like=ON")  # LIKE is case-sensitive, ILIKE is not
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def ensure_schema(db: Database) -> None:
    """Bring the schema to head; cheap when it already is (no Alembic import)."""
    if db.url in _migrated:
        return
    with _migrate_lock:
        if current_revision(db) != SCHEMA_HEAD:
            from loopml.store.migrate import upgrade  # Alembic is heavy: load only to migrate

            upgrade(db)
        _migrated.add(db.url)


def current_revision(db: Database) -> str | None:
    with db.read() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(text("select version_num from alembic_version")).first()
    return None if row is None else str(row[0])
