"""Autologging for scikit-learn (and XGBoost/LightGBM's scikit-learn API): every ``fit`` is a run.

>>> import loopml
>>> loopml.autolog()                                   # doctest: +SKIP
>>> LogisticRegression().fit(X, y)                     # doctest: +SKIP

``fit`` (and ``fit_transform`` / ``fit_predict``) of every scikit-learn estimator, Pipeline,
GridSearchCV and RandomizedSearchCV is patched, and of XGBoost's and LightGBM's scikit-learn
estimators when those libraries are installed. Only the outermost call logs (a Pipeline's
steps and a search's inner fits do not), counted per thread/context with a contextvar. The run
gets the estimator's parameters, training metrics computed on the training data, the model
(skops, or XGBoost's/LightGBM's own format; never pickled), and the training data as a dataset
input (its content digest, shape and schema). A search also logs its best parameters,
``best_cv_score``, its top candidates as child runs and ``cv_results.csv``.

Autologging never breaks the user's ``fit``: whatever fails while logging becomes one warning
(none if ``silent``) and ``fit``'s own result or exception is passed on untouched.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import importlib
import importlib.util
import inspect
import io
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from loopml import sdk
from loopml.errors import InvalidInput
from loopml.models.signature import Signature, infer_schema, is_dataframe
from loopml.tracking.records import DatasetInput, Metric, Param, RunTag
from loopml.tracking.service import TrackingService
from loopml.tracking.validation import (
    MAX_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS_PER_BATCH,
)

log = logging.getLogger(__name__)

FLAVOR = "sklearn"
AUTOLOG_TAG = "mlflow.autologging"
PATCHED_METHODS = ("fit", "fit_transform", "fit_predict")
# Libraries whose scikit-learn API estimators are patched too (their flavors store the model).
FRIENDS = {
    "xgboost": ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor"),
    "lightgbm": ("LGBMClassifier", "LGBMRegressor", "LGBMRanker"),
}
_EXAMPLE_ROWS = 5
_MISSING = object()
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("loopml_autolog_depth", default=0)
_lock = threading.Lock()
# (class, method name) -> what the class's own __dict__ held before patching (_MISSING: inherited).
_originals: dict[tuple[type, str], Any] = {}


@dataclass(frozen=True, slots=True)
class AutologConfig:
    """What ``loopml.autolog`` was called with."""

    log_models: bool = True
    log_datasets: bool = True
    log_input_examples: bool = False
    max_tuning_runs: int | None = 5
    exclusive: bool = False
    silent: bool = False


_config: AutologConfig | None = None


def autolog(
    log_models: bool = True,
    log_datasets: bool = True,
    log_input_examples: bool = False,
    max_tuning_runs: int | None = 5,
    disable: bool = False,
    exclusive: bool = False,
    silent: bool = False,
) -> None:
    """Log every scikit-learn ``fit`` as a run (``disable=True`` restores the original methods).

    A fit inside an active run logs into it (with ``exclusive=True`` it logs nothing there);
    otherwise it starts a run and ends it FINISHED, or FAILED if ``fit`` raised.
    ``max_tuning_runs`` bounds a search's child runs (``None``: every candidate).

    >>> loopml.autolog(log_input_examples=True, max_tuning_runs=3)  # doctest: +SKIP
    >>> GridSearchCV(SVC(), {"C": [0.1, 1, 10]}).fit(X, y)           # doctest: +SKIP
    """
    global _config
    if max_tuning_runs is not None and (isinstance(max_tuning_runs, bool) or max_tuning_runs < 0):
        raise InvalidInput(
            f"max_tuning_runs is {max_tuning_runs!r}; pass a number >= 0, or None for every candidate",
            details={"field": "max_tuning_runs"},
        )
    with _lock:
        if disable:
            _config = None
            _unpatch_all()
            return
        if not _originals:
            _patch_all()
        _config = AutologConfig(
            log_models, log_datasets, log_input_examples, max_tuning_runs, exclusive, silent
        )


def is_enabled() -> bool:
    """Whether scikit-learn autologging is on."""
    return _config is not None


@functools.cache
def _estimator_classes() -> tuple[type, ...]:
    """Every public scikit-learn estimator class (walking sklearn takes seconds: done once)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise InvalidInput(
            "loopml.autolog() logs scikit-learn fits, and scikit-learn is not installed: "
            "pip install 'loopml[sklearn]'",
            details={"field": "sklearn"},
        ) from None
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    with warnings.catch_warnings():  # importing every sklearn module may warn about deprecated ones
        warnings.simplefilter("ignore")
        classes = [cls for _, cls in all_estimators()]
    return tuple(dict.fromkeys([*classes, Pipeline, GridSearchCV, RandomizedSearchCV, *_friend_classes()]))


def _friend_classes() -> list[type]:
    """The scikit-learn API estimators of XGBoost and LightGBM, when they are installed."""
    found: list[type] = []
    for module_name, names in FRIENDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        found += [getattr(module, n) for n in names if isinstance(getattr(module, n, None), type)]
    return found


def _patch_all() -> None:
    """Wrap the fit methods of every estimator class; originals are read before any is patched."""
    plan: list[tuple[type, str, Any]] = []
    for cls in _estimator_classes():
        for name in PATCHED_METHODS:
            raw = inspect.getattr_static(cls, name, _MISSING)
            patched = _patched_attribute(raw)
            if patched is not None:
                plan.append((cls, name, patched))
    import joblib  # type: ignore[import-untyped]

    plan.append((joblib.Parallel, "__call__", _parallel_call(joblib.Parallel.__call__)))
    for cls, name, patched in plan:
        _originals[(cls, name)] = cls.__dict__.get(name, _MISSING)
        setattr(cls, name, patched)


def _unpatch_all() -> None:
    for (cls, name), original in _originals.items():
        if original is _MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()


def _patched_attribute(raw: Any) -> Any:
    """A wrapped copy of a class attribute: a plain function, or sklearn's ``available_if``
    descriptor (whose check must keep working, so ``hasattr(pipe, "fit_predict")`` stays true
    only when the final step has it). Anything else (a property) is left alone."""
    if inspect.isfunction(raw):
        return _wrap(raw)
    fn = getattr(raw, "fn", None)
    if inspect.isfunction(fn) and callable(getattr(raw, "check", None)):
        descriptor = copy.copy(raw)
        descriptor.fn = _wrap(fn)
        return descriptor
    return None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _config
        if config is None or _depth.get() > 0:
            return original(self, *args, **kwargs)
        token = _depth.set(1)
        try:
            return _logged_fit(config, original, self, args, kwargs)
        finally:
            _depth.reset(token)

    patched.__loopml_autolog__ = True  # type: ignore[attr-defined]
    return patched


def _parallel_call(original: Callable[..., Any]) -> Callable[..., Any]:
    """joblib's ``Parallel.__call__``, carrying the fit depth into thread workers.

    A search or ensemble with ``n_jobs`` on a thread backend fits its candidates in pool
    threads, which start with a fresh context: without this every inner fit would be a run.
    Process workers (loky) import an unpatched scikit-learn, so they need nothing.
    """

    @functools.wraps(original)
    def call(self: Any, iterable: Any) -> Any:
        depth = _depth.get()
        if depth == 0 or not getattr(getattr(self, "_backend", None), "uses_threads", False):
            return original(self, iterable)
        return original(self, ((_AtDepth(fn, depth), args, kwargs) for fn, args, kwargs in iterable))

    return call


class _AtDepth:
    """A joblib task run at the fit depth of the thread that dispatched it."""

    def __init__(self, fn: Callable[..., Any], depth: int) -> None:
        self.fn, self.depth = fn, depth

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _depth.set(self.depth)
        try:
            return self.fn(*args, **kwargs)
        finally:
            _depth.reset(token)


def _logged_fit(
    config: AutologConfig,
    original: Callable[..., Any],
    est: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    failures: list[str] = []
    session = _Session.open(config, est, failures)
    try:
        result = original(est, *args, **kwargs)
    except BaseException as exc:
        if session is not None:
            session.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", failures)
        _warn(config, est, original.__name__, failures)
        raise
    if session is not None:
        X, y, weight = _fit_inputs(original, est, args, kwargs)
        _log_everything(session, config, est, X, y, weight, failures)
        session.close("FINISHED", failures)
    _warn(config, est, original.__name__, failures)
    return result


def _warn(config: AutologConfig, est: Any, method: str, failures: list[str]) -> None:
    if failures and not config.silent:
        warnings.warn(
            f"loopml autolog could not log all of {type(est).__name__}.{method} (the fit itself "
            f"is unaffected): {'; '.join(failures)}",
            UserWarning,
            stacklevel=4,
        )


@contextmanager
def _attempt(what: str, failures: list[str]) -> Iterator[None]:
    """Run one logging step; an exception becomes a line of the fit's warning."""
    try:
        yield
    except Exception as exc:
        log.debug("autolog: %s failed", what, exc_info=True)
        failures.append(f"{what}: {type(exc).__name__}: {exc}")


@dataclass(slots=True)
class _Session:
    """The run one outermost fit logs into, and whether this fit started it."""

    svc: TrackingService
    run_id: str
    experiment_id: str
    started: bool
    existing_params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, config: AutologConfig, est: Any, failures: list[str]) -> _Session | None:
        active = sdk.active_run()
        if active is not None and config.exclusive:
            return None  # MLflow's `exclusive`: the user's own runs get nothing from autologging
        with _attempt("starting a run", failures):
            if active is not None:
                run = active.service.get_run(active.run_id)
                return cls(active.service, active.run_id, run.info.experiment_id, False, dict(run.params))
            started = sdk.start_run(tags={AUTOLOG_TAG: FLAVOR})
            return cls(started.service, started.run_id, started.run.info.experiment_id, True)
        return None

    def close(self, status: str, failures: list[str]) -> None:
        if self.started:
            with _attempt(f"ending the run as {status}", failures):
                sdk.end_run(status, run_id=self.run_id)

    def log_params(self, params: dict[str, str], failures: list[str]) -> None:
        """Log params the run does not have yet; one it has with another value is a failure."""
        clashes = sorted(
            k for k, v in params.items() if k in self.existing_params and self.existing_params[k] != v
        )
        if clashes:
            failures.append(f"params {clashes} already have other values in run {self.run_id}")
        items = [Param(k, v) for k, v in params.items() if k not in self.existing_params]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.svc.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])
        self.existing_params.update({p.key: p.value for p in items})

    def log_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.svc.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])


def _fit_inputs(
    original: Callable[..., Any], est: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """``X``, ``y`` and ``sample_weight`` as the user passed them to ``fit`` (None when absent)."""
    try:
        bound = _signature(original).bind(est, *args, **kwargs)
    except TypeError:
        return None, None, None
    names = list(bound.signature.parameters)
    values = bound.arguments
    X = values.get(names[1]) if len(names) > 1 else None
    y = values.get("y", values.get("Y"))
    weight = values.get("sample_weight")
    for p in bound.signature.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD and weight is None:
            weight = values.get(p.name, {}).get("sample_weight")
    return X, y, weight


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def _log_everything(
    session: _Session, config: AutologConfig, est: Any, X: Any, y: Any, weight: Any, failures: list[str]
) -> None:
    with _attempt("params", failures):
        session.log_params(estimator_params(est), failures)
    with _attempt("tags", failures):
        cls = type(est)
        tags = {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"}
        session.svc.log_batch(session.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    if X is not None:
        with _attempt("training metrics", failures):
            session.log_metrics(training_metrics(est, X, y, weight))
    search = _is_search(est)
    if search:
        with _attempt("best params", failures):
            _log_best(session, est, failures)
    model = getattr(est, "best_estimator_", None) if search else est
    if config.log_models and model is not None and hasattr(model, "predict") and X is not None:
        with _attempt("model", failures):
            _log_model(session, config, model, X, y)
    if config.log_datasets and X is not None:
        with _attempt("dataset", failures):
            session.svc.log_inputs(session.run_id, [training_dataset(X, y)])
    if search:
        with _attempt("tuning child runs", failures):
            _log_children(session, config, est)
        with _attempt("cv_results.csv", failures):
            _log_cv_results(session, est)


def estimator_params(est: Any) -> dict[str, str]:
    """``get_params(deep=True)`` as str values, keys and values cut to the tracking limits
    (as MLflow truncates them) so a long repr never loses the whole batch."""
    out: dict[str, str] = {}
    for key, value in est.get_params(deep=True).items():
        out[str(key)[:MAX_KEY_LENGTH]] = str(value)[:MAX_PARAM_VALUE_LENGTH]
    return out


def training_metrics(est: Any, X: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    """Metrics of ``est`` on its training data, named like MLflow's (``training_*``).

    Classifiers: accuracy, precision, recall, F1 (binary for 0/1 labels, else weighted), log
    loss and ROC AUC when ``predict_proba`` exists; regressors: MSE, RMSE, MAE, R²; both and
    clusterers: ``training_score`` (``est.score``). A metric undefined on this data is left out.
    """
    from sklearn.base import is_classifier, is_regressor

    out: dict[str, float] = {}
    if y is not None and hasattr(est, "predict"):  # a search without refit has no predict
        if is_classifier(est):
            out.update(_classifier_metrics(est, X, y, sample_weight))
        elif is_regressor(est):
            out.update(_regressor_metrics(est, X, y, sample_weight))
    score = _score(est, X, y, sample_weight)
    if score is not None:
        out["training_score"] = score
    return out


def _computed(metrics: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """The metrics that are defined on this data, as floats."""
    values = {name: _quiet(fn) for name, fn in metrics.items()}
    return {name: float(v) for name, v in values.items() if v is not None}


def _average(y: Any, classes: list[Any]) -> str:
    """``binary`` for two classes with 1 the positive one (sklearn's default ``pos_label``),
    else ``weighted`` (multiclass, or labels such as strings)."""
    if np.ndim(y) != 1 or len(classes) != 2:
        return "weighted"
    return (
        "binary"
        if any(isinstance(c, int | np.integer | float | np.floating) and c == 1 for c in classes)
        else "weighted"
    )


def _classifier_metrics(est: Any, X: Any, y: Any, w: Any) -> dict[str, float]:
    from sklearn import metrics as m

    pred = est.predict(X)
    classes = list(getattr(est, "classes_", np.unique(np.asarray(y))))
    avg = _average(y, classes)
    out = _computed(
        {
            "training_accuracy_score": lambda: m.accuracy_score(y, pred, sample_weight=w),
            "training_precision_score": lambda: m.precision_score(
                y, pred, average=avg, sample_weight=w, zero_division=0
            ),
            "training_recall_score": lambda: m.recall_score(
                y, pred, average=avg, sample_weight=w, zero_division=0
            ),
            "training_f1_score": lambda: m.f1_score(y, pred, average=avg, sample_weight=w, zero_division=0),
        }
    )
    proba = _quiet(lambda: est.predict_proba(X)) if hasattr(est, "predict_proba") else None
    if proba is not None:
        out |= _computed(
            {
                "training_log_loss": lambda: m.log_loss(y, proba, sample_weight=w, labels=classes),
                "training_roc_auc": lambda: _roc_auc(y, proba, w, classes),
            }
        )
    return out


def _roc_auc(y: Any, proba: Any, w: Any, classes: list[Any]) -> float:
    from sklearn.metrics import roc_auc_score

    if len(classes) == 2:
        positive = np.asarray(y) == classes[1]
        return float(roc_auc_score(positive, proba[:, 1], sample_weight=w))
    return float(
        roc_auc_score(y, proba, sample_weight=w, multi_class="ovr", average="weighted", labels=classes)
    )


def _regressor_metrics(est: Any, X: Any, y: Any, w: Any) -> dict[str, float]:
    from sklearn import metrics as m

    pred = est.predict(X)
    out = _computed(
        {
            "training_mean_squared_error": lambda: m.mean_squared_error(y, pred, sample_weight=w),
            "training_mean_absolute_error": lambda: m.mean_absolute_error(y, pred, sample_weight=w),
            "training_r2_score": lambda: m.r2_score(y, pred, sample_weight=w),
        }
    )
    if "training_mean_squared_error" in out:
        out["training_root_mean_squared_error"] = math.sqrt(out["training_mean_squared_error"])
    return out


def _score(est: Any, X: Any, y: Any, w: Any) -> float | None:
    score = getattr(est, "score", None)
    if score is None:
        return None
    if w is not None and "sample_weight" in _signature(score).parameters:
        value = _quiet(lambda: float(score(X, y, sample_weight=w)))
    else:
        value = _quiet(lambda: float(score(X, y)))
    return None if value is None else float(value)


def _quiet(fn: Callable[[], Any]) -> Any:
    """``fn()``, or None when the metric is undefined here (one class present, no refit, ...)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except (ValueError, TypeError, AttributeError, ZeroDivisionError):
        log.debug("autolog: a training metric is undefined here", exc_info=True)
        return None


def _head(data: Any, rows: int) -> Any:
    if is_dataframe(data) or type(data).__name__ == "Series":
        return data.iloc[:rows]
    return data[:rows]


def _log_model(session: _Session, config: AutologConfig, model: Any, X: Any, y: Any) -> None:
    from loopml.models.api import log_model

    if _is_sparse(X):
        example, signature = None, None
    else:
        example = _head(X, _EXAMPLE_ROWS)
        output = _head(y, _EXAMPLE_ROWS) if y is not None else model.predict(example)
        signature = Signature(infer_schema(example), infer_schema(output))
    try:
        log_model(
            model,
            "model",
            input_example=example if config.log_input_examples else None,
            signature=signature,
            run_id=session.run_id,
        )
    except InvalidInput as exc:
        untrusted = exc.details.get("untrusted")
        if not untrusted:
            raise
        raise InvalidInput(
            f"{type(model).__name__} was not stored: it holds types skops cannot load safely "
            f"({', '.join(map(str, untrusted))}) and autolog never pickles; if you trust everyone who "
            "will load it, call loopml.models.log_model(model, trust_pickle=True) yourself",
            details=exc.details,
        ) from None


def _is_search(est: Any) -> bool:
    """A fitted hyper-parameter search (GridSearchCV, RandomizedSearchCV and their kin)."""
    results = getattr(est, "cv_results_", None)
    return isinstance(results, dict) and "params" in results


def _log_best(session: _Session, search: Any, failures: list[str]) -> None:
    best = getattr(search, "best_params_", None) or {}
    session.log_params(
        {f"best_{k}"[:MAX_KEY_LENGTH]: str(v)[:MAX_PARAM_VALUE_LENGTH] for k, v in best.items()}, failures
    )
    score = getattr(search, "best_score_", None)
    if score is not None:
        session.log_metrics({"best_cv_score": float(score)})


def _ranked_candidates(search: Any, limit: int | None) -> list[int]:
    """Indices of the best-ranked candidates (by the refit metric), best first."""
    results = search.cv_results_
    refit = getattr(search, "refit", True)
    key = f"rank_test_{refit}" if isinstance(refit, str) else "rank_test_score"
    if key not in results:
        key = next((k for k in results if k.startswith("rank_test_")), "")
    count = len(results["params"])
    order = list(range(count)) if not key else sorted(range(count), key=lambda i: (int(results[key][i]), i))
    return order if limit is None else order[:limit]


def _log_children(session: _Session, config: AutologConfig, search: Any) -> None:
    results = search.cv_results_
    stats = [k for k in results if k.startswith(("mean_", "std_", "rank_"))]
    parent = session.svc.get_run(session.run_id)
    for rank, index in enumerate(_ranked_candidates(search, config.max_tuning_runs), start=1):
        name = f"{parent.info.run_name}-candidate-{rank}"[:250]
        tags = {sdk.PARENT_RUN_TAG: session.run_id, AUTOLOG_TAG: FLAVOR}
        child = session.svc.create_run(session.experiment_id, run_name=name, tags=tags)
        params = [
            Param(str(k)[:MAX_KEY_LENGTH], str(v)[:MAX_PARAM_VALUE_LENGTH])
            for k, v in results["params"][index].items()
        ]
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(results[k][index]), now, 0) for k in stats]
        session.svc.log_batch(child.info.run_id, metrics=metrics, params=params)
        session.svc.update_run(child.info.run_id, status="FINISHED", end_time=int(time.time() * 1000))


def _log_cv_results(session: _Session, search: Any) -> None:
    import pandas as pd

    text = pd.DataFrame(search.cv_results_).to_csv(index=False)
    session.svc.put_artifact(session.run_id, "cv_results.csv", io.BytesIO(text.encode()))


def _is_sparse(data: Any) -> bool:
    return type(data).__module__.startswith("scipy.sparse")


def training_dataset(X: Any, y: Any = None, name: str = "dataset") -> DatasetInput:
    """The run input describing ``X`` (and ``y``): content digest, shape and schema.

    A DataFrame ``X`` with a named Series ``y`` hashes as the one table ``X`` plus that column,
    so fitting on a registered dataset's frame split into features and label gives the
    dataset version's own digest (and ``loopml.data.runs_using`` finds the run).
    """
    table = _as_table(X, y)
    shapes = {"features_shape": list(np.shape(X)) if not _is_sparse(X) else list(X.shape)}
    if y is not None:
        shapes["targets_shape"] = list(np.shape(y))
    if table is not None:
        from loopml.data.hashing import table_digest

        digest = table_digest(table)
        fields = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in table.schema]
        schema: dict[str, Any] = {"loopml_fields": fields}
        rows, cols = table.num_rows, table.num_columns
    else:
        digest = _bytes_digest(X, y)
        schema = {"tensor": infer_schema(_head(X, 1)).to_dict() if not _is_sparse(X) else {"kind": "sparse"}}
        rows = int(shapes["features_shape"][0]) if shapes["features_shape"] else 0
        cols = int(np.prod(shapes["features_shape"][1:])) if len(shapes["features_shape"]) > 1 else 1
    profile = {"num_rows": rows, "num_elements": rows * cols, **shapes}
    return DatasetInput(
        name=name,
        digest=digest,
        source_type="code",
        source="",
        schema=orjson.dumps(schema).decode(),
        profile=orjson.dumps(profile).decode(),
        context="training",
        tags={AUTOLOG_TAG: FLAVOR},
    )


def _as_table(X: Any, y: Any) -> Any:
    """A pyarrow table of a DataFrame or a 2-D array (plus the target), or None for other data."""
    import pyarrow as pa

    from loopml.data.sources import read_source

    if is_dataframe(X):
        table = read_source(X).table
    elif not _is_sparse(X) and np.ndim(X) == 2:
        arr = np.asarray(X)
        table = pa.table({f"f{i}": arr[:, i] for i in range(arr.shape[1])})
    else:
        return None
    if y is None:
        return table
    target = np.asarray(y)
    name = getattr(y, "name", None)
    if target.ndim == 1:
        column = str(name) if name is not None else "target"
        if column in table.column_names:
            column = f"{column}_target"
        return table.append_column(column, pa.array(target))
    if target.ndim == 2:
        for i in range(target.shape[1]):
            table = table.append_column(f"target_{i}", pa.array(target[:, i]))
        return table
    return None


def _bytes_digest(X: Any, y: Any) -> str:
    """sha256 over the arrays' dtype, shape and bytes (sparse: its CSR parts)."""
    import hashlib

    h = hashlib.sha256()
    for part in (X, y):
        if part is None:
            continue
        if _is_sparse(part):
            csr = part.tocsr()  # a copy for any other sparse layout: convert once
            arrays = [csr.data, csr.indices, csr.indptr]
        else:
            arrays = [part]
        for a in arrays:
            arr = np.ascontiguousarray(np.asarray(a))
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes() if arr.dtype != object else str(arr.tolist()).encode())
    return h.hexdigest()
