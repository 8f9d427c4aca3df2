"""The stages of the continuous-training template, each a plain typed function.

    ingest -> validate -> features -> train -> evaluate -> gate -> register -> deploy -> decide

Each stage is a plain, typed function of this module; :func:`continuous_training` assembles
them and any of them can be replaced, e.g. ``continuous_training(config, train=my_train)``.
The stages use the other capabilities only through their public APIs:

* **ingest** registers the labelled rows as two dataset versions (``NAME-train`` and
  ``NAME-holdout``, the most recent ``holdout_fraction`` by time): content hash, schema,
  profile (:mod:`loopml.data`);
* **validate** checks their quality and drift against the reference version, by default the
  data the production champion was trained on (:mod:`loopml.monitoring`); a quality error
  stops the run before anything is trained;
* **features** joins the feature store's values point-in-time when the config names a feature
  service (:func:`loopml.features.offline.get_historical_features`), else keeps the columns;
* **train** fits a scikit-learn model; **evaluate** scores it on the held-out version; both
  inside one tracked run that logs params, metrics, dataset inputs and the model;
* **gate** registers the candidate and evaluates it against the production champion on the
  held-out model table, ``DATASET-model-holdout`` with the feature columns and the target
  (:func:`loopml.registry.evaluate`, the model's gate); a failed gate stops
  here with the reason, the version tagged ``rejected``;
* **register** points the ``challenger`` alias at the candidate;
* **deploy** sends a share of the endpoint's traffic to it as a canary with a rollback policy
  on live quality (:mod:`loopml.serving`);
* **decide** waits for the canary's live evidence: if the serving process rolled it back, the
  run ends ``rolled_back`` with the judge's reason; otherwise the version is promoted in the
  registry (alias ``champion``) and the endpoint sends it all traffic.

>>> config = CTConfig(model_name="fraud", dataset="transactions", target="is_fraud")
>>> ingested = ingest(frame, config)                 # doctest: +SKIP
>>> ingested.train.ref, ingested.holdout.ref         # doctest: +SKIP
('transactions-train@1', 'transactions-holdout@1')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.errors import InvalidInput
from loopml.pipelines.templates.records import (
    CHALLENGER,
    STATUS_TAG,
    Candidate,
    CTConfig,
    GateOutcome,
    Ingested,
    ModelData,
    Validation,
)

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.records import ModelVersion


# ---- the stages ---------------------------------------------------------------------------------
def ingest(source: Any, config: CTConfig) -> Ingested:
    """Register ``source`` (a DataFrame, Arrow table, file, or ``"name@version"``) as
    ``DATASET-train`` and ``DATASET-holdout`` versions, the holdout being the latest rows by
    ``time_column`` (or the last rows). Identical rows reuse the existing versions."""
    import loopml.data

    frame = load_frame(source)
    if config.target not in frame.columns:
        raise InvalidInput(
            f"ingest: the data has no target column {config.target!r}; columns: {list(frame.columns)}",
            details={"field": "target"},
        )
    if config.time_column:
        frame = frame.sort_values(config.time_column, kind="stable").reset_index(drop=True)
    cut = round(len(frame) * (1.0 - config.holdout_fraction))
    if cut < 1 or cut >= len(frame):
        raise InvalidInput(
            f"ingest: {len(frame)} rows cannot be split into training and held-out parts",
            details={"field": "source"},
        )
    train = loopml.data.register(f"{config.dataset}-train", frame.iloc[:cut].reset_index(drop=True))
    holdout = loopml.data.register(f"{config.dataset}-holdout", frame.iloc[cut:].reset_index(drop=True))
    return Ingested(train, holdout)


def validate(ingested: Ingested, config: CTConfig) -> Validation:
    """Quality and drift of the training version against ``config.reference`` (default: the
    champion's training data); ``InvalidInput`` on a quality error (e.g. a missing column)."""
    import loopml.data
    from loopml.monitoring import check_quality, compute_drift

    ref = config.reference or champion_training_data(config.model_name)
    if ref is None:
        return Validation(None, None, None)
    reference = loopml.data.get(*loopml.data.parse_ref(ref))
    current = loopml.data.load(ingested.train.name, ingested.train.version)
    quality = check_quality(reference, current)
    errors = [i for i in quality.issues if i.severity == "error"]
    if errors:
        raise InvalidInput(
            f"validate: {ingested.train.ref} cannot be trained on like {ref}: "
            + "; ".join(i.message for i in errors),
            details={"field": "source", "issues": [i.kind for i in errors]},
        )
    columns = [c for c in feature_columns(current, config) if c in current.columns]
    return Validation(ref, quality, compute_drift(reference, current, columns=columns))


def features(frame: pd.DataFrame, config: CTConfig) -> pd.DataFrame:
    """``frame`` with the feature service's values joined point-in-time, when one is configured."""
    if config.feature_service is None:
        return frame
    from loopml.features.offline import get_historical_features

    if not config.time_column:
        raise InvalidInput(
            "features: a feature service needs time_column (the event timestamp of each row)",
            details={"field": "time_column"},
        )
    table = get_historical_features(
        frame,
        service=config.feature_service,
        views=config.feature_views,
        timestamp_column=config.time_column,
    )
    joined: pd.DataFrame = table.to_pandas()
    return joined


def train(frame: pd.DataFrame, config: CTConfig) -> Any:
    """Fit a histogram gradient-boosting classifier on the feature columns (``config.params``
    override its hyper-parameters)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    params = {"max_iter": 100, "learning_rate": 0.1, "random_state": config.seed, **config.params}
    model = HistGradientBoostingClassifier(**params)
    model.fit(frame[feature_columns(frame, config)], frame[config.target])
    return model


def evaluate(model: Any, frame: pd.DataFrame, config: CTConfig) -> dict[str, float]:
    """Held-out accuracy, F1 and (for two classes) ROC AUC of ``model``."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    x, y = frame[feature_columns(frame, config)], frame[config.target]
    predicted = model.predict(x)
    metrics = {"accuracy": float(accuracy_score(y, predicted))}
    if len(np.unique(y)) == 2:
        metrics["f1"] = float(f1_score(y, predicted, pos_label=np.unique(y)[1]))
        if hasattr(model, "predict_proba"):
            metrics["roc_auc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    return metrics


def gate(candidate: Candidate, data: ModelData, config: CTConfig) -> GateOutcome:
    """Register the candidate and evaluate it and the champion on the held-out version; the
    model's gate (``config.gate`` replaces it when given) decides. A failing version is tagged
    ``rejected``."""
    import loopml.registry

    version = loopml.registry.register(
        config.model_name,
        candidate.model_uri,
        description=f"continuous training on {data.train.ref}",
        tags={STATUS_TAG: "candidate"},
    )
    if config.gate is not None:
        loopml.registry.set_gate(config.model_name, list(config.gate))
    holdout = data.holdout
    evaluation = loopml.registry.evaluate(
        config.model_name, version.version, dataset=holdout.ref, target=config.target
    )
    svc = loopml.registry.service()
    result = svc.check_gate(config.model_name, version.version)
    if not result.passed:
        svc.set_model_version_tag(config.model_name, version.version, STATUS_TAG, "rejected")
    return GateOutcome(version, result, evaluation.champion_version)


def register(outcome: GateOutcome, config: CTConfig) -> ModelVersion:
    """Point the ``challenger`` alias at the version that passed the gate."""
    import loopml.registry

    svc = loopml.registry.service()
    version = outcome.version.version
    svc.set_registered_model_alias(config.model_name, CHALLENGER, version)
    svc.set_model_version_tag(config.model_name, version, STATUS_TAG, "challenger")
    return svc.get_model_version(config.model_name, version)


# ---- helpers the stages share -------------------------------------------------------------------
def feature_columns(frame: pd.DataFrame, config: CTConfig) -> list[str]:
    """The model's inputs: ``config.features``, else every column but the target, the time
    column and ``config.exclude``."""
    if config.features is not None:
        missing = [c for c in config.features if c not in frame.columns]
        if missing:
            raise InvalidInput(
                f"the data lacks the feature columns {missing}; columns: {list(frame.columns)}",
                details={"field": "features"},
            )
        return list(config.features)
    skip = {config.target, config.time_column, *config.exclude}
    return [c for c in frame.columns if c not in skip]


def champion_training_data(model_name: str) -> str | None:
    """``name@version`` of the dataset the champion of ``model_name`` was trained on, if known."""
    import loopml.registry
    from loopml.errors import NotFound

    svc = loopml.registry.service()
    try:
        champion = svc.champion(model_name)
    except NotFound:
        return None
    if champion is None:
        return None
    lineage = svc.lineage(model_name, champion.version)
    for ds in lineage.datasets:
        if ds.context == "training" and ds.version is not None:
            return f"{ds.name}@{ds.version}"
    return None


def load_frame(source: Any) -> pd.DataFrame:
    """A pandas DataFrame from a DataFrame, an Arrow table, a Parquet/CSV path or ``"name@version"``."""
    import pandas as pd

    import loopml.data

    if isinstance(source, pd.DataFrame):
        return source
    if hasattr(source, "to_pandas"):
        frame: pd.DataFrame = source.to_pandas()
        return frame
    if isinstance(source, str) and "@" in source and not source.endswith((".parquet", ".csv")):
        loaded: pd.DataFrame = loopml.data.load(*loopml.data.parse_ref(source))
        return loaded
    if isinstance(source, str):
        return pd.read_csv(source) if source.endswith(".csv") else pd.read_parquet(source)
    raise InvalidInput(
        f"cannot read training data from a {type(source).__name__}: pass a DataFrame, an Arrow "
        "table, a Parquet/CSV path or a registered 'name@version'",
        details={"field": "source"},
    )
