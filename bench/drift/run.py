"""Drift benchmark: loopml's full drift computation vs Evidently's DataDriftPreset vs a plain
NumPy floor, on the same synthetic data (20 numeric + 5 categorical columns, planted shifts in 6).

Each contender runs in its own child process (Evidently in ``.bench/evidently-venv``, made once
with ``evidently==0.7.23 "pandas<3"`` by ``uv``, or ``python3 -m venv`` + pip, when missing); the
child reports the CPU seconds of the computation alone, the parent reads the child's peak RSS
from ``os.wait4`` (the data is written by another process, so the parent's own peak stays small
and cannot inflate it).  Verdicts on the planted columns must agree.  Targets at 1M rows: >= 20x
less CPU than Evidently, <= 1/3 of its peak RSS, within 1.5x of the floor.

    .venv/bin/python bench/drift/run.py --quick      # 100k rows per side only
    .venv/bin/python bench/drift/run.py --json out.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import ROOT, ensure_venv, peer_venv, pinned_env, run_child, write_json

CHILD = Path(__file__).with_name("children.py")
EVIDENTLY_VENV = peer_venv("evidently")
EVIDENTLY = EVIDENTLY_VENV / "bin" / "python"
PLANTED = {"n0", "n1", "n2", "n3", "c0", "c1"}
ENV = pinned_env()


def make_data(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    cats = np.array([f"cat_{i}" for i in range(8)])
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    for i in range(20):
        ref[f"n{i}"] = rng.normal(i, 1.0 + i / 10, n)
        cur[f"n{i}"] = rng.normal(i, 1.0 + i / 10, n)
    cur["n0"] = rng.normal(0.5, 1.0, n)  # mean shift
    cur["n1"] = rng.normal(1.0, 1.1 * 1.6, n)  # scale shift
    cur["n2"] = rng.normal(2.0 + 0.4 * 1.2, 1.2, n)  # smaller mean shift
    cur["n3"] = np.where(rng.random(n) < 0.3, rng.normal(8.0, 1.0, n), rng.normal(3.0, 1.3, n))  # mixture
    for i in range(5):
        ref[f"c{i}"] = rng.choice(cats, n)
        cur[f"c{i}"] = rng.choice(cats, n)
    cur["c0"] = rng.choice(cats, n, p=[0.4] + [0.6 / 7] * 7)  # one category grows
    cur["c1"] = rng.choice(np.append(cats, "new"), n, p=[0.7 / 8] * 8 + [0.3])  # unseen category
    return pa.table(ref), pa.table(cur)


def write_data(n: int, ref_path: Path, cur_path: Path) -> None:
    ref, cur = make_data(n)
    pq.write_table(ref, ref_path)
    pq.write_table(cur, cur_path)


def contender(cmd: list[str]) -> dict[str, object]:
    """Run one contender's child; its JSON answer plus its peak RSS and whole-process CPU."""
    done = run_child(cmd, env=ENV, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[1:3]} failed with exit code {done.returncode}")
    result = done.last_json()
    result["peak_rss_mb"] = done.peak_rss_mb
    result["child_cpu"] = done.cpu_s
    return result


def bench_size(n: int, tmp: Path, with_evidently: bool) -> dict[str, object]:
    rp, cp = tmp / f"ref_{n}.parquet", tmp / f"cur_{n}.parquet"
    # The files are written by a process of their own: on Linux a child's ru_maxrss starts from
    # the high-water mark of the process that spawned it (exec keeps the old mm's peak), so the
    # parent must never hold the data or every contender's peak would read at least its size.
    writer = multiprocessing.get_context("spawn").Process(target=write_data, args=(n, rp, cp))
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise SystemExit(f"writing the {n:,}-row data failed with exit code {writer.exitcode}")
    row: dict[str, object] = {"rows": n}
    row["loopml"] = contender([sys.executable, str(CHILD), "loopml", str(rp), str(cp)])
    row["floor"] = contender([sys.executable, str(CHILD), "floor", str(rp), str(cp)])
    if with_evidently:
        row["evidently"] = contender([str(EVIDENTLY), str(CHILD), "evidently", str(rp), str(cp)])
    return row


def report(row: dict[str, object]) -> None:
    lm, fl = row["loopml"], row["floor"]
    assert isinstance(lm, dict) and isinstance(fl, dict)
    print(f"\n{row['rows']:,} rows per side, 25 columns (planted shifts in {sorted(PLANTED)})")
    print(f"{'':10} {'cpu s':>8} {'peak MB':>9}  drifted")
    for name in ("loopml", "floor", "evidently"):
        r = row.get(name)
        if isinstance(r, dict):
            print(f"{name:10} {r['cpu']:8.2f} {r['peak_rss_mb']:9.0f}  {r['drifted']}")
    print(f"loopml / floor CPU: {lm['cpu'] / fl['cpu']:.2f}x (target <= 1.5x)")
    print(f"loopml verdicts == planted: {set(lm['drifted']) == PLANTED}")  # type: ignore[arg-type]
    ev = row.get("evidently")
    if isinstance(ev, dict):
        print(f"Evidently / loopml CPU: {ev['cpu'] / lm['cpu']:.1f}x (target >= 20x)")
        print(f"loopml / Evidently peak RSS: {lm['peak_rss_mb'] / ev['peak_rss_mb']:.2f} (target <= 0.33)")
        same = set(ev["drifted"]) & PLANTED == set(lm["drifted"]) & PLANTED  # type: ignore[operator]
        print(f"same verdicts on the planted columns: {same}")


EVIDENTLY_PIN = ("evidently==0.7.23", "pandas<3")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100k rows per side only")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--no-evidently", action="store_true", help="skip the peer (no venv needed)")
    args = parser.parse_args()
    with_evidently = not args.no_evidently
    if with_evidently:  # the peer's own venv (gitignored), created once; pandas<3 as Evidently needs
        ensure_venv(EVIDENTLY_VENV, EVIDENTLY_PIN)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loopml-drift-") as tmp:
        for n in (100_000,) if args.quick else (100_000, 1_000_000):
            rows.append(bench_size(n, Path(tmp), with_evidently))
            report(rows[-1])
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
