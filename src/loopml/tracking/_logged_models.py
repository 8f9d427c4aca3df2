"""MLflow 3 logged models over the SQL store (a mixin of the local service).

A logged model is an artifact tree with its own id (``m-<hex>``) that a run
produced; ``mlflow.<flavor>.log_model`` creates one, uploads into its artifact
location and finalizes it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from loopml.errors import InvalidInput, NotFound
from loopml.store.db import Database
from loopml.store.schema import experiments, logged_model_params, logged_model_tags, logged_models
from loopml.tracking._experiments import now_ms, parse_experiment_id
from loopml.tracking.records import LoggedModel
from loopml.tracking.search import check_max_results, decode_page_token, encode_page_token
from loopml.tracking.validation import check_key, check_name

MODEL_STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
_UPSERT = (
    "INSERT INTO {table} (model_id, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
)


class LoggedModelsMixin:
    db: Database

    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        source_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        model_type: str | None = None,
    ) -> LoggedModel:
        exp_id = parse_experiment_id(experiment_id)
        model_id = f"m-{uuid.uuid4().hex}"
        name = check_name(name or "model", "model", 500)
        t = now_ms()
        with self.db.write() as conn:
            location = conn.execute(
                select(experiments.c.artifact_location).where(experiments.c.experiment_id == exp_id)
            ).scalar()
            if location is None:
                raise NotFound(f"experiment {experiment_id} does not exist")
            conn.execute(
                insert(logged_models).values(
                    model_id=model_id,
                    experiment_id=exp_id,
                    name=name,
                    artifact_location=f"{location}/models/{model_id}/artifacts",
                    status="LOGGED_MODEL_PENDING",
                    creation_timestamp=t,
                    last_updated_timestamp=t,
                    source_run_id=source_run_id,
                    model_type=model_type,
                    lifecycle_stage="active",
                )
            )
            self._upsert_pairs(conn, "logged_model_tags", model_id, tags or {})
            self._upsert_pairs(conn, "logged_model_params", model_id, params or {})
        return self.get_logged_model(model_id)

    def _upsert_pairs(self, conn: Connection, table: str, model_id: str, pairs: dict[str, str]) -> None:
        for key in pairs:
            check_key(key, table.removeprefix("logged_model_").rstrip("s"))
        if pairs:
            conn.exec_driver_sql(
                self.db.sql(_UPSERT.format(table=table)),
                [(model_id, k, str(v)) for k, v in pairs.items()],
            )

    def get_logged_model(self, model_id: str) -> LoggedModel:
        with self.db.read() as conn:
            found = _load_models(conn, [model_id])
        if not found:
            raise NotFound(f"logged model {model_id!r} does not exist", details={"model_id": model_id})
        return found[0]

    def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        if status not in MODEL_STATUSES:
            raise InvalidInput(
                f"status {status!r} is not one of {', '.join(MODEL_STATUSES)}",
                details={"field": "status"},
            )
        self._touch_model(model_id, status=status)
        return self.get_logged_model(model_id)

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        with self.db.write() as conn:
            self._require_model(conn, model_id)
            self._upsert_pairs(conn, "logged_model_tags", model_id, tags)

    def log_logged_model_params(self, model_id: str, params: dict[str, str]) -> None:
        with self.db.write() as conn:
            self._require_model(conn, model_id)
            self._upsert_pairs(conn, "logged_model_params", model_id, params)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        with self.db.write() as conn:
            self._require_model(conn, model_id)
            t = logged_model_tags.c
            conn.execute(logged_model_tags.delete().where(t.model_id == model_id, t.key == key))

    def delete_logged_model(self, model_id: str) -> None:
        self._touch_model(model_id, lifecycle_stage="deleted")

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        max_results: int = 100,
        page_token: str | None = None,
        filter_string: str = "",
    ) -> tuple[list[LoggedModel], str | None]:
        """Active models, newest first; ``filter_string`` is ``name = '...'`` and/or
        ``source_run_id = '...'`` joined by AND."""
        check_max_results(max_results)
        offset = decode_page_token(page_token)
        c = logged_models.c
        query = (
            select(c.model_id)
            .where(
                c.experiment_id.in_([parse_experiment_id(e) for e in experiment_ids]),
                c.lifecycle_stage == "active",
                *_model_filter(filter_string),
            )
            .order_by(c.creation_timestamp.desc(), c.model_id)
            .offset(offset)
            .limit(max_results + 1)
        )
        with self.db.read() as conn:
            ids = list(conn.execute(query).scalars())
            found = _load_models(conn, ids[:max_results])
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return found, token

    def _require_model(self, conn: Connection, model_id: str) -> None:
        if (
            conn.execute(select(logged_models.c.model_id).where(logged_models.c.model_id == model_id)).first()
            is None
        ):
            raise NotFound(f"logged model {model_id!r} does not exist", details={"model_id": model_id})

    def _touch_model(self, model_id: str, **values: Any) -> None:
        with self.db.write() as conn:
            self._require_model(conn, model_id)
            conn.execute(
                update(logged_models)
                .where(logged_models.c.model_id == model_id)
                .values(last_updated_timestamp=now_ms(), **values)
            )


_MODEL_CLAUSE = re.compile(r"^\s*(name|source_run_id)\s*=\s*'((?:[^']|'')*)'\s*$", re.I)


def _model_filter(text: str) -> list[Any]:
    conditions = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.I) if text.strip() else []:
        m = _MODEL_CLAUSE.match(part)
        if not m:
            raise InvalidInput(
                f"logged model filter {part!r} is not supported; use name = '...' or source_run_id = '...'",
                details={"field": "filter"},
            )
        col = getattr(logged_models.c, m.group(1).lower())
        conditions.append(col == m.group(2).replace("''", "'"))
    return conditions


def _load_models(conn: Connection, ids: list[str]) -> list[LoggedModel]:
    if not ids:
        return []
    by_id = {
        r.model_id: LoggedModel(
            r.model_id,
            str(r.experiment_id),
            r.name,
            r.artifact_location,
            r.status,
            r.creation_timestamp,
            r.last_updated_timestamp,
            r.source_run_id,
            r.model_type,
            r.status_message,
            r.lifecycle_stage,
        )
        for r in conn.execute(select(logged_models).where(logged_models.c.model_id.in_(ids)))
    }
    for table, attr in ((logged_model_tags, "tags"), (logged_model_params, "params")):
        for r in conn.execute(select(table).where(table.c.model_id.in_(ids))):
            getattr(by_id[r.model_id], attr)[r.key] = r.value
    return [by_id[i] for i in ids if i in by_id]
