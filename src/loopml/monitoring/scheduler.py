"""Runs due monitors inside ``loopml server``: one background thread, bounded and stoppable.

Every ``tick_s`` seconds the thread lists monitors that have a schedule and whose
``last_run_at`` is older than it, and runs them one after another (never more than one run
at a time per process, so a slow monitor delays the others instead of piling up threads).
Before running, it claims the run with a conditional update of ``last_run_at``, so with
``loopml server --workers N`` (or several servers on one database) each due run happens
once. Started and stopped with the app's lifespan; ``LOOPML_MONITOR_SCHEDULER=0`` turns it off.

>>> sched = Scheduler(LocalMonitorService.from_settings(settings), tick_s=5)   # doctest: +SKIP
>>> sched.start(); ...; sched.stop()                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import and_, or_, update

from loopml.monitoring.local import LocalMonitorService
from loopml.monitoring.monitors import Monitor, now_ms
from loopml.store.schema import monitors

log = logging.getLogger("loopml.monitoring.scheduler")


class Scheduler:
    """A daemon thread running due monitors of ``svc`` until :meth:`stop`."""

    def __init__(self, svc: LocalMonitorService, *, tick_s: float = 5.0) -> None:
        self.svc = svc
        self.tick_s = tick_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="loopml-monitors", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after the run in progress, and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.run_due()
            except Exception:  # the scheduler outlives a database hiccup; the next tick retries
                log.exception("monitor scheduler: tick failed")

    def run_due(self, now: int | None = None) -> list[str]:
        """Run every due monitor once (claimed first); returns the names run."""
        ran = []
        for monitor in self.svc.list_monitors():
            if self._stop.is_set():
                break
            at = now if now is not None else now_ms()
            if _due(monitor, at) and self._claim(monitor, at):
                self.svc.run_monitor(monitor.name, now=at)
                self.runs += 1
                ran.append(monitor.name)
        return ran

    def _claim(self, monitor: Monitor, at: int) -> bool:
        t = monitors
        last = t.c.last_run_at
        seen = last.is_(None) if monitor.last_run_at is None else last == monitor.last_run_at
        with self.svc.db.write() as conn:
            done = conn.execute(
                update(t).where(and_(t.c.name == monitor.name, or_(seen))).values(last_run_at=at)
            )
        return done.rowcount == 1


def _due(monitor: Monitor, at: int) -> bool:
    if monitor.schedule_s is None:
        return False
    return monitor.last_run_at is None or at - monitor.last_run_at >= monitor.schedule_s * 1000
