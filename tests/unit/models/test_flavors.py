"""Every flavor round-trips: the loaded model predicts exactly what the original did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopml.models
from loopml import sdk
from loopml.errors import InvalidInput, PermissionDenied
from loopml.models import MANIFEST_NAME


def churn_pipeline(frame: pd.DataFrame, label: np.ndarray) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [("num", StandardScaler(), ["tenure", "charges"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    return Pipeline([("prep", columns), ("clf", LogisticRegression())]).fit(frame, label)


def test_sklearn_pipeline_on_a_dataframe_round_trips(run: sdk.ActiveRun, churn: Any) -> None:
    frame, label = churn
    pipe = churn_pipeline(frame, label)
    info = loopml.models.log_model(pipe, input_example=frame.head(5))
    assert info.model_uri == f"runs:/{run.run_id}/model" and info.flavor == "sklearn"
    loaded = loopml.models.load(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), pipe.predict_proba(frame))
    meta = loaded.metadata
    assert meta["loader"] == "skops" and meta["requirements"]["scikit-learn"]
    assert set(meta["files"]) == {"model.skops", "input_example.parquet"}
    assert [c["name"] for c in meta["signature"]["inputs"]["columns"]] == ["tenure", "charges", "plan"]


def test_sklearn_estimator_on_an_array_round_trips(run: sdk.ActiveRun, numeric: Any) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, classes, _ = numeric
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, classes)
    info = loopml.models.log_model(forest, "forest", input_example=x[:3])
    loaded = loopml.models.load(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(x), forest.predict(x))
    assert info.signature is not None and info.signature.inputs.shape == (-1, 4)


@pytest.mark.parametrize("kind", ["classifier", "regressor", "booster"])
def test_xgboost_round_trips(run: sdk.ActiveRun, numeric: Any, kind: str) -> None:
    import xgboost as xgb

    x, classes, target = numeric
    if kind == "classifier":
        model: Any = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, classes)
        expected = model.predict(x)
    elif kind == "regressor":
        model = xgb.XGBRegressor(n_estimators=8, max_depth=3).fit(x, target)
        expected = model.predict(x)
    else:
        model = xgb.train({"max_depth": 3}, xgb.DMatrix(x, label=target), num_boost_round=5)
        expected = model.predict(xgb.DMatrix(x))
    info = loopml.models.log_model(model, input_example=x[:2])
    loaded = loopml.models.load(info.model_uri)
    assert info.flavor == "xgboost" and loaded.metadata["loader"] == "xgboost-ubj"
    np.testing.assert_array_equal(loaded.predict(x), expected)
    if kind == "classifier":
        np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), rtol=1e-6)


def test_lightgbm_classifier_with_string_labels_round_trips(run: sdk.ActiveRun, churn: Any) -> None:
    import lightgbm as lgb

    frame, label = churn
    features = frame[["tenure", "charges"]]
    names = np.array(["stay", "churn"], dtype=object)[label]
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(features, names)
    info = loopml.models.log_model(model, input_example=features.head(3))
    loaded = loopml.models.load(info.model_uri)
    assert info.flavor == "lightgbm"
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(features), rtol=1e-12)


def test_lightgbm_regressor_round_trips(run: sdk.ActiveRun, numeric: Any) -> None:
    import lightgbm as lgb

    x, _, target = numeric
    model = lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(x, target)
    loaded = loopml.models.load(loopml.models.log_model(model, "reg").model_uri)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_onnx_from_skl2onnx_round_trips(run: sdk.ActiveRun, numeric: Any) -> None:
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, classes, _ = numeric
    clf = LogisticRegression(max_iter=200).fit(x, classes)
    proto = to_onnx(clf, x[:1], options={"zipmap": False})
    info = loopml.models.log_model(proto, "onnx", input_example=x[:2])
    loaded = loopml.models.load(info.model_uri)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    label, probs = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_array_equal(loaded.predict(x), label)
    np.testing.assert_array_equal(loaded.predict_proba(x), probs)
    np.testing.assert_array_equal(loaded.predict(x), clf.predict(x))


def linear_graph(weights: np.ndarray) -> Any:
    """``y = x @ weights``: a graph whose weights are an initializer (so they can be external)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weights.shape[1]])],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_file_with_external_data_round_trips(run: sdk.ActiveRun, numeric: Any, tmp_path: Path) -> None:
    import onnx

    x = numeric[0]
    weights = np.arange(8, dtype="float32").reshape(4, 2)
    folder = tmp_path / "exported"
    folder.mkdir()
    onnx.save_model(
        linear_graph(weights), str(folder / "linear.onnx"), save_as_external_data=True,
        location="weights.bin", size_threshold=0,
    )  # fmt: skip
    assert (folder / "weights.bin").is_file()
    info = loopml.models.log_model(folder / "linear.onnx", "linear")
    loaded = loopml.models.load(info.model_uri)
    assert set(loaded.metadata["files"]) == {"model.onnx", "weights.bin"}
    np.testing.assert_allclose(loaded.predict(x), x @ weights, rtol=1e-6)


class Doubler:
    """A plain Python model: only cloudpickle can store it."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, data: Any) -> Any:
        return np.asarray(data) * self.factor


def test_pyfunc_round_trips_only_with_trust(run: sdk.ActiveRun) -> None:
    with pytest.raises(InvalidInput, match="trust_pickle=True"):
        loopml.models.log_model(Doubler(2.0), "doubler")
    info = loopml.models.log_model(Doubler(2.0), "doubler", trust_pickle=True, input_example=np.ones((2, 3)))
    with pytest.raises(PermissionDenied, match="trust_pickle=True"):
        loopml.models.load(info.model_uri)
    loaded = loopml.models.load(info.model_uri, trust_pickle=True)
    np.testing.assert_array_equal(loaded.predict(np.eye(3)), np.eye(3) * 2.0)
    assert loaded.flavor == "pyfunc" and "cloudpickle" in loaded.metadata["requirements"]


def test_log_model_records_a_logged_model_and_the_manifest_digest(run: sdk.ActiveRun, numeric: Any) -> None:
    from sklearn.linear_model import LinearRegression

    x, _, target = numeric
    info = loopml.models.log_model(LinearRegression().fit(x, target), "lin")
    svc = sdk.service()
    manifest = b"".join(svc.iter_artifact(run.run_id, f"lin/{MANIFEST_NAME}"))
    import hashlib

    assert hashlib.sha256(manifest).hexdigest() == info.manifest_digest
    assert info.model_id is not None
    logged = svc.get_logged_model(info.model_id)  # type: ignore[attr-defined]
    assert logged.source_run_id == run.run_id and logged.status == "LOGGED_MODEL_READY"
    assert logged.tags["loopml.model_uri"] == info.model_uri


def test_the_same_model_loads_through_a_live_server(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, churn: Any
) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "client-home"))
    sdk.reset()
    sdk.set_tracking_uri(server_url)
    try:
        frame, label = churn
        pipe = churn_pipeline(frame, label)
        sdk.set_experiment("models-remote")
        with sdk.start_run(capture_env=False):
            info = loopml.models.log_model(pipe, input_example=frame.head(5))
        assert info.model_id is None  # logged models are not on the HTTP contract
        loaded = loopml.models.load(info.model_uri, manifest_digest=info.manifest_digest)
        np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    finally:
        sdk.reset()
