"""``loopml.autolog()``: every scikit-learn fit becomes a run, as MLflow users expect."""

from __future__ import annotations

import io
import math
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted

import loopml
import loopml.data
import loopml.models
from loopml.errors import InvalidInput
from loopml.sdk import PARENT_RUN_TAG
from loopml.tracking import autolog as autolog_module
from loopml.tracking.autolog import training_dataset
from loopml.tracking.records import Run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["embedded", "remote"])
def sdk(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The SDK on a fresh local store, or (remote) on the session's live server."""
    _fresh(tmp_path, monkeypatch)
    if request.param == "remote":
        loopml.set_tracking_uri(request.getfixturevalue("server_url"))
    loopml.set_experiment(f"autolog-{uuid.uuid4().hex[:8]}")
    yield request.param
    loopml.autolog(disable=True)
    loopml.reset()


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK on a fresh local store only (behaviour that does not depend on the backend)."""
    _fresh(tmp_path, monkeypatch)
    loopml.set_experiment("autolog")
    yield
    loopml.autolog(disable=True)
    loopml.reset()


def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    loopml.reset()


def _binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=80, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    return X, y


def _multiclass() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=90, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=1
    )
    return X, y


def _values(run: Run, keys: dict[str, float]) -> dict[str, float]:
    return {k: run.metrics[k].value for k in keys}


def test_a_classifier_fit_logs_params_metrics_model_and_dataset(sdk: str) -> None:
    X, y = _binary()
    loopml.autolog()
    model = LogisticRegression(C=0.5, max_iter=200).fit(X, y)
    (run,) = loopml.search_runs()
    assert run.info.status == "FINISHED" and loopml.active_run() is None
    assert run.params == {k: str(v) for k, v in model.get_params(deep=True).items()}
    assert run.tags["estimator_name"] == "LogisticRegression"
    assert run.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    pred, proba = model.predict(X), model.predict_proba(X)
    expected = {
        "training_accuracy_score": metrics.accuracy_score(y, pred),
        "training_precision_score": metrics.precision_score(y, pred),
        "training_recall_score": metrics.recall_score(y, pred),
        "training_f1_score": metrics.f1_score(y, pred),
        "training_log_loss": metrics.log_loss(y, proba),
        "training_roc_auc": metrics.roc_auc_score(y, proba[:, 1]),
        "training_score": model.score(X, y),
    }
    assert _values(run, expected) == pytest.approx(expected, rel=1e-12)
    loaded = loopml.models.load(f"runs:/{run.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), pred)
    assert loaded.metadata["loader"] == "skops"  # never pickled
    assert loaded.signature is not None and loaded.signature.inputs.shape == (-1, 4)
    (dataset,) = run.inputs
    assert dataset.context == "training" and dataset.digest == training_dataset(X, y).digest
    profile = pd.read_json(io.StringIO(dataset.profile or ""), typ="series")
    assert profile["num_rows"] == 80 and list(profile["features_shape"]) == [80, 4]


def test_multiclass_pipeline_is_one_run_with_weighted_metrics(local: None) -> None:
    X, y = _multiclass()
    loopml.autolog(log_input_examples=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    (run,) = loopml.search_runs()  # not one per step
    assert run.tags["estimator_name"] == "Pipeline"
    assert run.params["logisticregression__C"] == "1.0" and "standardscaler__with_mean" in run.params
    pred, proba = pipe.predict(X), pipe.predict_proba(X)
    expected = {
        "training_precision_score": metrics.precision_score(y, pred, average="weighted"),
        "training_f1_score": metrics.f1_score(y, pred, average="weighted"),
        "training_roc_auc": metrics.roc_auc_score(y, proba, multi_class="ovr", average="weighted"),
        "training_log_loss": metrics.log_loss(y, proba),
    }
    assert _values(run, expected) == pytest.approx(expected, rel=1e-12)
    loaded = loopml.models.load(f"runs:/{run.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X[:7]), pred[:7])
    assert loaded.manifest.input_example == "input_example.npy"


def test_a_regressor_honours_sample_weight(local: None) -> None:
    X, y = make_regression(n_samples=60, n_features=3, noise=5.0, random_state=0)
    w = np.random.default_rng(0).uniform(0.2, 3.0, size=60)
    loopml.autolog(log_models=False, log_datasets=False)
    model = Ridge(alpha=2.0).fit(X, y, sample_weight=w)
    (run,) = loopml.search_runs()
    pred = model.predict(X)
    mse = metrics.mean_squared_error(y, pred, sample_weight=w)
    expected = {
        "training_mean_squared_error": mse,
        "training_root_mean_squared_error": math.sqrt(mse),
        "training_mean_absolute_error": metrics.mean_absolute_error(y, pred, sample_weight=w),
        "training_r2_score": metrics.r2_score(y, pred, sample_weight=w),
        "training_score": model.score(X, y, sample_weight=w),
    }
    assert _values(run, expected) == pytest.approx(expected, rel=1e-12)
    assert mse != pytest.approx(metrics.mean_squared_error(y, pred))  # the weights mattered
    assert run.inputs == [] and "model" not in {f.path for f in loopml.service().list_artifacts(run.run_id)}


def test_grid_search_logs_parent_best_children_and_cv_results(sdk: str) -> None:
    X, y = _binary()
    loopml.autolog(max_tuning_runs=2)
    grid = {"C": [0.001, 0.1, 10.0]}
    search = GridSearchCV(LogisticRegression(max_iter=300), grid, cv=3).fit(X, y)
    runs = loopml.search_runs()
    parents = [r for r in runs if PARENT_RUN_TAG not in r.tags]
    children = [r for r in runs if PARENT_RUN_TAG in r.tags]
    assert len(parents) == 1 and len(children) == 2  # the 3 candidates x 3 folds + refit made no runs
    parent = parents[0]
    assert {c.tags[PARENT_RUN_TAG] for c in children} == {parent.run_id}
    assert parent.params["best_C"] == str(search.best_params_["C"])
    assert parent.metrics["best_cv_score"].value == pytest.approx(search.best_score_)
    assert parent.params["estimator__C"] == "1.0"
    results = search.cv_results_
    top = np.argsort(results["rank_test_score"], kind="stable")[:2]
    by_c = {c.params["C"]: c for c in children}
    assert set(by_c) == {str(results["params"][i]["C"]) for i in top}
    for i in top:
        child = by_c[str(results["params"][i]["C"])]
        assert child.info.status == "FINISHED"
        assert child.metrics["mean_test_score"].value == pytest.approx(results["mean_test_score"][i])
        assert child.metrics["std_test_score"].value == pytest.approx(results["std_test_score"][i])
    raw = b"".join(loopml.service().iter_artifact(parent.run_id, "cv_results.csv"))
    table = pd.read_csv(io.BytesIO(raw))
    assert len(table) == 3 and list(table["mean_test_score"]) == pytest.approx(
        list(results["mean_test_score"])
    )
    loaded = loopml.models.load(f"runs:/{parent.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X), search.best_estimator_.predict(X))


def test_a_threaded_search_still_logs_one_parent(local: None) -> None:
    X, y = _binary()
    loopml.autolog(log_models=False)
    with joblib.parallel_backend("threading", n_jobs=2):  # inner fits run in pool threads
        GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0, 10.0]}, cv=2).fit(X, y)
    runs = loopml.search_runs()
    assert sum(PARENT_RUN_TAG not in r.tags for r in runs) == 1 and len(runs) == 4


def test_a_search_without_refit_logs_best_params_and_no_model(local: None) -> None:
    X, y = _binary()
    loopml.autolog()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, refit=False).fit(X, y)
    (parent,) = [r for r in loopml.search_runs() if PARENT_RUN_TAG not in r.tags]  # and no warning
    assert parent.params["best_C"] == str(search.best_params_["C"])
    assert "model" not in {f.path for f in loopml.service().list_artifacts(parent.run_id)}


def test_string_labels_get_weighted_metrics(local: None) -> None:
    X, y01 = _binary()
    y = np.where(y01 == 1, "spam", "ham")
    loopml.autolog(log_models=False)
    model = LogisticRegression().fit(X, y)
    (run,) = loopml.search_runs()
    pred = model.predict(X)
    expected = {
        "training_precision_score": metrics.precision_score(y, pred, average="weighted"),
        "training_f1_score": metrics.f1_score(y, pred, average="weighted"),
        "training_roc_auc": metrics.roc_auc_score(y == "spam", model.predict_proba(X)[:, 1]),
    }
    assert _values(run, expected) == pytest.approx(expected, rel=1e-12)


def _double(x: Any) -> Any:
    return x * 2


def test_a_model_skops_refuses_is_a_warning_not_a_pickle(local: None) -> None:
    X, y = _binary()
    loopml.autolog()
    with pytest.warns(UserWarning, match="autolog never pickles") as caught:
        pipe = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(X, y)
    assert len(caught) == 1 and "_double" in str(caught[0].message)
    check_is_fitted(pipe)
    (run,) = loopml.search_runs()
    assert run.info.status == "FINISHED" and "training_accuracy_score" in run.metrics
    assert "model" not in {f.path for f in loopml.service().list_artifacts(run.run_id)}


def test_a_fit_inside_an_active_run_logs_into_it(local: None) -> None:
    X, y = _binary()
    loopml.autolog()
    with loopml.start_run() as run:
        LogisticRegression().fit(X, y)
        assert loopml.active_run() is run  # the user's run is still theirs, still running
        assert loopml.get_run(run.run_id).info.status == "RUNNING"
        with pytest.warns(UserWarning, match=r"params \['C'\] already have other values"):
            LogisticRegression(C=0.3).fit(X, y)
    (got,) = loopml.search_runs()
    assert got.run_id == run.run_id and got.params["C"] == "1.0"
    assert "training_accuracy_score" in got.metrics


def test_exclusive_leaves_the_users_run_alone(local: None) -> None:
    X, y = _binary()
    loopml.autolog(exclusive=True)
    with loopml.start_run() as run:
        LogisticRegression().fit(X, y)
    (got,) = loopml.search_runs()
    assert got.run_id == run.run_id and got.params == {} and got.metrics == {}


def test_a_failing_fit_leaves_a_failed_run_and_the_original_exception(local: None) -> None:
    X, _ = _binary()
    one_class = np.zeros(len(X))
    with pytest.raises(ValueError) as unpatched:
        LogisticRegression().fit(X, one_class)
    loopml.autolog()

    class Mine(LogisticRegression):  # a user's subclass inherits the patched fit
        pass

    with pytest.raises(ValueError) as patched:
        Mine().fit(X, one_class)
    assert str(patched.value) == str(unpatched.value)
    assert patched.value.__cause__ is None and patched.value.__context__ is None
    (run,) = loopml.search_runs()
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert loopml.active_run() is None


def test_disable_restores_the_original_methods(local: None) -> None:
    X, y = _binary()
    fit, fit_predict = LogisticRegression.__dict__["fit"], Pipeline.__dict__["fit_predict"]
    parallel_call = joblib.Parallel.__dict__["__call__"]
    assert "fit" not in GridSearchCV.__dict__  # inherited from BaseSearchCV
    loopml.autolog()
    assert LogisticRegression.__dict__["fit"] is not fit
    # Pipeline.fit_predict still exists only when the last step has it.
    assert not hasattr(make_pipeline(StandardScaler()), "fit_predict")
    loopml.autolog(disable=True)
    assert LogisticRegression.__dict__["fit"] is fit and Pipeline.__dict__["fit_predict"] is fit_predict
    assert "fit" not in GridSearchCV.__dict__ and joblib.Parallel.__dict__["__call__"] is parallel_call
    LogisticRegression().fit(X, y)
    assert loopml.search_runs() == []


def test_fit_transform_logs_once_and_returns_the_same_result(local: None) -> None:
    X, _ = _binary()
    expected = StandardScaler().fit_transform(X)
    loopml.autolog()
    got = StandardScaler().fit_transform(X)
    np.testing.assert_array_equal(got, expected)
    (run,) = loopml.search_runs()
    assert run.params["with_mean"] == "True" and run.tags["estimator_name"] == "StandardScaler"


def test_a_logging_failure_is_one_warning_and_the_fit_still_returns(local: None) -> None:
    X, y = _binary()
    loopml.autolog()
    with loopml.start_run() as run:
        loopml.service().delete_run(run.run_id)  # the store now refuses everything for this run
        with pytest.warns(UserWarning, match="loopml autolog could not log") as caught:
            model = LogisticRegression().fit(X, y)
        loopml.service().restore_run(run.run_id)
    assert len(caught) == 1 and "is deleted" in str(caught[0].message)
    check_is_fitted(model)
    assert model.predict(X).shape == (80,)
    loopml.autolog(silent=True)
    with loopml.start_run() as run2:
        loopml.service().delete_run(run2.run_id)
        LogisticRegression().fit(X, y)  # silent: no warning (pytest turns warnings into errors)
        loopml.service().restore_run(run2.run_id)


def test_an_unreachable_server_does_not_break_fit(local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _binary()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("LOOPML_HTTP_RETRIES", "0")
    loopml.set_tracking_uri(f"http://127.0.0.1:{port}")
    loopml.autolog()
    with pytest.warns(UserWarning, match="starting a run"):
        model = LogisticRegression().fit(X, y)
    check_is_fitted(model)


def test_fits_in_threads_get_their_own_runs(local: None) -> None:
    X, y = _binary()
    loopml.autolog(log_models=False)
    errors: list[BaseException] = []

    def fit(c: float) -> None:
        try:
            make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(X, y)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(c,)) for c in (0.1, 0.2, 0.3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    runs = loopml.search_runs()
    assert sorted(r.params["logisticregression__C"] for r in runs) == ["0.1", "0.2", "0.3"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_the_dataset_digest_links_a_registered_dataset(local: None) -> None:
    X, y = _binary()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(label=y)
    dv = loopml.data.register("autolog-train", frame)
    loopml.autolog(log_models=False)
    LogisticRegression().fit(frame.drop(columns="label"), frame["label"])
    (run,) = loopml.search_runs()
    assert run.inputs[0].digest == dv.digest
    assert loopml.data.runs_using(dv) == [run.run_id]


def test_xgboost_and_lightgbm_sklearn_estimators_are_autologged(local: None) -> None:
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    X, y = _binary()
    loopml.autolog()
    xgb = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, y)
    lgbm = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1, n_jobs=1).fit(X, y.astype(float))
    runs = {r.tags["estimator_name"]: r for r in loopml.search_runs()}
    assert set(runs) == {"XGBClassifier", "LGBMRegressor"}
    xrun, lrun = runs["XGBClassifier"], runs["LGBMRegressor"]
    assert xrun.params["max_depth"] == "2" and lrun.params["n_estimators"] == "5"
    assert xrun.metrics["training_accuracy_score"].value == pytest.approx(
        metrics.accuracy_score(y, xgb.predict(X))
    )
    assert lrun.metrics["training_r2_score"].value == pytest.approx(metrics.r2_score(y, lgbm.predict(X)))
    for run, model in ((xrun, xgb), (lrun, lgbm)):
        loaded = loopml.models.load(f"runs:/{run.run_id}/model")  # their own formats, not pickle
        np.testing.assert_allclose(loaded.predict(X), model.predict(X))


def test_invalid_max_tuning_runs_is_refused(local: None) -> None:
    with pytest.raises(InvalidInput, match="max_tuning_runs"):
        loopml.autolog(max_tuning_runs=-1)


def test_without_sklearn_autolog_says_what_to_install(local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    autolog_module._estimator_classes.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what `import sklearn` sees when it is absent
    with pytest.raises(InvalidInput, match=r"pip install 'loopml\[sklearn\]'"):
        loopml.autolog()
    assert not autolog_module.is_enabled() and LogisticRegression.fit.__name__ == "fit"
    assert not hasattr(LogisticRegression.fit, "__loopml_autolog__")


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_the_mlflow_client_reads_an_autologged_run(server_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    mlflow = pytest.importorskip("mlflow")
    _fresh(tmp_path, monkeypatch)
    loopml.set_tracking_uri(server_url)
    loopml.set_experiment(f"autolog-mlflow-{uuid.uuid4().hex[:8]}")
    try:
        loopml.autolog(log_models=False)
        X, y = _binary()
        LogisticRegression(C=0.25).fit(X, y)
        (run,) = loopml.search_runs()
        got = mlflow.MlflowClient(server_url).get_run(run.run_id)
        assert got.data.params == run.params and got.data.params["C"] == "0.25"
        assert got.data.metrics == {k: m.value for k, m in run.metrics.items()}
        assert got.data.tags["estimator_name"] == "LogisticRegression"
        assert [d.dataset.digest for d in got.inputs.dataset_inputs] == [run.inputs[0].digest]
    finally:
        loopml.autolog(disable=True)
        loopml.reset()
