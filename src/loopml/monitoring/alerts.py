"""Alert episodes on the metadata database: one alert per episode of a violated rule.

For each rule verdict of a run (:func:`loopml.monitoring.runner.evaluate_rules`):

* ``firing`` and no open alert for (monitor, rule): a new alert opens (it is delivered);
* ``firing`` and an alert is open: the same episode goes on, only ``last_seen_at`` moves;
* ``ok`` and an alert is open: the episode ends, the alert is ``resolved``;
* ``unknown`` (not measurable in this window): nothing changes.

So a condition that persists over many runs gives one alert, and one that clears and
returns gives a second. The open alert is found and changed in the run's transaction, so
two processes running the same monitor cannot open two alerts for one episode on
PostgreSQL (the scheduler also claims each due run, see :mod:`loopml.monitoring.scheduler`).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Row, and_, insert, select, update

from loopml.monitoring.monitors import Alert, Trigger, new_id
from loopml.store.schema import monitor_alerts, monitor_triggers

FIRING, RESOLVED = "firing", "resolved"


def to_alert(row: Row[Any]) -> Alert:
    return Alert(
        alert_id=row.alert_id,
        monitor=row.monitor,
        rule=row.rule,
        status=row.status,
        message=row.message,
        value=row.value,
        opened_at=row.opened_at,
        last_seen_at=row.last_seen_at,
        resolved_at=row.resolved_at,
        run_id=row.run_id,
        delivery=orjson.loads(row.delivery),
    )


def reconcile(
    conn: Connection, monitor: str, run_id: str, verdicts: list[dict[str, Any]], now: int
) -> tuple[list[Alert], list[Alert]]:
    """Apply the verdicts; returns (alerts opened, alerts resolved)."""
    t = monitor_alerts
    rows = conn.execute(select(t).where(and_(t.c.monitor == monitor, t.c.status == FIRING)))
    open_by_rule = {r.rule: r for r in rows}
    opened: list[Alert] = []
    resolved: list[Alert] = []
    for v in verdicts:
        current = open_by_rule.get(v["rule"])
        if v["state"] == "firing" and current is None:
            alert = Alert(
                new_id(), monitor, v["rule"], FIRING, v["message"], v["value"], now, now, None, run_id
            )
            conn.execute(insert(t).values(**{**alert.to_dict(), "delivery": "[]"}))
            opened.append(alert)
        elif v["state"] == "firing" and current is not None:
            conn.execute(
                update(t).where(t.c.alert_id == current.alert_id).values(last_seen_at=now, value=v["value"])
            )
        elif v["state"] == "ok" and current is not None:
            conn.execute(
                update(t).where(t.c.alert_id == current.alert_id).values(status=RESOLVED, resolved_at=now)
            )
            resolved.append(to_alert(current))
    return opened, resolved


def record_delivery(conn: Connection, alert_id: str, delivery: list[dict[str, Any]]) -> None:
    t = monitor_alerts
    conn.execute(update(t).where(t.c.alert_id == alert_id).values(delivery=orjson.dumps(delivery).decode()))


def add_trigger(conn: Connection, alert: Alert, pipeline: str, now: int) -> Trigger:
    trigger = Trigger(new_id(), alert.alert_id, alert.monitor, pipeline, "pending", now)
    conn.execute(insert(monitor_triggers).values(**trigger.to_dict()))
    return trigger


def payload(alert: Alert, event: str) -> dict[str, Any]:
    """The JSON body a webhook receives: the event ("opened"/"resolved") and the alert."""
    return {"event": event, "source": "loopml", "alert": alert.to_dict()}
