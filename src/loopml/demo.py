"""The demos: the closed loop (``make demo``) and the hyper-parameter sweep it grew from.

    $ python -m loopml.demo            # the whole loop: see loopml.cli.demo (or: loopml demo)
    $ python -m loopml.demo --sweep    # the sweep below (--quick: 3 runs); loopml demo --sweep

The sweep goes from versioned data to a gated model in production, in about a minute, offline:

1. The breast-cancer data bundled with scikit-learn is split and registered as two
   dataset versions (``breast-cancer-train``, ``breast-cancer-holdout``): content hash,
   schema, profile, snapshot.
2. Three model families are swept; every configuration is a nested run under one parent
   run in experiment ``demo-sweep``, with params, held-out metrics, a learning curve
   (gradient boosting), both dataset versions as inputs, and the fitted model.
3. The best run's model is registered as a new version of ``breast-cancer``, evaluated
   against the current champion on the holdout version, and promoted to Production only
   if it passes the model's gate; its lineage (model -> run -> commit -> data) is printed.

Everything goes to the embedded store (``LOOPML_HOME``, default ``./.loopml``).

>>> result = main(quick=True)  # doctest: +SKIP
>>> result.best.metrics["roc_auc"].value  # doctest: +SKIP
0.997...
"""

from __future__ import annotations

import os

# Before numpy loads: one BLAS thread per process keeps a 2-core machine responsive.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import loopml
import loopml.data
import loopml.models
import loopml.registry
from loopml.config import Settings
from loopml.data import DatasetVersion
from loopml.errors import GateFailed, LoopmlError
from loopml.registry import GateResult, Lineage, ModelVersion
from loopml.tracking.records import Metric, Run

EXPERIMENT = "demo-sweep"
SEED = 0
TEST_SIZE = 0.25
TARGET = "target"
TRAIN_DATASET = "breast-cancer-train"
HOLDOUT_DATASET = "breast-cancer-holdout"
MODEL_NAME = "breast-cancer"
# A new version reaches Production only if it is good and no worse than the champion.
GATE = ("roc_auc >= 0.95", "roc_auc >= champion.roc_auc - 0.005", "latency_p99_ms <= 250")
_CURVE_EVERY = 5  # gradient boosting: log the held-out curve every 5 iterations


@dataclass(frozen=True)
class Config:
    """One point of the grid: a model family and its hyper-parameters."""

    family: str
    params: dict[str, Any]

    @property
    def name(self) -> str:
        """A short run name, e.g. ``rf-n=150-depth=6``."""
        values = "-".join(f"{_SHORT.get(k, k)}={v}" for k, v in self.params.items())
        return f"{_SHORT[self.family]}-{values}"


_SHORT = {
    "logistic_regression": "logreg",
    "random_forest": "rf",
    "gradient_boosting": "gbm",
    "n_estimators": "n",
    "max_depth": "depth",
    "learning_rate": "lr",
}


@dataclass
class SweepResult:
    """What the demo did: the parent run, its children and the best child by roc_auc."""

    parent_run_id: str
    experiment_id: str
    experiment_name: str
    child_run_ids: list[str]
    top: list[Run] = field(default_factory=list)
    data: Data | None = None
    shipment: Shipment | None = None

    @property
    def best(self) -> Run:
        return self.top[0]


def grid(quick: bool = False) -> list[Config]:
    """The sweep: 4 + 6 + 3 = 13 configurations, or one per family when ``quick``."""
    if quick:
        return [
            Config("logistic_regression", {"C": 1.0}),
            Config("random_forest", {"n_estimators": 50, "max_depth": 4}),
            Config("gradient_boosting", {"learning_rate": 0.1, "n_estimators": 50}),
        ]
    return [
        *(Config("logistic_regression", {"C": c}) for c in (0.01, 0.1, 1.0, 10.0)),
        *(
            Config("random_forest", {"n_estimators": n, "max_depth": d})
            for n in (50, 150)
            for d in (3, 6, None)
        ),
        *(Config("gradient_boosting", {"learning_rate": lr, "n_estimators": 100}) for lr in (0.03, 0.1, 0.3)),
    ]


def build_model(config: Config) -> Any:
    p = config.params
    if config.family == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=p["C"], max_iter=5000, random_state=SEED))
    if config.family == "random_forest":
        return RandomForestClassifier(**p, n_jobs=1, random_state=SEED)
    if config.family == "gradient_boosting":
        return GradientBoostingClassifier(**p, random_state=SEED)
    raise ValueError(f"unknown model family {config.family!r}")


@dataclass(frozen=True)
class Data:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    train: DatasetVersion
    holdout: DatasetVersion


def load_data() -> Data:
    """The bundled breast-cancer data (no download), split 75/25, both parts registered.

    Registering the same rows again returns the existing versions, so reruns reuse them.
    """
    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=TEST_SIZE, random_state=SEED, stratify=frame[TARGET])
    train_dv = loopml.data.register(TRAIN_DATASET, train, description="breast cancer, 75% training split")
    holdout_dv = loopml.data.register(HOLDOUT_DATASET, test, description="breast cancer, 25% held out")
    x_train, x_test = train.drop(columns=[TARGET]), test.drop(columns=[TARGET])
    return Data(x_train, x_test, train[TARGET], test[TARGET], train_dv, holdout_dv)


def train_one(config: Config, data: Data, run_id: str) -> None:
    """Fit one configuration inside the active run ``run_id``; log its params, metrics and input."""
    loopml.log_params({"model_family": config.family, **config.params, "test_size": TEST_SIZE, "seed": SEED})
    loopml.data.log_input(data.train, context="training")
    loopml.data.log_input(data.holdout, context="evaluation")
    model = build_model(config)
    started = time.perf_counter()
    model.fit(data.x_train, data.y_train)
    fit_seconds = time.perf_counter() - started
    proba = model.predict_proba(data.x_test)[:, 1]
    pred = (proba >= 0.5).astype(int)
    loopml.log_metrics(
        {
            "accuracy": float(accuracy_score(data.y_test, pred)),
            "f1": float(f1_score(data.y_test, pred)),
            "roc_auc": float(roc_auc_score(data.y_test, proba)),
            "fit_seconds": fit_seconds,
        }
    )
    if config.family == "gradient_boosting":
        _log_learning_curve(model, data, run_id)
    loopml.models.log_model(model, "model", input_example=data.x_train.head(3), run_id=run_id)


def _log_learning_curve(model: GradientBoostingClassifier, data: Data, run_id: str) -> None:
    """Held-out loss and roc_auc after every few boosting iterations: a metric history with steps."""
    now = int(time.time() * 1000)
    history: list[Metric] = []
    for i, proba in enumerate(model.staged_predict_proba(data.x_test), start=1):
        if i % _CURVE_EVERY == 0:
            history.append(Metric("val_log_loss", float(log_loss(data.y_test, proba)), now, i))
            history.append(Metric("val_roc_auc", float(roc_auc_score(data.y_test, proba[:, 1])), now, i))
    loopml.service().log_batch(run_id, metrics=history)


def run_sweep(
    configs: list[Config],
    experiment: str = EXPERIMENT,
    on_step: Callable[[Config], None] = lambda c: None,
) -> SweepResult:
    """Track every configuration as a child of one parent run; return the top 5 by roc_auc."""
    exp = loopml.set_experiment(experiment)
    data = load_data()
    children: list[str] = []
    with loopml.start_run(
        run_name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}", tags={"loopml.demo": "sweep"}
    ) as parent:
        loopml.log_params({"n_configs": len(configs), "dataset": data.train.name})
        loopml.data.log_input(data.train, context="training")
        for config in configs:
            on_step(config)
            with loopml.start_run(
                run_name=config.name, nested=True, tags={"model_family": config.family}
            ) as child:
                train_one(config, data, child.run_id)
            children.append(child.run_id)
        top = loopml.search_runs(
            f"tags.mlflow.parentRunId = '{parent.run_id}'",
            experiment_ids=[exp.experiment_id],
            order_by=["metrics.roc_auc DESC"],
            max_results=5,
        )
        loopml.log_metric("best_roc_auc", top[0].metrics["roc_auc"].value)
        loopml.set_tag("best_run_id", top[0].run_id)
    return SweepResult(parent.run_id, exp.experiment_id, exp.name, children, top, data=data)


@dataclass(frozen=True)
class Shipment:
    """What happened to the sweep's best model: its version, the gate, and where it stands."""

    version: ModelVersion
    gate: GateResult
    promoted: bool
    lineage: Lineage
    champion: int | None


def ship(result: SweepResult) -> Shipment:
    """Register the best run's model, evaluate it against the champion, promote it if it passes."""
    assert result.data is not None
    version = loopml.registry.register(
        MODEL_NAME, f"runs:/{result.best.run_id}/model", description=f"best of sweep {result.parent_run_id}"
    )
    loopml.registry.set_gate(MODEL_NAME, list(GATE))
    holdout = result.data.holdout
    loopml.registry.evaluate(
        MODEL_NAME, version.version, dataset=f"{holdout.name}@{holdout.version}", target=TARGET
    )
    try:
        promotion = loopml.registry.promote(MODEL_NAME, version.version, reason="demo: best of the sweep")
        gate, promoted = promotion.gate, promotion.transition is not None
    except GateFailed:
        gate, promoted = loopml.registry.service().check_gate(MODEL_NAME, version.version), False
    champion = loopml.registry.service().get_registered_model(MODEL_NAME).aliases.get("champion")
    lineage = loopml.registry.lineage(MODEL_NAME, version.version)
    return Shipment(version, gate, promoted, lineage, champion)


def report(result: SweepResult, console: Console, settings: Settings) -> None:
    """The top 5 runs, the best one's params, and where to look next."""
    title = f"Top {len(result.top)} of {len(result.child_run_ids)} runs by roc_auc (held-out 25%)"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("run")
    for col in ("roc_auc", "accuracy", "f1", "fit s"):
        table.add_column(col, justify="right")
    for rank, run in enumerate(result.top, start=1):
        m = {k: v.value for k, v in run.metrics.items()}
        row = [f"{m['roc_auc']:.4f}", f"{m['accuracy']:.4f}", f"{m['f1']:.4f}", f"{m['fit_seconds']:.2f}"]
        table.add_row(str(rank), run.info.run_name, *row)
    console.print(table)
    best = result.best
    params = ", ".join(f"{k}={v}" for k, v in sorted(best.params.items()) if k not in ("test_size", "seed"))
    console.print(f"[bold]best run[/] {best.run_id}\n  {params}")
    where = settings.tracking_uri or f"{settings.home} (LOOPML_HOME)"
    if result.shipment is not None:
        report_shipment(result.shipment, console)
    console.print(f"runs are stored in {where}")
    console.print(f"  see the best run:   [cyan]loopml runs show {best.run_id}[/]")
    console.print(f"  list the sweep:     [cyan]loopml runs list --experiment {result.experiment_name}[/]")
    if result.shipment is not None:
        v = result.shipment.version.version
        console.print(f"  the model's card:   [cyan]loopml models card {MODEL_NAME} {v}[/]")
        console.print(f"  the data it saw:    [cyan]loopml data show {TRAIN_DATASET}[/]")
    console.print("  browse over HTTP:   [cyan]loopml server --port 5000[/] (MLflow clients work too)")


def report_shipment(shipment: Shipment, console: Console) -> None:
    """The gate's thresholds, the verdict, and the version's lineage."""
    v = shipment.version
    table = Table(title=f"Gate of {MODEL_NAME} version {v.version}", title_justify="left")
    for col in ("threshold", "value", "limit", "result"):
        table.add_column(col, justify="right" if col in ("value", "limit") else "left")
    for r in shipment.gate.results:
        verdict = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(r.threshold, _fmt(r.value), _fmt(r.limit), f"{verdict} {r.note}".strip())
    console.print(table)
    if shipment.promoted:
        console.print(f"[bold green]promoted[/] {MODEL_NAME} v{v.version} to Production (alias champion)")
    else:
        console.print(f"[bold red]not promoted[/]: {MODEL_NAME} stays at champion v{shipment.champion}")
    lin = shipment.lineage
    if lin.run is not None:
        commit = f"{(lin.run.commit or 'no git')[:12]}{' (dirty)' if lin.run.dirty else ''}"
        data = ", ".join(f"{d.ref} ({d.context})" for d in lin.datasets)
        console.print(
            f"lineage: {MODEL_NAME} v{v.version} -> run {lin.run.run_id[:12]} -> {commit} -> {data}"
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@contextlib.contextmanager
def _progress(console: Console, total: int) -> Iterator[Callable[[Config], None]]:
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("sweep", total=total)
        started = [False]

        def step(config: Config) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=config.name)

        yield step
        progress.update(task, completed=total, description="done")


def main(quick: bool = False, experiment: str = EXPERIMENT, console: Console | None = None) -> SweepResult:
    """Run the sweep with a progress bar and print the leaderboard; return what was tracked."""
    console = console or Console()
    configs = grid(quick)
    console.print(f"sweeping {len(configs)} configurations into experiment [bold]{experiment}[/]")
    with _progress(console, len(configs)) as on_step:
        result = run_sweep(configs, experiment, on_step)
    with console.status("registering, evaluating against the champion, gating"):
        result.shipment = ship(result)
    report(result, console, Settings.load())
    return result


if __name__ == "__main__":
    try:
        if {"--quick", "--sweep"} & set(sys.argv[1:]):
            main(quick="--quick" in sys.argv[1:])
        else:  # `make demo`: the whole loop (loopml.cli.demo)
            from loopml.cli.demo import run_closed_loop
            from loopml.pipelines.templates.closed_loop import LoopConfig

            run_closed_loop(LoopConfig())
    except LoopmlError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code or 1)
