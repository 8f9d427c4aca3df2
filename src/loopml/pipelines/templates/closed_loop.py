"""The whole loop on one machine: train, ship, serve, watch, retrain, canary, promote, refuse.

:class:`ClosedLoop` plays a production story on the synthetic card transactions
(:func:`~loopml.pipelines.templates.synthetic.card_transactions`) against a live
``loopml server`` (started by :func:`live_server` on 127.0.0.1), with the continuous-training
pipeline (:mod:`loopml.pipelines.templates.pipeline`) doing every model change:

1. **v1** is trained by the pipeline on the first month, gated, registered and deployed on
   endpoint ``fraud`` (its first version there: promoted directly).
2. **Live traffic** before the shift goes through the server's ``/invocations``; labels
   arrive late (``POST /api/v1/labels``); the monitor (drift against v1's training table,
   accuracy on the labelled answers) runs and stays quiet.
3. **The world shifts**: the same monitor over the next window sees the inputs drift and the
   accuracy drop, opens alerts, and leaves a trigger naming the retraining pipeline, which
   is registered (``on_alert``) to train on the recent labelled rows.
4. The **pipeline scheduler** claims the trigger and runs the pipeline: **v2** is gated
   against v1, given ``canary_percent`` of the traffic while callers report whether each
   answer was right (``POST /api/v1/endpoints/fraud/feedback``), and promoted when the
   serving process's rollback judge found it no worse than v1; the monitor now compares
   against v2's training table, and its alerts resolve on the next window.
5. A **deliberately bad candidate** (the pipeline with its ``train`` step replaced by one
   that shuffles the labels) is refused by the gate, with the reason.
6. A **stale candidate** (the pipeline run on last month's data by mistake) passes its gate
   on its own stale holdout, goes out as a canary, and is **rolled back** by the serving
   process's judge on live quality, with the evidence.

Every step is reported to ``on_event(kind, message, data)``; the returned :class:`LoopResult`
lists the transitions (the integration test asserts them, ``loopml demo`` narrates them).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.config import Settings
from loopml.data.records import DatasetVersion
from loopml.errors import LoopmlError, NotFound
from loopml.pipelines.dsl import step
from loopml.pipelines.records import StepRecord
from loopml.pipelines.templates import stages, synthetic
from loopml.pipelines.templates.records import CTConfig

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from loopml.client.http_monitoring import HttpMonitorService
    from loopml.client.http_serving import HttpEndpointService
    from loopml.monitoring.monitors import MonitorRun

Json = dict[str, Any]
EventHook = Callable[[str, str, dict[str, Any]], None]
ProgressHook = Callable[[str, int, int], None]
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class LoopConfig:
    """Sizes and names of the story; the defaults are what ``make demo`` runs."""

    rows: int = 24_000
    seed: int = 0
    model_name: str = "fraud"
    dataset: str = "card-transactions"
    endpoint: str = "fraud"
    monitor: str = "fraud-live"
    pipeline: str = "fraud-retrain"
    traffic_rows: int = 800
    batch_rows: int = 20
    label_share: float = 0.9
    canary_percent: float = 50.0
    canary_min_requests: int = 60
    canary_timeout_s: float = 90.0
    workers: int = 4
    max_iter: int = 60
    rules: tuple[str, ...] = ("drift_share>=0.3", "accuracy<0.75")
    # A feature drifts when its distribution moves by a quarter of a standard deviation
    # (normalised Wasserstein distance): the shift moves three features by 0.5-1.3, while
    # windows of a few hundred rows from the same regime differ by up to ~0.15 by chance.
    drift_threshold: float = 0.25
    gate: tuple[str, ...] = ("roc_auc >= 0.7", "roc_auc >= champion.roc_auc - 0.01")


@dataclass(frozen=True)
class Transition:
    """One thing that happened: ``kind`` (e.g. ``promoted``, ``alert``), a sentence, the numbers."""

    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopResult:
    """The story's transitions and the versions it produced."""

    transitions: list[Transition] = field(default_factory=list)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    monitor_runs: dict[str, MonitorRun] = field(default_factory=dict)
    trigger_id: str | None = None
    seconds: float = 0.0

    def kinds(self) -> list[str]:
        return [t.kind for t in self.transitions]


# ---- the live server --------------------------------------------------------------------------
@contextmanager
def live_server(settings: Settings, port: int | None = None) -> Iterator[str]:
    """``loopml server`` on 127.0.0.1 over the same store as ``settings`` (its monitor and
    pipeline schedulers off: the story runs monitors and fires triggers itself, at known
    moments); yields its URL and stops the process afterwards."""
    port = port or free_port()
    env = {
        **os.environ,
        "LOOPML_HOME": str(settings.home),
        "LOOPML_DATABASE_URL": settings.database_url,
        "LOOPML_ARTIFACT_ROOT": settings.artifact_root,
        "LOOPML_MONITOR_SCHEDULER": "0",
        "LOOPML_PIPELINE_SCHEDULER": "0",  # the story's own scheduler claims the alert's trigger
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("LOOPML_TRACKING_URI", None)
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "demo-server.log"
    args = [sys.executable, "-m", "loopml.cli", "server", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        _stop(proc)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise LoopmlError(f"loopml server exited with {proc.returncode}; its log ({log_path}):\n{tail}")
        with suppress(httpx.TransportError):
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    _stop(proc)
    raise LoopmlError(
        f"loopml server did not answer {url}/health within {START_TIMEOUT_S:g} s; see {log_path}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# ---- traffic --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """One request sent to the endpoint: its id, the true labels of its rows, the predictions."""

    request_id: str
    labels: list[int]
    predictions: list[Any]

    def correct(self) -> float:
        hits = [int(p == y) for p, y in zip(self.predictions, self.labels, strict=False)]
        return float(np.mean(hits)) if hits else 0.0


class Traffic:
    """Callers of one endpoint: scoring requests, late labels and per-answer feedback."""

    def __init__(self, url: str, endpoint: str, features: list[str], target: str, workers: int = 4) -> None:
        import httpx

        self.url, self.endpoint, self.features, self.target = url, endpoint, features, target
        self.workers = workers
        self.client = httpx.Client(base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=workers))

    def close(self) -> None:
        self.client.close()

    def score(self, rows: pd.DataFrame) -> Answer:
        """One request with ``rows`` (MLflow ``dataframe_split``); raises on a non-200 answer."""
        request_id = uuid.uuid4().hex
        body = {
            "dataframe_split": {
                "columns": self.features,
                "data": rows[self.features].astype(object).values.tolist(),
            }
        }
        answer = self.client.post(
            f"/endpoints/{self.endpoint}/invocations", json=body, headers={"x-request-id": request_id}
        )
        _raise_for(answer)
        predictions = answer.json()["predictions"]
        return Answer(request_id, [int(y) for y in rows[self.target]], list(predictions))

    def send(
        self, frame: pd.DataFrame, batch_rows: int, progress: Callable[[int], None] | None = None
    ) -> list[Answer]:
        """Score ``frame`` in requests of ``batch_rows`` rows from ``workers`` concurrent callers."""
        chunks = [frame.iloc[i : i + batch_rows] for i in range(0, len(frame), batch_rows)]
        answers: list[Answer] = []
        with ThreadPoolExecutor(self.workers) as pool:
            for answer in pool.map(self.score, chunks):
                answers.append(answer)
                if progress is not None:
                    progress(len(answer.labels))
        return answers

    def feedback(self, answer: Answer) -> None:
        """Tell the endpoint how good ``answer`` was (the share of its rows predicted right)."""
        body = {"request_id": answer.request_id, "quality": answer.correct()}
        _raise_for(self.client.post(f"/api/v1/endpoints/{self.endpoint}/feedback", json=body))


def _raise_for(answer: httpx.Response) -> None:
    if answer.status_code != 200:
        raise LoopmlError(
            f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}"
        )


# ---- the story ------------------------------------------------------------------------------
PIPELINE_TARGET = "loopml.pipelines.templates.pipeline:continuous_training_pipeline"


class ClosedLoop:
    """The story of the module docstring against the server at ``url``."""

    def __init__(
        self,
        url: str,
        config: LoopConfig | None = None,
        on_event: EventHook | None = None,
        on_progress: ProgressHook | None = None,
        settings: Settings | None = None,
    ) -> None:
        from loopml.client.http_monitoring import HttpMonitorService
        from loopml.client.http_serving import HttpEndpointService

        self.url, self.config = url, config or LoopConfig()
        self.settings = settings or Settings.load()
        self.on_event, self.on_progress = on_event, on_progress
        self.endpoints: HttpEndpointService = HttpEndpointService(url, user="loopml-demo", retries=2)
        self.monitoring: HttpMonitorService = HttpMonitorService(url, user="loopml-demo", retries=2)
        self.data = synthetic.card_transactions(self.config.rows, seed=self.config.seed)
        self.traffic = Traffic(
            url, self.config.endpoint, list(synthetic.FEATURES), synthetic.TARGET, self.config.workers
        )
        self.result = LoopResult()
        self._rng = np.random.default_rng(self.config.seed + 1)

    def close(self) -> None:
        self.traffic.close()
        self.endpoints.close()
        self.monitoring.close()

    def run(self) -> LoopResult:
        """Play every act; returns what happened."""
        started = time.monotonic()
        self.reset()
        reference = self.first_model()
        self.create_monitor(reference)
        self.watch("before the shift", synthetic.between(self.data, 30, 40))
        self.watch("after the shift", synthetic.between(self.data, 40, 50), retrain_on=True)
        self.retrain_on_trigger()
        self.bad_candidate()
        self.stale_candidate()
        self.result.seconds = time.monotonic() - started
        return self.result

    # -- acts ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start from a clean endpoint and monitor (a rerun keeps the registry's history)."""
        with suppress(NotFound):
            self.endpoints.delete_endpoint(self.config.endpoint)
        with suppress(NotFound):
            self.monitoring.delete_monitor(self.config.monitor)

    def first_model(self) -> str:
        """v1 on the first month, by the continuous-training pipeline: trained, gated,
        registered, and deployed on a fresh endpoint. Returns its training table's ref."""
        import loopml.data
        from loopml.pipelines.templates.pipeline import continuous_training_pipeline

        dv = loopml.data.register(f"{self.config.dataset}-first-month", synthetic.between(self.data, 0, 30))
        self._emit("data", f"first month of labelled transactions registered as {dv.ref}", {})
        run = continuous_training_pipeline.run(
            {"data": dv.ref, "config": self.ct_config().to_dict()},
            settings=self.settings,
            progress=self._step_done,
        )
        verdict = self._finished("v1", run.run_id, run.value)
        if verdict["status"] != "promoted":
            raise LoopmlError(f"v1 was not shipped: {verdict.get('reason')}")
        train_table: DatasetVersion = run.output("ct_features")[0]
        return train_table.ref

    def create_monitor(self, reference: str) -> None:
        """Drift against v1's training table and accuracy on labelled answers; an alert leaves
        a trigger for the retraining pipeline."""
        from loopml.monitoring.monitors import Monitor, Rule

        monitor = Monitor(
            self.config.monitor,
            endpoint=self.config.endpoint,
            reference=reference,
            features=list(synthetic.FEATURES),
            rules=[Rule.parse(r) for r in self.config.rules],
            methods={f: "wasserstein" for f in synthetic.FEATURES},
            thresholds={f: self.config.drift_threshold for f in synthetic.FEATURES},
            pipeline=self.config.pipeline,
            task="classification",
            description="demo: drift and accuracy of the fraud endpoint",
        )
        self.monitoring.create_monitor(monitor)
        rules = ", ".join(self.config.rules)
        self._emit("monitor", f"monitor {monitor.name}: {rules} against {reference}", {})

    def watch(self, phase: str, pool: pd.DataFrame, retrain_on: bool = False) -> MonitorRun:
        """Live traffic of ``phase``, its labels arriving late, then one monitor run over it.
        With ``retrain_on`` the recent labelled rows are registered and the retraining
        pipeline is registered to run on them when an alert fires."""
        rows = pool.sample(min(self.config.traffic_rows, len(pool)), random_state=self.config.seed)
        rows = rows.sort_values(synthetic.TIMESTAMP)
        start = int(time.time() * 1000)
        tick = self._progress(f"traffic {phase}", len(rows))
        answers = self.traffic.send(rows, self.config.batch_rows, tick)
        self._emit("traffic", f"{len(rows)} transactions scored {phase}", {"requests": len(answers)})
        labelled = self._labels(answers)
        self._emit("labels", f"{labelled} labels arrived late for {len(answers)} requests", {})
        if retrain_on:
            self.register_retraining()
        run = self._run_monitor(start)
        self.result.monitor_runs[phase] = run
        self._report_run(phase, run)
        return run

    def register_retraining(self) -> None:
        """The recent labelled rows land in the warehouse; the retraining pipeline is registered
        to run on them when the monitor's alert names it."""
        import loopml.data
        import loopml.pipelines

        dv = loopml.data.register(f"{self.config.dataset}-recent", synthetic.between(self.data, 40, 55))
        loopml.pipelines.register(
            PIPELINE_TARGET,
            name=self.config.pipeline,
            on_alert=True,
            params={"data": dv.ref, "config": self.ct_config().to_dict()},
            settings=self.settings,
        )
        message = f"pipeline {self.config.pipeline} registered to retrain on {dv.ref} when an alert fires"
        self._emit("pipeline", message, {})

    def retrain_on_trigger(self) -> None:
        """The pipeline scheduler claims the alert's trigger and runs the retraining pipeline,
        while callers keep using the endpoint and report whether each answer was right."""
        import loopml.monitoring
        from loopml.monitoring.local import LocalMonitorService
        from loopml.pipelines.triggers import PipelineScheduler

        monitor = loopml.monitoring.service(self.settings)
        assert isinstance(monitor, LocalMonitorService)
        scheduler = PipelineScheduler(self.settings, monitor=monitor)
        with self._live_callers("live traffic during retraining"):
            try:
                scheduler.tick(wait=False)  # each firing on the scheduler's threads, like the server's
                fired = [f.result() for f in scheduler.futures]
            finally:
                scheduler.stop()
        mine = [r for r in fired if r.pipeline == self.config.pipeline]
        started = [r for r in mine if r.status == "started" and r.run_id]
        for record in mine:
            outcome = f"started run {record.run_id}" if record in started else record.message
            self._emit(f"trigger_{record.status}", f"{record.detail}: {outcome}", {"record": record})
        if not started:
            raise LoopmlError(f"pipeline {self.config.pipeline} was not started by any trigger: {mine}")
        run_id = started[0].run_id
        assert run_id is not None
        self.result.trigger_id = started[0].trigger_id
        self._report_steps(run_id)
        verdict = self._finished("v2", run_id, None)
        if verdict["status"] == "promoted":
            monitor_def = self.monitoring.get_monitor(self.config.monitor)
            reference = self._model_table(run_id)
            self.monitoring.update_monitor(replace(monitor_def, reference=reference))
            self._emit("monitor", f"monitor {monitor_def.name} now compares against {reference}", {})
            self.watch("with v2 in production", synthetic.between(self.data, 55, 60))

    def bad_candidate(self) -> None:
        """A candidate whose training labels were shuffled (the pipeline's train step replaced)."""
        import loopml.data
        from loopml.pipelines.templates.pipeline import build_pipeline

        dv = loopml.data.get(f"{self.config.dataset}-recent")
        pipe = build_pipeline(f"{self.config.pipeline}-shuffled-labels", train=train_on_shuffled_labels)
        run = pipe.run(
            {"data": dv.ref, "config": self.ct_config().to_dict()},
            settings=self.settings,
            progress=self._step_done,
        )
        self._finished("bad candidate", run.run_id, run.value)

    def stale_candidate(self) -> None:
        """A retraining pointed at last month's data by mistake: on its own (stale) holdout it
        beats the champion, so the gate passes; on live traffic it is worse, and the serving
        process's judge rolls the canary back."""
        import loopml.data
        from loopml.pipelines.templates.pipeline import continuous_training_pipeline

        dv = loopml.data.get(f"{self.config.dataset}-first-month")
        with self._live_callers("live traffic during the stale canary"):
            run = continuous_training_pipeline.run(
                {"data": dv.ref, "config": self.ct_config().to_dict()},
                settings=self.settings,
                progress=self._step_done,
            )
        self._finished("stale candidate", run.run_id, run.value)

    @contextmanager
    def _live_callers(self, what: str) -> Iterator[None]:
        """Callers use the endpoint (and judge each answer) while the block runs."""
        stop, errors = threading.Event(), list[BaseException]()
        caller = threading.Thread(target=self._canary_traffic, args=(stop, errors, what), daemon=True)
        caller.start()
        try:
            yield
        finally:
            stop.set()
            caller.join(timeout=60)
        if errors:
            raise LoopmlError(f"{what} failed: {errors[0]}") from errors[0]

    # -- helpers -------------------------------------------------------------------------------
    def ct_config(self) -> CTConfig:
        """The continuous-training config of the story (serving through this server)."""
        c = self.config
        return CTConfig(
            model_name=c.model_name,
            dataset=c.dataset,
            target=synthetic.TARGET,
            features=synthetic.FEATURES,
            time_column=synthetic.TIMESTAMP,
            gate=c.gate,
            endpoint=c.endpoint,
            serving_url=self.url,
            canary_percent=c.canary_percent,
            canary_min_requests=c.canary_min_requests,
            canary_timeout_s=c.canary_timeout_s,
            params={"max_iter": c.max_iter},
            seed=c.seed,
            experiment="demo-continuous-training",
        )

    def _finished(self, who: str, run_id: str, verdict: Json | None) -> Json:
        """Report a pipeline run's verdict (read from its decide step when not given)."""
        import loopml.registry

        verdict = verdict if verdict is not None else self._decided(run_id)
        self.result.verdicts[who] = verdict
        version = verdict.get("version")
        gate = loopml.registry.service().check_gate(self.config.model_name, version) if version else None
        data = {"run_id": run_id, "verdict": verdict, "gate": gate, "who": who}
        reason = verdict.get("reason") or ""
        message = f"{who} ({self.config.model_name} v{version}): {verdict['status']}" + (
            f": {reason}" if reason else ""
        )
        self._emit(verdict["status"], message, data)
        return verdict

    def _decided(self, run_id: str) -> Json:
        from loopml.pipelines.engine import context
        from loopml.pipelines.values import load_value

        store, _ = context(self.settings)
        record = store.get_run(run_id)
        step = next((s for s in record.steps if s.step == "ct_decide"), None)
        if record.status != "SUCCEEDED" or step is None or not step.outputs:
            raise LoopmlError(f"pipeline run {run_id} ended {record.status}: {record.error}")
        value: Json = load_value(store.blobs, step.outputs[0])
        return value

    def _model_table(self, run_id: str) -> str:
        from loopml.pipelines.engine import context
        from loopml.pipelines.values import load_value

        store, _ = context(self.settings)
        step = next(s for s in store.get_run(run_id).steps if s.step == "ct_features")
        table: DatasetVersion = load_value(store.blobs, (step.outputs or [])[0])
        return table.ref

    def _report_steps(self, run_id: str) -> None:
        from loopml.pipelines.engine import context

        store, _ = context(self.settings)
        for step_record in store.get_run(run_id).steps:
            self._step_done(step_record)

    def _step_done(self, step: StepRecord) -> None:
        seconds = f" {step.duration_s:.1f} s" if step.duration_s is not None and not step.cached else ""
        status = "cached" if step.cached else step.status.lower()
        self._emit(f"step:{step.step}", f"{step.step} {status}{seconds}", {"step": step})

    def _labels(self, answers: list[Answer]) -> int:
        keep = self._rng.random(len(answers)) < self.config.label_share
        chosen = [a for a, k in zip(answers, keep, strict=True) if k]
        if not chosen:
            return 0
        self.monitoring.log_labels(
            [a.request_id for a in chosen], [a.labels for a in chosen], endpoint=self.config.endpoint
        )
        return sum(len(a.labels) for a in chosen)

    def _run_monitor(self, start_ms: int) -> MonitorRun:
        """One run over exactly [start, start + ceil(elapsed)) seconds; waits out the window."""
        window_s = max(1, math.ceil((time.time() * 1000 - start_ms) / 1000))
        monitor = self.monitoring.get_monitor(self.config.monitor)
        if monitor.window_s != window_s:
            self.monitoring.update_monitor(replace(monitor, window_s=window_s))
        end = start_ms + window_s * 1000
        time.sleep(max(0.0, end / 1000 - time.time()) + 0.05)
        return self.monitoring.run_monitor(self.config.monitor, now=end)

    def _report_run(self, phase: str, run: MonitorRun) -> None:
        values = run.result.get("values", {})
        firing = [r for r in run.result.get("rules", []) if r["state"] == "firing"]
        drift, accuracy = values.get("drift_share") or 0.0, values.get("accuracy") or 0.0
        summary = f"drift share {drift:.2f}, accuracy {accuracy:.3f}"
        self._emit("monitor_run", f"monitor over {phase}: {summary}", {"values": values, "phase": phase})
        for rule in firing:
            self._emit("alert", f"ALERT {rule['rule']}: {rule['message']}", rule)
        if run.result.get("alerts_resolved"):
            count = len(run.result["alerts_resolved"])
            self._emit("resolved", f"{count} alert(s) resolved: every rule holds again", {})
        if run.result.get("triggers"):
            self._emit("trigger_pending", f"trigger left for pipeline {self.config.pipeline}", {})

    def _canary_traffic(self, stop: threading.Event, errors: list[BaseException], what: str) -> None:
        """Callers while the pipeline runs: one transaction per request, each answer judged at
        once; light traffic until the canary is live, then as fast as the callers go."""
        try:
            self._call_canary(stop, what)
        except Exception as exc:  # reported by retrain_on_trigger(): a thread cannot raise to it
            errors.append(exc)

    def _call_canary(self, stop: threading.Event, what: str) -> None:
        pool = synthetic.between(self.data, 55, 60)
        sent, total = 0, len(pool)
        tick = self._progress(what, total)
        while not stop.is_set() and sent < total:
            canary = len(self.endpoints.get_endpoint(self.config.endpoint).policy.live) > 1
            size = self.config.workers * (5 if canary else 1)
            batch = [pool.iloc[i : i + 1] for i in range(sent, min(sent + size, total))]
            with ThreadPoolExecutor(self.config.workers) as callers:
                answers = list(callers.map(self.traffic.score, batch))
                list(callers.map(self.traffic.feedback, answers))
            self.monitoring.log_labels(
                [a.request_id for a in answers], [a.labels for a in answers], endpoint=self.config.endpoint
            )
            sent += len(batch)
            tick(len(batch))
            if not canary:
                stop.wait(0.25)
        if self.on_progress is not None:  # the callers stop with the pipeline: close the bar there
            self.on_progress(what, sent, sent)

    def _progress(self, what: str, total: int) -> Callable[[int], None]:
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if self.on_progress is not None:
                self.on_progress(what, done[0], total)

        return tick

    def _emit(self, kind: str, message: str, data: dict[str, Any]) -> None:
        if not kind.startswith("step:"):
            self.result.transitions.append(Transition(kind, message, data))
        if self.on_event is not None:
            self.on_event(kind, message, data)


@step
def train_on_shuffled_labels(train: DatasetVersion, config: dict[str, Any]) -> Any:
    """A broken training step: the labels are shuffled, so the model learns nothing."""
    import loopml.data

    cfg = CTConfig.from_dict(config)
    frame = loopml.data.load(train.name, train.version)
    labels = frame[cfg.target].to_numpy()
    frame[cfg.target] = np.random.default_rng(cfg.seed).permutation(labels)
    return stages.train(frame, cfg)
