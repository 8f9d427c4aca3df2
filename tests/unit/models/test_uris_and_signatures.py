"""Model URIs (what loopml issued, what the registry resolves) and input checks against signatures."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopml.models
from loopml import sdk
from loopml.errors import IntegrityError, InvalidInput, NotFound
from loopml.models import RESOLVERS, ArtifactSource, parse_source
from tests.unit.models.test_flavors import churn_pipeline


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("runs:/abc123/model", ArtifactSource("abc123", "model")),
        ("runs:/abc123/models/churn", ArtifactSource("abc123", "models/churn")),
        ("mlflow-artifacts:/4/abc123/artifacts/model", ArtifactSource("abc123", "model")),
    ],
)
def test_parse_source_reads_the_uris_loopml_issues(uri: str, expected: ArtifactSource) -> None:
    assert parse_source(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "/tmp/model", "./model", "file:///tmp/model", "s3://bucket/model", "https://x/model",
        "C:\\models\\m", "runs:/abc/../other/model", "runs:/abc", "runs:/a b/model", "",
        "mlflow-artifacts:/4/abc/other/model", "mlflow-artifacts:/x/abc/artifacts/model",
        "mlflow-artifacts:/4/models/m-0a1b/artifacts",
    ],
)  # fmt: skip
def test_parse_source_refuses_anything_else_naming_the_field(uri: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_source(uri)
    assert caught.value.details == {"field": "source"}


def test_models_uris_go_through_the_registered_resolver(
    run: sdk.ActiveRun, churn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, label = churn
    pipe = churn_pipeline(frame, label)
    info = loopml.models.log_model(pipe, input_example=frame.head(2))
    asked: list[str] = []

    def fake_registry(uri: str) -> tuple[str, str | None]:
        asked.append(uri)
        return info.model_uri, info.manifest_digest

    monkeypatch.setitem(RESOLVERS, "models", fake_registry)
    loaded = loopml.models.load("models:/churn@champion")
    np.testing.assert_array_equal(loaded.predict(frame), pipe.predict(frame))
    assert asked == ["models:/churn@champion"]
    monkeypatch.setitem(RESOLVERS, "models", lambda uri: (info.model_uri, "f" * 64))
    with pytest.raises(IntegrityError):
        loopml.models.load("models:/churn/1")


def test_log_model_needs_a_run(home: object) -> None:
    from sklearn.dummy import DummyClassifier

    with pytest.raises(InvalidInput, match="start_run"):
        loopml.models.log_model(DummyClassifier().fit([[0]], [0]))


def test_an_unknown_run_is_not_found(home: object) -> None:
    with pytest.raises(NotFound, match="0123abcd"):
        loopml.models.load("runs:/0123abcd/model")


def test_a_missing_model_path_names_the_models_the_run_has(run: sdk.ActiveRun, numeric: Any) -> None:
    from sklearn.linear_model import LinearRegression

    x, _, target = numeric
    loopml.models.log_model(LinearRegression().fit(x, target), "regressors/linear")
    with pytest.raises(NotFound, match="regressors/linear") as caught:
        loopml.models.load(f"runs:/{run.run_id}/model")
    assert caught.value.details["models"] == ["regressors/linear"]


def test_input_is_checked_against_the_signature(run: sdk.ActiveRun, churn: Any) -> None:
    frame, label = churn
    pipe = churn_pipeline(frame, label)
    loaded = loopml.models.load(loopml.models.log_model(pipe, input_example=frame.head(5)).model_uri)
    with pytest.raises(InvalidInput, match=r"missing column\(s\) \['plan'\]"):
        loaded.predict(frame.drop(columns=["plan"]))
    with pytest.raises(InvalidInput, match=r"unexpected column\(s\) \['extra'\]"):
        loaded.predict(frame.assign(extra=1))
    with pytest.raises(InvalidInput, match=r"'charges'.*expects numbers"):
        loaded.predict(frame.assign(charges="high"))
    # Reordered columns and a plain array of the right width predict the same as the frame.
    expected = pipe.predict(frame)
    np.testing.assert_array_equal(loaded.predict(frame[["plan", "charges", "tenure"]]), expected)
    np.testing.assert_array_equal(loaded.predict(frame.to_numpy(dtype=object)), expected)
    with pytest.raises(InvalidInput, match="3 columns"):
        loaded.predict(np.zeros((2, 5)))


def test_tensor_signatures_check_the_width(run: sdk.ActiveRun, numeric: Any) -> None:
    from sklearn.linear_model import LinearRegression

    x, _, target = numeric
    model = LinearRegression().fit(x, target)
    loaded = loopml.models.load(loopml.models.log_model(model, input_example=x[:2]).model_uri)
    with pytest.raises(InvalidInput, match=r"shape \(3, 2\)"):
        loaded.predict(np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match="expects numbers"):
        loaded.predict(np.full((3, 4), "a"))
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(x)), model.predict(pd.DataFrame(x)))


def test_importing_loopml_models_loads_no_model_library_nor_the_tracking_stack() -> None:
    heavy = {"sklearn", "skops", "xgboost", "lightgbm", "onnx", "onnxruntime", "cloudpickle", "mlflow",
             "pandas", "sqlalchemy", "fastapi", "httpx"}  # fmt: skip
    probe = f"import sys, loopml.models\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
