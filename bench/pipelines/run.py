"""Pipelines benchmark: step overhead vs a plain call and vs Metaflow, fan-out on a process pool
and on Ray, batch scoring with Ray vs one process, and ``make demo`` end to end.

Method (every contender in a FRESH child process, each loopml one with its own LOOPML_HOME):

- **step overhead** (``_loopml.py steps``): pipelines of 1 and N no-op steps (``x + 1``)
  run in process; the marginal cost of a step is ``(t(N) - t(1)) / (N - 1)``, medians of
  ``--repeats`` runs after a warm-up run (imports, database and experiment are not a step's
  cost). Uncached: ``cache=False``; cached: every step hits the cache (its outputs verified).
  The floor is a plain Python call of the same function.
- **Metaflow** (``_metaflow.py`` in ``.bench/metaflow-venv``, created with uv when missing):
  ``python flow.py run`` of linear flows of 2 and M steps on its local datastore and
  metadata; marginal cost ``(t(M) - t(2)) / (M - 2)``. Metaflow runs every step in a new
  process, which is what a local user pays.
- **fan-out**: ``total(square.map(range(B)))`` uncached, in process, on ``process:2`` and on
  ``ray:2`` (a private local Ray started and stopped by the run: its start-up is included).
- **batch scoring**: ``loopml.serving.batch.predict_file`` of R synthetic card transactions
  (Parquet, row groups of 65,536) with a histogram-gradient-boosting fraud model, on one
  process (``local``) and on Ray with 2 workers; both must find the same positives.
- **demo**: ``python -m loopml.demo`` (what ``make demo`` runs) from an empty LOOPML_HOME.

Targets (issue 7): uncached step < 20 ms, cached step < 5 ms, demo < 180 s.

    .venv/bin/python bench/pipelines/run.py                       # everything, full size
    .venv/bin/python bench/pipelines/run.py --small               # a quick run
    .venv/bin/python bench/pipelines/run.py --skip metaflow ray batch demo --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import ROOT, BenchError, ensure_venv, peer_venv, pinned_env, write_json

HERE = Path(__file__).resolve().parent
MF_VENV = peer_venv("metaflow")
MF_PY = MF_VENV / "bin" / "python"
PY = sys.executable
TARGETS = {"uncached_step_ms": 20.0, "cached_step_ms": 5.0, "demo_s": 180.0}
PARTS = ("steps", "metaflow", "fanout", "ray", "batch", "demo")


def child(
    args: list[str], *, python: str = PY, timeout: float = 3600, home: Path | None = None
) -> dict[str, Any]:
    """Run a bench child; return the JSON it printed after ``RESULT``."""
    env = pinned_env()
    env.pop("LOOPML_TRACKING_URI", None)
    env["LOOPML_HOME"] = str(home or Path(tempfile.mkdtemp(prefix="loopml-bench-")) / "home")
    done = subprocess.run([python, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def run_demo(timeout: float) -> dict[str, Any]:
    """``python -m loopml.demo`` from an empty LOOPML_HOME in an empty folder: wall seconds."""
    folder = Path(tempfile.mkdtemp(prefix="loopml-bench-demo-"))
    env = {**os.environ, "LOOPML_HOME": str(folder / ".loopml"), "COLUMNS": "120"}
    env.pop("LOOPML_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run(
        [PY, "-m", "loopml.demo"], env=env, cwd=folder, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "The loop in" not in done.stdout:
        raise BenchError(
            f"make demo failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    (folder / "demo.txt").write_text(done.stdout)
    return {"seconds": seconds, "transcript": str(folder / "demo.txt")}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }
    skip = set(args.skip)
    if "steps" not in skip:
        print(f"step overhead: {args.steps} no-op steps x {args.repeats} runs ...", flush=True)
        out["steps"] = child([str(HERE / "_loopml.py"), "steps", "--steps", str(args.steps),
                              "--repeats", str(args.repeats)])  # fmt: skip
    if "metaflow" not in skip:
        ensure_venv(MF_VENV, ["metaflow"])  # the latest Metaflow, once
        print(f"metaflow: flows of 2 and {args.mf_steps} steps ...", flush=True)
        out["metaflow"] = child(
            [
                str(HERE / "_metaflow.py"),
                "--steps",
                "2",
                str(args.mf_steps),
                "--repeats",
                str(args.mf_repeats),
            ],
            python=str(MF_PY),
        )
    executors = [e for e in ("inprocess", "process:2", "ray:2") if not (e == "ray:2" and "ray" in skip)]
    if "fanout" not in skip:
        out["fanout"] = {}
        for ex in executors:
            print(f"fan-out of {args.branches} branches on {ex} ...", flush=True)
            out["fanout"][ex] = child([str(HERE / "_loopml.py"), "fanout", "--branches", str(args.branches),
                                       "--executor", ex])  # fmt: skip
    if "batch" not in skip:
        out["batch"] = batch(args, ray="ray" not in skip)
    if "demo" not in skip:
        print("make demo (python -m loopml.demo) from an empty LOOPML_HOME ...", flush=True)
        out["demo"] = run_demo(args.demo_timeout)
    return out


def batch(args: argparse.Namespace, ray: bool) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="loopml-bench-batch-")) / "home"
    data = home.parent / "transactions.parquet"
    print(f"batch scoring: writing {args.rows:,} rows and a model ...", flush=True)
    setup = child([str(HERE / "_loopml.py"), "setup-batch", "--rows", str(args.rows), "--output", str(data)],
                  home=home)  # fmt: skip
    out: dict[str, Any] = {"rows": args.rows}
    for ex, workers in [("local", 1), *([("ray", 2)] if ray else [])]:
        print(f"batch scoring on {ex} ({workers} worker(s)) ...", flush=True)
        out[ex] = child([str(HERE / "_loopml.py"), "batch", "--model", setup["model"], "--input", str(data),
                         "--executor", ex, "--workers", str(workers)], home=home)  # fmt: skip
    if ray and out["ray"]["positives"] != out["local"]["positives"]:
        raise BenchError(f"Ray and one process disagree: {out['ray']} vs {out['local']}")
    return out


def verdict(value: float, target: float) -> str:
    return "PASS" if value < target else "FAIL"


def report(r: dict[str, Any]) -> list[str]:
    lines = [f"loopml pipelines benchmark ({r['cpus']} CPUs)"]
    checks: dict[str, str] = {}
    if "steps" in r:
        s = r["steps"]
        floor_ms, unc, cac = s["floor_call_s"] * 1e3, s["uncached_step_s"] * 1e3, s["cached_step_s"] * 1e3
        checks["uncached_step"] = verdict(unc, TARGETS["uncached_step_ms"])
        checks["cached_step"] = verdict(cac, TARGETS["cached_step_ms"])
        lines += [
            f"step overhead, in process ({s['steps']} steps, median of {s['repeats']} runs):",
            f"  plain function call (floor)   {floor_ms * 1e3:10.3f} us",
            f"  loopml step, uncached         {unc:10.2f} ms  ({unc / floor_ms:,.0f}x floor)  "
            f"target < {TARGETS['uncached_step_ms']:g} ms: {checks['uncached_step']}",
            f"  loopml step, cached           {cac:10.2f} ms  ({cac / floor_ms:,.0f}x floor)  "
            f"target < {TARGETS['cached_step_ms']:g} ms: {checks['cached_step']}",
            f"  whole run of 1 step: uncached {s['run_1_uncached_s'] * 1e3:.1f} ms, "
            f"cached {s['run_1_cached_s'] * 1e3:.1f} ms",
        ]
        if "metaflow" in r:
            m = r["metaflow"]
            mf = m["step_s"] * 1e3
            lines += [
                f"  Metaflow {m['version']} step, local run {mf:10.1f} ms  "
                f"(loopml uncached is {mf / unc:,.0f}x faster; a 2-step flow takes {m['run_small_s']:.1f} s)"
            ]
    if "fanout" in r:
        f = r["fanout"]
        base = f["inprocess"]["seconds"]
        lines.append(
            f"fan-out of {f['inprocess']['branches']} branches (map + sum, uncached, start-up included):"
        )
        for ex, v in f.items():
            lines.append(
                f"  {ex:<12} {v['seconds']:8.2f} s  {v['seconds'] / v['branches'] * 1e3:7.1f} ms/branch  "
                f"({v['seconds'] / base:.2f}x in-process)"
            )
    if "batch" in r:
        b = r["batch"]
        local = b["local"]
        lines.append(f"batch scoring of {b['rows']:,} rows (Parquet, fraud model):")
        lines.append(
            f"  one process    {local['seconds']:8.2f} s  {b['rows'] / local['seconds']:12,.0f} rows/s"
        )
        if "ray" in b:
            ray = b["ray"]
            lines.append(
                f"  Ray, 2 workers {ray['seconds']:8.2f} s  {b['rows'] / ray['seconds']:12,.0f} rows/s  "
                f"({local['seconds'] / ray['seconds']:.2f}x one process)"
            )
    if "demo" in r:
        checks["demo"] = verdict(r["demo"]["seconds"], TARGETS["demo_s"])
        lines.append(
            f"make demo end to end: {r['demo']['seconds']:.1f} s  "
            f"target < {TARGETS['demo_s']:g} s: {checks['demo']}"
        )
    r["checks"] = checks
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=50, help="no-op steps in the long chain")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mf-steps", type=int, default=7, help="steps of Metaflow's long flow")
    parser.add_argument("--mf-repeats", type=int, default=2)
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the batch-scoring file")
    parser.add_argument("--demo-timeout", type=float, default=900)
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--small", action="store_true", help="a quick run: 10 steps, 40 branches, 200k rows")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.small:
        args.steps, args.repeats, args.mf_steps, args.mf_repeats = 10, 3, 4, 1
        args.branches, args.rows = 40, 200_000
    results = measure(args)
    lines = report(results)
    print("\n".join(lines))
    if args.json:
        write_json(args.json, results)
    if "FAIL" in results["checks"].values():
        sys.exit(1)


if __name__ == "__main__":
    main()
