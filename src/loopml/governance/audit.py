"""The hash-chained audit log: one entry per audited write transaction, refusal or failed login.

The server binds an :class:`AuditContext` (who, which token, which request, from where) for each
mutating request; a write hook on :class:`loopml.store.db.Database` then appends the entry inside
the very transaction that changed something, so a change and its entry commit together or not at
all. Each entry carries the hash of the previous one; :func:`verify` recomputes the chain.

>>> from loopml.store.db import Database
>>> db = Database("sqlite:///:memory:")
>>> ctx = AuditContext(actor="ana", action="POST /x", target="model:churn", request_id="r1")
>>> record(db, ctx, outcome="denied").seq
1
>>> verify(db).ok
True
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import orjson
from sqlalchemy import Connection, select

from loopml.store.db import Database, add_write_hook
from loopml.store.schema import audit_log

GENESIS = "0" * 64
# Serialises appends on PostgreSQL (SQLite's BEGIN IMMEDIATE already does): the chain stays linear.
_PG_LOCK_KEY = 0x10095A0D17
_MAX_TEXT = 8000

_current: ContextVar[AuditContext | None] = ContextVar("loopml_audit", default=None)


@dataclass
class AuditContext:
    """Who is acting and on what; mutable so the code doing the change can add before/after."""

    actor: str
    action: str
    target: str = ""
    token_id: str | None = None
    request_id: str = ""
    client: str = ""
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: int
    actor: str
    token_id: str | None
    action: str
    target: str
    outcome: str
    before: Any
    after: Any
    request_id: str
    client: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (before/after decoded)."""
        return asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bind(ctx: AuditContext | None) -> Token[AuditContext | None]:
    """Make ``ctx`` the current context (for this task/thread); returns the token for :func:`unbind`."""
    return _current.set(ctx)


def unbind(token: Token[AuditContext | None]) -> None:
    _current.reset(token)


def current() -> AuditContext | None:
    return _current.get()


def note(*, target: str | None = None, before: Any = None, after: Any = None) -> None:
    """Let the code making a change describe it (no-op outside an audited request)."""
    ctx = _current.get()
    if ctx is None:
        return
    if target is not None:
        ctx.target = target
    if before is not None:
        ctx.before = before
    if after is not None:
        ctx.after = after


@contextmanager
def suspended() -> Iterator[None]:
    """Writes inside are bookkeeping, not changes to audit (e.g. a token's last-use time)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def install() -> None:
    """Append an entry at the end of every write transaction that changed something while a
    context is bound (idempotent)."""
    add_write_hook(_on_write)


def _on_write(db: Database, conn: Connection) -> None:
    ctx = _current.get()
    if ctx is None or not db.wrote(conn):
        return
    append(db, conn, ctx, "ok")


def record(db: Database, ctx: AuditContext, outcome: str) -> AuditEntry:
    """Append one entry in its own transaction (refused requests, failed logins)."""
    token = _current.set(None)  # the write hook must not append a second entry for this one
    try:
        with db.write() as conn:
            return append(db, conn, ctx, outcome)
    finally:
        _current.reset(token)


_COLUMNS = (
    "seq", "time", "actor", "token_id", "action", "target", "outcome", "before", "after",
    "request_id", "client", "prev_hash", "hash",
)  # fmt: skip
# Hand-written SQL: this runs in every audited write transaction, and building Core statements
# cost more than the rest of a metric batch.
_LAST = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_INSERT = f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def append(db: Database, conn: Connection, ctx: AuditContext, outcome: str) -> AuditEntry:
    """Append an entry for ``ctx`` inside the write transaction ``conn``."""
    if not db.is_sqlite:
        conn.exec_driver_sql(f"select pg_advisory_xact_lock({_PG_LOCK_KEY})")
    row = conn.exec_driver_sql(_LAST).first()
    seq, prev = (1, GENESIS) if row is None else (int(row[0]) + 1, str(row[1]))
    values: dict[str, Any] = {
        "seq": seq,
        "time": int(time.time() * 1000),
        "actor": ctx.actor[:256],
        "token_id": ctx.token_id,
        "action": ctx.action[:500],
        "target": ctx.target[:1000],
        "outcome": outcome,
        "before": _text(ctx.before),
        "after": _text(ctx.after),
        "request_id": ctx.request_id[:64],
        "client": ctx.client[:256],
        "prev_hash": prev,
    }
    values["hash"] = entry_hash(values)
    conn.exec_driver_sql(db.sql(_INSERT), tuple(values[c] for c in _COLUMNS))
    return _entry(values)


def entry_hash(values: dict[str, Any]) -> str:
    """sha256 over every column but ``hash`` itself, in a fixed order."""
    return hashlib.sha256(orjson.dumps([values[c] for c in _COLUMNS[:-1]])).hexdigest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _MAX_TEXT else orjson.dumps({"truncated": text[:_MAX_TEXT]}).decode()


def _entry(values: dict[str, Any]) -> AuditEntry:
    decoded = {k: values[k] for k in AuditEntry.__dataclass_fields__}
    for key in ("before", "after"):
        decoded[key] = None if values[key] is None else orjson.loads(values[key])
    return AuditEntry(**decoded)


def list_entries(
    db: Database,
    *,
    since: int | None = None,
    actor: str | None = None,
    target: str | None = None,
    limit: int = 100,
    after_seq: int = 0,
) -> list[AuditEntry]:
    """Entries in order, filtered: ``since`` (epoch ms), exact ``actor``, ``target`` prefix."""
    c = audit_log.c
    query = select(audit_log).where(c.seq > after_seq)
    if since is not None:
        query = query.where(c.time >= since)
    if actor:
        query = query.where(c.actor == actor)
    if target:
        query = query.where(c.target.startswith(target, autoescape=True))
    with db.read() as conn:
        rows = conn.execute(query.order_by(c.seq).limit(max(1, min(limit, 100_000)))).mappings().all()
    return [_entry(dict(r)) for r in rows]


def iter_entries(db: Database, batch: int = 5000, **filters: Any) -> Iterator[AuditEntry]:
    """Every matching entry, fetched in batches."""
    after = 0
    while True:
        page = list_entries(db, limit=batch, after_seq=after, **filters)
        yield from page
        if len(page) < batch:
            return
        after = page[-1].seq


def export_jsonl(db: Database, out: IO[bytes], **filters: Any) -> int:
    """Write matching entries as JSON lines; returns how many."""
    n = 0
    for entry in iter_entries(db, **filters):
        out.write(orjson.dumps(entry.to_dict()) + b"\n")
        n += 1
    return n


def verify(db: Database, anchor: tuple[int, str] | None = None) -> VerifyReport:
    """Recompute the chain: dense seq from 1, each prev_hash the previous hash, each hash right.

    ``anchor`` (seq, hash), e.g. a head noted earlier, must still be in the chain: that catches
    the deletion of the newest entries, which a chain alone cannot.
    """
    problems: list[str] = []
    prev_seq, prev_hash, checked = 0, GENESIS, 0
    anchor_seen = anchor is None
    c = audit_log.c
    with db.read() as conn:
        rows = conn.execute(select(audit_log).order_by(c.seq)).mappings()
        for row in rows:
            values = dict(row)
            seq = int(values["seq"])
            checked += 1
            if seq != prev_seq + 1:
                problems.append(f"entries {prev_seq + 1}..{seq - 1} are missing (deleted)")
            if values["prev_hash"] != prev_hash:
                problems.append(f"entry {seq}: prev_hash does not match entry {prev_seq}'s hash")
            if entry_hash(values) != values["hash"]:
                problems.append(f"entry {seq}: content does not match its hash (edited)")
            if anchor is not None and seq == anchor[0]:
                anchor_seen = values["hash"] == anchor[1]
            prev_seq, prev_hash = seq, str(values["hash"])
    if not anchor_seen and anchor is not None:
        problems.append(f"anchor entry {anchor[0]} with hash {anchor[1][:12]}... is not in the log")
    return VerifyReport(not problems, checked, prev_seq, prev_hash, problems)
