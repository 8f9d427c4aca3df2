"""The continuous-training template as a loopml pipeline: one ``@step`` per stage.

The steps take and return values the pipeline engine stores (dataset versions, DataFrames,
scikit-learn models, JSON), and the config as a JSON dict (:meth:`CTConfig.to_dict`), so
the pipeline runs from the CLI, a schedule, a new dataset version or a monitoring alert::

    loopml pipeline register loopml.pipelines.templates.pipeline:continuous_training_pipeline \\
        --name fraud-retrain --on-alert -p data=transactions@7 -p config='{"model_name": ...}'

Replace a stage by writing your own pipeline with these steps and yours, or with
:func:`build_pipeline` (``build_pipeline("fraud-ct", train=my_train_step)``). The gate,
register, deploy and decide steps act on the registry and the endpoint, so they are never
cached; after a failed gate they pass the verdict through without acting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loopml.data.records import DatasetVersion
from loopml.pipelines.dsl import Pipeline, Step, pipeline, step
from loopml.pipelines.templates import rollout, stages
from loopml.pipelines.templates.records import Candidate, CTConfig, GateOutcome, Ingested

if TYPE_CHECKING:
    import pandas as pd

    from loopml.serving.service import EndpointService

Json = dict[str, Any]


def _config(config: Json) -> CTConfig:
    return CTConfig.from_dict(config)


def _frame(dv: DatasetVersion) -> pd.DataFrame:
    import loopml.data

    frame: pd.DataFrame = loopml.data.load(dv.name, dv.version)
    return frame


@step
def ct_ingest(data: DatasetVersion, config: Json) -> tuple[DatasetVersion, DatasetVersion]:
    """Split ``data`` by time into ``DATASET-train`` and ``DATASET-holdout`` versions."""
    ingested = stages.ingest(f"{data.name}@{data.version}", _config(config))
    return ingested.train, ingested.holdout


@step
def ct_validate(train: DatasetVersion, holdout: DatasetVersion, config: Json) -> Json:
    """Quality (an error fails the run) and drift against the reference; the summary."""
    checked = stages.validate(Ingested(train, holdout), _config(config))
    issues = [i.message for i in checked.quality.issues] if checked.quality else []
    return {"reference": checked.reference, "drift_share": checked.drift_share, "quality_warnings": issues}


@step
def ct_features(
    train: DatasetVersion, holdout: DatasetVersion, validation: Json, config: Json
) -> tuple[DatasetVersion, DatasetVersion]:
    """The model tables (features joined, model columns and target) as dataset versions."""
    import loopml.data

    cfg = _config(config)
    parts = []
    for raw, part in ((train, "train"), (holdout, "holdout")):
        frame = stages.features(_frame(raw), cfg)
        table = frame[[*stages.feature_columns(frame, cfg), cfg.target]]
        parts.append(loopml.data.register(f"{cfg.dataset}-model-{part}", table))
    return parts[0], parts[1]


@step
def ct_train(train: DatasetVersion, config: Json) -> Any:
    """Fit the model on the training table (:func:`stages.train`)."""
    return stages.train(_frame(train), _config(config))


@step
def ct_evaluate(model: Any, holdout: DatasetVersion, config: Json) -> dict[str, float]:
    """Held-out metrics of ``model`` (:func:`stages.evaluate`)."""
    return stages.evaluate(model, _frame(holdout), _config(config))


@step(cache=False)
def ct_gate(
    model: Any, metrics: dict[str, float], train: DatasetVersion, holdout: DatasetVersion, config: Json
) -> Json:
    """Log the model in a tracked run, register it, evaluate it against the champion; the verdict."""
    import loopml
    import loopml.data
    import loopml.models

    cfg = _config(config)
    loopml.set_experiment(cfg.experiment)
    with loopml.start_run(run_name=f"{cfg.model_name}-candidate", tags={"loopml.template": "ct"}) as run:
        loopml.data.log_input(train, context="training")
        loopml.data.log_input(holdout, context="evaluation")
        loopml.log_metrics(metrics)
        columns = stages.feature_columns(_frame(holdout), cfg)
        info = loopml.models.log_model(model, "model", input_example=_frame(holdout)[columns].head(3))
    from loopml.pipelines.templates.records import ModelData

    outcome = stages.gate(Candidate(run.run_id, info.model_uri, metrics), ModelData(train, holdout), cfg)
    return _verdict(outcome)


def _verdict(outcome: GateOutcome) -> Json:
    return {
        "version": outcome.version.version,
        "passed": outcome.passed,
        "reason": "" if outcome.passed else outcome.reason(),
        "champion": outcome.champion,
        "status": "gated" if outcome.passed else "rejected",
    }


@step(cache=False)
def ct_register(verdict: Json, config: Json) -> Json:
    """Point the ``challenger`` alias at a version that passed the gate."""
    if not verdict["passed"]:
        return verdict
    import loopml.registry

    cfg = _config(config)
    mv = loopml.registry.service().get_model_version(cfg.model_name, verdict["version"])
    stages.register(GateOutcome(mv, _passed(), verdict["champion"]), cfg)
    return {**verdict, "status": "registered"}


def _passed() -> Any:
    from loopml.registry.records import GateResult

    return GateResult(True)


@step(cache=False)
def ct_deploy(registered: Json, config: Json) -> Json:
    """Send the canary share of the endpoint's traffic to the new version (no endpoint: skip)."""
    cfg = _config(config)
    if registered["status"] != "registered" or not cfg.endpoint:
        return registered
    import loopml.registry

    mv = loopml.registry.service().get_model_version(cfg.model_name, registered["version"])
    import time

    since = int(time.time() * 1000)
    with services(cfg) as (endpoints, live):
        rollout.live_of(live or endpoints)  # refused here, before a canary goes out undecided
        policy = rollout.deploy(mv, cfg, endpoints)
    return {**registered, "status": "deployed", "since_ms": since, "variants": len(policy.variants)}


@step(cache=False)
def ct_decide(deployed: Json, config: Json) -> Json:
    """Promote the version or report the rollback the canary's live metrics caused."""
    cfg = _config(config)
    import loopml.registry

    if deployed["status"] == "registered" and not cfg.endpoint:
        loopml.registry.promote(
            cfg.model_name, deployed["version"], reason="continuous training: gate passed"
        )
        return {**deployed, "status": "promoted", "reason": "passed the gate (no endpoint to canary)"}
    if deployed["status"] != "deployed":
        return deployed
    mv = loopml.registry.service().get_model_version(cfg.model_name, deployed["version"])
    with services(cfg) as (endpoints, live):
        decision = rollout.decide(mv, cfg, endpoints, live, since_ms=deployed["since_ms"])
    return {**deployed, "status": decision.status, "reason": decision.reason}


@contextmanager
def services(config: CTConfig) -> Iterator[tuple[EndpointService, Any]]:
    """The endpoints service (and live statistics) of ``config.serving_url``, else the SDK's."""
    if config.serving_url:
        from loopml.client.http_serving import HttpEndpointService

        svc = HttpEndpointService(config.serving_url, retries=2)
        try:
            yield svc, svc
        finally:
            svc.close()
        return
    import loopml.serving

    local = loopml.serving.service()
    yield local, local if hasattr(local, "traffic") else None


def build_pipeline(name: str = "continuous-training", **replace: Step[..., Any]) -> Pipeline:
    """The template as a :class:`Pipeline` named ``name``; keyword arguments replace steps by
    stage name (``ingest``, ``validate``, ``features``, ``train``, ``evaluate``, ``gate``,
    ``register``, ``deploy``, ``decide``) with steps of the same signature."""
    chosen = {**DEFAULT_STEPS, **replace}
    unknown = sorted(set(replace) - set(DEFAULT_STEPS))
    if unknown:
        from loopml.errors import InvalidInput

        raise InvalidInput(
            f"the continuous-training pipeline has no stage {unknown[0]!r}; "
            f"stages: {', '.join(DEFAULT_STEPS)}",
            details={"field": unknown[0]},
        )

    def continuous_training(data: DatasetVersion, config: Json) -> Json:
        train, holdout = chosen["ingest"](data, config)
        checked = chosen["validate"](train, holdout, config)
        model_train, model_holdout = chosen["features"](train, holdout, checked, config)
        model = chosen["train"](model_train, config)
        metrics = chosen["evaluate"](model, model_holdout, config)
        verdict = chosen["gate"](model, metrics, model_train, model_holdout, config)
        registered = chosen["register"](verdict, config)
        deployed = chosen["deploy"](registered, config)
        result: Json = chosen["decide"](deployed, config)
        return result

    return pipeline(name=name)(continuous_training)


DEFAULT_STEPS: dict[str, Step[..., Any]] = {
    "ingest": ct_ingest,
    "validate": ct_validate,
    "features": ct_features,
    "train": ct_train,
    "evaluate": ct_evaluate,
    "gate": ct_gate,
    "register": ct_register,
    "deploy": ct_deploy,
    "decide": ct_decide,
}


@pipeline(name="continuous-training")
def continuous_training_pipeline(data: DatasetVersion, config: Json) -> Json:
    """The template with its default steps: ``data`` is the new labelled rows, ``config`` a
    :class:`CTConfig` as JSON; returns the final verdict (``status`` promoted, rejected,
    rolled_back, ...)."""
    train, holdout = ct_ingest(data, config)
    checked = ct_validate(train, holdout, config)
    model_train, model_holdout = ct_features(train, holdout, checked, config)
    model = ct_train(model_train, config)
    metrics = ct_evaluate(model, model_holdout, config)
    verdict = ct_gate(model, metrics, model_train, model_holdout, config)
    registered = ct_register(verdict, config)
    deployed = ct_deploy(registered, config)
    verdict_out: Json = ct_decide(deployed, config)
    return verdict_out
