"""Monitoring on the local stores: used embedded, by ``loopml monitor run`` and inside the server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Row, and_, delete, insert, select, update

from loopml.config import Settings
from loopml.data import parse_ref
from loopml.data.base import DataService
from loopml.errors import AlreadyExists, Conflict, InvalidInput, LoopmlError, NotFound
from loopml.monitoring import alerts as alerts_mod
from loopml.monitoring import labels as labels_mod
from loopml.monitoring import performance as perf
from loopml.monitoring import runner, webhooks
from loopml.monitoring.monitors import Alert, Monitor, MonitorRun, Trigger, check_name, new_id, now_ms
from loopml.monitoring.service import MonitorService
from loopml.serving import predlog
from loopml.store.db import Database
from loopml.store.schema import monitor_alerts, monitor_runs, monitor_triggers, monitors

log = logging.getLogger("loopml.monitoring")
_LISTED = 10


class LocalMonitorService(MonitorService):
    """Monitors on the metadata database, windows from the prediction log under ``home``.

    >>> svc = LocalMonitorService.from_settings(Settings.load())         # doctest: +SKIP
    >>> svc.log_labels(["r1", "r2"], [1, 0])                             # doctest: +SKIP
    2
    """

    def __init__(
        self,
        db: Database,
        data: DataService,
        predictions_root: Path,
        labels_root: Path,
        default_user: str = "",
    ) -> None:
        self.db = db
        self.data = data
        self.predictions_root = Path(predictions_root)
        self.labels_root = Path(labels_root)
        self.default_user = default_user or "unknown"
        # Called before each run: inside the server, writes the queued prediction log first.
        self.before_run: Callable[[], Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalMonitorService:
        from loopml.data.service import LocalDataService
        from loopml.tracking.local import LocalTrackingService

        tracking = LocalTrackingService.from_settings(settings)
        data = LocalDataService(tracking.db, tracking.artifacts.blobs, settings.user)
        return cls(
            tracking.db,
            data,
            predlog.default_root(settings),
            labels_mod.default_root(settings),
            settings.user,
        )

    # -- monitors ---------------------------------------------------------------------------
    def create_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        monitor = self._checked(monitor)
        now, who = now_ms(), user or self.default_user
        row = {**_row(monitor), "created_at": now, "updated_at": now, "created_by": who, "last_run_at": None}
        with self.db.write() as conn:
            if conn.execute(select(monitors.c.name).where(monitors.c.name == monitor.name)).first():
                raise AlreadyExists(
                    f"monitor {monitor.name!r} already exists; delete it first or pick another name",
                    details={"name": monitor.name},
                )
            conn.execute(insert(monitors).values(**row))
        return self.get_monitor(monitor.name)

    def update_monitor(self, monitor: Monitor, user: str | None = None) -> Monitor:
        monitor = self._checked(monitor)
        with self.db.write() as conn:
            self._row(conn, monitor.name)
            conn.execute(
                update(monitors)
                .where(monitors.c.name == monitor.name)
                .values(spec=_row(monitor)["spec"], updated_at=now_ms())
            )
        return self.get_monitor(monitor.name)

    def _checked(self, monitor: Monitor) -> Monitor:
        monitor = monitor.checked()
        for url in monitor.webhooks:
            webhooks.validate_url(url, allow_private=monitor.allow_private_webhooks)
        return monitor

    def get_monitor(self, name: str) -> Monitor:
        with self.db.read() as conn:
            return _load(self._row(conn, name))

    def _row(self, conn: Any, name: str) -> Row[Any]:
        check_name(name)
        row: Row[Any] | None = conn.execute(select(monitors).where(monitors.c.name == name)).first()
        if row is None:
            names = [
                r.name for r in conn.execute(select(monitors.c.name).order_by(monitors.c.name).limit(_LISTED))
            ]
            raise NotFound(
                f"monitor {name!r} does not exist; existing: {', '.join(names) or 'none'} "
                "(create one with `loopml monitor create`)",
                details={"name": name},
            )
        return row

    def list_monitors(self) -> list[Monitor]:
        with self.db.read() as conn:
            return [_load(r) for r in conn.execute(select(monitors).order_by(monitors.c.name))]

    def delete_monitor(self, name: str) -> None:
        with self.db.write() as conn:
            self._row(conn, name)
            conn.execute(delete(monitors).where(monitors.c.name == name))

    # -- runs -------------------------------------------------------------------------------
    def run_monitor(self, name: str, *, now: int | None = None) -> MonitorRun:
        monitor = self.get_monitor(name)
        now = now if now is not None else now_ms()
        started, run_id = now_ms(), new_id()
        try:
            result, status = self._measure(monitor, now), "ok"
        except LoopmlError as exc:
            result, status = {"error": exc.message, "rules": []}, "failed"
        except Exception as exc:  # a monitor must report its own failure, not kill the scheduler
            log.exception("monitor %s failed", name)
            result, status = {"error": f"{type(exc).__name__}: {exc}", "rules": []}, "failed"
        if status == "ok" and not result["values"].get("requests"):
            status = "no_data"
        with self.db.write() as conn:
            opened, resolved = alerts_mod.reconcile(conn, name, run_id, result["rules"], now)
            triggers = [
                alerts_mod.add_trigger(conn, a, monitor.pipeline, now) for a in opened if monitor.pipeline
            ]
            result |= {
                "alerts_opened": [a.alert_id for a in opened],
                "alerts_resolved": [a.alert_id for a in resolved],
                "triggers": [t.trigger_id for t in triggers],
            }
            run = MonitorRun(run_id, name, started, now_ms(), status, result)
            conn.execute(insert(monitor_runs).values(**{**run.to_dict(), "result": _dumps(result)}))
            conn.execute(update(monitors).where(monitors.c.name == name).values(last_run_at=now))
        self._notify(monitor, opened, "opened")
        self._notify(monitor, resolved, "resolved")
        return run

    def _measure(self, monitor: Monitor, now: int) -> dict[str, Any]:
        start = now - monitor.window_s * 1000
        if self.before_run is not None:
            self.before_run()
        window = runner.read_window(self.predictions_root, monitor, start, now)
        reference = self.data.get(*_ref(monitor.reference)) if monitor.reference else None
        m = runner.measure(monitor, window, reference, self.predictions_root, self.labels_root)
        return {
            **m.to_dict(),
            "window": {"start": start, "end": now},
            "rules": runner.evaluate_rules(monitor.rules, m),
        }

    def _notify(self, monitor: Monitor, changed: list[Alert], event: str) -> None:
        for alert in changed:
            log.warning("monitor %s: alert %s %s: %s", monitor.name, alert.rule, event, alert.message)
            if not monitor.webhooks:
                continue
            body = alerts_mod.payload(alert, event)
            delivery = [
                {**webhooks.deliver(url, body, allow_private=monitor.allow_private_webhooks), "event": event}
                for url in monitor.webhooks
            ]
            with self.db.write() as conn:
                old = conn.execute(
                    select(monitor_alerts.c.delivery).where(monitor_alerts.c.alert_id == alert.alert_id)
                )
                alerts_mod.record_delivery(conn, alert.alert_id, orjson.loads(old.scalar_one()) + delivery)

    def list_runs(self, name: str, limit: int = 20) -> list[MonitorRun]:
        t = monitor_runs
        with self.db.read() as conn:
            rows = conn.execute(
                select(t).where(t.c.monitor == name).order_by(t.c.started_at.desc()).limit(limit)
            )
            return [
                MonitorRun(r.run_id, r.monitor, r.started_at, r.finished_at, r.status, orjson.loads(r.result))
                for r in rows
            ]

    def list_alerts(
        self, monitor: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Alert]:
        t = monitor_alerts
        if status not in (None, alerts_mod.FIRING, alerts_mod.RESOLVED):
            raise InvalidInput(
                f"alert status {status!r} is not firing or resolved", details={"field": "status"}
            )
        query = select(t).order_by(t.c.opened_at.desc(), t.c.alert_id).limit(limit)
        if monitor is not None:
            query = query.where(t.c.monitor == monitor)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.db.read() as conn:
            return [alerts_mod.to_alert(r) for r in conn.execute(query)]

    # -- triggers ---------------------------------------------------------------------------
    def list_triggers(self, status: str | None = "pending") -> list[Trigger]:
        t = monitor_triggers
        query = select(t).order_by(t.c.created_at, t.c.trigger_id)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.db.read() as conn:
            return [Trigger.from_dict(dict(r._mapping)) for r in conn.execute(query)]

    def claim_trigger(self, trigger_id: str, by: str) -> Trigger:
        t = monitor_triggers
        with self.db.write() as conn:
            # The conditional update is the claim: of two consumers, exactly one changes the row.
            done = conn.execute(
                update(t)
                .where(and_(t.c.trigger_id == trigger_id, t.c.status == "pending"))
                .values(status="claimed", claimed_at=now_ms(), claimed_by=by or self.default_user)
            )
            row = conn.execute(select(t).where(t.c.trigger_id == trigger_id)).first()
        if row is None:
            raise NotFound(
                f"trigger {trigger_id!r} does not exist; see list_triggers()",
                details={"trigger_id": trigger_id},
            )
        if done.rowcount != 1:
            raise Conflict(
                f"trigger {trigger_id!r} was already claimed by {row.claimed_by!r}",
                details={"trigger_id": trigger_id},
            )
        return Trigger.from_dict(dict(row._mapping))

    # -- labels and performance -------------------------------------------------------------
    def log_labels(
        self, request_ids: Sequence[str], labels: Sequence[Any], *, endpoint: str | None = None
    ) -> int:
        return labels_mod.write_labels(self.labels_root, request_ids, labels, endpoint=endpoint)

    def performance(
        self,
        endpoint: str,
        *,
        start: int | None = None,
        end: int | None = None,
        window_s: float | None = None,
    ) -> dict[str, Any]:
        report = perf.performance(
            self.predictions_root, self.labels_root, endpoint, start=start, end=end, window_s=window_s
        )
        return report.to_dict()

    def close(self) -> None:
        self.db.dispose()


def _ref(reference: str | None) -> tuple[str, int | None]:
    return parse_ref(reference or "")


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def _row(monitor: Monitor) -> dict[str, Any]:
    spec = {
        k: v
        for k, v in monitor.to_dict().items()
        if k not in ("created_at", "updated_at", "created_by", "last_run_at")
    }
    return {"name": monitor.name, "spec": _dumps(spec)}


def _load(row: Row[Any]) -> Monitor:
    spec = orjson.loads(row.spec)
    return Monitor.from_dict(
        {
            **spec,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "created_by": row.created_by,
            "last_run_at": row.last_run_at,
        }
    )
