"""Runs and everything logged to them, over the SQL store (a mixin of the local service).

``log_batch`` is the ingest hot path: validated up front, then one
``executemany`` per table inside one immediate transaction.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Select, func, insert, select, update

from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.store.db import Database
from loopml.store.schema import (
    datasets,
    params,
    runs,
    tags,
)
from loopml.tracking import metric_chunks
from loopml.tracking._experiments import now_ms, parse_experiment_id
from loopml.tracking.records import (
    DatasetInput,
    Metric,
    MetricTuple,
    ModelOutput,
    Param,
    Run,
    RunInfo,
    RunPage,
    RunStatus,
    RunTag,
    ViewType,
)
from loopml.tracking.search import (
    build_query,
    check_max_results,
    decode_page_token,
    encode_page_token,
    parse_filter,
    parse_order_by,
    ranked_queries,
)
from loopml.tracking.validation import (
    MAX_RUN_NAME_LENGTH,
    check_batch,
    check_key,
    check_name,
)

RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
_INSERT_CHUNKS = (
    "INSERT INTO metric_chunks (run_id, key, digest, points, data) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# Keep the point with the greatest (step, timestamp, value), as MLflow does.
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET "
    "step = excluded.step, timestamp = excluded.timestamp, value = excluded.value, "
    "is_nan = excluded.is_nan WHERE (excluded.step, excluded.timestamp, excluded.value) > "
    "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)
_INSERT_RUN = (
    "INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, lifecycle_stage, "
    "artifact_uri) VALUES (?, ?, ?, ?, ?, ?, 'active', ?)"
)
_UPSERT_TAG = (
    "INSERT INTO tags (run_uuid, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value"
)
_ADJECTIVES = [
    "able",
    "brave",
    "calm",
    "eager",
    "fair",
    "gentle",
    "happy",
    "keen",
    "lively",
    "merry",
    "noble",
    "proud",
    "quick",
    "sharp",
]
_NOUNS = [
    "ant",
    "bass",
    "crow",
    "deer",
    "eel",
    "fox",
    "gull",
    "hawk",
    "ibis",
    "jay",
    "koala",
    "lynx",
    "mole",
    "newt",
    "owl",
    "panda",
]


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(1, 999)}"


class RunKey(NamedTuple):
    id: int  # the integer key of the metric tables
    experiment_id: int


class RunsMixin:
    db: Database

    # -- lifecycle --------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        user_id: str | None = None,
    ) -> Run:
        exp_id = parse_experiment_id(experiment_id)
        tag_map = {k: str(v) for k, v in (tags or {}).items()}
        name = run_name or tag_map.get(RUN_NAME_TAG) or generate_run_name()
        check_name(name, "run", MAX_RUN_NAME_LENGTH)
        tag_map[RUN_NAME_TAG] = name
        _, _, tag_rows = check_batch([], [], [RunTag(k, v) for k, v in tag_map.items()])
        run_id = uuid.uuid4().hex
        user = user_id or tag_map.get(USER_TAG) or "unknown"
        with self.db.write() as conn:
            exp = conn.exec_driver_sql(
                self.db.sql(
                    "SELECT artifact_location, lifecycle_stage FROM experiments WHERE experiment_id = ?"
                ),
                (exp_id,),
            ).first()
            if exp is None:
                raise NotFound(f"experiment {experiment_id} does not exist; create it first")
            if exp[1] != "active":
                raise InvalidInput(f"experiment {experiment_id} is deleted; restore it first")
            info = RunInfo(
                run_id,
                str(exp_id),
                name,
                user,
                RunStatus.RUNNING.value,
                start_time or now_ms(),
                None,
                f"{exp[0]}/{run_id}/artifacts",
                "active",
            )
            conn.exec_driver_sql(
                self.db.sql(_INSERT_RUN),
                (run_id, name, exp_id, user, info.status, info.start_time, info.artifact_uri),
            )
            conn.exec_driver_sql(self.db.sql(_UPSERT_TAG), [(run_id, t.key, t.value) for t in tag_rows])
        return Run(info, tags={t.key: t.value for t in tag_rows})

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as conn:
            found = load_runs(conn, [run_id])
        if not found:
            raise NotFound(f"run {run_id!r} does not exist", details={"run_id": run_id})
        return found[0]

    def update_run(
        self,
        run_id: str,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        values: dict[str, Any] = {}
        if status is not None:
            if status not in RunStatus.__members__:
                raise InvalidInput(
                    f"status {status!r} is not one of {', '.join(RunStatus.__members__)}",
                    details={"field": "status"},
                )
            values["status"] = status
        if end_time is not None:
            values["end_time"] = int(end_time)
        if run_name:
            values["name"] = check_name(run_name, "run", MAX_RUN_NAME_LENGTH)
        with self.db.write() as conn:
            self._require_run(conn, run_id)
            if values:
                conn.execute(update(runs).where(runs.c.run_uuid == run_id).values(**values))
            if run_name:
                conn.exec_driver_sql(self.db.sql(_UPSERT_TAG), (run_id, RUN_NAME_TAG, run_name))
        return self.get_run(run_id).info

    def _set_lifecycle(self, run_id: str, stage: str) -> None:
        with self.db.write() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                update(runs)
                .where(runs.c.run_uuid == run_id)
                .values(lifecycle_stage=stage, deleted_time=now_ms() if stage == "deleted" else None)
            )

    def delete_run(self, run_id: str) -> None:
        self._set_lifecycle(run_id, "deleted")

    def restore_run(self, run_id: str) -> None:
        self._set_lifecycle(run_id, "active")

    def _require_run(self, conn: Connection, run_id: str, *, active: bool = False) -> RunKey:
        row = conn.exec_driver_sql(
            self.db.sql("SELECT lifecycle_stage, experiment_id, id FROM runs WHERE run_uuid = ?"),
            (run_id,),
        ).first()
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist", details={"run_id": run_id})
        if active and row[0] != "active":
            raise InvalidInput(
                f"run {run_id!r} is deleted; restore it before logging to it",
                details={"run_id": run_id},
            )
        return RunKey(int(row[2]), int(row[1]))

    # -- logging ----------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricTuple] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        clean_metrics, clean_params, clean_tags = check_batch(metrics, params, tags)
        with self.db.write() as conn:
            key = self._require_run(conn, run_id, active=True)
            if clean_params:
                self._insert_params(conn, run_id, clean_params)
            if clean_metrics:
                self._insert_metrics(conn, key.id, clean_metrics)
            if clean_tags:
                rows = [(run_id, t.key, t.value) for t in clean_tags]
                conn.exec_driver_sql(self.db.sql(_UPSERT_TAG), rows)

    def _insert_params(self, conn: Connection, run_id: str, items: list[Param]) -> None:
        wanted = {p.key: p.value for p in items}
        existing = conn.execute(
            select(params.c.key, params.c.value).where(
                params.c.run_uuid == run_id, params.c.key.in_(list(wanted))
            )
        ).all()
        for key, old in existing:
            if wanted[key] != old:
                raise Conflict(
                    f"param {key!r} of run {run_id} is already {old!r}; params are immutable, "
                    f"so it cannot become {wanted[key]!r}: log it under another key or start a new run",
                    details={"field": "params", "key": key, "old": old, "new": wanted[key]},
                )
            del wanted[key]
        if wanted:
            conn.exec_driver_sql(
                self.db.sql("INSERT INTO params (run_uuid, key, value) VALUES (?, ?, ?)"),
                [(run_id, k, v) for k, v in wanted.items()],
            )

    def _insert_metrics(self, conn: Connection, run_key: int, items: list[MetricTuple]) -> None:
        chunks, latest = metric_chunks.build(items)  # raises before anything is written
        conn.exec_driver_sql(self.db.sql(_INSERT_CHUNKS), [(run_key, *c) for c in chunks])
        conn.exec_driver_sql(self.db.sql(_UPSERT_LATEST), [(run_key, *p) for p in latest])

    def delete_tag(self, run_id: str, key: str) -> None:
        with self.db.write() as conn:
            self._require_run(conn, run_id, active=True)
            result = conn.execute(tags.delete().where(tags.c.run_uuid == run_id, tags.c.key == key))
        if result.rowcount == 0:
            raise NotFound(f"run {run_id} has no tag {key!r}", details={"field": "key"})

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self.db.read() as conn:
            run_key = self._require_run(conn, run_id)
            blobs = conn.exec_driver_sql(
                self.db.sql("SELECT data FROM metric_chunks WHERE run_id = ? AND key = ?"),
                (run_key.id, key),
            ).scalars()
            return metric_chunks.history(key, blobs)

    def log_inputs(self, run_id: str, datasets_in: Sequence[DatasetInput]) -> None:
        for d in datasets_in:
            check_name(d.name, "dataset", 500)
            check_name(d.digest, "dataset digest", 64)
            for key in d.tags:
                check_key(key, "input tag")
        with self.db.write() as conn:
            exp_id = self._require_run(conn, run_id, active=True).experiment_id
            for d in datasets_in:
                dataset_id = self._upsert_dataset(conn, exp_id, d)
                input_tags = dict(d.tags)
                if d.context:
                    input_tags.setdefault("mlflow.data.context", d.context)
                conn.exec_driver_sql(
                    self.db.sql(
                        "INSERT INTO run_inputs (run_uuid, dataset_uuid, context, tags) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
                    ),
                    (
                        run_id,
                        dataset_id,
                        input_tags.get("mlflow.data.context"),
                        orjson.dumps(input_tags).decode(),
                    ),
                )

    def _upsert_dataset(self, conn: Connection, exp_id: int, d: DatasetInput) -> str:
        found = conn.execute(
            select(datasets.c.dataset_uuid).where(
                datasets.c.experiment_id == exp_id,
                datasets.c.name == d.name,
                datasets.c.digest == d.digest,
            )
        ).scalar()
        if found:
            return str(found)
        dataset_id = uuid.uuid4().hex
        conn.execute(
            insert(datasets).values(
                dataset_uuid=dataset_id,
                experiment_id=exp_id,
                name=d.name,
                digest=d.digest,
                source_type=d.source_type,
                source=d.source,
                schema=d.schema,
                profile=d.profile,
            )
        )
        return dataset_id

    def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None:
        with self.db.write() as conn:
            self._require_run(conn, run_id, active=True)
            conn.exec_driver_sql(
                self.db.sql(
                    "INSERT INTO run_outputs (run_uuid, model_id, step) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING"
                ),
                [(run_id, o.model_id, int(o.step)) for o in outputs],
            )

    # -- search -----------------------------------------------------------------------
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RunPage:
        check_max_results(max_results)
        offset = decode_page_token(page_token)
        scope = ([parse_experiment_id(e) for e in experiment_ids], ViewType(view_type).stages())
        clauses, order = parse_filter(filter_string), parse_order_by(order_by)
        with self.db.read() as conn:
            if order and order[0].kind == "metrics":
                ids = _ranked_page(conn, *ranked_queries(*scope, clauses, order), offset, max_results + 1)
            else:
                query = build_query(*scope, clauses, order).offset(offset).limit(max_results + 1)
                ids = list(conn.execute(query).scalars())
            found = load_runs(conn, ids[:max_results])
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return RunPage(found, token)


def _ranked_page(
    conn: Connection, ranked: Select[Any], missing: Select[Any], offset: int, limit: int
) -> list[str]:
    """One page of ``ranked`` followed by ``missing``, as if they were one ordered list."""
    ids = list(conn.execute(ranked.offset(offset).limit(limit)).scalars())
    if len(ids) == limit:
        return ids
    if ids or offset == 0:
        ranked_total = offset + len(ids)
    else:  # the page starts past the ranked part: count it to know where the rest starts
        counted = select(func.count()).select_from(ranked.order_by(None).subquery())
        ranked_total = int(conn.execute(counted).scalar_one())
    rest = missing.offset(max(0, offset - ranked_total)).limit(limit - len(ids))
    return ids + list(conn.execute(rest).scalars())


_LOAD_SQL = {
    "runs": "SELECT run_uuid, experiment_id, name, user_id, status, start_time, end_time, "
    "artifact_uri, lifecycle_stage FROM runs WHERE run_uuid IN ({})",
    "params": "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({})",
    "tags": "SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({})",
    "metrics": "SELECT r.run_uuid, m.key, m.value, m.timestamp, m.step, m.is_nan FROM latest_metrics m "
    "JOIN runs r ON r.id = m.run_id WHERE r.run_uuid IN ({})",
    "inputs": "SELECT i.run_uuid, d.name, d.digest, d.source_type, d.source, d.schema, d.profile, "
    "i.context, i.tags FROM run_inputs i JOIN datasets d ON d.dataset_uuid = i.dataset_uuid "
    "WHERE i.run_uuid IN ({}) ORDER BY d.name, d.digest",
    "outputs": "SELECT run_uuid, model_id, step FROM run_outputs WHERE run_uuid IN ({})",
}


def _rows(conn: Connection, name: str, ids: list[str]) -> list[Any]:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = _LOAD_SQL[name].format(", ".join([mark] * len(ids)))
    return list(conn.exec_driver_sql(sql, tuple(ids)).fetchall())


def load_runs(conn: Connection, run_ids: Sequence[str]) -> list[Run]:
    """Whole runs (info, params, latest metrics, tags, inputs, outputs) in ``run_ids`` order.

    Plain SQL and tuple unpacking: this builds every page of search results.
    """
    if not run_ids:
        return []
    ids = list(dict.fromkeys(run_ids))
    by_id: dict[str, Run] = {}
    for run_id, exp_id, name, user, status, start, end, uri, stage in _rows(conn, "runs", ids):
        by_id[run_id] = Run(RunInfo(run_id, str(exp_id), name, user, status, start, end, uri, stage))
    for run_id, key, value in _rows(conn, "params", ids):
        by_id[run_id].params[key] = value
    for run_id, key, value in _rows(conn, "tags", ids):
        by_id[run_id].tags[key] = value
    for run_id, key, value, ts, step, nan in _rows(conn, "metrics", ids):
        by_id[run_id].metrics[key] = Metric(key, math.nan if nan else value, ts, step)
    for run_id, *fields, context, tag_json in _rows(conn, "inputs", ids):
        name, digest, kind, source, schema, profile = fields
        dataset = DatasetInput(name, digest, kind, source, schema, profile, context, orjson.loads(tag_json))
        by_id[run_id].inputs.append(dataset)
    for run_id, model_id, step in _rows(conn, "outputs", ids):
        by_id[run_id].outputs.append(ModelOutput(model_id, step))
    return [by_id[i] for i in run_ids if i in by_id]
