"""Deterministic request payloads, the HTTP driver and the raw-SQLite floor.

Every payload is a pure function of an operation index (and a fixed seed), so both servers
receive byte-identical request streams: the i-th ``log-batch`` sent to MLflow is the i-th one
sent to loopml.  Bodies are JSON-encoded before the request is timed.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import BenchError

API_PREFIX = "/api/2.0/mlflow/"
SEED = 20240607
BASE_TS = 1_700_000_000_000  # ms; all timestamps are offsets from this
BATCH_SIZE = 1000  # metrics per log-batch (MLflow's per-request maximum)
BATCH_KEYS = 10  # a batch is BATCH_KEYS keys x (BATCH_SIZE / BATCH_KEYS) steps
SEARCH_PARAMS = 10
SEARCH_METRICS = 10
SEARCH_TOP = 100
SEARCH_FILTER_KEY = "m3"
SEARCH_ORDER_KEY = "m1"
# Thresholds for "metrics.m3 > t", visited in this order (op i uses i % len).
SEARCH_THRESHOLDS = (0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 0.25, 0.55, 0.35, 0.65, 0.45, 0.75, 0.15)


def encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------ HTTP driver


class Api:
    """A keep-alive client for the MLflow REST API; every non-200 answer aborts the benchmark."""

    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self._client = httpx.Client(
            base_url=base_url + API_PREFIX,
            timeout=timeout_s,
            trust_env=False,
            headers={"Content-Type": "application/json"},
        )
        self.requests = 0
        self.failures = 0

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, body: bytes) -> tuple[httpx.Response, float]:
        """POST a pre-encoded body; return the response and the request's wall seconds."""
        t0 = time.perf_counter()
        resp = self._client.post(path, content=body)
        elapsed = time.perf_counter() - t0
        self._check(resp, path)
        return resp, elapsed

    def get_soft(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        """GET for extra checks: returns (status, JSON body or None) and never raises."""
        try:
            resp = self._client.get(path, params=params)
        except httpx.HTTPError:
            return 0, None
        if resp.status_code != 200:
            return resp.status_code, None
        try:
            payload = resp.json()
        except ValueError:
            return resp.status_code, None
        return resp.status_code, payload if isinstance(payload, dict) else None

    def _check(self, resp: httpx.Response, path: str) -> None:
        self.requests += 1
        if resp.status_code != 200:
            self.failures += 1
            raise BenchError(
                f"{resp.request.method} {path} -> HTTP {resp.status_code} "
                f"(failure {self.failures} of {self.requests} requests): {resp.text[:500]}"
            )

    def create_experiment(self, name: str) -> str:
        resp, _ = self.post("experiments/create", encode({"name": name}))
        return str(resp.json()["experiment_id"])

    def create_run(self, body: bytes) -> tuple[str, float]:
        resp, elapsed = self.post("runs/create", body)
        return str(resp.json()["run"]["info"]["run_id"]), elapsed


# --------------------------------------------------------------------------------------- payloads


def batch_rows(index: int) -> list[tuple[str, float, int, int]]:
    """The ``index``-th batch of 1000 metrics as (key, value, timestamp, step) rows."""
    rng = random.Random(SEED * 7 + index)
    steps = BATCH_SIZE // BATCH_KEYS
    rows = []
    for s in range(steps):
        step = index * steps + s
        for k in range(BATCH_KEYS):
            rows.append((f"m{k}", rng.random(), BASE_TS + step, step))
    return rows


def log_batch_body(run_id: str, index: int) -> bytes:
    metrics = [{"key": k, "value": v, "timestamp": ts, "step": st} for k, v, ts, st in batch_rows(index)]
    return encode({"run_id": run_id, "metrics": metrics, "params": [], "tags": []})


def log_metric_body(run_id: str, index: int) -> bytes:
    value = random.Random(SEED * 11 + index).random()
    return encode(
        {
            "run_id": run_id,
            "key": "loss",
            "value": value,
            "timestamp": BASE_TS + index,
            "step": index,
        }
    )


def create_run_body(experiment_id: str, name: str, index: int) -> bytes:
    return encode(
        {
            "experiment_id": experiment_id,
            "start_time": BASE_TS + index,
            "run_name": name,
            "tags": [{"key": "bench.op", "value": "create"}],
        }
    )


def search_threshold(index: int) -> float:
    return SEARCH_THRESHOLDS[index % len(SEARCH_THRESHOLDS)]


def search_body(experiment_id: str, index: int) -> bytes:
    return encode(
        {
            "experiment_ids": [experiment_id],
            "filter": f"metrics.{SEARCH_FILTER_KEY} > {search_threshold(index)}",
            "order_by": [f"metrics.{SEARCH_ORDER_KEY} DESC"],
            "max_results": SEARCH_TOP,
        }
    )


# ------------------------------------------------------------------------------ search data set


@dataclass(frozen=True)
class SearchRun:
    name: str
    params: dict[str, str]
    metrics: dict[str, float]


def search_dataset(n_runs: int) -> list[SearchRun]:
    """``n_runs`` runs of 10 params and 10 metrics, identical on every call."""
    rng = random.Random(SEED)
    runs = []
    for j in range(n_runs):
        params = {
            f"p{p}": f"{rng.choice(('adam', 'sgd', 'lbfgs'))}-{rng.randrange(1000)}"
            for p in range(SEARCH_PARAMS)
        }
        metrics = {f"m{m}": rng.random() for m in range(SEARCH_METRICS)}
        runs.append(SearchRun(f"search-{j:05d}", params, metrics))
    return runs


def populate_body(run_id: str, run: SearchRun, index: int) -> bytes:
    return encode(
        {
            "run_id": run_id,
            "metrics": [
                {"key": k, "value": v, "timestamp": BASE_TS + index, "step": 0}
                for k, v in run.metrics.items()
            ],
            "params": [{"key": k, "value": v} for k, v in run.params.items()],
            "tags": [],
        }
    )


def expected_search(runs: Sequence[SearchRun], threshold: float) -> list[str]:
    """Run names a correct server returns for ``search_body`` at ``threshold``, in order."""
    hits = [r for r in runs if r.metrics[SEARCH_FILTER_KEY] > threshold]
    hits.sort(key=lambda r: r.metrics[SEARCH_ORDER_KEY], reverse=True)
    return [r.name for r in hits[:SEARCH_TOP]]


def returned_run_names(payload: dict[str, Any]) -> list[str]:
    names = []
    for run in payload.get("runs", []):
        name = run.get("info", {}).get("run_name")
        if not name:
            tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
            name = tags.get("mlflow.runName", "?")
        names.append(str(name))
    return names


# --------------------------------------------------------------------------------- SQLite floor

FLOOR_SCHEMA = """
CREATE TABLE metrics (
    run_uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    is_nan INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, key, timestamp, step, value)
)
"""
FLOOR_INSERT = "INSERT INTO metrics (run_uuid, key, value, timestamp, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)"
FLOOR_RUN_UUID = "0123456789abcdef0123456789abcdef"


class SqliteFloor:
    """Raw ``executemany`` of one log-batch's rows into a metrics-shaped table, WAL mode.

    One transaction per batch; ``synchronous=NORMAL`` (the usual WAL setting).  The caller
    measures this process's CPU time around :meth:`insert_batch`.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(FLOOR_SCHEMA)

    @staticmethod
    def rows(index: int) -> list[tuple[str, str, float, int, int, int]]:
        return [(FLOOR_RUN_UUID, k, v, ts, st, 0) for k, v, ts, st in batch_rows(index)]

    def insert_batch(self, rows: Sequence[tuple[str, str, float, int, int, int]]) -> None:
        cur = self._conn.cursor()
        cur.execute("BEGIN")
        cur.executemany(FLOOR_INSERT, rows)
        cur.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()
