"""SQL helpers shared by the local registry: lookups with helpful ``NotFound`` messages and
row -> record loading (one query per table for a whole page)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Row, select

from loopml.errors import InvalidInput, NotFound
from loopml.registry import codec
from loopml.registry.records import (
    Evaluation,
    ModelStage,
    ModelVersion,
    PromotionRequest,
    RegisteredModel,
    RequestStatus,
    Transition,
)
from loopml.store.schema import (
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
)

MAX_NAME = 256
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,255}$")
_LISTED = 10  # names quoted in a NotFound message


def now_ms() -> int:
    return int(time.time() * 1000)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("registered model name must be a non-empty string", details={"field": "name"})
    if len(name) > MAX_NAME or "/" in name or "@" in name or any(ord(ch) < 32 for ch in name):
        raise InvalidInput(
            f"registered model name {name[:60]!r} is invalid: at most {MAX_NAME} characters, "
            "no '/', '@' or control characters (they break models:/ URIs)",
            details={"field": "name"},
        )
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidInput(
            f"alias {alias!r} is invalid: use letters, digits, '_' and '-', starting with a letter",
            details={"field": "alias"},
        )
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise InvalidInput(
            f"alias {alias!r} is reserved (latest and v<number> name versions in URIs); pick another",
            details={"field": "alias"},
        )
    return alias


def parse_version(version: int | str) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if isinstance(version, bool) or number < 1:
        raise InvalidInput(f"version {version!r} is not a positive integer", details={"field": "version"})
    return number


def model_id(conn: Connection, name: str) -> int:
    """The integer key of model ``name``; ``NotFound`` lists the models that exist."""
    found = conn.execute(select(registered_models.c.id).where(registered_models.c.name == name)).scalar()
    if found is not None:
        return int(found)
    names = list(
        conn.execute(
            select(registered_models.c.name).order_by(registered_models.c.name).limit(_LISTED + 1)
        ).scalars()
    )
    if not names:
        hint = "there are no registered models yet"
    else:
        more = ", ..." if len(names) > _LISTED else ""
        hint = "registered models are " + ", ".join(names[:_LISTED]) + more
    raise NotFound(f"registered model {name!r} does not exist; {hint}", details={"name": name})


def version_row(conn: Connection, mid: int, name: str, version: int) -> Row[Any]:
    """The row of ``name`` version ``version``; ``NotFound`` names the latest version."""
    c = model_versions.c
    row = conn.execute(select(model_versions).where(c.model_id == mid, c.version == version)).first()
    if row is not None:
        return row
    latest = conn.execute(
        select(c.version).where(c.model_id == mid).order_by(c.version.desc()).limit(1)
    ).scalar()
    hint = "it has no versions" if latest is None else f"latest is {latest}"
    raise NotFound(
        f"model {name!r} has no version {version}; {hint}", details={"name": name, "version": str(version)}
    )


def aliases_of(conn: Connection, mid: int) -> dict[str, int]:
    a = registered_model_aliases.c
    rows = conn.execute(select(a.alias, a.version).where(a.model_id == mid).order_by(a.alias))
    return {r.alias: int(r.version) for r in rows}


def load_versions(conn: Connection, rows: Sequence[Row[Any]], names: dict[int, str]) -> list[ModelVersion]:
    """Records for version rows (tags and aliases attached), in the order given."""
    if not rows:
        return []
    ids = sorted({int(r.model_id) for r in rows})
    tags: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
    t = model_version_tags.c
    for r in conn.execute(select(model_version_tags).where(t.model_id.in_(ids))):
        tags[(r.model_id, r.version)][r.key] = r.value
    aliases: dict[tuple[int, int], list[str]] = defaultdict(list)
    a = registered_model_aliases.c
    for r in conn.execute(select(registered_model_aliases).where(a.model_id.in_(ids)).order_by(a.alias)):
        aliases[(r.model_id, r.version)].append(r.alias)
    return [_version(r, names[int(r.model_id)], tags, aliases) for r in rows]


def _version(
    r: Row[Any],
    name: str,
    tags: dict[tuple[int, int], dict[str, str]],
    aliases: dict[tuple[int, int], list[str]],
) -> ModelVersion:
    key = (int(r.model_id), int(r.version))
    return ModelVersion(
        name=name,
        version=int(r.version),
        creation_timestamp=int(r.creation_timestamp),
        last_updated_timestamp=int(r.last_updated_timestamp),
        current_stage=ModelStage.parse(r.current_stage),
        source=r.source,
        storage_location=r.storage_location,
        run_id=r.run_id,
        digest=r.digest,
        user_id=r.user_id,
        description=r.description,
        status=r.status,
        model_id=r.logged_model_id,
        tags=dict(tags.get(key, {})),
        aliases=list(aliases.get(key, [])),
    )


def load_models(conn: Connection, ids: Sequence[int]) -> list[RegisteredModel]:
    """Records for model ids (tags, aliases, latest version per stage), in the order given."""
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(select(registered_models).where(registered_models.c.id.in_(ids)))}
    names = {i: r.name for i, r in rows.items()}
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    for r in conn.execute(select(registered_model_tags).where(registered_model_tags.c.model_id.in_(ids))):
        tags[r.model_id][r.key] = r.value
    aliases: dict[int, dict[str, int]] = defaultdict(dict)
    a = registered_model_aliases.c
    for r in conn.execute(select(registered_model_aliases).where(a.model_id.in_(ids)).order_by(a.alias)):
        aliases[r.model_id][r.alias] = int(r.version)
    latest = _latest_per_stage(conn, ids, names)
    return [
        RegisteredModel(
            name=rows[i].name,
            creation_timestamp=int(rows[i].creation_timestamp),
            last_updated_timestamp=int(rows[i].last_updated_timestamp),
            description=rows[i].description,
            tags=dict(tags.get(i, {})),
            aliases=dict(aliases.get(i, {})),
            latest_versions=latest.get(i, []),
        )
        for i in ids
        if i in rows
    ]


def _latest_per_stage(
    conn: Connection, ids: Sequence[int], names: dict[int, str]
) -> dict[int, list[ModelVersion]]:
    c = model_versions.c
    rows = conn.execute(
        select(model_versions).where(c.model_id.in_(ids)).order_by(c.model_id, c.version.desc())
    ).all()
    newest: dict[tuple[int, str], Row[Any]] = {}
    for r in rows:
        newest.setdefault((int(r.model_id), r.current_stage), r)
    picked = sorted(newest.values(), key=lambda r: (r.model_id, r.version))
    out: dict[int, list[ModelVersion]] = defaultdict(list)
    for row, v in zip(picked, load_versions(conn, picked, names), strict=True):
        out[int(row.model_id)].append(v)
    return out


def evaluation_from_row(r: Row[Any], name: str) -> Evaluation:
    return Evaluation(
        evaluation_id=r.evaluation_id,
        name=name,
        version=int(r.version),
        dataset_name=r.dataset_name,
        dataset_version=int(r.dataset_version),
        dataset_digest=r.dataset_digest,
        metrics=orjson.loads(r.metrics),
        champion_version=None if r.champion_version is None else int(r.champion_version),
        champion_metrics=orjson.loads(r.champion_metrics),
        user=r.user_id,
        created=int(r.created),
    )


def request_from_row(r: Row[Any], name: str) -> PromotionRequest:
    return PromotionRequest(
        request_id=r.request_id,
        name=name,
        version=int(r.version),
        to_stage=ModelStage.parse(r.to_stage),
        status=RequestStatus(r.status),
        requested_by=r.requested_by,
        requested_at=int(r.requested_at),
        reason=r.reason,
        gate=codec.gate_result_from_dict(orjson.loads(r.gate)),
        decided_by=r.decided_by,
        decided_at=None if r.decided_at is None else int(r.decided_at),
        decision_reason=r.decision_reason,
    )


def transition_from_row(r: Row[Any], name: str) -> Transition:
    return Transition(
        transition_id=r.transition_id,
        name=name,
        version=int(r.version),
        from_stage=ModelStage.parse(r.from_stage),
        to_stage=ModelStage.parse(r.to_stage),
        user=r.user_id,
        timestamp=int(r.timestamp),
        reason=r.reason,
        digest=r.digest,
        gate=None if r.gate is None else codec.gate_result_from_dict(orjson.loads(r.gate)),
        request_id=r.request_id,
        approved_by=r.approved_by,
    )
