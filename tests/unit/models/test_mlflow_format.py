"""Models written by the mlflow client (an ``MLmodel`` directory) load with loopml.models.load.

The files are written by the real ``mlflow.<flavor>.save_model`` and stored as an MLflow 3
logged model (or as a run's artifacts, as mlflow 2 did) in the embedded store; loading never
imports mlflow into loopml.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import loopml.data  # noqa: E402
import loopml.models  # noqa: E402
import loopml.registry as registry  # noqa: E402
from loopml import sdk  # noqa: E402
from loopml.errors import IntegrityError, InvalidInput, PermissionDenied  # noqa: E402
from loopml.tracking.local import LocalTrackingService  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
REQS = ["scikit-learn"]  # explicit: mlflow's inference of requirements takes tens of seconds


def _svc() -> LocalTrackingService:
    svc = sdk.service()
    assert isinstance(svc, LocalTrackingService)
    return svc


def _store_logged_model(local: Path, run_id: str, name: str = "model") -> str:
    """Upload an MLflow model directory the way the mlflow client does: a logged model's files."""
    svc = _svc()
    logged = svc.create_logged_model(
        svc.get_run(run_id).info.experiment_id, name=name, source_run_id=run_id, model_type="sklearn"
    )
    prefix = logged.artifact_location.removeprefix("mlflow-artifacts:/")
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        svc.artifacts.put_file(f"{prefix}/{file.relative_to(local).as_posix()}", file)
    svc.finalize_logged_model(logged.model_id, "LOGGED_MODEL_READY")
    return logged.model_id


def _pipeline(churn: Any) -> tuple[Any, pd.DataFrame]:
    frame, label = churn
    x = frame[["tenure", "charges"]]
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, label), x


def test_an_mlflow_sklearn_model_loads_by_logged_model_and_run_uri(
    run: sdk.ActiveRun, churn: Any, tmp_path: Path
) -> None:
    pipe, x = _pipeline(churn)
    mlflow.sklearn.save_model(pipe, tmp_path / "m", pip_requirements=REQS)
    model_id = _store_logged_model(tmp_path / "m", run.run_id)

    by_id = loopml.models.load(f"models:/{model_id}")
    assert by_id.flavor == "mlflow" and by_id.metadata["loader"] == "mlmodel"
    assert np.array_equal(by_id.predict(x), pipe.predict(x))
    assert np.allclose(by_id.predict_proba(x), pipe.predict_proba(x))
    by_run = loopml.models.load(f"runs:/{run.run_id}/model")  # mlflow 3 resolves runs:/ the same way
    assert np.array_equal(by_run.predict(x), pipe.predict(x))
    location = _svc().get_logged_model(model_id).artifact_location
    assert np.array_equal(loopml.models.load(location).predict(x), pipe.predict(x))


def test_an_mlflow_2_model_in_a_runs_artifacts_loads(run: sdk.ActiveRun, churn: Any, tmp_path: Path) -> None:
    pipe, x = _pipeline(churn)
    mlflow.sklearn.save_model(pipe, tmp_path / "m", pip_requirements=REQS)
    _svc().log_artifact(run.run_id, tmp_path / "m", "clf")
    assert np.array_equal(loopml.models.load(f"runs:/{run.run_id}/clf").predict(x), pipe.predict(x))


def test_a_pickled_mlflow_model_is_refused_without_trust_and_never_unpickled(
    run: sdk.ActiveRun, churn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe, x = _pipeline(churn)
    mlflow.sklearn.save_model(pipe, tmp_path / "m", pip_requirements=REQS, serialization_format="cloudpickle")
    model_id = _store_logged_model(tmp_path / "m", run.run_id)

    def unpickled(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pickle was opened")

    with monkeypatch.context() as patched:
        patched.setattr(pickle, "load", unpickled)
        with pytest.raises(PermissionDenied) as refused:
            loopml.models.load(f"models:/{model_id}")
    assert "trust_pickle=True" in str(refused.value) and refused.value.details["loader"] == "cloudpickle"
    trusted = loopml.models.load(f"models:/{model_id}", trust_pickle=True)
    assert np.array_equal(trusted.predict(x), pipe.predict(x))


def test_an_altered_file_of_an_mlflow_model_is_refused(
    run: sdk.ActiveRun, churn: Any, tmp_path: Path, home: Path
) -> None:
    pipe, _ = _pipeline(churn)
    mlflow.sklearn.save_model(pipe, tmp_path / "m", pip_requirements=REQS)
    model_id = _store_logged_model(tmp_path / "m", run.run_id)
    (skops_file,) = [f for f in _svc().list_logged_model_artifacts(model_id) if f.path == "model.skops"]
    assert skops_file.digest is not None
    blob = home / "artifacts" / "sha256" / skops_file.digest[:2] / skops_file.digest[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(IntegrityError):
        loopml.models.load(f"models:/{model_id}")


def test_flavors_loopml_cannot_load_without_mlflow_are_refused_by_name(
    run: sdk.ActiveRun, tmp_path: Path
) -> None:
    class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        def predict(self, context, model_input):  # type: ignore[no-untyped-def]  # mlflow reads hints
            return model_input * 2

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Doubler(), pip_requirements=["numpy"])
    model_id = _store_logged_model(tmp_path / "m", run.run_id)
    for trust in (False, True):
        with pytest.raises(InvalidInput) as refused:
            loopml.models.load(f"models:/{model_id}", trust_pickle=trust)
        assert "python_function" in str(refused.value) and refused.value.details["field"] == "flavor"


def _xgboost(x: np.ndarray, y: np.ndarray, dest: Path) -> Any:
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(x, y)
    mlflow.xgboost.save_model(model, dest, pip_requirements=["xgboost"])
    return model


def _lightgbm(x: np.ndarray, y: np.ndarray, dest: Path) -> Any:
    import lightgbm as lgb

    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 5)
    mlflow.lightgbm.save_model(booster, dest, pip_requirements=["lightgbm"])
    return booster


def _onnx(x: np.ndarray, y: np.ndarray, dest: Path) -> Any:
    from skl2onnx import to_onnx

    model = LogisticRegression().fit(x, y)
    mlflow.onnx.save_model(to_onnx(model, x[:1]), dest, pip_requirements=["onnx"])
    return model


@pytest.mark.parametrize("save", [_xgboost, _lightgbm, _onnx])
def test_native_mlflow_flavors_load_from_their_own_files(
    save: Any, run: sdk.ActiveRun, numeric: Any, tmp_path: Path
) -> None:
    x, classes, _ = numeric
    y = (classes > 0).astype(int)
    original = save(x, y, tmp_path / "m")
    loaded = loopml.models.load(f"models:/{_store_logged_model(tmp_path / 'm', run.run_id)}")
    assert np.array_equal(np.asarray(loaded.predict(x)).ravel(), np.asarray(original.predict(x)).ravel())


def test_a_registered_mlflow_model_loads_and_evaluates(
    home: Path, churn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_USER", "ana")
    _, label = churn
    pipe, x = _pipeline(churn)
    mlflow.sklearn.save_model(pipe, tmp_path / "m", pip_requirements=REQS)
    with sdk.start_run(capture_env=False) as active:
        model_id = _store_logged_model(tmp_path / "m", active.run_id)
    try:
        mv = registry.register("mlflow-churn", f"models:/{model_id}")
        loaded = loopml.models.load("models:/mlflow-churn/1")
        assert np.array_equal(loaded.predict(x), pipe.predict(x)) and loaded.manifest_digest == mv.digest
        holdout = loopml.data.register("holdout", x.assign(label=label))
        evaluation = registry.evaluate("mlflow-churn", 1, dataset=holdout.ref, target="label")
        assert evaluation.metrics["accuracy"] == pytest.approx(float((pipe.predict(x) == label).mean()))
    finally:
        registry.reset()
