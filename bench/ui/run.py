"""Runs-page benchmark: loopml's server-rendered runs table vs the MLflow UI's ``runs/search``
AJAX call, on the same N runs (100k by default), both servers on SQLite, one worker each.

Both databases are filled with the same runs by bulk SQL (3 params, 3 tags, 2 metrics each;
seeding is not what is measured). Then, per scenario, the same page is requested sequentially
and we report the median latency and the server's CPU per request (its whole process tree):

- ``default``: the newest 100 runs (what opening the experiment shows);
- ``sort_metric``: sorted by a metric, best first;
- ``filter``: ``metrics.acc > 0.9 AND params.model = 'rf'``;
- ``deep_page``: the page at offset 10,000.

loopml's figure is a whole HTML page (search + render); MLflow's is the JSON its React UI then
renders in the browser. Target: loopml < 300 ms server time per page.

Usage: ``.venv/bin/python bench/ui/run.py [--runs N] [--requests K] [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import (
    HOST,
    ROOT,
    Server,
    answers_200,
    free_port,
    machine_info,
    median,
    percentile,
    pinned_env,
    tree_cpu_seconds,
    write_json,
)

PAGE = 100
TARGET_MS = 300.0
T0 = 1_700_000_000_000
SCENARIOS = ("default", "sort_metric", "filter", "deep_page")
FILTER = "metrics.acc > 0.9 AND params.model = 'rf'"
READY_PATH = "/api/2.0/mlflow/experiments/search"  # both servers answer MLflow's REST API


@dataclass(frozen=True)
class Row:
    run_id: str
    name: str
    start: int
    lr: str
    depth: str
    model: str
    acc: float
    loss: float


def make_rows(n: int) -> list[Row]:
    rnd = random.Random(7)
    return [
        Row(
            uuid.UUID(int=rnd.getrandbits(128)).hex,
            f"run-{i}",
            T0 + i * 1000,
            str(rnd.choice([0.1, 0.03, 0.01, 0.003])),
            str(rnd.randint(2, 12)),
            rnd.choice(["rf", "gbm", "lr"]),
            rnd.random(),
            rnd.random() * 2,
        )
        for i in range(n)
    ]


def _params(r: Row) -> list[tuple[str, str]]:
    return [("lr", r.lr), ("depth", r.depth), ("model", r.model)]


def _metrics(r: Row) -> list[tuple[str, float]]:
    return [("acc", r.acc), ("loss", r.loss)]


def _tags(r: Row) -> list[tuple[str, str]]:
    return [("mlflow.runName", r.name), ("mlflow.user", "bench"), ("team", "growth")]


def seed_loopml(home: Path, rows: list[Row]) -> str:
    """The experiment id; runs go straight into loopml's tables (the schema the service made)."""
    env = {"LOOPML_HOME": str(home)}
    sys.path.insert(0, str(ROOT / "src"))
    from loopml.config import Settings
    from loopml.tracking.local import LocalTrackingService

    svc = LocalTrackingService.from_settings(Settings.load(env=env))
    exp = svc.create_experiment("bench-ui")
    location = svc.get_experiment(exp).artifact_location
    svc.close()
    con = sqlite3.connect(home / "loopml.db")
    with con:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, end_time, "
            "lifecycle_stage, artifact_uri) VALUES (?, ?, ?, 'bench', 'FINISHED', ?, ?, 'active', ?)",
            [
                (r.run_id, r.name, int(exp), r.start, r.start + 500, f"{location}/{r.run_id}/artifacts")
                for r in rows
            ],
        )
        ids = dict(con.execute("SELECT run_uuid, id FROM runs"))
        con.executemany(
            "INSERT INTO params (run_uuid, key, value) VALUES (?, ?, ?)",
            [(r.run_id, k, v) for r in rows for k, v in _params(r)],
        )
        con.executemany(
            "INSERT INTO tags (run_uuid, key, value) VALUES (?, ?, ?)",
            [(r.run_id, k, v) for r in rows for k, v in _tags(r)],
        )
        con.executemany(
            "INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) "
            "VALUES (?, ?, 0, ?, ?, 0)",
            [(ids[r.run_id], k, r.start, v) for r in rows for k, v in _metrics(r)],
        )
    con.execute("ANALYZE")
    con.close()
    return exp


def seed_mlflow(data: Path, rows: list[Row]) -> str:
    """MLflow's own store makes its schema and the experiment; runs go in by bulk SQL."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = data / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{db}", str(data / "art"))
    exp = store.create_experiment("bench-ui")
    store.engine.dispose()
    con = sqlite3.connect(db)
    art = str(data / "art")
    with con:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?)",
            [(r.run_id, r.name, r.start, r.start + 500, f"{art}/{r.run_id}", int(exp)) for r in rows],
        )
        con.executemany(
            "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
            [(k, v, r.run_id) for r in rows for k, v in _params(r)],
        )
        con.executemany(
            "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
            [(k, v, r.run_id) for r in rows for k, v in _tags(r)],
        )
        metric_rows = [(k, v, r.start, r.run_id, 0, 0) for r in rows for k, v in _metrics(r)]
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows,
        )
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows,
        )
    con.execute("ANALYZE")
    con.close()
    return str(exp)


def loopml_request(exp: str, scenario: str) -> tuple[str, str, dict[str, object] | None]:
    params: dict[str, object] = {"page_size": PAGE}
    if scenario == "sort_metric":
        params["order_by"] = "metrics.`acc` DESC"
    elif scenario == "filter":
        params["filter"] = FILTER
    elif scenario == "deep_page":
        params["offset"] = 10_000
    return "GET", f"/ui/experiments/{exp}?{httpx.QueryParams(params)}", None


def mlflow_request(exp: str, scenario: str) -> tuple[str, str, dict[str, object] | None]:
    body: dict[str, object] = {
        "experiment_ids": [exp],
        "max_results": PAGE,
        "run_view_type": "ACTIVE_ONLY",
        "order_by": ["attributes.start_time DESC"],
    }
    if scenario == "sort_metric":
        body["order_by"] = ["metrics.`acc` DESC"]
    elif scenario == "filter":
        body["filter"] = FILTER
    elif scenario == "deep_page":
        body["page_token"] = base64.b64encode(json.dumps({"offset": 10_000}).encode()).decode()
    return "POST", "/ajax-api/2.0/mlflow/runs/search", body


@dataclass
class Result:
    server: str
    scenario: str
    median_ms: float
    p95_ms: float
    cpu_ms: float
    rows: int


def measure(server: Server, label: str, exp: str, scenario: str, n: int) -> Result:
    make = loopml_request if label == "loopml" else mlflow_request
    method, path, body = make(exp, scenario)
    times = []
    with httpx.Client(base_url=server.base_url, timeout=120, trust_env=False) as client:
        for _ in range(3):  # warm caches
            r = client.request(method, path, json=body)
            r.raise_for_status()
        rows = r.text.count('class="run-select"') if label == "loopml" else len(r.json().get("runs", []))
        cpu0 = tree_cpu_seconds(server.pid)
        for _ in range(n):
            t = time.perf_counter()
            client.request(method, path, json=body).raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
        cpu = (tree_cpu_seconds(server.pid) - cpu0) * 1000 / n
    return Result(label, scenario, median(times), percentile(times, 0.95), cpu, rows)


def run_server(
    label: str, argv: list[str], env: dict[str, str], root: Path, exp: str, n: int
) -> list[Result]:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv]
    with Server(label, argv, env, root / f"{label}.log", port) as server:
        ready = answers_200("POST", server.base_url + READY_PATH, json={"max_results": 1})
        server.wait_ready(ready, timeout_s=120)
        return [measure(server, label, exp, s, n) for s in SCENARIOS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="5,000 runs, 10 requests (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.requests = 5_000, 10
    rows = make_rows(args.runs)
    env = pinned_env(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        home = root / "loopml"
        home.mkdir()
        loop_exp = seed_loopml(home, rows)
        (root / "mlflow").mkdir()
        ml_exp = seed_mlflow(root / "mlflow", rows)
        print(f"seeded {args.runs} runs into both stores in {time.perf_counter() - t:.1f}s", flush=True)
        loop_env = {**env, "LOOPML_HOME": str(home), "LOOPML_MONITOR_SCHEDULER": "0"}
        loop_argv = [sys.executable, "-m", "loopml.cli", "server", "--host", HOST, "--port", "{port}"]
        loop_argv += ["--workers", "1"]
        results = run_server("loopml", loop_argv, loop_env, root, loop_exp, args.requests)
        mlflow_cli = str(Path(sys.executable).parent / "mlflow")
        ml_argv = [
            mlflow_cli, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "--default-artifact-root", str(root / "mlflow" / "art"),
            "--host", HOST, "--port", "{port}", "--workers", "1",
        ]  # fmt: skip
        # The job runner (GenAI jobs) is not part of serving search; off, it burns no CPU in the tree.
        ml_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        results += run_server("mlflow", ml_argv, ml_env, root, ml_exp, args.requests)
    report(results, args)
    return 0


def report(results: list[Result], args: argparse.Namespace) -> None:
    by = {(r.server, r.scenario): r for r in results}
    print(f"\nruns page, {args.runs} runs, {PAGE} per page, {args.requests} sequential requests each")
    head = ("scenario", "loopml ms", "cpu ms", "mlflow ms", "cpu ms", "cpu ratio")
    print("{:<12} {:>10} {:>8} {:>10} {:>8} {:>10}  rows".format(*head))
    summary = []
    for s in SCENARIOS:
        lo, ml = by[("loopml", s)], by[("mlflow", s)]
        ratio = ml.cpu_ms / lo.cpu_ms if lo.cpu_ms else float("inf")
        print(
            f"{s:<12} {lo.median_ms:>10.1f} {lo.cpu_ms:>8.1f} {ml.median_ms:>10.1f} {ml.cpu_ms:>8.1f} "
            f"{ratio:>9.2f}x  {lo.rows}/{ml.rows}"
        )
        under = lo.median_ms < TARGET_MS
        summary.append({"scenario": s, "mlflow_cpu_over_loopml": ratio, "loopml_under_target": under})
    worst = max(by[("loopml", s)].median_ms for s in SCENARIOS)
    print(f"loopml worst median {worst:.1f} ms per page (target < {TARGET_MS:.0f} ms)")
    if args.json:
        out = {
            "runs": args.runs,
            "page_size": PAGE,
            "requests": args.requests,
            "results": [asdict(r) for r in results],
            "summary": summary,
            "machine": machine_info(mlflow=metadata.version("mlflow")),
        }
        write_json(args.json, out)


if __name__ == "__main__":
    raise SystemExit(main())
