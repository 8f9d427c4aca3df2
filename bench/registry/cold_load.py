"""Cold load of a scikit-learn pipeline: ``loopml.models.load`` vs ``mlflow.pyfunc.load_model``.

Method
------
One pipeline (ColumnTransformer: StandardScaler on 8 numeric columns + OneHotEncoder on 2
categorical ones, then LogisticRegression), fitted once on 5,000 seeded rows in loopml's venv,
is logged twice: with ``loopml.models.log_model`` into a fresh loopml home (SQLite + the
content-addressed artifact store), and, the very same fitted object handed over by pickle, with
``mlflow.sklearn.log_model`` into a fresh MLflow store (SQLite + local artifacts) in MLflow's own
venv (``.bench/mlflow-venv``; both venvs have the same scikit-learn).

Each measurement is a fresh Python process that imports the library, loads the model by URI
(``runs:/<id>/model`` for loopml, the ``models:/m-…`` URI MLflow returned) and predicts 100 rows
built in the child from a JSON literal (the same rows for both). Loopml's on-disk model cache
is emptied before every loopml run, so each load fetches and verifies every file from the
artifact store (``--warm-cache`` also reports loads from a populated cache). Reported per side,
as medians over N processes run alternately (one untimed warm-up each first, so both read
their .pyc files from the page cache):

- time to first prediction: from just before ``subprocess`` spawns the child to the wall clock
  the child prints right after ``predict`` returns;
- process wall time (spawn to exit) and CPU (user + system, ``getrusage(RUSAGE_CHILDREN)``
  delta around the child).

Both children's predictions must equal the pipeline's own, or the benchmark aborts.
Target: loopml's time to first prediction lower than MLflow's.

Usage: ``.venv/bin/python bench/registry/cold_load.py [--quick] [--runs N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import BENCH_DIR, ROOT, median, peer_venv, pinned_env, write_json

LOOPML_PY = ROOT / ".venv" / "bin" / "python"
N_ROWS, N_PREDICT, SEED = 5_000, 100, 11
NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = ["plan", "region"]

MLFLOW_LOG = """
import json, pickle, sys, mlflow, mlflow.sklearn
store = sys.argv[1]
mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
exp = mlflow.create_experiment("cold-load", artifact_location=f"file://{store}/artifacts")
with open(sys.argv[2], "rb") as fh:
    pipe = pickle.load(fh)
with mlflow.start_run(experiment_id=exp):
    info = mlflow.sklearn.log_model(pipe, name="model")
print(json.dumps({"uri": info.model_uri, "format": info.flavors["sklearn"].get("serialization_format")}))
"""
CHILD = """
import json, time
{imports}
import pandas as pd
model = {load}
pred = model.predict(pd.DataFrame(json.loads({rows!r})))
done = time.time()
print(json.dumps({{"done": done, "pred": [int(p) for p in pred]}}))
"""


@dataclass
class Side:
    name: str
    first_prediction_s: list[float] = field(default_factory=list)
    process_wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "first_prediction_s": median(self.first_prediction_s),
            "process_wall_s": median(self.process_wall_s),
            "cpu_s": median(self.cpu_s),
        }


def make_data() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame({c: rng.normal(size=N_ROWS) for c in NUMERIC})
    frame["plan"] = rng.choice(["basic", "plus", "pro"], N_ROWS)
    frame["region"] = rng.choice(["eu", "us", "apac", "latam"], N_ROWS)
    label = ((frame["x0"] + 0.5 * frame["x1"] > 0) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    return frame, label


def fit_pipeline(frame: Any, label: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(), CATEGORICAL)])
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=500))]).fit(frame, label)


def base_env() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE is dropped: a normal installation has its bytecode cached
    # (pip compiles on install), and without it each child would recompile every module.
    skip = ("LOOPML_", "MLFLOW_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return pinned_env(env, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")


def log_with_loopml(pipe: Any, sample: Any, home: Path) -> str:
    os.environ["LOOPML_HOME"] = str(home)
    import loopml
    import loopml.models

    loopml.set_experiment("cold-load")
    with loopml.start_run(capture_env=False):
        info = loopml.models.log_model(pipe, input_example=sample)
    loopml.reset()
    return info.model_uri


def log_with_mlflow(mlflow_py: Path, pipe: Any, store: Path) -> tuple[str, str]:
    store.mkdir(parents=True)
    with open(store / "pipeline.pkl", "wb") as fh:
        pickle.dump(pipe, fh)
    done = subprocess.run(
        [str(mlflow_py), "-c", MLFLOW_LOG, str(store), str(store / "pipeline.pkl")],
        capture_output=True, text=True, env=base_env(), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"mlflow log_model failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return str(out["uri"]), str(out["format"])


def run_child(python: Path, code: str, env: dict[str, str], expected: list[int], side: Side) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, check=False)
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{side.name} child failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["pred"] != expected:
        sys.exit(f"{side.name} predicted something else than the fitted pipeline")
    side.first_prediction_s.append(out["done"] - start)
    side.process_wall_s.append(end - start)
    side.cpu_s.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="fresh processes per side (default 10)")
    p.add_argument("--quick", action="store_true", help="3 processes per side")
    p.add_argument("--warm-cache", action="store_true", help="also time loopml loads from its cache")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument("--mlflow-venv", type=Path, default=peer_venv("mlflow"))
    args = p.parse_args()
    runs = 3 if args.quick else args.runs
    mlflow_py = args.mlflow_venv / "bin" / "python"
    if not mlflow_py.exists():
        sys.exit(f"{mlflow_py} is missing: create it with mlflow==3.17.2 and scikit-learn")

    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cold-load-", dir=BENCH_DIR))
    try:
        result = measure(work, mlflow_py, runs, args.warm_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(result)
    if args.json:
        write_json(args.json, result)


def measure(work: Path, mlflow_py: Path, runs: int, warm_cache: bool) -> dict[str, Any]:
    frame, label = make_data()
    pipe = fit_pipeline(frame, label)
    rows = frame.sample(N_PREDICT, random_state=SEED)
    expected = [int(v) for v in pipe.predict(rows)]
    rows_json = json.dumps(rows.to_dict(orient="list"))
    loopml_home = work / "loopml-home"
    loopml_uri = log_with_loopml(pipe, frame.head(5), loopml_home)
    mlflow_uri, mlflow_format = log_with_mlflow(mlflow_py, pipe, work / "mlflow")

    loopml_code = CHILD.format(
        imports="import loopml.models", load=f"loopml.models.load({loopml_uri!r})", rows=rows_json
    )
    mlflow_code = CHILD.format(
        imports=f"import mlflow, mlflow.pyfunc\nmlflow.set_tracking_uri('sqlite:///{work}/mlflow/mlflow.db')",
        load=f"mlflow.pyfunc.load_model({mlflow_uri!r})",
        rows=rows_json,
    )
    env = base_env()
    loopml_env = dict(env, LOOPML_HOME=str(loopml_home))
    cache = loopml_home / "cache"
    sides = {"loopml": Side("loopml"), "mlflow": Side("mlflow"), "loopml_warm_cache": Side("loopml")}
    warmup = {"loopml": Side("loopml"), "mlflow": Side("mlflow")}
    run_child(LOOPML_PY, loopml_code, loopml_env, expected, warmup["loopml"])
    run_child(mlflow_py, mlflow_code, env, expected, warmup["mlflow"])
    for _ in range(runs):
        shutil.rmtree(cache, ignore_errors=True)
        run_child(LOOPML_PY, loopml_code, loopml_env, expected, sides["loopml"])
        run_child(mlflow_py, mlflow_code, env, expected, sides["mlflow"])
        if warm_cache:
            run_child(LOOPML_PY, loopml_code, loopml_env, expected, sides["loopml_warm_cache"])
    figures = {k: s.summary() for k, s in sides.items() if s.first_prediction_s}
    return {
        "benchmark": "registry/cold_load",
        "runs_per_side": runs,
        "model": "ColumnTransformer(StandardScaler x8, OneHotEncoder x2) + LogisticRegression",
        "mlflow_serialization_format": mlflow_format,
        "figures": figures,
        "ratio_mlflow_over_loopml": {
            k: figures["mlflow"][k] / figures["loopml"][k] for k in ("first_prediction_s", "cpu_s")
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
    }


def report(result: dict[str, Any]) -> None:
    figures, ratio = result["figures"], result["ratio_mlflow_over_loopml"]
    print(f"cold load, median of {result['runs_per_side']} fresh processes per side")
    print(f"{'':22}{'first prediction':>18}{'process wall':>14}{'CPU':>10}")
    for name, f in figures.items():
        print(
            f"{name:22}{f['first_prediction_s']:>16.3f} s{f['process_wall_s']:>12.3f} s{f['cpu_s']:>8.3f} s"
        )
    print(
        f"mlflow / loopml: first prediction {ratio['first_prediction_s']:.2f}x, CPU {ratio['cpu_s']:.2f}x "
        f"(mlflow serialization: {result['mlflow_serialization_format']})"
    )
    print(f"load average during the run: {result['machine']['load']}")
    verdict = "met" if ratio["first_prediction_s"] > 1 else "NOT met"
    print(f"target (loopml faster than MLflow to first prediction): {verdict}")


if __name__ == "__main__":
    main()
