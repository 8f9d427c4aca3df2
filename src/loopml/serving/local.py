"""Endpoints on the metadata database: used embedded and inside ``loopml server``."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, insert, select, update

from loopml.config import Settings
from loopml.errors import AlreadyExists, InvalidInput, NotFound
from loopml.serving.records import (
    BatchingConfig,
    DeploymentEvent,
    Endpoint,
    EventKind,
    TrafficPolicy,
    check_name,
)
from loopml.serving.service import EndpointService
from loopml.store.db import Database, next_stamp
from loopml.store.schema import deployment_events, serving_endpoints

_LISTED = 10  # names quoted in a NotFound message
_KINDS = ("created", "updated", "rollback", "promoted", "deleted")


def _now() -> int:
    return int(time.time() * 1000)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class LocalEndpointService(EndpointService):
    """Endpoints straight on the metadata database; one transaction per mutation.

    >>> svc = LocalEndpointService(Database("sqlite:///:memory:"), "ada")
    >>> svc.create_endpoint("churn", TrafficPolicy.single("churn@champion")).revision
    1
    >>> [e.kind for e in svc.list_events("churn")]
    ['created']
    """

    def __init__(self, db: Database, default_user: str = "") -> None:
        self.db = db
        self.default_user = default_user or "unknown"

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalEndpointService:
        return cls(Database(settings.database_url), settings.user)

    def close(self) -> None:
        self.db.dispose()

    def create_endpoint(
        self,
        name: str,
        policy: TrafficPolicy,
        batching: BatchingConfig | None = None,
        description: str = "",
        user: str | None = None,
    ) -> Endpoint:
        check_name(name)
        _check_policy(policy)
        who, now = user or self.default_user, _now()
        endpoint = Endpoint(name, policy, batching or BatchingConfig(), now, now, who, description or "")
        with self.db.write() as conn:
            if conn.execute(select(serving_endpoints.c.name).where(serving_endpoints.c.name == name)).first():
                raise AlreadyExists(
                    f"endpoint {name!r} already exists; update it with `loopml endpoints update {name}`",
                    details={"name": name},
                )
            conn.execute(insert(serving_endpoints).values(**_row(endpoint)))
            event = DeploymentEvent.new(name, "created", reason="created", policy=policy, user=who)
            _insert_event(conn, event)
        return endpoint

    def get_endpoint(self, name: str) -> Endpoint:
        with self.db.read() as conn:
            return _load(_endpoint_row(conn, name))

    def list_endpoints(self) -> list[Endpoint]:
        with self.db.read() as conn:
            rows = conn.execute(select(serving_endpoints).order_by(serving_endpoints.c.name))
            return [_load(r) for r in rows]

    def update_endpoint(
        self,
        name: str,
        *,
        policy: TrafficPolicy | None = None,
        batching: BatchingConfig | None = None,
        description: str | None = None,
        reason: str = "",
        kind: EventKind = "updated",
        evidence: dict[str, Any] | None = None,
        user: str | None = None,
    ) -> Endpoint:
        if kind not in _KINDS or kind in ("created", "deleted"):
            raise InvalidInput(
                f"update kind {kind!r} is not updated, rollback or promoted", details={"field": "kind"}
            )
        if policy is not None:
            _check_policy(policy)
        who = user or self.default_user
        with self.db.write() as conn:
            old = _load(_endpoint_row(conn, name))
            new = Endpoint(
                name=name,
                policy=policy or old.policy,
                batching=batching or old.batching,
                created_at=old.created_at,
                updated_at=max(_now(), old.updated_at),
                created_by=old.created_by,
                description=old.description if description is None else description,
                revision=old.revision + 1,
            )
            values = _row(new)
            del values["name"]
            conn.execute(update(serving_endpoints).where(serving_endpoints.c.name == name).values(**values))
            event = DeploymentEvent.new(
                name, kind, reason=reason or kind, evidence=evidence, policy=new.policy, user=who
            )
            _insert_event(conn, event)
        return new

    def delete_endpoint(self, name: str, user: str | None = None) -> None:
        with self.db.write() as conn:
            _endpoint_row(conn, name)
            conn.execute(delete(serving_endpoints).where(serving_endpoints.c.name == name))
            _insert_event(
                conn, DeploymentEvent.new(name, "deleted", reason="deleted", user=user or self.default_user)
            )

    def record_event(self, event: DeploymentEvent) -> DeploymentEvent:
        if event.kind not in _KINDS:
            raise InvalidInput(
                f"event kind {event.kind!r} is not one of {', '.join(_KINDS)}", details={"field": "kind"}
            )
        with self.db.write() as conn:
            if not _ever_existed(conn, event.endpoint):
                _endpoint_row(conn, event.endpoint)  # raises NotFound naming what exists
            _insert_event(conn, event)
        return event

    def list_events(self, name: str, limit: int = 100) -> list[DeploymentEvent]:
        c = deployment_events.c
        with self.db.read() as conn:
            if not _ever_existed(conn, name):
                _endpoint_row(conn, name)
            rows = conn.execute(
                select(deployment_events)
                .where(c.endpoint == name)
                .order_by(c.timestamp.desc(), c.event_id)
                .limit(max(1, min(int(limit), 10_000)))
            )
            return [_load_event(r) for r in rows]


def _check_policy(policy: TrafficPolicy) -> None:
    if not isinstance(policy, TrafficPolicy):
        raise InvalidInput("policy must be a TrafficPolicy", details={"field": "policy"})


def _row(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "policy": _dumps(endpoint.policy.to_dict()),
        "batching": _dumps(endpoint.batching.to_dict()),
        "description": endpoint.description,
        "revision": endpoint.revision,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "created_by": endpoint.created_by,
    }


def _load(row: Row[Any]) -> Endpoint:
    return Endpoint(
        name=row.name,
        policy=TrafficPolicy.from_dict(orjson.loads(row.policy)),
        batching=BatchingConfig.from_dict(orjson.loads(row.batching)),
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
        created_by=row.created_by,
        description=row.description,
        revision=int(row.revision),
    )


def _endpoint_row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(select(serving_endpoints).where(serving_endpoints.c.name == name)).first()
    if row is not None:
        return row
    names = list(
        conn.execute(
            select(serving_endpoints.c.name).order_by(serving_endpoints.c.name).limit(_LISTED + 1)
        ).scalars()
    )
    if not names:
        hint = (
            "there are no endpoints yet; create one with `loopml endpoints create NAME --model MODEL@ALIAS`"
        )
    else:
        hint = "endpoints are " + ", ".join(names[:_LISTED]) + (", ..." if len(names) > _LISTED else "")
    raise NotFound(f"endpoint {name!r} does not exist; {hint}", details={"name": name})


def _ever_existed(conn: Connection, name: str) -> bool:
    c = deployment_events.c
    return conn.execute(select(c.event_id).where(c.endpoint == name).limit(1)).first() is not None


def _insert_event(conn: Connection, event: DeploymentEvent) -> None:
    # Read newest first by time: a rollback then a delete in one millisecond keep their order.
    c = deployment_events.c
    stamp = next_stamp(conn, c.timestamp, c.endpoint == event.endpoint, event.timestamp)
    conn.execute(
        insert(deployment_events).values(
            event_id=event.event_id,
            endpoint=event.endpoint,
            kind=event.kind,
            timestamp=stamp,
            user_id=event.user,
            reason=event.reason,
            evidence=_dumps(event.evidence),
            policy=_dumps(event.policy.to_dict()) if event.policy else None,
        )
    )


def _load_event(row: Row[Any]) -> DeploymentEvent:
    return DeploymentEvent(
        event_id=row.event_id,
        endpoint=row.endpoint,
        kind=row.kind,
        timestamp=int(row.timestamp),
        user=row.user_id,
        reason=row.reason,
        evidence=orjson.loads(row.evidence),
        policy=TrafficPolicy.from_dict(orjson.loads(row.policy)) if row.policy else None,
    )
