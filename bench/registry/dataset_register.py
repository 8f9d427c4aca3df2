"""Dataset registration benchmark: ``loopml.data`` register vs the floor of reading the file.

Method
------
A deterministic 1M-row x 25-column Parquet file is generated once under ``.bench/registry/``
(snappy, pyarrow defaults): 10 float64 columns (normal, lognormal, uniform, some with 1% nulls),
5 int64 columns, 5 low-cardinality string columns (8 to 200 categories), 2 booleans, 1 timestamp
column, 1 date column and 1 high-cardinality string id.

* floor: ``pyarrow.parquet.read_table`` of the file (all columns), the least any registration
  must do;
* loopml: ``LocalDataService.register`` of the same path: read, content hash, profile, Parquet
  snapshot into the content-addressed store and the metadata row, each time into a fresh
  ``LOOPML_HOME`` (the service and its database are created before the clock starts).

Each is run ``--repeat`` times after one warm-up; reported figures are medians of wall time and of
this process's CPU time (``time.process_time``), and MB/s = file size / wall time.  BLAS and
OpenMP threads are pinned to 1 (the machine is shared), pyarrow uses its default thread pool.
Target: registration within 3x of the read floor.

Usage: ``.venv/bin/python bench/registry/dataset_register.py [--quick] [--rows N] [--json F]``.
``--quick`` uses 3 repetitions instead of 7.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.config import Settings
from loopml.data.service import LocalDataService

ROOT = Path(__file__).resolve().parents[2] / ".bench" / "registry"


def generate(path: Path, rows: int) -> None:
    """The benchmark file: deterministic, written once per row count."""
    rng = np.random.default_rng(20240601)
    cols: dict[str, pa.Array] = {}
    for i in range(10):
        values = [rng.normal(i, 1 + i, rows), rng.lognormal(0, 1, rows), rng.uniform(-1, 1, rows)][i % 3]
        mask = rng.random(rows) < 0.01 if i % 4 == 0 else None
        cols[f"f{i}"] = pa.array(values, mask=mask)
    for i in range(5):
        cols[f"i{i}"] = pa.array(rng.integers(0, 10 ** (i + 2), rows))
    for i, k in enumerate((8, 20, 50, 100, 200)):
        categories = np.array([f"cat{i}_{j}" for j in range(k)])
        cols[f"s{i}"] = pa.array(categories[rng.zipf(1.5, rows) % k])
    cols["b0"] = pa.array(rng.random(rows) < 0.5)
    cols["b1"] = pa.array(rng.random(rows) < 0.05)
    cols["ts"] = pa.array(1_700_000_000_000 + rng.integers(0, 10**10, rows), pa.timestamp("ms"))
    cols["day"] = pa.array(rng.integers(18_000, 20_000, rows).astype(np.int32), pa.date32())
    cols["id"] = pa.array(np.char.add("u", np.arange(rows).astype(str)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp)
    tmp.replace(path)


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds) over ``repeat`` runs after one warm-up."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def measure_register(path: Path, repeat: int) -> tuple[float, float]:
    """Like :func:`measure`, but each run gets a fresh store and the clock covers ``register`` only."""
    walls, cpus = [], []
    for attempt in range(repeat + 1):  # the first run is the warm-up
        home = Path(tempfile.mkdtemp(dir=ROOT, prefix="home-"))
        svc = LocalDataService.from_settings(Settings.load(env={"LOOPML_HOME": str(home)}))
        try:
            w0, c0 = time.perf_counter(), time.process_time()
            svc.register("bench", path)
            if attempt:
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        finally:
            svc.close()
            shutil.rmtree(home, ignore_errors=True)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions instead of 7")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    path = ROOT / f"dataset_{args.rows}x25.parquet"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate(path, args.rows)
    size_mb = path.stat().st_size / 1e6
    memory_mb = pq.read_table(path).nbytes / 1e6
    floor_wall, floor_cpu = measure(lambda: pq.read_table(path), repeat)
    reg_wall, reg_cpu = measure_register(path, repeat)
    result = {
        "rows": args.rows,
        "columns": 25,
        "file_mb": round(size_mb, 1),
        "in_memory_mb": round(memory_mb, 1),
        "repeat": repeat,
        "floor_read": {"wall_s": floor_wall, "cpu_s": floor_cpu, "mb_per_s": size_mb / floor_wall},
        "loopml_register": {"wall_s": reg_wall, "cpu_s": reg_cpu, "mb_per_s": size_mb / reg_wall},
        "ratio_wall": reg_wall / floor_wall,
        "ratio_cpu": reg_cpu / floor_cpu,
        "target_ratio": 3.0,
    }
    print(f"file: {args.rows:,} rows x 25 columns, {size_mb:.1f} MB on disk, {memory_mb:.1f} MB in memory")
    print(f"{'':28}{'wall s':>9}{'cpu s':>9}{'MB/s':>9}")
    print(f"{'floor: pyarrow read_table':28}{floor_wall:9.3f}{floor_cpu:9.3f}{size_mb / floor_wall:9.1f}")
    print(f"{'loopml.data.register':28}{reg_wall:9.3f}{reg_cpu:9.3f}{size_mb / reg_wall:9.1f}")
    ratio_wall, ratio_cpu = reg_wall / floor_wall, reg_cpu / floor_cpu
    verdict = "meets" if ratio_wall <= 3.0 else "misses"
    print(f"ratio register/read: wall {ratio_wall:.2f}x, cpu {ratio_cpu:.2f}x ({verdict} the 3x target)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
