"""The same pipeline gives the same outputs in process, on a process pool and on Ray."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from loopml import sdk
from loopml.config import Settings
from loopml.pipelines import Pipeline, engine
from loopml.pipelines.loader import load_target

FLOW = """
import os
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from loopml.pipelines import StepContext, pipeline, step

def noise(seed, n):
    return np.random.default_rng(seed).normal(size=(n, 3))

@step
def make(n: int, seed: int) -> pd.DataFrame:
    x = noise(seed, n)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": (x[:, 0] + x[:, 2] > 0).astype(int)})

@step
def fit(frame: pd.DataFrame, c: float, ctx: StepContext) -> LogisticRegression:
    model = LogisticRegression(C=c).fit(frame[["a", "b"]], frame["y"])
    ctx.log_metric("train_accuracy", model.score(frame[["a", "b"]], frame["y"]))
    return model

@step
def score(model: LogisticRegression, frame: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(frame[["a", "b"]])[:, 1]

@step
def where() -> dict:
    return {"pid": os.getpid(), "blas": os.environ.get("OPENBLAS_NUM_THREADS")}

@step
def best(scores: list) -> float:
    return float(max(float(np.mean(s)) for s in scores))

@pipeline
def sweep(n: int = 300, seed: int = 0) -> dict:
    frame = make(n, seed)
    models = fit.map([0.01, 0.1, 1.0], frame=frame)
    scores = score.map(models, frame=frame)
    return {"best": best(scores), "scores": scores, "where": where()}
"""


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Pipeline, Settings]]:
    for var in ("LOOPML_TRACKING_URI", "LOOPML_DATABASE_URL", "LOOPML_ARTIFACT_ROOT", "LOOPML_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    sdk.reset()
    path = tmp_path / "sweep.py"
    path.write_text(textwrap.dedent(FLOW))
    yield load_target(str(path)), Settings.load()
    engine.reset()
    sdk.reset()


def _outputs(pipe: Pipeline, settings: Settings, executor: str) -> tuple[dict[str, object], dict[str, str]]:
    result = pipe.run({"n": 300}, settings=settings, executor=executor, cache=False)
    # skops model files carry zip timestamps, so models are compared through their predictions
    skip = ("where", "fit[")
    digests = {
        s.step: s.outputs[0]["digest"]
        for s in result.record.steps
        if s.outputs and not s.step.startswith(skip)
    }
    assert result.record.executor.startswith(executor.split(":")[0])
    fitted = next(s for s in result.record.steps if s.step == "fit[2]")
    _, tracking = engine.context(settings)
    assert tracking.get_run(fitted.tracking_run_id or "").metrics["train_accuracy"].value > 0.6
    return result.value, digests


@pytest.mark.timeout(300)
def test_process_pool_gives_the_same_outputs_in_parallel_workers(flow: tuple[Pipeline, Settings]) -> None:
    pipe, settings = flow
    local, local_digests = _outputs(pipe, settings, "inprocess")
    pooled, pooled_digests = _outputs(pipe, settings, "process:2")
    assert pooled_digests == local_digests  # the frame, each model's scores: byte-identical
    assert pooled["best"] == local["best"]
    np.testing.assert_array_equal(pooled["scores"][2], local["scores"][2])  # type: ignore[index]
    where = pooled["where"]
    assert isinstance(where, dict) and where["pid"] != local["where"]["pid"]  # type: ignore[index]
    assert where["blas"] == "1"


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_gives_the_same_outputs(flow: tuple[Pipeline, Settings], ray_local: object) -> None:
    pipe, settings = flow
    local, local_digests = _outputs(pipe, settings, "inprocess")
    on_ray, ray_digests = _outputs(pipe, settings, "ray")
    assert ray_digests == local_digests
    assert on_ray["best"] == local["best"]
    assert on_ray["where"]["blas"] == "1"  # type: ignore[index]
