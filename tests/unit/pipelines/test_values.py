"""Values between steps: models, model versions and dataset versions, with their lineage."""

from __future__ import annotations

import io
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import loopml.models
import loopml.registry
from loopml import sdk
from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.pipelines import PipelineFailed, pipeline, step
from loopml.pipelines.engine import context
from loopml.pipelines.values import load_value, store_value, verify
from loopml.registry.records import ModelVersion
from loopml.store.blobs import open_blob_store


def test_values_round_trip_and_verify() -> None:
    blobs = open_blob_store(tempfile.mkdtemp())
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for value in ({"k": [1, 2.5, None]}, frame, pa.table({"a": [1]}), np.arange(6).reshape(2, 3)):
        ref = store_value(blobs, value)
        back = load_value(blobs, ref)
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back, value)
        else:
            assert back == value
        assert verify(blobs, ref)
    with pytest.raises(InvalidInput, match=r"is a builtins\.object"):
        store_value(blobs, object())
    with pytest.raises(InvalidInput, match="Object arrays cannot be saved"):
        store_value(blobs, np.array([object()]))
    ref = store_value(blobs, [1, 2])
    blobs.put(io.BytesIO(b"unrelated"))
    assert verify(blobs, ref)


@step
def fit(c: float) -> LogisticRegression:
    x = np.random.default_rng(0).normal(size=(200, 2))
    return LogisticRegression(C=c).fit(x, (x[:, 0] > 0).astype(int))


@step
def register(model: LogisticRegression, name: str) -> ModelVersion:
    with sdk.start_run(run_name="register", capture_env=False):
        info = loopml.models.log_model(model, input_example=np.zeros((2, 2)))
    return loopml.registry.register(name, info.model_uri)


@step
def describe(mv: ModelVersion) -> str:
    return f"{mv.name} v{mv.version}"


@step(retries=1, backoff_s=0.01)
def broken_fit(c: float) -> LogisticRegression:
    raise ValueError("no convergence")


def test_models_and_model_versions_pass_between_steps(settings: Settings) -> None:
    @pipeline
    def train(c: float = 1.0) -> str:
        return describe(register(fit(c), "churn"))

    result = train.run({}, settings=settings)
    assert result.value == "churn v1"
    model = result.output("fit")
    assert isinstance(model, LogisticRegression) and model.C == 1.0
    _, tracking = context(settings)
    step = next(s for s in result.record.steps if s.step == "describe")
    tags = tracking.get_run(step.tracking_run_id or "").tags
    assert tags["loopml.pipeline.input_model_versions"] == "churn/1"
    reg = next(s for s in result.record.steps if s.step == "register")
    assert (
        tracking.get_run(reg.tracking_run_id or "").tags["loopml.pipeline.output_model_versions"] == "churn/1"
    )


def test_a_step_failing_every_retry_registers_no_model(settings: Settings) -> None:
    @pipeline
    def train() -> str:
        return describe(register(broken_fit(1.0), "never"))

    with pytest.raises(
        PipelineFailed, match=r"'broken_fit' failed after 2 attempt\(s\): ValueError: no convergence"
    ):
        train.run({}, settings=settings)
    with pytest.raises(NotFound):
        loopml.registry.service().get_registered_model("never")
