"""The online store contract: the latest value of every feature per entity key, for low-latency reads.

A backend (:mod:`loopml.features.online_sqlite`, :mod:`loopml.features.online_redis`) implements
the five abstract methods of :class:`OnlineStore`; the base class owns everything both must agree
on: how keys, timestamps and values are encoded, and how ttl and the status of each value are
decided on read. A write never replaces a stored value with an older event: the newer event
timestamp wins, then the newer created timestamp, decided atomically per key by the backend.

>>> from datetime import timedelta
>>> import pandas as pd
>>> from loopml.features.definitions import DataFrameSource, Entity, FeatureView, Field
>>> from loopml.features.online_sqlite import SqliteOnlineStore
>>> view = FeatureView("stats", entities=[Entity("driver", join_keys="driver_id")],
...     fields=[Field("rate", "float64")], source=DataFrameSource(pd.DataFrame()), ttl=None)
>>> store = SqliteOnlineStore(":memory:")
>>> store.write_batch(view, [OnlineRow((1,), {"rate": 0.5}, to_utc_micros("2024-01-01"))])
1
>>> store.read(view, [(1,), (2,)], ["rate"])[0].values
{'rate': 0.5}
"""

from __future__ import annotations

import base64
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from loopml.errors import InvalidInput
from loopml.features.definitions import FeatureView

PRESENT = "present"
MISSING = "missing"
OUTSIDE_TTL = "outside_ttl"

# Stands for "no created timestamp": older than any real one, and exact as a Lua double (< 2**53).
NO_CREATED = -(2**53 - 1)


def to_utc_micros(value: Any) -> int:
    """A timestamp of any precision and zone as integer UTC microseconds; naive means UTC.

    The same normalisation the offline join applies (it compares UTC microseconds), so a row is
    inside or outside the ttl on both paths alike.

    >>> to_utc_micros("2024-01-01T01:00:00+01:00") == to_utc_micros(pd.Timestamp("2024-01-01"))
    True
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{value!r} is not a timestamp; pass a datetime, pandas Timestamp or ISO string",
            details={"field": "timestamp", "value": str(value)},
        ) from exc
    if stamp is pd.NaT:
        raise InvalidInput(
            "a timestamp is missing (NaT); every row needs one", details={"field": "timestamp"}
        )
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value) // 1000


def _plain(value: Any) -> Any:
    """A key value as a plain Python scalar, so numpy's int64(1) and 1 name the same entity."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a key read back through pandas as 1.0 is still entity 1
    return value


def encode_key(key: Sequence[Any]) -> str:
    """The canonical text of a join-key tuple: ``encode_key((1, "a")) == '[1,"a"]'``."""
    if all(type(v) is int for v in key):  # the common case, spelled exactly as json.dumps would
        return "[" + ",".join(map(str, key)) + "]"
    return json.dumps([_plain(v) for v in key], separators=(",", ":"), default=str)


def encode_values(view: FeatureView, values: dict[str, Any]) -> str:
    """The view's feature values as JSON (floats round-trip exactly; bytes and times tagged by type)."""
    out: dict[str, Any] = {}
    for f in view.fields:
        value = values.get(f.name)
        if value is None or (isinstance(value, float) and value != value and not f.dtype.startswith("float")):
            out[f.name] = None
        elif f.dtype == "bytes":
            out[f.name] = base64.b64encode(bytes(value)).decode()
        elif f.dtype == "timestamp":
            out[f.name] = to_utc_micros(value)
        else:
            out[f.name] = _plain(value)
    return json.dumps(out, separators=(",", ":"))


def decode_values(view: FeatureView, payload: str) -> dict[str, Any]:
    """The inverse of :func:`encode_values`."""
    try:
        raw: dict[str, Any] = orjson.loads(payload)
    except orjson.JSONDecodeError:  # NaN/Infinity or integers beyond 64 bits: only json reads those
        raw = json.loads(payload)
    for f in view.fields:
        value = raw.get(f.name)
        if value is None:
            continue
        if f.dtype == "bytes":
            raw[f.name] = base64.b64decode(value)
        elif f.dtype == "timestamp":
            raw[f.name] = pd.Timestamp(value, unit="us", tz="UTC").to_pydatetime()
    return raw


@dataclass(frozen=True, slots=True)
class OnlineRow:
    """One entity's feature values as of ``event_ts`` (UTC microseconds, see :func:`to_utc_micros`)."""

    key: tuple[Any, ...]
    values: dict[str, Any]
    event_ts: int
    created_ts: int | None = None


@dataclass(frozen=True, slots=True)
class OnlineRead:
    """What a read found for one entity: a value and a status per requested feature.

    A value is ``None`` unless its status is ``"present"``; ``event_ts`` is the stored event time
    (UTC microseconds) or ``None`` when the key has never been written.
    """

    values: dict[str, Any]
    statuses: dict[str, str]
    event_ts: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class OnlineStore(ABC):
    """Latest feature values per (view, entity key). Subclasses implement the storage primitives.

    ``_write(view_name, items)`` stores each ``(key_text, event_ts, created_ts, payload)`` unless
    the stored one is newer (event, then created timestamp), atomically per key, and returns how
    many it stored; ``_read(view_name, key_texts)`` returns ``(event_ts, payload)`` or ``None`` per
    key; ``delete(view_name)`` drops a view's values; ``get_meta``/``set_meta`` keep small strings
    (the materialization watermarks); ``close()`` releases connections.
    """

    @abstractmethod
    def _write(self, view_name: str, items: list[tuple[str, int, int, str]]) -> int: ...

    @abstractmethod
    def _read(self, view_name: str, keys: list[str]) -> list[tuple[int, str] | None]: ...

    def idle(self) -> bool:
        """Whether a small read right now answers in well under a millisecond without waiting on
        the network or another thread's write, so a server may run it on its event loop."""
        return False

    @abstractmethod
    def delete(self, view_name: str) -> None:
        """Remove every value of the view (e.g. before re-materializing it from scratch)."""

    @abstractmethod
    def get_meta(self, name: str) -> str | None:
        """A metadata string stored with :meth:`set_meta`, or ``None``."""

    @abstractmethod
    def set_meta(self, name: str, value: str) -> None:
        """Store a small metadata string (overwrites)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s); the store is unusable afterwards."""

    def write_batch(self, view: FeatureView, rows: Sequence[OnlineRow]) -> int:
        """Store each row unless a newer event for its key is stored; returns how many were stored.

        >>> store.write_batch(view, [OnlineRow((1,), {"rate": 0.4}, ts)])  # doctest: +SKIP
        """
        items = []
        for row in rows:
            if len(row.key) != len(view.join_keys):
                raise InvalidInput(
                    f"row key {row.key!r} has {len(row.key)} value(s); feature view {view.name!r} "
                    f"is keyed by {', '.join(view.join_keys)}",
                    details={"field": "key", "feature_view": view.name},
                )
            created = NO_CREATED if row.created_ts is None else int(row.created_ts)
            payload = encode_values(view, row.values)
            items.append((encode_key(row.key), int(row.event_ts), created, payload))
        return self._write(view.name, items) if items else 0

    def write_encoded(self, view_name: str, items: list[tuple[str, int, int, str]]) -> int:
        """Bulk newer-wins write of already encoded ``(key_text, event_ts, created_ts, payload)``
        items (see :mod:`loopml.features.bulk`); returns how many were stored."""
        return self._write(view_name, items) if items else 0

    def read(
        self,
        view: FeatureView,
        keys: Sequence[Sequence[Any]],
        features: Sequence[str] | None = None,
        *,
        now_us: int | None = None,
    ) -> list[OnlineRead]:
        """One :class:`OnlineRead` per key, in order; the view's ttl is enforced against ``now_us``.

        A value older than ``now - ttl`` reads as ``None`` with status ``"outside_ttl"`` (Feast
        returns it anyway, feast#1802); a key never written reads as ``"missing"``.
        """
        names = list(features) if features is not None else list(view.feature_names)
        for name in names:
            view.field(name)  # NotFound naming the known features
        now = int(time.time() * 1_000_000) if now_us is None else now_us
        oldest = None if view.ttl is None else now - int(view.ttl.total_seconds() * 1_000_000)
        found = self._read(view.name, [encode_key(k) for k in keys])
        return [_status(view, names, item, oldest) for item in found]


def _status(
    view: FeatureView, names: list[str], item: tuple[int, str] | None, oldest: int | None
) -> OnlineRead:
    if item is None:
        return OnlineRead(dict.fromkeys(names), dict.fromkeys(names, MISSING))
    event_ts, payload = item
    if oldest is not None and event_ts < oldest:
        return OnlineRead(dict.fromkeys(names), dict.fromkeys(names, OUTSIDE_TTL), event_ts)
    stored = decode_values(view, payload)
    values = {name: stored.get(name) for name in names}
    return OnlineRead(values, dict.fromkeys(names, PRESENT), event_ts)


def open_online_store(url: str | None = None, *, home: str | Path | None = None) -> OnlineStore:
    """The online store a URL names: ``redis://...``, ``postgresql://...``, ``sqlite:///path`` or,
    by default, SQLite.

    The default is ``online.db`` under ``home`` (``$LOOPML_HOME``). Backends are imported only
    when named, so the redis client is never loaded for a SQLite store.

    >>> open_online_store("sqlite:///:memory:").close()
    """
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        from loopml.features.online_redis import RedisOnlineStore

        return RedisOnlineStore(url)
    if url and url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        from loopml.features.postgres import PostgresOnlineStore

        return PostgresOnlineStore(url)
    from loopml.features.online_sqlite import SqliteOnlineStore

    if url and url.startswith("sqlite:///"):
        return SqliteOnlineStore(url.removeprefix("sqlite:///"))
    if url:
        raise InvalidInput(
            f"online store URL {url!r} is not supported; use sqlite:///PATH, redis://HOST:PORT/DB "
            "or postgresql://USER@HOST:PORT/DB",
            details={"field": "online_store", "value": url},
        )
    return SqliteOnlineStore(Path(home or ".loopml") / "online.db")
