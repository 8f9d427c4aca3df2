"""The default online store: one SQLite file (``$LOOPML_HOME/online.db``), WAL mode.

Newer-wins is one UPSERT per key whose ``WHERE`` keeps the stored row when it is newer, so two
writers (a materialization and a push) cannot make an older event win whatever their order.

>>> store = SqliteOnlineStore(":memory:")
>>> store.set_meta("k", "v"); store.get_meta("k")
'v'
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from loopml.config import Settings
from loopml.features.online import OnlineStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_values (
    view TEXT NOT NULL, entity_key TEXT NOT NULL, event_ts INTEGER NOT NULL,
    created_ts INTEGER NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (view, entity_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_UPSERT = """
INSERT INTO online_values (view, entity_key, event_ts, created_ts, payload) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE SET
    event_ts = excluded.event_ts, created_ts = excluded.created_ts, payload = excluded.payload
WHERE excluded.event_ts > online_values.event_ts
   OR (excluded.event_ts = online_values.event_ts AND excluded.created_ts >= online_values.created_ts)
"""

# SQLite allows 32766 bound parameters; stay well below it per IN (...) lookup.
_READ_CHUNK = 900


class SqliteOnlineStore(OnlineStore):
    """Online values in a SQLite file (``":memory:"`` for a private in-process store).

    >>> SqliteOnlineStore.from_settings(Settings.load(env={"LOOPML_HOME": "/tmp/x"}))  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: reads are sub-millisecond, so a pool buys nothing.
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings) -> SqliteOnlineStore:
        return cls(settings.home / "online.db")

    def _write(self, view_name: str, items: list[tuple[str, int, int, str]]) -> int:
        with self._lock:
            before = self._con.total_changes
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(_UPSERT, [(view_name, k, t, c, p) for k, t, c, p in items])
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
            return self._con.total_changes - before

    def _read(self, view_name: str, keys: list[str]) -> list[tuple[int, str] | None]:
        found: dict[str, tuple[int, str]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _READ_CHUNK):
                chunk = unique[start : start + _READ_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = (
                    "SELECT entity_key, event_ts, payload FROM online_values "
                    f"WHERE view = ? AND entity_key IN ({marks})"
                )
                for key, event_ts, payload in self._con.execute(sql, [view_name, *chunk]):
                    found[key] = (event_ts, payload)
        return [found.get(key) for key in keys]

    def idle(self) -> bool:
        return not self._lock.locked()  # a write in progress would make the reader wait for it

    def delete(self, view_name: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM online_values WHERE view = ?", (view_name,))

    def get_meta(self, name: str) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT value FROM online_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self._lock:
            self._con.execute(
                "INSERT INTO online_meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def close(self) -> None:
        with self._lock:
            self._con.close()
