"""N writer processes doing ``log_batch`` for T seconds against a live server on SQLite and
on PostgreSQL: no 5xx, and every acknowledged metric is there afterwards.

``make test`` runs 4 writers x 10 s; ``make reliability`` sets LOOPML_RELIABILITY_WRITERS=16
and LOOPML_RELIABILITY_SECONDS=60. With LOOPML_RELIABILITY_REPORT=<file> the figures are
appended there as JSON lines (RELIABILITY.md quotes them).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import live_server

pytestmark = pytest.mark.server

WRITERS = int(os.environ.get("LOOPML_RELIABILITY_WRITERS", "4"))
SECONDS = float(os.environ.get("LOOPML_RELIABILITY_SECONDS", "10"))
KEYS = 10  # metrics per batch, one step each


def _writer(args: tuple[str, str, int, float]) -> tuple[list[int], dict[str, int]]:
    """Log batches until the time is up; return the acknowledged steps and the answers."""
    url, run_id, worker, seconds = args
    acked: list[int] = []
    answers: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=120) as http:
        deadline, step = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            batch = [
                {"key": f"w{worker}_m{k}", "value": step * 0.5 + k, "timestamp": 1_000 + step, "step": step}
                for k in range(KEYS)
            ]
            try:
                r = http.post("/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": batch})
                answers[str(r.status_code)] += 1
                if r.status_code == 200:
                    acked.append(step)
            except httpx.HTTPError as exc:
                answers[type(exc).__name__] += 1
            step += 1
    return acked, dict(answers)


def _run_load(url: str, backend: str) -> dict[str, object]:
    exp = httpx.post(f"{url}/api/v1/experiments", json={"name": f"load-{uuid.uuid4().hex[:8]}"}).json()
    runs = [httpx.post(f"{url}/api/v1/runs", json=exp).json()["info"]["run_id"] for _ in range(WRITERS)]
    ctx = multiprocessing.get_context("spawn")
    start = time.monotonic()
    with ctx.Pool(WRITERS) as pool:
        results = pool.map(_writer, [(url, runs[w], w, SECONDS) for w in range(WRITERS)])
    elapsed = time.monotonic() - start
    answers: Counter[str] = Counter()
    lost = 0
    with httpx.Client(base_url=url, timeout=120) as http:
        for worker, (acked, counts) in enumerate(results):
            answers.update(counts)
            for k in range(KEYS):
                history = http.get(f"/api/v1/runs/{runs[worker]}/metrics/w{worker}_m{k}/history").json()[
                    "metrics"
                ]
                stored = {m["step"]: m["value"] for m in history}
                lost += sum(1 for s in acked if stored.get(s) != s * 0.5 + k)
    acked_metrics = sum(len(a) for a, _ in results) * KEYS
    return {
        "backend": backend,
        "writers": WRITERS,
        "seconds": SECONDS,
        "requests": sum(answers.values()),
        "answers": dict(answers),
        "acknowledged_metrics": acked_metrics,
        "metrics_per_s": round(acked_metrics / elapsed),
        "lost": lost,
    }


def _report(figures: dict[str, object]) -> None:
    print(f"load: {json.dumps(figures)}")
    out = os.environ.get("LOOPML_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps({"test": "load", **figures}) + "\n")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_writers_lose_nothing_and_see_no_5xx(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"LOOPML_MONITOR_SCHEDULER": "0"}
    if backend == "postgres":
        env["LOOPML_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    home = tmp_path / "home"
    home.mkdir()
    with live_server(home, workers=2, env=env) as url:
        figures = _run_load(url, backend)
    _report(figures)
    answers = figures["answers"]
    assert isinstance(answers, dict)
    assert not [a for a in answers if a.startswith("5")], answers
    assert set(answers) == {"200"}, answers
    assert figures["lost"] == 0
