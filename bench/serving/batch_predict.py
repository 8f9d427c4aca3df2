"""Batch inference of a Parquet file: ``loopml predict`` against hand-written floors.

Method
------
A seeded table of R rows x 20 float features plus an id column is written as Parquet in
row groups of 65,536 rows. Two scikit-learn models are fitted on 5,000 seeded rows: a
LogisticRegression (predict is cheap: the job is I/O and Arrow <-> pandas conversion) and a
50-tree RandomForest (predict dominates). Each is logged with ``loopml.models.log_model``.

Per model, each variant runs in a fresh process (timed from spawn to exit, peak RSS of the
largest process from ``wait4``) and must write the same predictions:

- ``pandas``: the naive script: ``pd.read_parquet`` the whole file, ``predict``, append
  the column, ``to_parquet`` (one core, memory grows with the file);
- ``floor``: the streaming floor: ``pyarrow`` row group by row group, ``predict`` on the
  numpy features, ``ParquetWriter`` (one core, one row group in memory);
- ``loopml local``: ``loopml predict --executor local`` (one process, resumable parts);
- ``loopml process``: ``loopml predict --executor process --workers N`` (all cores).

Usage: ``.venv/bin/python bench/serving/batch_predict.py [--rows R] [--workers N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import pinned_env, run_child

PY = sys.executable
FEATURES = [f"f{i}" for i in range(20)]

SETUP = """
import sys, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
import loopml, loopml.models
rows, out = int(sys.argv[1]), sys.argv[2]
cols = [f"f{i}" for i in range(20)]
rng = np.random.default_rng(0)
train = pd.DataFrame(rng.normal(size=(5000, 20)), columns=cols)
y = (train["f0"] + train["f1"] * train["f2"] > 0).astype(int)
models = {"logreg": LogisticRegression(max_iter=500), "forest": RandomForestClassifier(50, random_state=0)}
with loopml.start_run(run_name="batch-bench", capture_env=False):
    for name, m in models.items():
        info = loopml.models.log_model(m.fit(train, y), name, input_example=train.head(3))
        print(name, info.model_uri)
data = pd.DataFrame(rng.normal(size=(rows, 20)), columns=cols)
data.insert(0, "id", np.arange(rows))
pq.write_table(pa.Table.from_pandas(data, preserve_index=False), out, row_group_size=65536)
"""

PANDAS = """
import sys, pandas as pd, loopml.models
model = loopml.models.load(sys.argv[1])
frame = pd.read_parquet(sys.argv[2])
frame["prediction"] = model.predict(frame[[f"f{i}" for i in range(20)]])
frame.to_parquet(sys.argv[3], index=False)
"""

FLOOR = """
import sys, pyarrow as pa, pyarrow.parquet as pq, loopml.models
model = loopml.models.load(sys.argv[1]).predictor
cols = [f"f{i}" for i in range(20)]
source, writer = pq.ParquetFile(sys.argv[2]), None
for rg in range(source.num_row_groups):
    table = source.read_row_group(rg)
    x = table.select(cols).to_pandas()
    table = table.append_column("prediction", pa.array(model.predict(x)))
    writer = writer or pq.ParquetWriter(sys.argv[3], table.schema)
    writer.write_table(table)
writer.close()
"""


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the largest process) of one fresh process."""
    start = time.perf_counter()
    done = run_child(cmd, env=env, capture=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, done.peak_rss_mb


def _same(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return bool(pq.read_table(a, columns=["prediction"]).equals(pq.read_table(b, columns=["prediction"])))


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loopml-batch-bench-") as tmp:
        work = Path(tmp)
        env = pinned_env(LOOPML_HOME=str(work / "home"))
        env.pop("LOOPML_TRACKING_URI", None)
        src = work / "in.parquet"
        done = subprocess.run(
            [PY, "-c", SETUP, str(args.rows), str(src)], env=env, capture_output=True, text=True, check=True
        )
        uris = dict(line.split() for line in done.stdout.splitlines())
        print(f"{args.rows:,} rows x 20 features, row groups of 65,536; {args.workers} workers; "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'model':8} {'variant':16} {'wall s':>8} {'rows/s':>11} {'peak RSS MiB':>13}")
        for name, uri in uris.items():
            predict = [PY, "-m", "loopml.cli", "predict", uri, "--input", str(src), "--no-progress"]
            variants = {
                "pandas": [PY, "-c", PANDAS, uri, str(src)],
                "floor": [PY, "-c", FLOOR, uri, str(src)],
                "loopml local": [*predict, "--executor", "local"],
                "loopml process": [*predict, "--executor", "process", "--workers", str(args.workers)],
            }
            outputs: dict[str, Path] = {}
            for variant, cmd in variants.items():
                out = work / f"{name}-{variant.replace(' ', '-')}.parquet"
                cmd = [*cmd, "--output", str(out)] if "loopml" in variant else [*cmd, str(out)]
                wall, rss = _run(cmd, env)
                outputs[variant] = out
                print(f"{name:8} {variant:16} {wall:8.2f} {args.rows / wall:11,.0f} {rss:13,.0f}")
            assert all(_same(outputs["floor"], o) for o in outputs.values()), "predictions differ"


if __name__ == "__main__":
    main()
