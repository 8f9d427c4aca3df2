"""Stages, gates, evaluations, promotion requests and the audit trail (a mixin of the local
registry).

Every move into Production — ``promote``, ``approve`` and MLflow's transition-stage alike —
goes through :meth:`PromotionMixin._promote`, so a gated model has exactly one way in.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Row, insert, select, update

from loopml.errors import Conflict, GateFailed, InvalidInput, NotFound, PermissionDenied
from loopml.governance import audit
from loopml.registry import _store as st
from loopml.registry import gates
from loopml.registry.codec import to_dict
from loopml.registry.records import (
    CHAMPION_ALIAS,
    LEGAL_TRANSITIONS,
    Evaluation,
    Gate,
    GateResult,
    ModelStage,
    ModelVersion,
    Promotion,
    PromotionRequest,
    RequestStatus,
    ThresholdResult,
    Transition,
)
from loopml.store.db import Database, next_stamp
from loopml.store.schema import (
    model_evaluations,
    model_gates,
    model_transitions,
    model_versions,
    promotion_requests,
    registered_model_aliases,
    registered_models,
)

MAX_METRICS = 200


class PromotionMixin:
    db: Database

    if TYPE_CHECKING:  # provided by the class that assembles the mixins

        def _user(self, user: str | None) -> str: ...

        def get_model_version(self, name: str, version: int | str) -> ModelVersion: ...

        def _set_alias(self, conn: Connection, mid: int, alias: str, number: int) -> None: ...

    # ---- stages --------------------------------------------------------------------------
    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str | ModelStage,
        archive_existing_versions: bool = False,
        reason: str | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        to = ModelStage.parse(stage)
        if to is ModelStage.PRODUCTION and self.get_gate(name) is not None:
            done = self._promote(name, version, to, reason, user, archive=archive_existing_versions)
            if done.request is not None:
                raise PermissionDenied(
                    f"promotion of {name!r} version {done.version.version} to Production needs approval; "
                    f"request {done.request.request_id} is pending: another user runs "
                    f"`loopml models approve {done.request.request_id}`",
                    details={"request_id": done.request.request_id},
                )
            return done.version
        number = st.parse_version(version)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            self._move(conn, mid, name, number, to, archive_existing_versions, reason or "", self._user(user))
        return self.get_model_version(name, number)

    def _move(
        self,
        conn: Connection,
        mid: int,
        name: str,
        number: int,
        to: ModelStage,
        archive_existing: bool,
        reason: str,
        user: str,
        **audit: Any,
    ) -> Transition:
        """Move one version (and, on request, archive the others in ``to``) and record it all."""
        row = st.version_row(conn, mid, name, number)
        current = ModelStage.parse(row.current_stage)
        _check_legal(name, number, current, to)
        if archive_existing and to in (ModelStage.STAGING, ModelStage.PRODUCTION):
            c = model_versions.c
            others = conn.execute(
                select(model_versions).where(
                    c.model_id == mid, c.current_stage == to.value, c.version != number
                )
            ).all()
            for other in others:
                note = f"archived because version {number} moved to {to.value}"
                self._record(conn, mid, other, ModelStage.ARCHIVED, note, user)
        transition = self._record(conn, mid, row, to, reason, user, **audit)
        if to is ModelStage.PRODUCTION:
            # The champion is what serves: it follows the version that reached Production.
            self._set_alias(conn, mid, CHAMPION_ALIAS, number)
        return transition

    def _record(
        self, conn: Connection, mid: int, row: Row[Any], to: ModelStage, reason: str, user: str, **audit: Any
    ) -> Transition:
        t = next_stamp(conn, model_transitions.c.timestamp, model_transitions.c.model_id == mid, st.now_ms())
        c = model_versions.c
        conn.execute(
            update(model_versions)
            .where(c.model_id == mid, c.version == row.version)
            .values(current_stage=to.value, last_updated_timestamp=t)
        )
        gate: GateResult | None = audit.get("gate")
        values = {
            "transition_id": uuid.uuid4().hex,
            "model_id": mid,
            "version": int(row.version),
            "from_stage": row.current_stage,
            "to_stage": to.value,
            "user_id": user,
            "timestamp": t,
            "reason": reason,
            "digest": row.digest,
            "gate": None if gate is None else st.dumps(to_dict(gate)),
            "request_id": audit.get("request_id"),
            "approved_by": audit.get("approved_by"),
        }
        conn.execute(insert(model_transitions).values(**values))
        name = conn.execute(
            select(registered_models.c.name).where(registered_models.c.id == mid)
        ).scalar_one()
        return Transition(
            values["transition_id"], name, int(row.version), ModelStage.parse(row.current_stage), to, user, t,
            reason, row.digest, gate, audit.get("request_id"), audit.get("approved_by"),
        )  # fmt: skip

    def list_transitions(self, name: str, version: int | str | None = None) -> list[Transition]:
        c = model_transitions.c
        with self.db.read() as conn:
            mid = st.model_id(conn, name)
            query = select(model_transitions).where(c.model_id == mid)
            if version is not None:
                number = st.parse_version(version)
                query = query.where(c.version == number)
            rows = conn.execute(query.order_by(c.timestamp, c.transition_id)).all()
        return [st.transition_from_row(r, name) for r in rows]

    # ---- gates and evaluations -------------------------------------------------------------
    def set_gate(
        self, name: str, thresholds: Sequence[str], require_approval: bool = False, user: str | None = None
    ) -> Gate:
        parsed = gates.parse_thresholds(thresholds)
        texts = [t.text for t in parsed]
        user = self._user(user)
        t = st.now_ms()
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            conn.execute(model_gates.delete().where(model_gates.c.model_id == mid))
            conn.execute(
                insert(model_gates).values(
                    model_id=mid,
                    thresholds=st.dumps(texts),
                    require_approval=bool(require_approval),
                    updated_by=user,
                    updated_at=t,
                )
            )
        return Gate(name, texts, bool(require_approval), user, t)

    def get_gate(self, name: str) -> Gate | None:
        with self.db.read() as conn:
            return _gate(conn, st.model_id(conn, name), name)

    def record_evaluation(
        self,
        name: str,
        version: int | str,
        dataset_name: str,
        dataset_version: int,
        dataset_digest: str,
        metrics: dict[str, float],
        champion_version: int | None = None,
        champion_metrics: dict[str, float] | None = None,
        user: str | None = None,
    ) -> Evaluation:
        number = st.parse_version(version)
        clean, champ = (
            _check_metrics(metrics, "metrics"),
            _check_metrics(champion_metrics or {}, "champion_metrics"),
        )
        if champion_version is not None:
            champion_version = st.parse_version(champion_version)
        evaluation_id, user = uuid.uuid4().hex, self._user(user)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            e = model_evaluations.c
            t = next_stamp(conn, e.created, (e.model_id == mid) & (e.version == number), st.now_ms())
            conn.execute(
                insert(model_evaluations).values(
                    evaluation_id=evaluation_id,
                    model_id=mid,
                    version=number,
                    dataset_name=str(dataset_name),
                    dataset_version=int(dataset_version),
                    dataset_digest=str(dataset_digest),
                    metrics=st.dumps(clean),
                    champion_version=champion_version,
                    champion_metrics=st.dumps(champ),
                    user_id=user,
                    created=t,
                )
            )
        return Evaluation(
            evaluation_id, name, number, str(dataset_name), int(dataset_version), str(dataset_digest),
            clean, champion_version, champ, user, t,
        )  # fmt: skip

    def list_evaluations(self, name: str, version: int | str | None = None) -> list[Evaluation]:
        c = model_evaluations.c
        with self.db.read() as conn:
            mid = st.model_id(conn, name)
            query = select(model_evaluations).where(c.model_id == mid)
            if version is not None:
                query = query.where(c.version == st.parse_version(version))
            rows = conn.execute(query.order_by(c.created.desc(), c.evaluation_id)).all()
        return [st.evaluation_from_row(r, name) for r in rows]

    def check_gate(self, name: str, version: int | str) -> GateResult:
        number = st.parse_version(version)
        with self.db.read() as conn:
            mid = st.model_id(conn, name)
            st.version_row(conn, mid, name, number)
            return _gate_result(conn, mid, name, number)

    # ---- promotion -----------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: int | str,
        to: str | ModelStage = ModelStage.PRODUCTION,
        reason: str | None = None,
        user: str | None = None,
    ) -> Promotion:
        return self._promote(name, version, ModelStage.parse(to), reason, user, archive=True)

    def _promote(
        self,
        name: str,
        version: int | str,
        to: ModelStage,
        reason: str | None,
        user: str | None,
        *,
        archive: bool,
    ) -> Promotion:
        number, user = st.parse_version(version), self._user(user)
        with self.db.write() as conn:
            mid = st.model_id(conn, name)
            row = st.version_row(conn, mid, name, number)
            _check_legal(name, number, ModelStage.parse(row.current_stage), to)
            gate = _gate(conn, mid, name)
            if to is not ModelStage.PRODUCTION:
                result = GateResult(True, note="the gate applies to Production only")
            else:
                result = _gate_result(conn, mid, name, number)
            if not result.passed:
                raise _gate_failed(name, number, result)
            if gate is not None and gate.require_approval and to is ModelStage.PRODUCTION:
                request = _create_request(conn, mid, name, number, to, reason or "", user, result)
                transition = None
            else:
                request = None
                transition = self._move(conn, mid, name, number, to, archive, reason or "", user, gate=result)
        return Promotion(self.get_model_version(name, number), result, transition, request)

    def list_requests(
        self, name: str | None = None, status: RequestStatus | str | None = RequestStatus.PENDING
    ) -> list[PromotionRequest]:
        c = promotion_requests.c
        query = select(promotion_requests, registered_models.c.name.label("model_name")).join(
            registered_models, registered_models.c.id == c.model_id
        )
        with self.db.read() as conn:
            if name is not None:
                query = query.where(c.model_id == st.model_id(conn, name))
            if status is not None:
                query = query.where(c.status == _status(status).value)
            rows = conn.execute(query.order_by(c.requested_at.desc(), c.request_id)).all()
        return [st.request_from_row(r, r.model_name) for r in rows]

    def get_request(self, request_id: str) -> PromotionRequest:
        with self.db.read() as conn:
            row = _request_row(conn, request_id)
        return st.request_from_row(row, row.model_name)

    def approve(
        self,
        request_id: str,
        reason: str | None = None,
        user: str | None = None,
        *,
        digest: str | None = None,
        expected_champion: int | None = None,
    ) -> Promotion:
        user = self._user(user)
        with self.db.write() as conn:
            row = _decidable(conn, request_id, user, "approve")
            number, to = int(row.version), ModelStage.parse(row.to_stage)
            _compare_before_swap(conn, row, digest, expected_champion)
            result = _gate_result(conn, row.model_id, row.model_name, number)
            if not result.passed:
                raise _gate_failed(row.model_name, number, result)
            why = row.reason + (f" (approved: {reason})" if reason else "")
            transition = self._move(
                conn, row.model_id, row.model_name, number, to, True, why, str(row.requested_by),
                gate=result, request_id=request_id, approved_by=user,
            )  # fmt: skip
            _decide(conn, request_id, RequestStatus.APPROVED, user, reason)
        request = self.get_request(request_id)
        return Promotion(self.get_model_version(request.name, number), result, transition, request)

    def reject(self, request_id: str, reason: str | None = None, user: str | None = None) -> PromotionRequest:
        user = self._user(user)
        with self.db.write() as conn:
            _decidable(conn, request_id, user, "reject")
            _decide(conn, request_id, RequestStatus.REJECTED, user, reason)
        return self.get_request(request_id)


def _compare_before_swap(
    conn: Connection, request: Row[Any], digest: str | None, expected_champion: int | None
) -> None:
    """Refuse (409) when what the approver reviewed is not what would move: the version's artifact
    digest, or the Production version they saw (0: none). Notes both in the audit entry."""
    name, number = str(request.model_name), int(request.version)
    version = st.version_row(conn, request.model_id, name, number)
    champion = _current_champion(conn, request.model_id)
    if digest is not None and digest != version.digest:
        raise Conflict(
            f"model {name!r} version {number} has artifact digest {version.digest}, not the {digest} "
            "you reviewed; review it again",
            details={"request_id": request.request_id, "digest": version.digest},
        )
    if expected_champion is not None and (champion or 0) != int(expected_champion):
        now = "no version" if champion is None else f"version {champion}"
        raise Conflict(
            f"Production of {name!r} is {now} now, not the version {expected_champion} you saw; "
            "review the request again",
            details={"request_id": request.request_id, "champion": champion},
        )
    audit.note(
        target=f"model:{name}/request:{request.request_id}",
        before={"champion": champion},
        after={"champion": number, "version": number, "digest": version.digest},
    )


def _check_legal(name: str, number: int, current: ModelStage, to: ModelStage) -> None:
    if to in LEGAL_TRANSITIONS[current]:
        return
    allowed = ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[current]))
    if current is to:
        why = f"it is already in {to.value}"
    else:
        why = f"{current.value} -> {to.value} is not allowed (from {current.value}: {allowed})"
    raise Conflict(
        f"model {name!r} version {number} cannot move to {to.value}: {why}",
        details={"name": name, "version": str(number), "from": current.value, "to": to.value},
    )


def _gate(conn: Connection, mid: int, name: str) -> Gate | None:
    row = conn.execute(select(model_gates).where(model_gates.c.model_id == mid)).first()
    if row is None:
        return None
    return Gate(
        name, orjson.loads(row.thresholds), bool(row.require_approval), row.updated_by, int(row.updated_at)
    )


def _current_champion(conn: Connection, mid: int) -> int | None:
    a = registered_model_aliases.c
    aliased = conn.execute(select(a.version).where(a.model_id == mid, a.alias == CHAMPION_ALIAS)).scalar()
    if aliased is not None:
        return int(aliased)
    c = model_versions.c
    prod = conn.execute(
        select(c.version)
        .where(c.model_id == mid, c.current_stage == ModelStage.PRODUCTION.value)
        .order_by(c.version.desc())
        .limit(1)
    ).scalar()
    return None if prod is None else int(prod)


def _gate_result(conn: Connection, mid: int, name: str, number: int) -> GateResult:
    gate = _gate(conn, mid, name)
    if gate is None or not gate.thresholds:
        return GateResult(True, note="the model declares no thresholds")
    parsed = gates.parse_thresholds(gate.thresholds)
    c = model_evaluations.c
    row = conn.execute(
        select(model_evaluations)
        .where(c.model_id == mid, c.version == number)
        .order_by(c.created.desc(), c.evaluation_id)
        .limit(1)
    ).first()
    if row is None:
        note = (
            f"version {number} has no evaluation; run `loopml models evaluate {name} {number} "
            "--data DATASET@VERSION --target COLUMN` first"
        )
        # Still list every threshold, so the failure says what the evaluation must show.
        unmeasured = [
            ThresholdResult(t.text, t.metric, None, t.constant, False, "not evaluated") for t in parsed
        ]
        return GateResult(False, unmeasured, None, note)
    ev = st.evaluation_from_row(row, name)
    result = gates.check(
        parsed, ev.metrics, ev.champion_metrics, has_champion=ev.champion_version is not None,
        evaluation_id=ev.evaluation_id,
    )  # fmt: skip
    champion = _current_champion(conn, mid)
    uses_champion = any(t.champion_metric for t in parsed)
    if uses_champion and champion not in (ev.champion_version, number):
        was = "no champion" if ev.champion_version is None else f"version {ev.champion_version}"
        note = (
            f"the champion changed since the evaluation (was {was}, now version {champion}); evaluate again"
        )
        return GateResult(False, result.results, ev.evaluation_id, note)
    return result


def _gate_failed(name: str, number: int, result: GateResult) -> GateFailed:
    return GateFailed(
        gates.failure_message(name, number, result),
        details={
            "name": name,
            "version": str(number),
            "results": [to_dict(r) for r in result.results],
            "note": result.note,
            "evaluation_id": result.evaluation_id,
        },
    )


def _check_metrics(metrics: dict[str, float], field: str) -> dict[str, float]:
    if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS:
        raise InvalidInput(
            f"{field} must be a dict of at most {MAX_METRICS} metrics", details={"field": field}
        )
    clean = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not isinstance(key, str) or not key or not math.isfinite(number):
            raise InvalidInput(
                f"{field}[{key!r}] = {value!r} is not a finite number",
                details={"field": field, "metric": str(key)},
            )
        clean[key] = number
    return clean


def _status(status: RequestStatus | str) -> RequestStatus:
    try:
        return RequestStatus(str(status).lower())
    except ValueError:
        raise InvalidInput(
            f"status {status!r} is not one of {', '.join(s.value for s in RequestStatus)}",
            details={"field": "status"},
        ) from None


def _create_request(
    conn: Connection,
    mid: int,
    name: str,
    number: int,
    to: ModelStage,
    reason: str,
    user: str,
    result: GateResult,
) -> PromotionRequest:
    c = promotion_requests.c
    pending = conn.execute(
        select(c.request_id).where(
            c.model_id == mid,
            c.version == number,
            c.to_stage == to.value,
            c.status == RequestStatus.PENDING.value,
        )
    ).scalar()
    if pending is not None:
        raise Conflict(
            f"request {pending} to move {name!r} version {number} to {to.value} is already pending; "
            f"approve or reject it first",
            details={"request_id": pending},
        )
    request = PromotionRequest(
        uuid.uuid4().hex, name, number, to, RequestStatus.PENDING, user, st.now_ms(), reason, result
    )
    conn.execute(
        insert(promotion_requests).values(
            request_id=request.request_id,
            model_id=mid,
            version=number,
            to_stage=to.value,
            status=request.status.value,
            requested_by=user,
            requested_at=request.requested_at,
            reason=reason,
            gate=st.dumps(to_dict(result)),
        )
    )
    return request


def _request_row(conn: Connection, request_id: str) -> Row[Any]:
    c = promotion_requests.c
    row = conn.execute(
        select(promotion_requests, registered_models.c.name.label("model_name"))
        .join(registered_models, registered_models.c.id == c.model_id)
        .where(c.request_id == str(request_id))
    ).first()
    if row is None:
        pending = list(
            conn.execute(
                select(c.request_id).where(c.status == RequestStatus.PENDING.value).limit(10)
            ).scalars()
        )
        hint = f"pending requests are {', '.join(pending)}" if pending else "no request is pending"
        raise NotFound(
            f"promotion request {request_id!r} does not exist; {hint}", details={"request_id": request_id}
        )
    return row


def _decidable(conn: Connection, request_id: str, user: str, verb: str) -> Row[Any]:
    row = _request_row(conn, request_id)
    if row.status != RequestStatus.PENDING.value:
        raise Conflict(
            f"request {request_id} was already {row.status} by {row.decided_by}",
            details={"request_id": request_id},
        )
    if row.requested_by == user:
        raise PermissionDenied(
            f"user {user!r} requested this promotion and cannot {verb} it; "
            "another user must decide (set LOOPML_USER to who you are)",
            details={"request_id": request_id, "user": user},
        )
    return row


def _decide(conn: Connection, request_id: str, status: RequestStatus, user: str, reason: str | None) -> None:
    conn.execute(
        update(promotion_requests)
        .where(promotion_requests.c.request_id == request_id)
        .values(status=status.value, decided_by=user, decided_at=st.now_ms(), decision_reason=reason)
    )
