"""The audit log: appended in the changing transaction, hash-chained, verified, linear under
concurrent writers on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import itertools
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from loopml.governance import audit
from loopml.store.db import Database
from loopml.store.schema import experiment_tags, experiments


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        base = make_url(request.getfixturevalue("postgres_url"))
        name = f"audit_{uuid.uuid4().hex[:12]}"
        admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
    audit.install()
    database = Database(url)
    yield database
    database.dispose()


def _ctx(actor: str = "ana", target: str = "experiment:1") -> audit.AuditContext:
    return audit.AuditContext(
        actor=actor, action="POST /x", target=target, request_id="r", client="127.0.0.1"
    )


def _create_experiment(db: Database, name: str, fail: bool = False) -> None:
    with db.write() as conn:
        conn.execute(
            insert(experiments).values(
                name=name,
                artifact_location="x",
                lifecycle_stage="active",
                creation_time=1,
                last_update_time=1,
            )
        )
        if fail:
            raise RuntimeError("the change fails after writing")


def _count(db: Database, table: str) -> int:
    with db.read() as conn:
        return int(conn.execute(text(f"select count(*) from {table}")).scalar_one())


def test_a_change_and_its_entry_commit_or_roll_back_together(db: Database) -> None:
    token = audit.bind(_ctx())
    try:
        _create_experiment(db, "a")
        with pytest.raises(RuntimeError):
            _create_experiment(db, "b", fail=True)
        with db.write() as conn:  # a write transaction that changes nothing leaves no entry
            conn.execute(select(experiments.c.name))
    finally:
        audit.unbind(token)
    _create_experiment(db, "c")  # no bound context (not a request): not audited
    entries = audit.list_entries(db)
    assert [(e.actor, e.target, e.outcome) for e in entries] == [("ana", "experiment:1", "ok")]
    with db.read() as conn:
        names = set(conn.execute(select(experiments.c.name)).scalars())
    assert {"a", "c"} <= names and "b" not in names


def test_the_chain_links_every_entry(db: Database) -> None:
    for n in range(3):
        audit.record(db, _ctx(actor=f"u{n}"), "denied")
    entries = audit.list_entries(db)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = audit.verify(db)
    assert report.ok and report.checked == 3 and report.head_hash == entries[-1].hash


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("update audit_log set actor = 'eve' where seq = 2", "entry 2: content does not match"),
        ("update audit_log set outcome = 'ok' where seq = 1", "entry 1: content does not match"),
        ("delete from audit_log where seq = 2", "entries 2..2 are missing"),
        ("delete from audit_log where seq = 1", "entries 1..1 are missing"),
    ],
)
def test_verify_detects_edited_and_deleted_entries(db: Database, tamper: str, problem: str) -> None:
    for n in range(4):
        audit.record(db, _ctx(actor=f"u{n}"), "denied")
    with db.engine.begin() as conn:
        conn.execute(text(tamper))
    report = audit.verify(db)
    assert not report.ok
    assert any(problem in p for p in report.problems), report.problems


def test_an_anchor_catches_deleting_the_newest_entries(db: Database) -> None:
    for n in range(3):
        audit.record(db, _ctx(actor=f"u{n}"), "denied")
    head = audit.verify(db)
    with db.engine.begin() as conn:
        conn.execute(text("delete from audit_log where seq = 3"))
    assert audit.verify(db).ok  # a chain alone cannot tell a truncated tail
    report = audit.verify(db, (head.head_seq, head.head_hash))
    assert not report.ok and "anchor entry 3" in report.problems[0]


def test_concurrent_writers_keep_the_chain_linear(db: Database) -> None:
    _create_experiment(db, "shared")
    with db.read() as conn:
        exp_id = conn.execute(
            select(experiments.c.experiment_id).where(experiments.c.name == "shared")
        ).scalar()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        token = audit.bind(_ctx(actor=f"w{n}"))
        try:
            for i in range(10):
                with db.write() as conn:
                    conn.execute(
                        insert(experiment_tags).values(experiment_id=exp_id, key=f"k{n}-{i}", value="v")
                    )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            audit.unbind(token)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    report = audit.verify(db)
    assert report.ok, report.problems
    assert report.checked == 60 == _count(db, "experiment_tags")


def test_filters_and_json_lines_export(db: Database) -> None:
    audit.record(db, _ctx(actor="ana", target="model:churn"), "ok")
    audit.record(db, _ctx(actor="bo", target="model:churn-v2"), "denied")
    audit.record(db, _ctx(actor="bo", target="experiment:3"), "ok")
    assert [e.seq for e in audit.list_entries(db, actor="bo")] == [2, 3]
    assert [e.seq for e in audit.list_entries(db, target="model:churn")] == [1, 2]
    assert [e.seq for e in audit.list_entries(db, target="model:churn%")] == []  # a prefix, not a pattern
    first = audit.list_entries(db)[0]
    assert audit.list_entries(db, since=first.time + 10**9) == []
    out = io.BytesIO()
    assert audit.export_jsonl(db, out) == 3
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["actor"] for line in lines] == ["ana", "bo", "bo"]
    assert lines[0]["hash"] == first.hash
