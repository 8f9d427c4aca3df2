"""Tracking-server benchmark: loopml vs ``mlflow server``, both on SQLite, same requests.

Method
------
Each server is started alone (the machine has 2 cores), on a fresh SQLite database in a
temporary directory under ``.bench/``, with one worker, listening on 127.0.0.1.  The driver (this
process, one keep-alive ``httpx.Client``) sends both servers the same deterministic MLflow REST
requests, one at a time:

(a) ``runs/log-batch`` with 1000 metrics (10 keys x 100 steps);
(b) ``runs/log-metric``;
(c) ``runs/search`` over an experiment of 10,000 runs with 10 params and 10 metrics each
    (populated through ``runs/create`` + ``runs/log-batch``, not measured), filter
    ``metrics.m3 > t`` with a varying threshold, ``order_by metrics.m1 DESC``, top 100;
(d) ``runs/create``.

After a server answers, the benchmark waits until its process tree is idle (MLflow's job-runner
children keep 1-2 cores busy for ~20 s after readiness).  Every operation is warmed up, then
measured in several windows (5 by default).  Server CPU of a
window is the change of utime+stime (+cutime+cstime) summed over the server process and all its
descendants (MLflow runs uvicorn and huey job consumers as children), read from /proc/PID/stat
just before and after the window.  A window lasts at least ``min_ops`` operations and
``min_seconds`` so that the 10 ms tick of /proc is small against it.  Reported figures are the
median over windows of server CPU ms per operation and of throughput (operations per second of
request wall time; payloads are JSON-encoded before each request is timed).  Every response
must be HTTP 200, or the benchmark aborts; search answers are checked against the top 100
computed locally from the same seeded data.

The floor is raw SQLite: ``executemany`` of the same 1000 metric rows into a metrics-shaped table
(WAL, ``synchronous=NORMAL``, one transaction per batch), timed as this process's CPU.

Targets: MLflow/loopml server-CPU ratio >= 30 for (a) and (c), >= 10 for (b) and (d); loopml (a)
within 3x of the floor.  CPU of other work on the machine is reported as "other load" so that a
noisy run can be recognised.

Usage: ``.venv/bin/python bench/tracking/run.py [--quick] [--only mlflow|loopml] [--json F]``.
Set ``--loopml-cmd`` (or ``LOOPML_BENCH_CMD``) to change how loopml is started, and
``--loopml-as-mlflow`` to run MLflow in loopml's place (for testing the harness itself).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import (
    BENCH_DIR,
    HOST,
    ROOT,
    BenchError,
    Server,
    answers_200,
    ensure_venv,
    free_port,
    machine_info,
    pin_threads,
    tree_cpu_seconds,
    tree_size,
    venv_package_version,
    write_json,
)
from _measure import OpResult, Step, WindowSpec, measure_floor, run_operation
from _workload import (
    API_PREFIX,
    SEARCH_THRESHOLDS,
    Api,
    SearchRun,
    create_run_body,
    expected_search,
    log_batch_body,
    log_metric_body,
    populate_body,
    returned_run_names,
    search_body,
    search_dataset,
)

# Pinned for this process (before any numeric library could load) and inherited by the servers.
pin_threads(force=True)

MLFLOW_VERSION = "3.17.2"
DEFAULT_LOOPML_CMD = "{repo}/.venv/bin/loopml server --host {host} --port {port} --workers 1"
READY_TIMEOUT_S = 180.0
SERVERS = ("mlflow", "loopml")

# (key, label, minimum MLflow/loopml server-CPU ratio)
TARGETS = (
    ("log_batch", "(a) log_batch, 1000 metrics", 30.0),
    ("log_metric", "(b) log_metric", 10.0),
    ("search_runs", "(c) search_runs, top 100", 30.0),
    ("create_run", "(d) create run", 10.0),
)
FLOOR_TARGET = 3.0


@dataclass(frozen=True)
class Config:
    quick: bool
    reps: int
    search_runs: int
    specs: dict[str, WindowSpec]
    floor: WindowSpec
    idle_seconds: float


def make_config(quick: bool, reps: int | None, search_runs: int | None) -> Config:
    if quick:
        specs = {
            "create_run": WindowSpec(warmup=20, min_ops=200, min_seconds=0.5, max_ops=20_000),
            "log_metric": WindowSpec(warmup=20, min_ops=50, min_seconds=1.0, max_ops=50_000),
            "log_batch": WindowSpec(warmup=2, min_ops=3, min_seconds=1.0, max_ops=2_000),
            "search_runs": WindowSpec(warmup=3, min_ops=5, min_seconds=1.0, max_ops=2_000),
        }
        floor = WindowSpec(warmup=3, min_ops=10, min_seconds=0.5, max_ops=5_000)
    else:
        specs = {
            "create_run": WindowSpec(warmup=50, min_ops=1000, min_seconds=2.0, max_ops=20_000),
            "log_metric": WindowSpec(warmup=50, min_ops=200, min_seconds=3.0, max_ops=50_000),
            "log_batch": WindowSpec(warmup=3, min_ops=10, min_seconds=3.0, max_ops=2_000),
            "search_runs": WindowSpec(warmup=3, min_ops=20, min_seconds=3.0, max_ops=2_000),
        }
        floor = WindowSpec(warmup=3, min_ops=20, min_seconds=2.0, max_ops=5_000)
    return Config(
        quick=quick,
        reps=reps or (3 if quick else 5),
        search_runs=search_runs or (2_000 if quick else 10_000),
        specs=specs,
        floor=floor,
        idle_seconds=1.0 if quick else 3.0,
    )


@dataclass
class ServerResult:
    label: str
    argv: list[str]
    startup_s: float = 0.0
    settle_s: float = 0.0
    processes: int = 0
    idle_cpu_ms_per_s: float = 0.0
    ops: dict[str, OpResult] = field(default_factory=dict)
    search_ok: dict[str, bool] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "argv": self.argv,
            "startup_s": self.startup_s,
            "settle_s": self.settle_s,
            "processes": self.processes,
            "idle_cpu_ms_per_s": self.idle_cpu_ms_per_s,
            "search_results_correct": self.search_ok,
            "checks": self.checks,
            "ops": {name: op.to_json() for name, op in self.ops.items()},
        }


# ------------------------------------------------------------------------------------ operations


def create_run_step(api: Api, experiment_id: str) -> Step:
    def step(i: int) -> float:
        return api.post("runs/create", create_run_body(experiment_id, f"create-{i:06d}", i))[1]

    return step


class FreshRuns:
    """Creates the (unmeasured) run that each log_metric / log_batch window writes into."""

    def __init__(self, api: Api, experiment_id: str, prefix: str) -> None:
        self.api, self.experiment_id, self.prefix = api, experiment_id, prefix
        self.run_ids: list[str] = []

    def new(self) -> str:
        n = len(self.run_ids)
        body = create_run_body(self.experiment_id, f"{self.prefix}-{n}", 5_000_000 + n)
        self.run_ids.append(self.api.create_run(body)[0])
        return self.run_ids[-1]


def log_metric_step(api: Api, runs: FreshRuns) -> Callable[[], Step]:
    def new_step() -> Step:
        run_id = runs.new()
        return lambda i: api.post("runs/log-metric", log_metric_body(run_id, i))[1]

    return new_step


def log_batch_step(api: Api, runs: FreshRuns) -> Callable[[], Step]:
    def new_step() -> Step:
        run_id = runs.new()

        def step(i: int) -> float:
            body = log_batch_body(run_id, i)
            return api.post("runs/log-batch", body)[1]

        return step

    return new_step


def search_step(api: Api, experiment_id: str) -> Step:
    return lambda i: api.post("runs/search", search_body(experiment_id, i))[1]


def populate(api: Api, experiment_id: str, dataset: Sequence[SearchRun], label: str) -> float:
    """Create the search experiment's runs (not measured); return seconds taken."""
    t0 = time.perf_counter()
    tick = max(1, len(dataset) // 10)
    for j, run in enumerate(dataset):
        run_id, _ = api.create_run(create_run_body(experiment_id, run.name, j))
        api.post("runs/log-batch", populate_body(run_id, run, j))
        if (j + 1) % tick == 0 or j + 1 == len(dataset):
            elapsed = time.perf_counter() - t0
            eta = elapsed / (j + 1) * (len(dataset) - j - 1)
            print(
                f"  [{label}] populate {j + 1}/{len(dataset)} runs, {elapsed:.0f}s elapsed, ~{eta:.0f}s left",
                flush=True,
            )
    return time.perf_counter() - t0


def verify_search(api: Api, experiment_id: str, dataset: Sequence[SearchRun]) -> dict[str, bool]:
    """Compare a few searches against the locally computed top 100 (also warms the route)."""
    ok = {}
    for i in range(3):
        resp, _ = api.post("runs/search", search_body(experiment_id, i))
        got = returned_run_names(resp.json())
        ok[str(SEARCH_THRESHOLDS[i])] = got == expected_search(dataset, SEARCH_THRESHOLDS[i])
    return ok


def check_history(api: Api, run_id: str, key: str, expected: int) -> str:
    """Soft check that a run's metric history has ``expected`` points (extra, not measured)."""
    status, payload = api.get_soft("metrics/get-history", {"run_id": run_id, "metric_key": key})
    if status != 200 or payload is None:
        return f"skipped (HTTP {status})"
    got = len(payload.get("metrics", []))
    return "ok" if got == expected else f"MISMATCH: {got} points, expected {expected}"


def idle_cpu_ms_per_s(pid: int, seconds: float) -> float:
    c0 = tree_cpu_seconds(pid)
    time.sleep(seconds)
    return 1000.0 * (tree_cpu_seconds(pid) - c0) / seconds


# ------------------------------------------------------------------------------- per-server run


def _log_op(label: str, op: OpResult) -> None:
    per_window = ", ".join(f"{w.cpu_ms_per_op:.3g}" for w in op.windows)
    print(
        f"  [{label}] {op.name}: {op.cpu_ms_per_op:.4g} ms CPU/op, {op.ops_per_s:.4g} ops/s "
        f"(windows: {[w.ops for w in op.windows]} ops; ms CPU/op {per_window}; "
        f"other load {op.other_load:.2f} cores)",
        flush=True,
    )


def run_ops(api: Api, pid: int, cfg: Config, dataset: Sequence[SearchRun], res: ServerResult) -> None:
    def cpu() -> float:
        return tree_cpu_seconds(pid)

    def measure(name: str, new_step: Callable[[], Step]) -> None:
        res.ops[name] = run_operation(name, new_step, cpu, cfg.specs[name], cfg.reps)
        _log_op(res.label, res.ops[name])

    exp_create = api.create_experiment("bench-create")
    measure("create_run", lambda: create_run_step(api, exp_create))

    exp_log = api.create_experiment("bench-log")
    metric_runs = FreshRuns(api, exp_log, "log-metric")
    measure("log_metric", log_metric_step(api, metric_runs))
    batch_runs = FreshRuns(api, exp_log, "log-batch")
    measure("log_batch", log_batch_step(api, batch_runs))

    exp_search = api.create_experiment("bench-search")
    populate(api, exp_search, dataset, res.label)
    res.search_ok = verify_search(api, exp_search, dataset)
    measure("search_runs", lambda: search_step(api, exp_search))

    last_batches = res.ops["log_batch"].windows[-1].ops
    res.checks["log_batch_history"] = check_history(api, batch_runs.run_ids[-1], "m0", 100 * last_batches)
    res.checks["log_metric_history"] = check_history(
        api, metric_runs.run_ids[-1], "loss", res.ops["log_metric"].windows[-1].ops
    )
    res.idle_cpu_ms_per_s = idle_cpu_ms_per_s(pid, cfg.idle_seconds)


def bench_server(server: Server, cfg: Config, dataset: Sequence[SearchRun]) -> ServerResult:
    res = ServerResult(server.label, list(server.argv))
    print(f"\n== {server.label}: {shlex.join(server.argv)}", flush=True)
    server.start()
    try:
        ready = server.base_url + API_PREFIX + "experiments/search"
        server.wait_ready(answers_200("POST", ready, json={"max_results": 1}), READY_TIMEOUT_S)
        res.startup_s = server.startup_s
        res.settle_s = server.wait_quiet()
        res.processes = tree_size(server.pid)
        print(
            f"  [{server.label}] ready in {res.startup_s:.1f}s, quiet {res.settle_s:.1f}s later; "
            f"pid {server.pid}, {res.processes} processes in its tree, "
            f"load avg {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        api = Api(server.base_url)
        try:
            run_ops(api, server.pid, cfg, dataset, res)
        finally:
            api.close()
    except BenchError:
        print(f"server log tail:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return res


# ------------------------------------------------------------------------------- server commands


def mlflow_argv(cli: Path, data: Path, port: int) -> list[str]:
    return [
        str(cli), "server",
        "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
        "--default-artifact-root", str(data / "art"),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def make_server(label: str, args: argparse.Namespace, mlflow_cli: Path | None, root: Path) -> Server:
    data = root / label
    data.mkdir(parents=True)
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    if label == "mlflow" or args.loopml_as_mlflow:
        assert mlflow_cli is not None
        argv = mlflow_argv(mlflow_cli, data, port)
    else:
        env["LOOPML_HOME"] = str(data / "loopml")
        fields = {"repo": str(ROOT), "host": HOST, "port": port, "home": env["LOOPML_HOME"]}
        argv = shlex.split(args.loopml_cmd.format(**fields))
    return Server(label, argv, env, data / "server.log", port)


# ------------------------------------------------------------------------------------- reporting


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


@dataclass(frozen=True)
class TargetRow:
    op: str
    label: str
    target_ratio: float
    mlflow_cpu_ms: float | None
    loopml_cpu_ms: float | None
    mlflow_ops_s: float | None
    loopml_ops_s: float | None
    ratio: float | None
    result: str


@dataclass(frozen=True)
class FloorRow:
    floor_cpu_ms: float
    loopml_cpu_ms: float | None
    multiple: float | None
    target_multiple: float
    result: str


def target_rows(results: dict[str, ServerResult], cfg: Config) -> list[TargetRow]:
    rows = []
    searches_ok = all(all(r.search_ok.values()) for r in results.values())
    for key, label, target in TARGETS:
        m = results["mlflow"].ops[key] if "mlflow" in results else None
        lo = results["loopml"].ops[key] if "loopml" in results else None
        ratio = m.cpu_ms_per_op / lo.cpu_ms_per_op if m and lo and lo.cpu_ms_per_op > 0 else None
        if m is None or lo is None:
            verdict = "n/a"
        else:
            verdict = "PASS" if ratio is not None and ratio >= target else "FAIL"
        if key == "search_runs" and not searches_ok:
            verdict = "INVALID (wrong search results)"
        rows.append(TargetRow(
            op=key,
            label=f"{label} of {cfg.search_runs} runs" if key == "search_runs" else label,
            target_ratio=target,
            mlflow_cpu_ms=m.cpu_ms_per_op if m else None,
            loopml_cpu_ms=lo.cpu_ms_per_op if lo else None,
            mlflow_ops_s=m.ops_per_s if m else None,
            loopml_ops_s=lo.ops_per_s if lo else None,
            ratio=ratio,
            result=verdict,
        ))  # fmt: skip
    return rows


def floor_row(results: dict[str, ServerResult], floor: OpResult) -> FloorRow:
    loop = results["loopml"].ops["log_batch"].cpu_ms_per_op if "loopml" in results else None
    mult = loop / floor.cpu_ms_per_op if loop is not None else None
    verdict = "n/a" if mult is None else ("PASS" if mult <= FLOOR_TARGET else "FAIL")
    return FloorRow(floor.cpu_ms_per_op, loop, mult, FLOOR_TARGET, verdict)


def print_report(rows: list[TargetRow], floor: FloorRow, substituted: bool) -> None:
    loop = "loopml*" if substituted else "loopml"
    head = (
        f"{'operation':<38} {'mlflow ms CPU/op':>16} {loop + ' ms CPU/op':>17} {'ratio':>7} "
        f"{'mlflow ops/s':>12} {loop + ' ops/s':>13} {'target':>7}  result"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r.label:<38} {_fmt(r.mlflow_cpu_ms):>16} {_fmt(r.loopml_cpu_ms):>17} "
            f"{_fmt(r.ratio, '.1f'):>7} {_fmt(r.mlflow_ops_s):>12} {_fmt(r.loopml_ops_s):>13} "
            f"{'>=' + format(r.target_ratio, 'g') + 'x':>7}  {r.result}"
        )
    floor_text = (
        "\nfloor: raw SQLite executemany of the same 1000 rows (WAL, 1 txn/batch): "
        f"{_fmt(floor.floor_cpu_ms)} ms CPU/batch"
    )
    if floor.loopml_cpu_ms is not None:
        floor_text += (
            f"; loopml (a) {_fmt(floor.loopml_cpu_ms)} ms = {_fmt(floor.multiple, '.2f')}x floor "
            f"(target <= {FLOOR_TARGET:g}x): {floor.result}"
        )
    print(floor_text)
    if substituted:
        print("* loopml was substituted by mlflow (--loopml-as-mlflow): harness test only")


def print_server_notes(results: dict[str, ServerResult]) -> None:
    for r in results.values():
        print(
            f"{r.label}: startup {r.startup_s:.1f}s, {r.processes} processes, idle CPU "
            f"{r.idle_cpu_ms_per_s:.1f} ms/s, search results correct: {r.search_ok}, "
            f"checks: {r.checks}"
        )


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2,000 search runs, 3 short windows")
    p.add_argument("--only", choices=SERVERS, help="benchmark only this server")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--reps", type=int, help="measured windows per operation (default 5, quick 3)")
    p.add_argument("--search-runs", type=int, help="runs in the search experiment")
    p.add_argument(
        "--loopml-cmd",
        default=os.environ.get("LOOPML_BENCH_CMD", DEFAULT_LOOPML_CMD),
        help="loopml server command; {repo} {host} {port} {home} are substituted "
        "(env LOOPML_BENCH_CMD; default: %(default)s)",
    )
    p.add_argument(
        "--loopml-as-mlflow",
        action="store_true",
        default=os.environ.get("LOOPML_BENCH_AS_MLFLOW") == "1",
        help="run mlflow in loopml's place, to test the harness (env LOOPML_BENCH_AS_MLFLOW=1)",
    )
    p.add_argument("--mlflow-venv", type=Path, default=BENCH_DIR / "mlflow-venv")
    p.add_argument("--keep-data", action="store_true", help="keep databases and server logs")
    p.add_argument("--fail-on-target", action="store_true", help="exit 1 if any target fails")
    return p.parse_args(argv)  # fmt: skip


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args.quick, args.reps, args.search_runs)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    labels = [args.only] if args.only else list(SERVERS)
    need_mlflow = "mlflow" in labels or args.loopml_as_mlflow
    BENCH_DIR.mkdir(exist_ok=True)
    mlflow_cli = None
    if need_mlflow:
        pin = ("mlflow", MLFLOW_VERSION)
        mlflow_cli = ensure_venv(args.mlflow_venv, [f"mlflow=={MLFLOW_VERSION}"], pin).with_name("mlflow")

    mlflow_version = venv_package_version(args.mlflow_venv, "mlflow") if need_mlflow else None
    info = machine_info(mlflow=mlflow_version or "n/a")
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    print(f"command: {command}\nmachine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"config: quick={cfg.quick} reps={cfg.reps} search_runs={cfg.search_runs}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_DIR))
    try:
        floor = measure_floor(root / "floor.db", cfg.floor, cfg.reps)
        _log_op("floor", floor)
        dataset = search_dataset(cfg.search_runs)
        results: dict[str, ServerResult] = {}
        for label in labels:
            server = make_server(label, args, mlflow_cli, root)
            results[label] = bench_server(server, cfg, dataset)
    except BenchError as e:
        print(f"\nBENCHMARK ABORTED: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep_data:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    rows = target_rows(results, cfg)
    frow = floor_row(results, floor)
    print_report(rows, frow, args.loopml_as_mlflow and "loopml" in labels)
    print_server_notes(results)
    if args.json:
        write_json(args.json, {
            "command": command, "machine": info, "quick": cfg.quick, "reps": cfg.reps,
            "search_runs": cfg.search_runs, "loopml_substituted_by_mlflow": args.loopml_as_mlflow,
            "targets": [asdict(r) for r in rows], "floor": asdict(frow) | floor.to_json(),
            "servers": {k: v.to_json() for k, v in results.items()},
        })  # fmt: skip
        print(f"results written to {args.json}")
    failed = any(res not in ("PASS", "n/a") for res in [*(r.result for r in rows), frow.result])
    return 1 if args.fail_on_target and failed else 0


if __name__ == "__main__":
    sys.exit(main())
