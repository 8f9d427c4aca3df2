"""Seed a LOOPML_HOME with something on every UI page, through the capability services."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import loopml.models
from loopml import sdk
from loopml.config import Settings
from loopml.data.service import LocalDataService
from loopml.features.definitions import DataFrameSource, Entity, FeatureService, FeatureView, Field
from loopml.features.registry import FeatureRegistry
from loopml.monitoring.local import LocalMonitorService
from loopml.monitoring.monitors import Monitor
from loopml.pipelines import engine as pipeline_engine
from loopml.pipelines import pipeline, step
from loopml.registry.local import LocalRegistryService
from loopml.serving.local import LocalEndpointService
from loopml.serving.predlog import PredictionLog
from loopml.serving.records import TrafficPolicy
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.records import DatasetInput, Metric, Param, RunTag

T0 = 1_700_000_000_000
MIN = 60_000
HTML_ATTACK = b"<html><body><script>window.__pwned = 1</script>report</body></html>"


@dataclass
class Seeded:
    experiment_id: str
    run_ids: list[str]
    run_names: list[str]
    model: str
    request_id: str
    endpoint: str
    dataset: str
    monitor: str
    pipeline_run: str


def png(width: int = 4, height: int = 3) -> bytes:
    """A tiny valid RGB PNG."""
    raw = b"".join(b"\x00" + bytes([200, 40, 40]) * width for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _runs(tracking: LocalTrackingService, dataset_digest: str) -> tuple[str, list[str], list[str]]:
    exp = tracking.create_experiment("churn-sweep")
    ids, names = [], []
    for i, (lr, depth) in enumerate([(0.1, 3), (0.05, 5), (0.01, 8), (0.2, 3), (0.3, 2)]):
        run = tracking.create_run(exp, run_name=f"run-{i}", start_time=T0 + i * MIN)
        rid = run.info.run_id
        acc = 0.70 + 0.04 * i
        metrics = [
            Metric("accuracy", acc * (1 - 0.5 ** (s + 1)), T0 + i * MIN + s * 1000, s) for s in range(20)
        ]
        metrics += [Metric("loss", 1.0 / (s + 1 + i), T0 + i * MIN + s * 1000, s) for s in range(20)]
        params = [
            Param("lr", str(lr)),
            Param("max_depth", str(depth)),
            Param("model", "rf" if i % 2 else "gbm"),
        ]
        tags = [RunTag("team", "growth"), RunTag("mlflow.source.git.commit", f"{i:040x}")]
        tracking.log_batch(rid, metrics=metrics, params=params, tags=tags)
        tracking.log_inputs(rid, [DatasetInput("churn", dataset_digest, context="training")])
        tracking.update_run(rid, status="FINISHED", end_time=T0 + i * MIN + 30_000)
        ids.append(rid)
        names.append(f"run-{i}")
    first = ids[0]
    tracking.put_artifact(first, "plots/confusion.png", io.BytesIO(png()))
    tracking.put_artifact(first, "report.html", io.BytesIO(HTML_ATTACK))
    tracking.put_artifact(first, "notes.txt", io.BytesIO(b"trained on churn@1\n"))
    tracking.put_artifact(first, "predictions.csv", io.BytesIO(b"id,score\n1,0.9\n2,0.1\n"))
    table = b'{"columns": ["customer", "error"], "data": [["c-17", 0.42], ["c-23", 0.05]]}'
    tracking.put_artifact(first, "errors.json", io.BytesIO(table))  # as loopml.log_table writes it
    return exp, ids, names


@contextmanager
def _sdk_home(home: Path) -> Iterator[None]:
    """The SDK (which ``loopml.models.log_model`` writes through) pointed at ``home`` for a while."""
    saved = {k: os.environ.get(k) for k in ("LOOPML_HOME", "LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL")}
    os.environ["LOOPML_HOME"] = str(home)
    for key in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL"):
        os.environ.pop(key, None)
    sdk.reset()
    try:
        yield
    finally:
        sdk.reset()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _models(home: Path, run_ids: list[str]) -> None:
    """A real scikit-learn model in each run (so the endpoint answers requests)."""
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"tenure": rng.normal(5, 1, 200)})
    y = (x.tenure > 5).astype(int)
    with _sdk_home(home):
        for i, rid in enumerate(run_ids):
            clf = LogisticRegression(C=1.0 + i).fit(x, y)
            loopml.models.log_model(clf, "model", run_id=rid, input_example=x.head(3))


def _registry(registry: LocalRegistryService, run_ids: list[str], dataset_digest: str) -> str:
    name = "churn"
    registry.create_registered_model(name, description="Churn classifier")
    for rid in run_ids[:2]:
        registry.create_model_version(name, f"runs:/{rid}/model", user="alice")
    registry.set_gate(name, ["accuracy >= 0.5"], require_approval=True, user="alice")
    registry.record_evaluation(name, 2, "churn", 1, dataset_digest, {"accuracy": 0.74}, user="alice")
    promotion = registry.promote(name, 2, "production", reason="better accuracy", user="alice")
    assert promotion.request is not None
    registry.set_registered_model_alias(name, "challenger", 2, user="alice")
    return promotion.request.request_id


def _features(settings: Settings) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([1, 2], dtype="int64"),
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "tenure": [3.0, 7.0],
        }
    )
    customer = Entity("customer", join_keys="customer_id")
    view = FeatureView(
        "customer_stats",
        entities=[customer],
        fields=[Field("tenure", "float64")],
        source=DataFrameSource(frame),
    )
    registry = FeatureRegistry.from_settings(settings)
    try:
        registry.apply([FeatureService("churn_features", [view])])
    finally:
        registry.close()


def _monitoring(settings: Settings) -> str:
    svc = LocalMonitorService.from_settings(settings)
    try:
        spec = {"name": "churn-drift", "endpoint": "churn-api", "reference": "churn@1", "window": "1m"}
        svc.create_monitor(
            Monitor.from_dict({**spec, "rules": ["drift_share>=0.5"], "methods": {"tenure": "psi"}})
        )
        rng = np.random.default_rng(0)
        for k, shift in enumerate([0.0, 4.0]):
            with PredictionLog(svc.predictions_root) as plog:
                for i in range(300):
                    plog.append(
                        {
                            "request_id": f"{k}-{i}",
                            "endpoint": "churn-api",
                            "model_name": "churn",
                            "model_version": "1",
                            "variant": "primary",
                            "ts": T0 + k * MIN + i * 100,
                            "latency_ms": 2.0,
                            "status": "ok",
                            "inputs": {
                                "tenure": [float(rng.normal(5 + shift, 1))],
                                "plan": [str(rng.choice(["a", "b"]))],
                            },
                            "outputs": [int(rng.integers(0, 2))],
                        }
                    )
            # the labels of the window's requests arrive before the run: performance is measured
            svc.log_labels([f"{k}-{i}" for i in range(300)], [int(i % 3 == 0) for i in range(300)])
            svc.run_monitor("churn-drift", now=T0 + (k + 1) * MIN)
    finally:
        svc.close()
    return "churn-drift"


@step
def make_numbers(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@step
def add_up(numbers: list[int]) -> int:
    return sum(numbers)


@pipeline
def ui_flow(n: int = 5) -> int:
    return add_up(make_numbers(n))


def _pipelines(settings: Settings) -> str:
    """Two runs of a two-step pipeline; the second hits the cache for both steps."""
    try:
        ui_flow.run({"n": 5}, settings=settings, executor="inprocess")
        return ui_flow.run({"n": 5}, settings=settings, executor="inprocess").run_id  # type: ignore[no-any-return]
    finally:
        pipeline_engine.reset()


def seed(home: Path) -> Seeded:
    """Everything the UI tests look at, in a fresh ``home``."""
    settings = Settings.load(env={"LOOPML_HOME": str(home), "LOOPML_USER": "seeder"})
    tracking = LocalTrackingService.from_settings(settings)
    data = LocalDataService(tracking.db, tracking.artifacts.blobs, "seeder")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"tenure": rng.normal(5, 1, 500), "plan": rng.choice(["a", "b"], 500)})
    v1 = data.register("churn", frame, description="first month")
    data.register("churn", frame.assign(tenure=frame.tenure + 1.5), description="second month")
    exp, ids, names = _runs(tracking, v1.digest)
    _models(home, ids)
    registry = LocalRegistryService.over(tracking, "seeder")
    request_id = _registry(registry, ids, v1.digest)
    endpoints = LocalEndpointService(tracking.db, "seeder")
    endpoints.create_endpoint("churn-api", TrafficPolicy.canary("models:/churn/1", "models:/churn/2", 10))
    tracking.close()
    _features(settings)
    monitor = _monitoring(settings)
    pipeline_run = _pipelines(settings)
    return Seeded(exp, ids, names, "churn", request_id, "churn-api", "churn", monitor, pipeline_run)
