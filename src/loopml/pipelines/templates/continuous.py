"""The continuous-training template: from fresh labelled data to a model in production.

    ingest -> validate -> features -> train -> evaluate -> gate -> register -> deploy -> decide

:func:`continuous_training` assembles the stages of :mod:`~loopml.pipelines.templates.stages`
and :mod:`~loopml.pipelines.templates.rollout`; pass any of them to replace it, with the same
signature::

    def my_train(frame: pd.DataFrame, config: CTConfig) -> Any:
        return LogisticRegression(max_iter=1000).fit(frame[FEATURES], frame[config.target])

    ct = continuous_training(CTConfig("fraud", "transactions", "is_fraud", endpoint="fraud"),
                             train=my_train)
    result = ct.run(new_rows, endpoints=loopml.serving.service())

``train`` and ``evaluate`` run inside one tracked run (experiment ``config.experiment``)
that records the parameters, the held-out metrics, both dataset versions as inputs and the
model. A run stops at the first stage that says no: ``invalid`` (validation), ``rejected``
(the gate) or ``rolled_back`` (the canary); otherwise it ends ``promoted`` (or
``registered`` when the config names no endpoint and ``promote=False``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInput
from loopml.pipelines.templates import rollout, stages
from loopml.pipelines.templates.records import (
    Candidate,
    CTConfig,
    CTResult,
    Decision,
    GateOutcome,
    Ingested,
    LiveTraffic,
    ModelData,
    Validation,
)

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.records import ModelVersion
    from loopml.serving.records import TrafficPolicy
    from loopml.serving.service import EndpointService

StageHook = Callable[[str, str], None]
"""Called as ``hook(stage, message)`` when a stage finishes (progress, logs)."""

STAGES = ("ingest", "validate", "features", "train", "evaluate", "gate", "register", "deploy", "decide")


@dataclass
class ContinuousTraining:
    """The template with its stages; :meth:`run` executes them in order on new data."""

    config: CTConfig
    ingest: Callable[[Any, CTConfig], Ingested] = stages.ingest
    validate: Callable[[Ingested, CTConfig], Validation] = stages.validate
    features: Callable[[pd.DataFrame, CTConfig], pd.DataFrame] = stages.features
    train: Callable[[pd.DataFrame, CTConfig], Any] = stages.train
    evaluate: Callable[[Any, pd.DataFrame, CTConfig], dict[str, float]] = stages.evaluate
    gate: Callable[[Candidate, ModelData, CTConfig], GateOutcome] = stages.gate
    register: Callable[[GateOutcome, CTConfig], ModelVersion] = stages.register
    deploy: Callable[[ModelVersion, CTConfig, EndpointService], TrafficPolicy] = rollout.deploy
    decide: Callable[..., Decision] = rollout.decide
    hooks: list[StageHook] = field(default_factory=list)

    def run(
        self,
        source: Any,
        *,
        endpoints: EndpointService | None = None,
        live: LiveTraffic | None = None,
        promote: bool = True,
    ) -> CTResult:
        """Run every stage on ``source`` (a DataFrame, Arrow table, file or ``name@version``).

        With ``config.endpoint`` set, ``endpoints`` (default: ``loopml.serving.service()``)
        receives the canary and ``live`` (default: ``endpoints`` when it is the HTTP client)
        reports its live statistics while :meth:`decide` waits. Without an endpoint a version
        that passes the gate is promoted in the registry (unless ``promote=False``)."""
        config, result = self.config, CTResult(status="registered")
        if config.endpoint:  # refused before anything runs, not with a canary out and undecided
            import loopml.serving

            endpoints = endpoints or loopml.serving.service()
            live = live or rollout.live_of(endpoints)
        ingested = self._stage(result, "ingest", lambda: self.ingest(source, config))
        result.ingested = ingested
        try:
            result.validation = self._stage(result, "validate", lambda: self.validate(ingested, config))
        except InvalidInput as exc:
            result.status, result.reason = "invalid", exc.message
            return result
        data = result.data = self._stage(result, "features", lambda: self._prepare(ingested))
        candidate = result.candidate = self._fit(result, ingested, data)
        outcome = self._stage(result, "gate", lambda: self.gate(candidate, data, config))
        result.gate = outcome
        if not outcome.passed:
            result.status, result.reason = "rejected", outcome.reason()
            return result
        version = self._stage(result, "register", lambda: self.register(outcome, config))
        if not config.endpoint:
            if promote:
                result.decision = self._stage(result, "decide", lambda: _promote_only(version, config))
                result.status, result.reason = "promoted", result.decision.reason
            return result
        assert endpoints is not None
        svc = endpoints
        since = int(time.time() * 1000)
        self._stage(result, "deploy", lambda: self.deploy(version, config, svc))
        decision = self._stage(
            result, "decide", lambda: self.decide(version, config, svc, live, since_ms=since)
        )
        result.decision, result.status, result.reason = decision, decision.status, decision.reason
        return result

    def _prepare(self, ingested: Ingested) -> ModelData:
        """The features stage on both parts, kept to the model's columns and registered."""
        import loopml.data

        config = self.config
        parts = []
        for raw, part in ((ingested.train, "train"), (ingested.holdout, "holdout")):
            frame = self.features(loopml.data.load(raw.name, raw.version), config)
            table = frame[[*stages.feature_columns(frame, config), config.target]]
            parts.append(loopml.data.register(f"{config.dataset}-model-{part}", table))
        return ModelData(parts[0], parts[1])

    def _fit(self, result: CTResult, ingested: Ingested, data: ModelData) -> Candidate:
        """train -> evaluate inside one tracked run that logs its inputs, metrics and model."""
        import loopml
        import loopml.data
        import loopml.models

        config = self.config
        train_rows = loopml.data.load(data.train.name, data.train.version)
        holdout_rows = loopml.data.load(data.holdout.name, data.holdout.version)
        loopml.set_experiment(config.experiment)
        with loopml.start_run(
            run_name=f"{config.model_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={"loopml.template": "continuous_training"},
        ) as run:
            loopml.data.log_input(data.train, context="training")
            loopml.data.log_input(data.holdout, context="evaluation")
            loopml.data.log_input(ingested.train, context="source")
            loopml.log_params({"model_name": config.model_name, "seed": config.seed, **dict(config.params)})
            model = self._stage(result, "train", lambda: self.train(train_rows, config))
            metrics = self._stage(result, "evaluate", lambda: self.evaluate(model, holdout_rows, config))
            loopml.log_metrics(metrics)
            columns = stages.feature_columns(train_rows, config)
            info = loopml.models.log_model(model, "model", input_example=train_rows[columns].head(3))
        return Candidate(run.run_id, info.model_uri, metrics)

    def _stage(self, result: CTResult, name: str, fn: Callable[[], Any]) -> Any:
        value = fn()
        result.stages.append(name)
        for hook in self.hooks:
            hook(name, _describe(name, value))
        return value


def continuous_training(config: CTConfig, **steps: Any) -> ContinuousTraining:
    """The template for ``config``; keyword arguments replace stages by name (see :data:`STAGES`).

    >>> ct = continuous_training(CTConfig("fraud", "tx", "is_fraud"), train=lambda f, c: None)
    >>> ct.train(None, ct.config) is None
    True
    """
    unknown = sorted(set(steps) - set(STAGES) - {"hooks"})
    if unknown:
        raise InvalidInput(
            f"continuous_training has no stage {', '.join(map(repr, unknown))}; stages: {', '.join(STAGES)}",
            details={"field": unknown[0]},
        )
    return ContinuousTraining(config, **steps)


def _promote_only(version: ModelVersion, config: CTConfig) -> Decision:
    import loopml.registry

    loopml.registry.promote(config.model_name, version.version, reason="continuous training: passed the gate")
    return Decision("promoted", "passed the gate (no endpoint to canary)")


def _describe(stage: str, value: Any) -> str:
    if isinstance(value, Ingested):
        train, holdout = value.train, value.holdout
        return f"{train.ref} ({train.num_rows} rows), {holdout.ref} ({holdout.num_rows} rows)"
    if isinstance(value, ModelData):
        return f"model tables {value.train.ref}, {value.holdout.ref}"
    if isinstance(value, Validation):
        if value.drift is None:
            return "no reference yet (first version)"
        issues = len(value.quality.issues) if value.quality else 0
        return f"vs {value.reference}: drift share {value.drift.drift_share:.2f}, {issues} quality warnings"
    if isinstance(value, GateOutcome):
        verdict = "passed" if value.passed else f"FAILED: {value.reason()}"
        return f"v{value.version.version} vs champion v{value.champion}: {verdict}"
    if isinstance(value, Decision):
        return f"{value.status}: {value.reason}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:.3f}" for k, v in value.items() if isinstance(v, float))
    return stage
