"""Metaflow's side of the pipelines benchmark; runs in ``.bench/metaflow-venv`` (no loopml there).

Writes a linear flow of N steps (``start``, N-2 steps that add one, ``end``) and times
``python flow.py run`` in fresh processes on Metaflow's local datastore and metadata, the way
a user runs a flow on a laptop. Prints one JSON line.

    .bench/metaflow-venv/bin/python bench/pipelines/_metaflow.py --steps 2 6 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = """from metaflow import FlowSpec, step


class Chain{n}Flow(FlowSpec):
    @step
    def start(self):
        self.x = 0
        self.next(self.{first})
"""
MIDDLE = """
    @step
    def s{i}(self):
        self.x += 1
        self.next(self.{nxt})
"""
TAIL = """
    @step
    def end(self):
        print("x =", self.x)


if __name__ == "__main__":
    Chain{n}Flow()
"""


def write_flow(folder: Path, n: int) -> Path:
    """A flow of ``n`` >= 2 steps."""
    middle = list(range(1, n - 1))
    names = [f"s{i}" for i in middle] + ["end"]
    text = HEAD.format(n=n, first=names[0])
    for i, nxt in zip(middle, names[1:], strict=True):
        text += MIDDLE.format(i=i, nxt=nxt)
    text += TAIL.format(n=n)
    path = folder / f"chain{n}.py"
    path.write_text(text)
    return path


def run_once(flow: Path, root: Path) -> float:
    env = {
        **os.environ,
        "METAFLOW_DEFAULT_DATASTORE": "local",
        "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(root),
        "USERNAME": "bench",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", "--quiet", "run"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"metaflow run of {flow.name} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 7])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metaflow-bench-"))
    small, large = args.steps
    flows = {n: write_flow(root, n) for n in (small, large)}
    run_once(flows[small], root)  # warm the datastore and imports
    times = {n: statistics.median(run_once(flows[n], root) for _ in range(args.repeats)) for n in flows}
    from importlib.metadata import version

    out = {
        "version": version("metaflow"),
        "steps": [small, large],
        "run_small_s": times[small],
        "run_large_s": times[large],
        "step_s": (times[large] - times[small]) / (large - small),
    }
    sys.stdout.write("\nRESULT " + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
