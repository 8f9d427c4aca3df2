"""What governance costs on the hot ingest path: MLflow ``runs/log-batch`` through the whole ASGI
app (in process, no network), without the audit hook, with it (auth off: the default), and with
auth on (token check, role check, run->experiment lookup, body peek, audit entry).

    $ .venv/bin/python bench/governance/log_batch_overhead.py [--requests 2000] [--metrics 10]

Each configuration runs in a fresh store; the figure is the median per-request CPU time (all
threads of the process, client included) of ``--repeat`` interleaved rounds. The "no audit" row
removes the write hook and the middleware entirely, which is what the server did before
governance.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from loopml.config import Settings
from loopml.governance import audit as audit_module
from loopml.governance import roles
from loopml.governance.identity import IdentityService
from loopml.server import app as app_module
from loopml.server.app import create_app
from loopml.store import db as db_module


def _app(home: Path, auth: bool, audit: bool) -> tuple[Any, dict[str, str]]:
    env = {
        "LOOPML_HOME": str(home),
        "LOOPML_MONITOR_SCHEDULER": "0",
        "LOOPML_PIPELINE_SCHEDULER": "0",
        "LOOPML_AUTH": "1" if auth else "0",
    }
    original = app_module._install_governance
    if not audit:
        app_module._install_governance = lambda app, settings: None  # type: ignore[assignment]
    try:
        app = create_app(Settings.load(env=env, toml_path=home / "none.toml"))
    finally:
        app_module._install_governance = original
    # The write hook is process-wide: present exactly when this configuration audits.
    if audit:
        db_module.add_write_hook(audit_module._on_write)
    else:
        db_module._write_hooks.clear()
    headers = {"Content-Type": "application/json"}
    if auth:
        ids = IdentityService(app.state.tracking.db)
        ids.bootstrap(ids.issue_bootstrap_token(), "root")
        ids.create_user("ed", by="root")
        roles.grant(ids.db, "ed", "editor", "project", "", by="root")
        headers["Authorization"] = f"Bearer {ids.create_token('ed').secret}"
    return app, headers


async def _run(app: Any, headers: dict[str, str], requests: int, metrics: int) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as c:
        r = await c.post("/api/2.0/mlflow/runs/create", json={"experiment_id": "0"})
        run_id = r.json()["run"]["info"]["run_id"]
        t0 = time.process_time()  # CPU of every thread of this process: steadier on a shared machine
        for step in range(requests):
            batch = [{"key": f"m{k}", "value": 0.5, "timestamp": 1, "step": step} for k in range(metrics)]
            r = await c.post("/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": batch})
            assert r.status_code == 200, r.text
        return (time.process_time() - t0) / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configs = [("audit on, auth off (default)", False, True), ("audit on, auth on", True, True),
               ("no audit, no auth (before)", False, False)]  # fmt: skip
    times: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    for _ in range(args.repeat):  # interleaved, so a busy moment on the machine hits all alike
        for label, auth, audit in configs:
            with tempfile.TemporaryDirectory() as tmp:
                app, headers = _app(Path(tmp), auth, audit)
                times[label].append(asyncio.run(_run(app, headers, args.requests, args.metrics)))
                app.state.tracking.db.dispose()
    results = {label: statistics.median(t) for label, t in times.items()}
    base = results["no audit, no auth (before)"]
    print(
        f"log-batch of {args.metrics} metrics, {args.requests} requests x {args.repeat}, SQLite, in process"
    )
    for label, t in results.items():
        print(f"  {label:32s} {t * 1e6:8.0f} us CPU/request  x{t / base:.2f}")


if __name__ == "__main__":
    main()
