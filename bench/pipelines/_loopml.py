"""loopml's side of the pipelines benchmark; runs in the project's venv, in a fresh process with
its own ``LOOPML_HOME``, and prints one JSON object.

    python bench/pipelines/_loopml.py steps --steps 20 --repeats 5
    python bench/pipelines/_loopml.py fanout --branches 200 --executor process:2
    python bench/pipelines/_loopml.py batch --input rows.parquet --executor ray --workers 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

FLOWS = """
from loopml.pipelines import pipeline, step


@step
def inc(x: int) -> int:
    return x + 1


@step
def square(x: int) -> int:
    return x * x


@step
def total(values: list[int]) -> int:
    return sum(values)


@pipeline
def chain_1(x: int = 0) -> int:
    return inc(x)


@pipeline
def chain_n(x: int = 0) -> int:
    for _ in range({steps}):
        x = inc(x)
    return x


@pipeline
def fan(n: int = 200) -> int:
    return total(square.map(list(range(n))))
"""


def _flows(steps: int) -> Any:
    from loopml.pipelines.loader import load_target

    path = Path(tempfile.mkdtemp(prefix="loopml-bench-flows-")) / "bench_flows.py"
    path.write_text(textwrap.dedent(FLOWS.format(steps=steps)))
    return {name: load_target(f"{path}:{name}") for name in ("chain_1", "chain_n", "fan")}


def _time(fn: Any, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def steps(args: argparse.Namespace) -> dict[str, Any]:
    """Marginal cost of one no-op step: (run of N steps - run of 1 step) / (N - 1), in process."""
    flows = _flows(args.steps)
    one, many = flows["chain_1"], flows["chain_n"]
    one.run({}, cache=False)  # imports, database, experiment: not a per-step cost
    many.run({}, cache=False)
    uncached_1 = _time(lambda: one.run({}, cache=False), args.repeats)
    uncached_n = _time(lambda: many.run({}, cache=False), args.repeats)
    one.run({})  # populate the cache
    many.run({})
    cached_1 = _time(lambda: one.run({}), args.repeats)
    cached_n = _time(lambda: many.run({}), args.repeats)
    check = many.run({})
    assert check.value == args.steps and len(check.cached_steps) == args.steps, check.cached_steps

    def plain(x: int) -> int:
        return x + 1

    calls = 200_000
    started = time.perf_counter()
    x = 0
    for _ in range(calls):
        x = plain(x)
    floor_s = (time.perf_counter() - started) / calls
    n = args.steps
    return {
        "steps": n,
        "repeats": args.repeats,
        "floor_call_s": floor_s,
        "run_1_uncached_s": uncached_1,
        "run_n_uncached_s": uncached_n,
        "run_1_cached_s": cached_1,
        "run_n_cached_s": cached_n,
        "uncached_step_s": (uncached_n - uncached_1) / (n - 1),
        "cached_step_s": (cached_n - cached_1) / (n - 1),
    }


def fanout(args: argparse.Namespace) -> dict[str, Any]:
    """Wall time of a ``square.map`` over ``branches`` items then a sum, uncached."""
    flows = _flows(2)
    fan = flows["fan"]
    started = time.perf_counter()
    result = fan.run({"n": args.branches}, cache=False, executor=args.executor)
    seconds = time.perf_counter() - started
    expected = sum(i * i for i in range(args.branches))
    assert result.value == expected, (result.value, expected)
    return {"executor": args.executor, "branches": args.branches, "seconds": seconds}


def batch(args: argparse.Namespace) -> dict[str, Any]:
    """Batch scoring of a Parquet file with ``loopml.serving.batch.predict_file``."""
    from loopml.serving.batch import predict_file

    out = Path(tempfile.mkdtemp(prefix="loopml-bench-out-")) / "scored.parquet"
    started = time.perf_counter()
    result = predict_file(
        args.model, args.input, out, executor=args.executor, workers=args.workers, predictions_only=True
    )
    seconds = time.perf_counter() - started
    import pyarrow.parquet as pq

    column = pq.read_table(out, columns=["prediction"]).column("prediction")
    return {
        "executor": args.executor,
        "workers": args.workers,
        "rows": result.rows,
        "seconds": seconds,
        "positives": int(column.to_numpy().sum()),
    }


def setup_batch(args: argparse.Namespace) -> dict[str, Any]:
    """``rows`` synthetic card transactions as Parquet (row groups of 65,536) and a fraud model
    (histogram gradient boosting on 50,000 other rows) logged in this LOOPML_HOME."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import loopml
    import loopml.models
    from loopml.pipelines.templates import synthetic
    from loopml.pipelines.templates.records import CTConfig
    from loopml.pipelines.templates.stages import train

    features = list(synthetic.FEATURES)
    fit_rows = synthetic.card_transactions(50_000, seed=1)
    config = CTConfig(
        "bench", "bench", synthetic.TARGET, features=synthetic.FEATURES, params={"max_iter": 50}
    )
    model = train(fit_rows, config)
    with loopml.start_run(run_name="bench-batch-model") as run:
        info = loopml.models.log_model(model, "model", input_example=fit_rows[features].head(3))
    path = Path(args.output)
    writer = None
    chunk = 1_000_000
    for i in range(0, args.rows, chunk):
        frame = synthetic.card_transactions(min(chunk, args.rows - i), seed=100 + i)[features]
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=65_536)
    assert writer is not None
    writer.close()
    return {"model": info.model_uri, "input": str(path), "rows": args.rows, "run_id": run.run_id}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("steps")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p = sub.add_parser("fanout")
    p.add_argument("--branches", type=int, default=200)
    p.add_argument("--executor", default="process:2")
    p = sub.add_parser("batch")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--executor", default="local")
    p.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("setup-batch")
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--output", required=True)
    args = parser.parse_args()
    run = {"steps": steps, "fanout": fanout, "batch": batch, "setup-batch": setup_batch}
    out = run[args.what](args)
    sys.stdout.write("\nRESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
