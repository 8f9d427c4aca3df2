"""8 processes x 200 log_batch calls against a live server on SQLite: no 5xx, nothing lost."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import live_server

pytestmark = pytest.mark.server

PROCESSES = 8
CALLS = 200
METRICS_PER_CALL = 10


def _worker(args: tuple[str, str, int]) -> list[int]:
    url, run_id, worker = args
    statuses = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for call in range(CALLS):
            metrics = [
                {"key": f"w{worker}_m{k}", "value": call * 0.5, "timestamp": 1000 + call, "step": call}
                for k in range(METRICS_PER_CALL)
            ]
            r = http.post("/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
            statuses.append(r.status_code)
    return statuses


def test_eight_processes_log_concurrently(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with live_server(home, workers=2) as url:
        exp = httpx.post(f"{url}/api/v1/experiments", json={"name": f"c-{uuid.uuid4().hex[:6]}"}).json()
        run_id = httpx.post(f"{url}/api/v1/runs", json=exp).json()["info"]["run_id"]
        start = time.monotonic()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(PROCESSES) as pool:
            results = pool.map(_worker, [(url, run_id, w) for w in range(PROCESSES)])
        elapsed = time.monotonic() - start
        statuses = [s for r in results for s in r]
        assert len(statuses) == PROCESSES * CALLS
        assert {s for s in statuses if s != 200} == set(), f"non-200 answers after {elapsed:.1f}s"
        run = httpx.get(f"{url}/api/v1/runs/{run_id}").json()
        assert len(run["metrics"]) == PROCESSES * METRICS_PER_CALL
        for w in (0, PROCESSES - 1):
            history = httpx.get(f"{url}/api/v1/runs/{run_id}/metrics/w{w}_m3/history").json()["metrics"]
            assert [m["step"] for m in history] == list(range(CALLS))
