"""Experiments over the SQL store (a mixin of :class:`LocalTrackingService`)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, insert, select, update

from loopml.errors import AlreadyExists, InvalidInput, NotFound
from loopml.store.db import Database
from loopml.store.schema import experiment_tags, experiments
from loopml.tracking._artifacts import ARTIFACT_SCHEME
from loopml.tracking.records import Experiment, ExperimentPage, ViewType
from loopml.tracking.search import check_max_results, decode_page_token, encode_page_token
from loopml.tracking.validation import MAX_EXPERIMENT_NAME_LENGTH, check_key, check_name

_NAME_FILTER = re.compile(r"^\s*(?:attributes\.)?name\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*$", re.I)


_ORDERABLE = {
    "name": experiments.c.name,
    "experiment_id": experiments.c.experiment_id,
    "creation_time": experiments.c.creation_time,
    "last_update_time": experiments.c.last_update_time,
}


def _experiment_order(order_by: Sequence[str]) -> list[Any]:
    """MLflow's experiment order_by (``name ASC``); newest first by default."""
    out: list[Any] = []
    for item in order_by:
        words = item.split()
        col = _ORDERABLE.get(words[0].removeprefix("attributes.")) if words else None
        if col is None or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise InvalidInput(
                f"order_by {item!r} is invalid; use one of {sorted(_ORDERABLE)} with ASC or DESC",
                details={"field": "order_by"},
            )
        out.append(col.desc() if len(words) == 2 and words[1].upper() == "DESC" else col.asc())
    return [*out, experiments.c.creation_time.desc(), experiments.c.experiment_id.desc()]


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_experiment_id(experiment_id: object) -> int:
    try:
        return int(str(experiment_id))
    except ValueError:
        raise InvalidInput(
            f"experiment_id must be an integer id, got {experiment_id!r}",
            details={"field": "experiment_id"},
        ) from None


class ExperimentsMixin:
    db: Database

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        name = check_name(name, "experiment", MAX_EXPERIMENT_NAME_LENGTH)
        for key in tags or {}:
            check_key(key, "experiment tag")
        t = now_ms()
        with self.db.write() as conn:
            if conn.execute(select(experiments.c.experiment_id).where(experiments.c.name == name)).first():
                raise AlreadyExists(
                    f"experiment {name!r} already exists; pick another name or use it",
                    details={"field": "name"},
                )
            result = conn.execute(
                insert(experiments).values(
                    name=name,
                    artifact_location=artifact_location or "",
                    lifecycle_stage="active",
                    creation_time=t,
                    last_update_time=t,
                )
            )
            assert result.inserted_primary_key is not None
            exp_id = int(result.inserted_primary_key[0])
            if not artifact_location:
                conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == exp_id)
                    .values(artifact_location=f"{ARTIFACT_SCHEME}{exp_id}")
                )
            if tags:
                conn.execute(
                    insert(experiment_tags),
                    [{"experiment_id": exp_id, "key": k, "value": str(v)} for k, v in tags.items()],
                )
        return str(exp_id)

    def _experiment_rows(self, conn: Connection, where: object) -> list[Experiment]:
        rows = conn.execute(select(experiments).where(where).order_by(experiments.c.experiment_id)).all()  # type: ignore[arg-type]
        ids = [r.experiment_id for r in rows]
        tag_rows = (
            conn.execute(select(experiment_tags).where(experiment_tags.c.experiment_id.in_(ids))).all()
            if ids
            else []
        )
        by_id: dict[int, dict[str, str]] = {i: {} for i in ids}
        for t in tag_rows:
            by_id[t.experiment_id][t.key] = t.value
        return [
            Experiment(
                str(r.experiment_id),
                r.name,
                r.artifact_location,
                r.lifecycle_stage,
                r.creation_time,
                r.last_update_time,
                by_id[r.experiment_id],
            )
            for r in rows
        ]

    def get_experiment(self, experiment_id: str) -> Experiment:
        exp_id = parse_experiment_id(experiment_id)
        with self.db.read() as conn:
            found = self._experiment_rows(conn, experiments.c.experiment_id == exp_id)
        if not found:
            raise NotFound(
                f"experiment {experiment_id} does not exist",
                details={"experiment_id": experiment_id},
            )
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self.db.read() as conn:
            found = self._experiment_rows(conn, experiments.c.name == name)
        return found[0] if found else None

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        page_token: str | None = None,
        order_by: Sequence[str] = (),
    ) -> ExperimentPage:
        check_max_results(max_results)
        offset = decode_page_token(page_token)
        where: ColumnElement[bool] = experiments.c.lifecycle_stage.in_(ViewType(view_type).stages())
        if filter_string and filter_string.strip():
            m = _NAME_FILTER.match(filter_string)
            if not m:
                raise InvalidInput(
                    f"experiment filter {filter_string!r} is not supported; use name = '...', "
                    "name LIKE '...' or name ILIKE '...'",
                    details={"field": "filter"},
                )
            op, value = m.group(1).upper(), m.group(2).replace("''", "'")
            col = experiments.c.name
            cond = {"=": col == value, "!=": col != value, "LIKE": col.like(value)}.get(op)
            where = where & (cond if cond is not None else col.ilike(value))
        with self.db.read() as conn:
            ids = (
                conn.execute(
                    select(experiments.c.experiment_id)
                    .where(where)
                    .order_by(*_experiment_order(order_by))
                    .offset(offset)
                    .limit(max_results + 1)
                )
                .scalars()
                .all()
            )
            page = ids[:max_results]
            rows = {
                e.experiment_id: e for e in self._experiment_rows(conn, experiments.c.experiment_id.in_(page))
            }
            found = [rows[str(i)] for i in page]
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return ExperimentPage(found, token)

    def _set_experiment(self, experiment_id: str, **values: object) -> None:
        exp_id = parse_experiment_id(experiment_id)
        with self.db.write() as conn:
            result = conn.execute(
                update(experiments)
                .where(experiments.c.experiment_id == exp_id)
                .values(last_update_time=now_ms(), **values)
            )
        if result.rowcount == 0:
            raise NotFound(
                f"experiment {experiment_id} does not exist",
                details={"experiment_id": experiment_id},
            )

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        new_name = check_name(new_name, "experiment", MAX_EXPERIMENT_NAME_LENGTH)
        existing = self.get_experiment_by_name(new_name)
        if existing is not None and existing.experiment_id != str(experiment_id):
            raise AlreadyExists(f"experiment {new_name!r} already exists", details={"field": "name"})
        self._set_experiment(experiment_id, name=new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        if parse_experiment_id(experiment_id) == 0:
            raise InvalidInput("the Default experiment (id 0) cannot be deleted")
        self._set_experiment(experiment_id, lifecycle_stage="deleted")

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment(experiment_id, lifecycle_stage="active")

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        check_key(key, "experiment tag")
        self.get_experiment(experiment_id)
        with self.db.write() as conn:
            conn.exec_driver_sql(
                self.db.sql(
                    "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value"
                ),
                (parse_experiment_id(experiment_id), key, str(value)),
            )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        exp_id = parse_experiment_id(experiment_id)
        t = experiment_tags.c
        with self.db.write() as conn:
            result = conn.execute(experiment_tags.delete().where(t.experiment_id == exp_id, t.key == key))
        if result.rowcount == 0:
            raise NotFound(f"experiment {experiment_id} has no tag {key!r}", details={"field": "key"})
