"""Online serving benchmark: ``loopml serve`` vs ``mlflow models serve`` vs a FastAPI floor.

Method
------
Two scikit-learn models are fitted once on a seeded 5,000 x 20 float64 matrix: a
LogisticRegression (predict is tens of microseconds: the server's own overhead dominates) and
a 50-tree RandomForest (predict of one row costs milliseconds, nearly as much as of 64 rows).
The same fitted objects are logged with ``loopml.models.log_model`` into a temporary
``LOOPML_HOME`` and with ``mlflow.sklearn.log_model`` into a temporary MLflow store (the peer
venv ``.bench/mlflow-venv``), and pickled with joblib for the floor. Three servers, each alone
on the machine, one process / one worker, on 127.0.0.1:

- floor: a minimal FastAPI app under the same uvicorn as loopml (``_floor_app.py``): orjson
  parse of ``{"inputs": [[...]]}`` into NumPy, ``model.predict``, ``{"predictions": [...]}``;
- ``loopml serve runs:/RUN/MODEL`` (defaults: prediction log on, no batching);
- ``mlflow models serve -m URI --env-manager local``.

Every server gets the same bodies on its MLflow-style ``POST /invocations``: ``{"inputs":
[[...20 floats...]]}`` of 1 and of 100 rows (a tensor input for both loopml's and MLflow's
signature, which were inferred from a NumPy example). Answers are checked against the
predictions computed locally before any measurement.

Load comes from ``wrk`` (one thread, C keep-alive connections, closed loop), pinned to one core
with ``taskset`` while the server tree is pinned to the other. Per case: a warm-up run, then
several windows (one ``wrk`` run each). Server CPU of a window is the change of
utime+stime(+cutime+cstime) of the server's process tree from /proc/PID/stat; CPU per request
is that over the requests ``wrk`` completed. Reported figures are medians over windows of
server CPU ms/request, requests/s and wrk's p50/p99 latency. CPU busy on the machine but used by
neither the server nor wrk is shown as "other" (cores), with the load average, so that a noisy
run can be recognised. Every server gets ``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1``.

Micro-batching: ``loopml serve`` of the RandomForest without and with ``--max-batch-size 64
--max-latency-ms 5`` under 64 connections sending 1-row requests (the floor at 64 is shown too).

Targets: loopml CPU per 1-row LogisticRegression request <= 1.3x the floor; batching >= 3x the
unbatched throughput at 64 connections with p99 <= max_latency_ms + 5 ms. Note that with 64
closed-loop clients p99 cannot be below 64 / throughput (Little's law), which is printed too.

Usage: ``.venv/bin/python bench/serving/run.py [--quick] [--json PATH] [--no-mlflow]
[--mlflow-venv DIR]`` (the peer's venv, default ``.bench/mlflow-venv``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import (
    BENCH_DIR,
    HOST,
    PINS,
    ROOT,
    BenchError,
    Server,
    free_port,
    peer_venv,
    pinned,
    require_venv,
    tree_size,
    write_json,
)
from _load import Result, Wrk

HERE = Path(__file__).resolve().parent
BIN = ROOT / ".venv" / "bin"
MODELS = ("logreg", "forest")
ROWS = (1, 100)
CONNECTIONS = 16
BATCH_CONNECTIONS = 64
BATCH_MODEL = "forest"
FLOOR, LOOPML, BATCHED, MLFLOW = (
    "floor (FastAPI)",
    "loopml serve",
    "loopml serve batched",
    "mlflow models serve",
)


@dataclass(frozen=True)
class Plan:
    reps: int
    window_s: int  # wrk takes whole seconds
    warmup_s: int


class ModelServer(Server):
    """A model server; requests go to its MLflow-style scoring route."""

    @property
    def url(self) -> str:
        return self.base_url + "/invocations"


@dataclass
class Setup:
    work: Path
    mlflow_venv: Path
    env: dict[str, str]
    loopml_uris: dict[str, str]
    mlflow_uris: dict[str, str] | None
    bodies: dict[int, bytes]
    expected: dict[str, dict[str, list[int]]]
    server_cpu: int | None


def _setup(work: Path, mlflow_venv: Path | None, server_cpu: int | None) -> Setup:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    env |= PINS | {"LOOPML_HOME": str(work / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    models = str(HERE / "_setup_models.py")
    _check([_started([str(BIN / "python"), models, "fit", str(work)], env, work)])
    loggers = [_started([str(BIN / "python"), models, "log", str(work)], env, work)]
    if mlflow_venv is not None:  # both loggers at once: each spends seconds importing its stack
        python = require_venv(mlflow_venv, "make bench (bench/tracking/run.py) creates it")
        loggers.append(_started([str(python), str(HERE / "_setup_mlflow.py"), str(work)], env, work))
    uris = [json.loads(out.splitlines()[-1]) for out in _check(loggers)]
    bodies = {rows: (work / f"body-{rows}.json").read_bytes() for rows in ROWS}
    expected = json.loads((work / "expected.json").read_text())
    mlflow_uris = uris[1] if mlflow_venv is not None else None
    return Setup(work, mlflow_venv or Path(), env, uris[0], mlflow_uris, bodies, expected, server_cpu)


def _started(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check(procs: list[subprocess.Popen[str]]) -> list[str]:
    """Wait for every process; their stdout, or BenchError with the first failure's output."""
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(map(str, proc.args))} failed:\n{out[-2000:]}\n{err[-3000:]}")
    return [out.strip() for out, _ in outs]


def _server(s: Setup, kind: str, model: str, batch: tuple[int, float]) -> ModelServer:
    port = free_port()
    env, cwd = dict(s.env), s.work
    if kind == FLOOR:
        env["FLOOR_MODEL"] = str(s.work / f"{model}.joblib")
        argv = [str(BIN / "python"), "-m", "uvicorn", "_floor_app:app", "--app-dir", str(HERE)]
        argv += [
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    elif kind in (LOOPML, BATCHED):
        argv = [str(BIN / "loopml"), "serve", s.loopml_uris[model], "--host", HOST, "--port", str(port)]
        if kind == BATCHED:
            argv += ["--max-batch-size", str(batch[0]), "--max-latency-ms", f"{batch[1]:g}"]
    else:
        assert s.mlflow_uris is not None
        # mlflow execs `uvicorn` by name: the one of its own venv must come first on PATH.
        env["PATH"] = f"{s.mlflow_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        argv = [str(s.mlflow_venv / "bin" / "mlflow"), "models", "serve", "-m", s.mlflow_uris[model]]
        argv += ["--env-manager", "local", "--host", HOST, "--port", str(port)]
    label = f"{kind} [{model}]"
    log = s.work / "logs" / f"{kind.replace(' ', '_')}-{model}.log"
    return ModelServer(label, pinned(argv, s.server_cpu), env, log, port, cwd)


@contextmanager
def _running(server: ModelServer, s: Setup, model: str) -> Iterator[ModelServer]:
    with server:
        server.wait_ready(_scores(server, s.bodies[1]), poll_s=0.2, client_timeout_s=10.0)
        _verify(server, s, model)
        server.wait_quiet(interval_s=0.25, timeout_s=30.0)
        yield server


def _scores(server: ModelServer, body: bytes) -> Callable[[httpx.Client], httpx.Response | None]:
    """Readiness probe: the answer to ``body`` once it is a 200; a 4xx will not get better."""

    def probe(client: httpx.Client) -> httpx.Response | None:
        res = client.post(server.url, content=body, headers={"content-type": "application/json"})
        if res.status_code == 200:
            return res
        if res.status_code < 500:
            raise BenchError(f"{server.label} answered {res.status_code}: {res.text[:500]}")
        return None

    return probe


def _verify(server: ModelServer, s: Setup, model: str) -> None:
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        for rows, body in s.bodies.items():
            res = client.post(server.url, content=body, headers={"content-type": "application/json"})
            got = res.json().get("predictions") if res.status_code == 200 else res.text
            if got != s.expected[model][str(rows)]:
                raise BenchError(f"{server.label}: wrong answer for {rows} rows: {str(got)[:300]}")


def run(s: Setup, wrk: Wrk, plan: Plan, batch: tuple[int, float], log: list[str]) -> list[Result]:
    scripts = {rows: wrk.script(f"req-{rows}", body) for rows, body in s.bodies.items()}
    results: list[Result] = []
    kinds = [FLOOR, LOOPML] + ([MLFLOW] if s.mlflow_uris else [])
    for model in MODELS:
        for kind in [*kinds, BATCHED] if model == BATCH_MODEL else kinds:
            cases = [] if kind == BATCHED else [(rows, CONNECTIONS) for rows in ROWS]
            if model == BATCH_MODEL and kind in (FLOOR, LOOPML, BATCHED):
                cases.append((1, BATCH_CONNECTIONS))
            with _running(_server(s, kind, model, batch), s, model) as server:
                log.append(
                    f"{server.label}: ready in {server.startup_s:.1f}s, {tree_size(server.pid)} process(es)"
                )
                print(log[-1], flush=True)
                for rows, conns in cases:
                    res = wrk.measure(
                        Result(kind, model, rows, conns),
                        server.pid,
                        server.url,
                        scripts[rows],
                        warmup_s=plan.warmup_s,
                        window_s=plan.window_s,
                        reps=plan.reps,
                    )
                    results.append(res)
                    print(
                        f"  {rows:>3} row(s) x {conns} conns: {res.cpu_ms:.3f} ms CPU/req, "
                        f"{res.rps:,.0f} req/s, "
                        f"p99 {res.p99_ms:.1f} ms",
                        flush=True,
                    )
    return results


def _find(results: list[Result], server: str, model: str, rows: int, conns: int) -> Result | None:
    return next(
        (r for r in results if (r.server, r.model, r.rows, r.connections) == (server, model, rows, conns)),
        None,
    )


def report(results: list[Result], batch: tuple[int, float]) -> dict[str, object]:
    print()
    print("| model | rows | conns | server | CPU ms/req | x floor | req/s | p50 ms | p99 ms | other cores |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        floor = _find(results, FLOOR, r.model, r.rows, r.connections)
        ratio = f"{r.cpu_ms / floor.cpu_ms:.2f}x" if floor else "-"
        print(
            f"| {r.model} | {r.rows} | {r.connections} | {r.server} | {r.cpu_ms:.3f} | {ratio} | "
            f"{r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.other_cores:.2f} |"
        )
    targets: dict[str, object] = {}
    print()
    floor, ours, peer = (_find(results, k, "logreg", 1, CONNECTIONS) for k in (FLOOR, LOOPML, MLFLOW))
    if floor and ours:
        ratio = ours.cpu_ms / floor.cpu_ms
        ok = ratio <= 1.3
        targets["cpu_vs_floor"] = {"ratio": ratio, "target": 1.3, "pass": ok}
        print(
            f"CPU per 1-row LogisticRegression request: loopml {ours.cpu_ms:.3f} ms, "
            f"floor {floor.cpu_ms:.3f} ms "
            f"-> {ratio:.2f}x the floor (target <= 1.3x): {'PASS' if ok else 'FAIL'}"
        )
        if peer:
            targets["mlflow"] = {"cpu_ms": peer.cpu_ms, "x_floor": peer.cpu_ms / floor.cpu_ms}
            print(
                f"  mlflow models serve: {peer.cpu_ms:.3f} ms = {peer.cpu_ms / floor.cpu_ms:.2f}x the floor, "
                f"{peer.cpu_ms / ours.cpu_ms:.2f}x loopml's CPU; throughput loopml/mlflow "
                f"{ours.rps / peer.rps:.2f}x"
            )
    off, on = (_find(results, k, BATCH_MODEL, 1, BATCH_CONNECTIONS) for k in (LOOPML, BATCHED))
    if off and on:
        speedup, limit = on.rps / off.rps, batch[1] + 5.0
        little = 1000.0 * BATCH_CONNECTIONS / on.rps
        targets["batching"] = {
            "throughput_ratio": speedup,
            "p99_ms": on.p99_ms,
            "p99_limit_ms": limit,
            "littles_law_min_ms": little,
            "pass_throughput": speedup >= 3.0,
            "pass_p99": on.p99_ms <= limit,
        }
        print(
            f"Micro-batching ({BATCH_MODEL}, 1-row requests, {BATCH_CONNECTIONS} connections, max batch "
            f"{batch[0]}, {batch[1]:g} ms): {on.rps:,.0f} vs {off.rps:,.0f} req/s = {speedup:.2f}x "
            f"(target >= 3x): {'PASS' if speedup >= 3 else 'FAIL'}"
        )
        print(
            f"  p99 {on.p99_ms:.1f} ms batched vs {off.p99_ms:.1f} ms unbatched (target <= {limit:g} ms): "
            f"{'PASS' if on.p99_ms <= limit else 'FAIL'}; a closed loop of {BATCH_CONNECTIONS} clients "
            f"at this throughput has mean latency >= {little:.1f} ms (Little's law)"
        )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 windows of 1 s (whole run ~2.5 min)")
    parser.add_argument("--json", type=Path, help="write all figures and windows here")
    parser.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    parser.add_argument("--mlflow-venv", type=Path, default=peer_venv("mlflow"), help="default: %(default)s")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    args = parser.parse_args()
    plan = Plan(3, 1, 1) if args.quick else Plan(5, 4, 2)
    batch = (args.max_batch_size, args.max_latency_ms)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 and shutil.which("taskset") else (None, None)
    signal.signal(signal.SIGTERM, _interrupt)  # so the servers are stopped by the finally blocks

    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serving-", dir=BENCH_DIR))
    log: list[str] = []
    load0 = os.getloadavg()
    try:
        print(
            f"{len(cpus)} CPUs; server on CPU {server_cpu}, wrk on CPU {load_cpu}; loadavg {_fmt(load0)}; "
            f"{plan.reps} windows x {plan.window_s:g} s per case",
            flush=True,
        )
        t0 = time.monotonic()
        setup = _setup(work, None if args.no_mlflow else args.mlflow_venv.absolute(), server_cpu)
        print(f"models fitted and logged in {time.monotonic() - t0:.1f}s", flush=True)
        results = run(setup, Wrk(work, load_cpu), plan, batch, log)
        load1 = os.getloadavg()
        targets = report(results, batch)
        print(
            f"\nloadavg {_fmt(load0)} at start, {_fmt(load1)} at end; whole run {time.monotonic() - t0:.0f}s"
        )
        if args.json:
            doc = {
                "plan": vars(plan) | {"connections": CONNECTIONS, "batch_connections": BATCH_CONNECTIONS},
                "cpus": {"server": server_cpu, "load": load_cpu},
                "loadavg": {"start": load0, "end": load1},
                "servers": log,
                "results": [r.to_json() for r in results],
                "targets": targets,
            }
            write_json(args.json, doc)
    except BenchError as e:
        sys.exit(f"benchmark failed: {e}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _fmt(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    main()
