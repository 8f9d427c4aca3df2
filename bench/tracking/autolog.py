"""Autologging overhead: ``loopml.autolog()`` vs ``mlflow.sklearn.autolog()``, same fits, same data.

Method
------
One seeded binary-classification data set (5,000 rows x 20 float columns) is written once as
``.npy`` files to a temporary directory under ``.bench/`` and read by both children. Workloads:

(1) ``logreg``: LogisticRegression(max_iter=1000);
(2) ``pipeline``: Pipeline(StandardScaler, RandomForestClassifier(n_estimators=20));
(3) ``grid``: GridSearchCV(LogisticRegression(max_iter=1000), C in 6 values, cv=3).

Each tool runs in its own child process: loopml in ``.venv`` with an embedded store (SQLite + the
content-addressed artifact store) under a fresh ``LOOPML_HOME``; MLflow in its own venv
(``.bench/mlflow-venv``, created with the same scikit-learn/NumPy/SciPy versions; ``--mlflow-venv``
to use another) with a ``sqlite:///`` tracking URI and a ``file://`` artifact location, both in a
temporary directory under ``.bench/``, which is its working directory: inside this git checkout,
as a user's training script would be (loopml records the commit and the uncommitted diff with
each run, MLflow the commit). Each child, in this order:

- imports scikit-learn, then the tool (measured: "import"), then creates one experiment per
  workload (measured: "store setup": MLflow creates and migrates its database here);
- fits every workload with autologging OFF: one warm-up fit, then N measured fits (the floor);
- calls ``autolog()`` (measured: its first-call cost, which walks every scikit-learn estimator
  and patches it);
- fits every workload with autologging ON: the first fit is reported on its own (it pays the
  first run's one-time costs), then N measured fits;
- turns autologging off again and measures the floor once more, as a drift check;
- counts what the last top-level run of each workload holds, through the tool's own client.

CPU of a fit is the change, around that one fit, of the child's user + system time plus that of
its reaped children (``getrusage`` SELF + CHILDREN: the counters behind ``/proc/PID/stat`` fields
14-17, read at microsecond rather than 10 ms resolution; MLflow infers a model's pip
requirements in a subprocess, which this counts). Figures are medians over the N fits. The
overhead of a tool is its median minus the floor median (autologging off, before) of the same
child. Settings, chosen so both do comparable work: models logged (both defaults, with a
signature), datasets logged (both defaults), input examples off (both defaults), MLflow's
``log_post_training_metrics=False`` (loopml has none), at most 5 tuning child runs (both
defaults); everything else at its default. Work only one side does, at its defaults: MLflow
also renders three training plots (PNG) and ``estimator.html``, pickles the model with
cloudpickle (loopml: skops) and infers its pip requirements in a Python subprocess; loopml also
stores the environment's package list per run. The report lists what the last run of each
workload holds, and the part of each fit's CPU spent in subprocesses with the ratio of the
in-process overheads (what the tool costs inside the user's own process).

Target: loopml's overhead <= MLflow's (ratio MLflow overhead / loopml overhead >= 1.0) for
every workload.

Usage: ``.venv/bin/python bench/tracking/autolog.py [--quick] [--only loopml|mlflow] [--json F]``
``[--mlflow-venv DIR] [--workload NAME ...] [--fits NAME=N,...] [--keep-data] [--fail-on-target]``.
``--mlflow-venv .venv`` reuses loopml's venv, which has MLflow too.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import functools
import json
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common

from _common import (
    BENCH_DIR,
    ROOT,
    BenchError,
    ensure_venv,
    machine_info,
    median,
    pin_threads,
    pinned_env,
    ratio,
    run_child,
    venv_package_version,
    write_json,
)

# Before NumPy loads, here and in the children (they import this module too).
pin_threads(force=True)

MLFLOW_VERSION = "3.17.2"
# Installed next to MLflow at the versions .venv has, so both children fit with the same code.
SAME_AS_LOOPML = ("scikit-learn", "numpy", "scipy")
LOOPML_PY = ROOT / ".venv" / "bin" / "python"
TOOLS = ("loopml", "mlflow")
WORKLOADS = ("logreg", "pipeline", "grid")
FITS = {"logreg": 20, "pipeline": 10, "grid": 5}
QUICK_FITS = {"logreg": 5, "pipeline": 3, "grid": 2}
ROWS, COLS, SEED = 5_000, 20, 7
GRID_C = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
TARGET_RATIO = 1.0
PARENT_TAG = "mlflow.parentRunId"


# ------------------------------------------------------------------------------ child: fitting


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process and of its reaped children, at microsecond resolution."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def measured(into: dict[str, list[float]]) -> Iterator[None]:
    """Append the block's milliseconds to ``into``: ``cpu_ms`` (this process and its subprocesses),
    ``sub_cpu_ms`` (the subprocesses' part) and ``wall_ms``."""
    (own0, sub0), t0 = cpu_seconds(), time.perf_counter()
    yield
    into.setdefault("wall_ms", []).append(1000 * (time.perf_counter() - t0))
    own1, sub1 = cpu_seconds()
    into.setdefault("cpu_ms", []).append(1000 * (own1 - own0 + sub1 - sub0))
    into.setdefault("sub_cpu_ms", []).append(1000 * (sub1 - sub0))


def make_estimator(workload: str) -> Any:
    """A fresh, unfitted estimator of one workload (scikit-learn is imported by the caller)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if workload == "logreg":
        return LogisticRegression(max_iter=1000)
    if workload == "pipeline":
        forest = RandomForestClassifier(n_estimators=20, random_state=0)
        return Pipeline([("scale", StandardScaler()), ("forest", forest)])
    return GridSearchCV(LogisticRegression(max_iter=1000), {"C": GRID_C}, cv=3)


def fit_series(workload: str, X: Any, y: Any, n: int, warmup: bool) -> dict[str, Any]:
    """One optional untimed-separately first fit, then ``n`` measured fits."""
    out: dict[str, Any] = {}
    if warmup:
        first: dict[str, list[float]] = {}
        with measured(first):
            make_estimator(workload).fit(X, y)
        out["first_cpu_ms"], out["first_wall_ms"] = first["cpu_ms"][0], first["wall_ms"][0]
    samples: dict[str, list[float]] = {}
    for _ in range(n):
        est = make_estimator(workload)
        with measured(samples):
            est.fit(X, y)
    return out | samples


class Tool(abc.ABC):
    """What a child does with one tracking library; see :class:`LoopmlTool`, :class:`MlflowTool`."""

    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.experiments: dict[str, str] = {}

    @abc.abstractmethod
    def import_library(self) -> str:
        """Import the library; return its version."""

    @abc.abstractmethod
    def create_experiment(self, workload: str) -> str:
        """Create the workload's experiment; return its id."""

    @abc.abstractmethod
    def use_experiment(self, workload: str) -> None:
        """Make the workload's experiment the one autologged runs go to."""

    @abc.abstractmethod
    def autolog(self, disable: bool = False) -> None:
        """Turn autologging on (with the benchmark's settings) or off."""

    @abc.abstractmethod
    def last_run_contents(self, workload: str) -> dict[str, Any]:
        """What the newest top-level run of the workload's experiment holds."""


class LoopmlTool(Tool):
    name = "loopml"

    def import_library(self) -> str:
        import loopml
        import loopml.tracking.autolog  # what `loopml.autolog` loads on first use

        return loopml.__version__

    def create_experiment(self, workload: str) -> str:
        import loopml

        return str(loopml.set_experiment(f"autolog-{workload}").experiment_id)

    def use_experiment(self, workload: str) -> None:
        import loopml

        loopml.set_experiment(experiment_id=self.experiments[workload])

    def autolog(self, disable: bool = False) -> None:
        import loopml

        loopml.autolog(disable=disable)  # defaults: models, datasets, no input examples

    def last_run_contents(self, workload: str) -> dict[str, Any]:
        import loopml

        svc = loopml.service()
        exp = self.experiments[workload]
        runs = svc.search_runs([exp], max_results=1000).runs
        top = max((r for r in runs if PARENT_TAG not in r.tags), key=lambda r: r.info.start_time)
        run_id = top.info.run_id
        files = [f for f in svc.list_artifacts(run_id, recursive=True) if not f.is_dir]
        models, _ = svc.search_logged_models([exp], filter_string=f"source_run_id = '{run_id}'")
        return {
            "artifact_paths": sorted(f.path for f in files),
            "params": len(top.params),
            "metrics": len(top.metrics),
            "tags": len(top.tags),
            "datasets": len(top.inputs),
            "artifact_files": len(files),
            "artifact_kb": sum(f.file_size or 0 for f in files) / 1024,
            "logged_models": len(models),
            # A loopml logged model points at the run's `model/` artifacts (its own listing is empty).
            "model_files": sum(1 for f in files if f.path.startswith("model/")),
            "model_files_where": "in the run artifacts",
            "child_runs": sum(1 for r in runs if r.tags.get(PARENT_TAG) == run_id),
        }


class MlflowTool(Tool):
    name = "mlflow"

    def import_library(self) -> str:
        import mlflow
        import mlflow.sklearn

        mlflow.set_tracking_uri(f"sqlite:///{self.work / 'mlflow.db'}")
        return str(mlflow.__version__)

    def create_experiment(self, workload: str) -> str:
        import mlflow

        location = (self.work / "artifacts" / workload).as_uri()
        return str(mlflow.create_experiment(f"autolog-{workload}", artifact_location=location))

    def use_experiment(self, workload: str) -> None:
        import mlflow

        mlflow.set_experiment(experiment_id=self.experiments[workload])

    def autolog(self, disable: bool = False) -> None:
        import mlflow.sklearn

        # Defaults but post-training metrics (loopml computes none): models with signatures,
        # datasets, no input examples, max_tuning_runs=5.
        mlflow.sklearn.autolog(log_post_training_metrics=False, disable=disable)

    def last_run_contents(self, workload: str) -> dict[str, Any]:
        import mlflow
        from mlflow import MlflowClient

        client = MlflowClient()
        exp = self.experiments[workload]
        runs = client.search_runs([exp], max_results=1000)
        top = max((r for r in runs if PARENT_TAG not in r.data.tags), key=lambda r: r.info.start_time)
        run_id = top.info.run_id
        files = list(_mlflow_files(lambda p: client.list_artifacts(run_id, p)))
        models = mlflow.search_logged_models(
            experiment_ids=[exp], filter_string=f"source_run_id = '{run_id}'", output_format="list"
        )
        model_files = [f for m in models for f in _mlflow_files(functools.partial(_model_listing, client, m))]
        return {
            "artifact_paths": sorted(f.path for f in files),
            "params": len(top.data.params),
            "metrics": len(top.data.metrics),
            "tags": len(top.data.tags),
            "datasets": len(top.inputs.dataset_inputs) if top.inputs is not None else 0,
            "artifact_files": len(files),
            "artifact_kb": sum(f.file_size or 0 for f in files) / 1024,
            "logged_models": len(models),
            "model_files": len(model_files),
            "model_files_where": "under the logged models",
            "child_runs": sum(1 for r in runs if r.data.tags.get(PARENT_TAG) == run_id),
        }


def _model_listing(client: Any, model: Any, path: str | None) -> list[Any]:
    return list(client.list_logged_model_artifacts(model.model_id, path))


def _mlflow_files(list_dir: Callable[[str | None], list[Any]], path: str | None = None) -> Iterator[Any]:
    """Every file below ``path`` of an MLflow artifact listing (MLflow lists one level at a time)."""
    for entry in list_dir(path):
        if entry.is_dir:
            yield from _mlflow_files(list_dir, entry.path)
        else:
            yield entry


def run_tool(tool: Tool, data: Path, fits: dict[str, int]) -> dict[str, Any]:
    """Everything one child measures, as the JSON-able dict it prints."""
    import numpy as np
    import sklearn

    X, y = np.load(data / "X.npy"), np.load(data / "y.npy")
    once: dict[str, list[float]] = {}
    with measured(once):
        lib_version = tool.import_library()
    with measured(once):
        tool.experiments = {w: tool.create_experiment(w) for w in fits}
    out: dict[str, Any] = {"tool": tool.name, "version": lib_version, "sklearn": sklearn.__version__}
    out["import_cpu_ms"], out["setup_cpu_ms"] = once["cpu_ms"]
    floors = {w: fit_series(w, X, y, n, warmup=True) for w, n in fits.items()}
    progress(tool.name, "floor done")
    first: dict[str, list[float]] = {}
    with measured(first):
        tool.autolog()
    out["autolog_first_cpu_ms"], out["autolog_first_wall_ms"] = first["cpu_ms"][0], first["wall_ms"][0]
    logged = {}
    for w, n in fits.items():
        tool.use_experiment(w)
        logged[w] = fit_series(w, X, y, n, warmup=True)
        progress(tool.name, f"{w}: {n + 1} autologged fits done")
    tool.autolog(disable=True)
    after = {w: fit_series(w, X, y, n, warmup=False) for w, n in fits.items()}
    out["workloads"] = {
        w: {
            "floor": floors[w],
            "autolog": logged[w],
            "floor_after": after[w],
            "logged": tool.last_run_contents(w),
        }
        for w in fits
    }
    return out


def progress(label: str, text: str) -> None:
    """A progress line of a child (the driver echoes a child's non-JSON stdout lines)."""
    print(f"  [{label}] {text}", flush=True)


def child_main(tool_name: str, work: Path, data: Path, fits: dict[str, int]) -> int:
    tool: Tool = LoopmlTool(work) if tool_name == "loopml" else MlflowTool(work)
    result = run_tool(tool, data, fits)
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------ driver: setup


def write_data(folder: Path) -> None:
    """The seeded data set both children fit on, as ``X.npy`` / ``y.npy``."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(ROWS, COLS))
    logits = X @ rng.normal(size=COLS) + rng.normal(scale=2.0, size=ROWS)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", (logits > 0).astype(np.int64))


def mlflow_python(venv: Path) -> Path:
    """MLflow's venv's python, created (one time) with loopml's versions of the fitting stack."""
    requirements = [f"mlflow=={MLFLOW_VERSION}", *(f"{p}=={version(p)}" for p in SAME_AS_LOOPML)]
    python = ensure_venv(venv, requirements, ("mlflow", MLFLOW_VERSION))
    for package in SAME_AS_LOOPML:  # a venv made by another harness may lack them
        python = ensure_venv(venv, requirements, (package, version(package)))
    return python


def child_env(tool: str, work: Path) -> dict[str, str]:
    """The child's environment: pinned BLAS threads, no inherited tracking settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    extra = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    if tool == "loopml":
        extra["LOOPML_HOME"] = str(work / "loopml-home")
    return pinned_env(base, **extra)


def run_tool_child(tool: str, python: Path, root: Path, data: Path, fits: dict[str, int]) -> dict[str, Any]:
    """Run one tool's child to its end (cwd: its own empty folder); its JSON result."""
    work = root / tool
    work.mkdir()
    argv = [str(python), str(Path(__file__).resolve()), "--child", tool, "--work", str(work)]
    argv += ["--data", str(data), "--fits", ",".join(f"{w}={n}" for w, n in fits.items())]
    print(f"\n== {tool}: {shlex.join(argv)}", flush=True)
    log = work / "child.log"
    with log.open("wb") as err:
        done = run_child(argv, env=child_env(tool, work), cwd=work, stderr=err)
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            print(line, flush=True)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BenchError(
            f"the {tool} child exited with code {done.returncode}; its stderr ends with:\n{tail}"
        )
    result = done.last_json()
    result["child_peak_rss_mb"] = done.peak_rss_mb
    return result


# ---------------------------------------------------------------------------- driver: reporting


@dataclass(frozen=True)
class Row:
    workload: str
    fits: int
    loopml_floor_ms: float | None
    loopml_ms: float | None
    loopml_overhead_ms: float | None
    mlflow_floor_ms: float | None
    mlflow_ms: float | None
    mlflow_overhead_ms: float | None
    ratio: float | None
    result: str
    # The part of each tool's median autologged fit spent in subprocesses, and the ratio of the
    # overheads without it (what the tool costs inside the user's process).
    loopml_sub_ms: float | None
    mlflow_sub_ms: float | None
    in_process_ratio: float | None


def _medians(result: dict[str, Any] | None, workload: str) -> tuple[float | None, float | None, float | None]:
    """(floor, autologged fit, its subprocess part): median CPU ms of one child's fits."""
    if result is None:
        return None, None, None
    w = result["workloads"][workload]
    return median(w["floor"]["cpu_ms"]), median(w["autolog"]["cpu_ms"]), median(w["autolog"]["sub_cpu_ms"])


def _in_process_ratio(
    lf: float | None, lt: float | None, ls: float | None, m: tuple[Any, ...]
) -> float | None:
    mf, mt, ms = m
    if None in (lf, lt, ls, mf, mt, ms):
        return None
    lo = lt - ls - lf  # type: ignore[operator]
    return ratio(mt - ms - mf, lo) if lo > 0 else None


def make_rows(results: dict[str, dict[str, Any]], fits: dict[str, int]) -> list[Row]:
    rows = []
    for w, n in fits.items():
        lf, lt, ls = _medians(results.get("loopml"), w)
        mf, mt, ms = _medians(results.get("mlflow"), w)
        lo = None if lf is None or lt is None else lt - lf
        mo = None if mf is None or mt is None else mt - mf
        verdict = "n/a" if lo is None or mo is None else ("PASS" if mo >= lo else "FAIL")
        r = ratio(mo, lo) if lo is not None and lo > 0 else None
        inproc = _in_process_ratio(lf, lt, ls, (mf, mt, ms))
        rows.append(Row(w, n, lf, lt, lo, mf, mt, mo, r, verdict, ls, ms, inproc))
    return rows


def _f(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_report(rows: list[Row], results: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'workload (median CPU ms/fit)':<30} {'fits':>4} {'floor':>7} {'loopml':>8} {'overhead':>8}   "
        f"{'floor':>7} {'mlflow':>8} {'overhead':>8}   {'ratio':>6} {'target':>7}  result"
    )
    print("\n" + " " * 35 + "|------ loopml child ------|   |------ mlflow child ------|")
    print(head + "\n" + "-" * len(head))
    target = f">={TARGET_RATIO:.1f}"
    for r in rows:
        print(
            f"{r.workload:<30} {r.fits:>4} {_f(r.loopml_floor_ms):>7} {_f(r.loopml_ms):>8} "
            f"{_f(r.loopml_overhead_ms):>8}   {_f(r.mlflow_floor_ms):>7} {_f(r.mlflow_ms):>8} "
            f"{_f(r.mlflow_overhead_ms):>8}   {_f(r.ratio, '.2f'):>6} {target:>7}  {r.result}"
        )
    print("ratio = MLflow overhead / loopml overhead (overhead = autologged fit - floor of the same child)")
    for r in rows:
        print(
            f"  {r.workload}: subprocess CPU per autologged fit loopml {_f(r.loopml_sub_ms)} ms, "
            f"mlflow {_f(r.mlflow_sub_ms)} ms; ratio of in-process overheads {_f(r.in_process_ratio, '.2f')}"
        )
    print_first_call(results)
    for tool, res in results.items():
        print_tool_notes(tool, res)


def print_first_call(results: dict[str, dict[str, Any]]) -> None:
    """The one-time costs, side by side: ``autolog()``'s first call, and with the tool's import
    (``import mlflow.sklearn`` already loads scikit-learn modules that loopml's first call loads)."""
    first = {t: r["autolog_first_cpu_ms"] for t, r in results.items()}
    both = {t: r["import_cpu_ms"] + r["autolog_first_cpu_ms"] for t, r in results.items()}
    print(
        "autolog() first call, CPU ms: "
        + ", ".join(f"{t} {v:.0f}" for t, v in first.items())
        + "; import + first call: "
        + ", ".join(f"{t} {v:.0f}" for t, v in both.items())
    )


def print_tool_notes(tool: str, res: dict[str, Any]) -> None:
    print(
        f"\n{tool} {res['version']} (scikit-learn {res['sklearn']}): import "
        f"{res['import_cpu_ms']:.0f} ms CPU, store setup {res['setup_cpu_ms']:.0f} ms, autolog() first call "
        f"{res['autolog_first_cpu_ms']:.0f} ms CPU ({res['autolog_first_wall_ms']:.0f} ms wall); "
        f"child peak RSS {res['child_peak_rss_mb']:.0f} MiB"
    )
    for w, d in res["workloads"].items():
        a, c = d["autolog"], d["logged"]
        print(
            f"  {w}: first autologged fit {a['first_cpu_ms']:.0f} ms CPU; median wall/fit floor "
            f"{median(d['floor']['wall_ms']):.1f} ms, autologged {median(a['wall_ms']):.1f} ms; floor after "
            f"autolog(disable=True) {median(d['floor_after']['cpu_ms']):.1f} ms CPU (drift check)"
        )
        print(
            f"    last run logged: {c['params']} params, {c['metrics']} metrics, {c['tags']} tags, "
            f"{c['datasets']} dataset inputs, {c['artifact_files']} run artifact files "
            f"({c['artifact_kb']:.0f} KiB), {c['logged_models']} logged models "
            f"({c['model_files']} files {c['model_files_where']}), "
            f"{c['child_runs']} child runs\n    run artifacts: {', '.join(c['artifact_paths'])}"
        )


# ------------------------------------------------------------------------------------ main


def parse_fits(text: str) -> dict[str, int]:
    """``"logreg=20,grid=5"`` -> ``{"logreg": 20, "grid": 5}``."""
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        if name not in WORKLOADS or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"bad --fits item {part!r}: use NAME=N with NAME in {WORKLOADS}")
        out[name] = int(n)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help=f"fewer fits: {QUICK_FITS}")
    p.add_argument("--only", choices=TOOLS, help="benchmark only this tool")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="only these workloads")
    p.add_argument("--fits", type=parse_fits, help=f"measured fits per workload (default {FITS})")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--mlflow-venv", type=Path, default=BENCH_DIR / "mlflow-venv")
    p.add_argument("--keep-data", action="store_true", help="keep the stores and child logs")
    p.add_argument("--fail-on-target", action="store_true", help="exit 1 if a target fails")
    p.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def chosen_fits(args: argparse.Namespace) -> dict[str, int]:
    fits = dict(args.fits or (QUICK_FITS if args.quick else FITS))
    if args.workload:
        fits = {w: fits.get(w, FITS[w]) for w in WORKLOADS if w in args.workload}
    return fits


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fits = chosen_fits(args)
    if args.child:
        return child_main(args.child, args.work, args.data, fits)
    tools = [args.only] if args.only else list(TOOLS)
    BENCH_DIR.mkdir(exist_ok=True)
    pythons = {"loopml": LOOPML_PY}
    if "mlflow" in tools:
        pythons["mlflow"] = mlflow_python(args.mlflow_venv)
    info = machine_info(mlflow=venv_package_version(args.mlflow_venv, "mlflow") or "n/a")
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    print(f"command: {command}\nmachine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"config: fits per workload {fits}, data {ROWS} x {COLS} (seed {SEED})", flush=True)
    root = Path(tempfile.mkdtemp(prefix="autolog-", dir=BENCH_DIR))
    results: dict[str, dict[str, Any]] = {}
    try:
        write_data(root / "data")
        for tool in tools:
            results[tool] = run_tool_child(tool, pythons[tool], root, root / "data", fits)
    except BenchError as e:
        print(f"\nBENCHMARK ABORTED: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep_data:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = make_rows(results, fits)
    print_report(rows, results)
    if args.json:
        write_json(
            args.json,
            {
                "command": command,
                "machine": info,
                "fits": fits,
                "rows": [asdict(r) for r in rows],
                "children": results,
            },
        )
        print(f"results written to {args.json}")
    failed = any(r.result not in ("PASS", "n/a") for r in rows)
    return 1 if args.fail_on_target and failed else 0


if __name__ == "__main__":
    sys.exit(main())
