"""Running pipelines in process: outputs, caching, retries, resume, logs, tracking and bad input."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from loopml.config import Settings
from loopml.errors import InvalidInput
from loopml.pipelines import Pipeline, PipelineFailed, StepContext, get_run, pipeline, resume, step
from loopml.pipelines.engine import context

FLOW = """
import numpy as np
import pandas as pd
from loopml.pipelines import pipeline, step

SCALE = 2

def helper(x):
    return x * SCALE

@step
def load(n: int) -> pd.DataFrame:
    print("loading", n)
    return pd.DataFrame({"x": np.arange(n)})

@step
def feature(frame: pd.DataFrame) -> np.ndarray:
    return helper(frame["x"].to_numpy())

@step
def total(values: np.ndarray, offset: float = 0.0) -> float:
    return float(values.sum()) + offset

@step
def square(x: int) -> int:
    return x * x

@step
def stats(frame: pd.DataFrame) -> tuple[int, int]:
    return len(frame), int(frame["x"].max())

@pipeline
def flow(n: int = 10, offset: float = 0.0) -> dict:
    frame = load(n)
    rows, top = stats(frame)
    return {"total": total(feature(frame), offset), "squares": square.map([1, 2, 3]), "rows": rows, "top": top}
"""


def test_run_returns_outputs_and_records_steps(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    flow = write_pipeline(FLOW)
    result = flow.run({"n": "5", "offset": 1}, settings=settings)
    assert result.status == "SUCCEEDED"
    assert result.value == {"total": 21.0, "squares": [1, 4, 9], "rows": 5, "top": 4}
    assert result.output("load")["x"].tolist() == [0, 1, 2, 3, 4]
    assert result.output("stats") == (5, 4)
    run = get_run(result.run_id, settings)
    assert run.params == {"n": 5, "offset": 1.0}
    assert {s.step for s in run.steps} == {
        "load",
        "stats",
        "feature",
        "total",
        "square[0]",
        "square[1]",
        "square[2]",
    }
    assert all(s.status == "SUCCEEDED" and not s.cached for s in run.steps)


def test_second_run_is_cached_and_cache_can_be_turned_off(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    flow = write_pipeline(FLOW)
    flow.run({"n": 5}, settings=settings)
    again = flow.run({"n": 5}, settings=settings)
    assert sorted(again.cached_steps) == sorted(s.step for s in again.record.steps)
    assert again.value["total"] == 20.0
    changed = flow.run({"n": 5, "offset": 2.0}, settings=settings)
    assert "total" not in changed.cached_steps and "feature" in changed.cached_steps
    off = flow.run({"n": 5}, settings=settings, cache=False)
    assert off.cached_steps == []


def test_cache_misses_after_a_helper_or_constant_changes(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    write_pipeline(FLOW).run({"n": 5}, settings=settings)
    edited = write_pipeline(FLOW.replace("return x * SCALE", "return x * SCALE + 1"))
    result = edited.run({"n": 5}, settings=settings)
    assert sorted(result.cached_steps) == ["load", "square[0]", "square[1]", "square[2]", "stats"]
    assert result.value["total"] == 25.0
    rescaled = write_pipeline(FLOW.replace("SCALE = 2", "SCALE = 3")).run({"n": 5}, settings=settings)
    assert "feature" not in rescaled.cached_steps and rescaled.value["total"] == 30.0


def test_cache_misses_when_the_cached_artifact_was_deleted(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    flow = write_pipeline(FLOW)
    first = flow.run({"n": 5}, settings=settings)
    load = next(s for s in first.record.steps if s.step == "load")
    digest = load.outputs[0]["digest"]
    blob = Path(settings.artifact_root) / "sha256" / digest[:2] / digest[2:]
    blob.unlink()
    again = flow.run({"n": 5}, settings=settings)
    assert "load" not in again.cached_steps
    assert again.output("load")["x"].tolist() == [0, 1, 2, 3, 4]
    assert blob.is_file()  # stored again by the re-run


def test_cache_misses_when_the_cached_artifact_was_altered(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    flow = write_pipeline(FLOW)
    first = flow.run({"n": 5}, settings=settings)
    digest = next(s for s in first.record.steps if s.step == "feature").outputs[0]["digest"]
    blob = Path(settings.artifact_root) / "sha256" / digest[:2] / digest[2:]
    blob.write_bytes(b"tampered")
    again = flow.run({"n": 5}, settings=settings)
    assert "feature" not in again.cached_steps and again.value["total"] == 20.0


FLAKY = """
from pathlib import Path
from loopml.pipelines import pipeline, step

COUNTER = Path({counter!r})

@step(retries={retries}, backoff_s=0.01)
def flaky(x: int) -> int:
    n = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(n))
    print("attempt", n)
    if n < 3:
        raise RuntimeError(f"transient failure {{n}}")
    return x + n

@step
def first(x: int) -> int:
    return x + 100

@pipeline
def retrying(x: int = 1) -> int:
    return flaky(first(x))
"""


def test_retries_with_backoff_then_succeed(
    settings: Settings, write_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    flow = write_pipeline(FLAKY.format(counter=str(tmp_path / "n"), retries=2))
    result = flow.run({}, settings=settings)
    flaky = next(s for s in result.record.steps if s.step == "flaky")
    assert (result.value, flaky.attempts) == (104, 3)
    store, _ = context(settings)
    stderr = store.blobs.read_bytes(flaky.logs["stderr"]).decode()
    assert "transient failure 1" in stderr and "attempt 3 of 3" in stderr
    assert "attempt 3" in store.blobs.read_bytes(flaky.logs["stdout"]).decode()


def test_failure_keeps_traceback_and_resume_reuses_finished_steps(
    settings: Settings, write_pipeline: Callable[..., Pipeline], tmp_path: Path
) -> None:
    flow = write_pipeline(FLAKY.format(counter=str(tmp_path / "n"), retries=0))
    with pytest.raises(PipelineFailed) as info:
        flow.run({"x": 1}, settings=settings)
    run_id = info.value.details["run_id"]
    failed = get_run(run_id, settings)
    assert failed.status == "FAILED" and "flaky" in (failed.error or "")
    step = next(s for s in failed.steps if s.step == "flaky")
    store, tracking = context(settings)
    assert "RuntimeError: transient failure 1" in store.blobs.read_bytes(step.logs["traceback"]).decode()
    assert tracking.get_run(step.tracking_run_id or "").info.status == "FAILED"
    (tmp_path / "n").write_text("5")  # the "fix": the next attempt succeeds
    resumed = resume(run_id, settings)
    assert resumed.value == 1 + 100 + 6
    first = next(s for s in resumed.record.steps if s.step == "first")
    assert first.cached and resumed.record.resumed_from == run_id
    again = resume(run_id, settings, cache=False)  # resume reuses finished steps even with the cache off
    assert "first" in again.cached_steps


def test_tracking_has_a_parent_run_and_nested_step_runs(
    settings: Settings, write_pipeline: Callable[..., Pipeline]
) -> None:
    result = write_pipeline(FLOW).run({"n": 3}, settings=settings)
    _, tracking = context(settings)
    parent = tracking.get_run(result.record.tracking_run_id or "")
    assert parent.info.status == "FINISHED" and parent.params["n"] == "3"
    exp = tracking.get_experiment(parent.info.experiment_id)
    assert exp.name == "flow"
    load = next(s for s in result.record.steps if s.step == "load")
    child = tracking.get_run(load.tracking_run_id or "")
    assert child.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.tags["loopml.pipeline.cached"] == "false"
    assert child.params["n"] == "3"
    cached = write_pipeline(FLOW).run({"n": 3}, settings=settings)
    load2 = next(s for s in cached.record.steps if s.step == "load")
    assert tracking.get_run(load2.tracking_run_id or "").tags["loopml.pipeline.cached"] == "true"


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n)})


def test_bad_input_is_refused_before_anything_runs(settings: Settings) -> None:
    @pipeline
    def missing(n: int = 1) -> None:
        add(n)  # b is missing

    with pytest.raises(
        InvalidInput, match=r"step 'add' called at .*test_engine.py:\d+: missing a required argument: 'b'"
    ):
        missing.run({}, settings=settings)

    @pipeline
    def wrong_literal() -> None:
        add(1, "two")

    with pytest.raises(InvalidInput, match=r"argument 'b' wants int, got str"):
        wrong_literal.run({}, settings=settings)

    @pipeline
    def wrong_output() -> None:
        add(1, frame(3))

    with pytest.raises(InvalidInput, match=r"argument 'b' wants int but step 'frame' returns DataFrame"):
        wrong_output.run({}, settings=settings)

    @pipeline
    def typed(n: int, rate: float = 0.5) -> None:
        add(n, n)

    with pytest.raises(InvalidInput, match=r"parameter 'n' got 'abc'"):
        typed.run({"n": "abc"}, settings=settings)
    with pytest.raises(InvalidInput, match=r"needs parameter 'n'"):
        typed.run({}, settings=settings)
    with pytest.raises(InvalidInput, match=r"has no parameter 'm'"):
        typed.run({"n": 1, "m": 2}, settings=settings)
    _, tracking = context(settings)
    assert tracking.get_experiment_by_name("typed") is None  # nothing was recorded


def test_step_outside_a_pipeline_is_a_plain_call() -> None:
    assert add(2, 3) == 5
    assert add.map([1, 2], b=10) == [11, 12]


def test_unsupported_output_fails_the_step_with_its_name(settings: Settings) -> None:
    @step
    def weird() -> object:
        return object()

    @pipeline
    def p() -> None:
        weird()

    with pytest.raises(PipelineFailed, match=r"step 'weird' failed after 1 attempt"):
        p.run({}, settings=settings)


def test_fan_out_over_an_upstream_list(settings: Settings) -> None:
    @step
    def numbers(n: int) -> list[int]:
        return list(range(n))

    @step
    def total(values: list[int]) -> int:
        return sum(values)

    @pipeline
    def fan(n: int = 4) -> int:
        return total(add.map(numbers(n), b=1))

    result = fan.run({}, settings=settings)
    assert result.value == 1 + 2 + 3 + 4
    assert result.output("add") == [1, 2, 3, 4]


@step
def measured(n: int, ctx: StepContext) -> int:
    ctx.log_metric("rows", n * 10)
    ctx.log_param("source", "synthetic")
    ctx.set_tag("quality", "ok")
    return n


def test_a_step_records_metrics_params_and_tags_on_its_run(settings: Settings) -> None:
    @pipeline
    def p(n: int = 3) -> int:
        return measured(n)

    _, tracking = context(settings)
    for cached in (False, True):  # a cached step's run shows what the reused execution recorded
        result = p.run({}, settings=settings)
        step_run = tracking.get_run(result.record.steps[0].tracking_run_id or "")
        assert step_run.metrics["rows"].value == 30.0
        assert step_run.params == {"n": "3", "source": "synthetic"}
        assert step_run.tags["quality"] == "ok"
        assert step_run.tags["loopml.pipeline.cached"] == str(cached).lower()
    assert measured(2) == 2  # outside a pipeline the context is supplied too


@step(cache=False)
def chatty(word: str) -> str:
    for _ in range(20):
        print(word)
        time.sleep(0.002)  # let the other runs' steps interleave
    return word


def test_concurrent_runs_in_one_process_keep_their_own_logs(settings: Settings) -> None:
    import sys
    import threading

    @pipeline
    def talk(word: str = "") -> str:
        return chatty(word)

    before = sys.stdout
    results: dict[str, str] = {}

    def run(word: str) -> None:
        result = talk.run({"word": word}, settings=settings, concurrent=True)
        store, _ = context(settings)
        results[word] = store.blobs.read_bytes(result.record.steps[0].logs["stdout"]).decode()

    threads = [threading.Thread(target=run, args=(w,)) for w in ("alpha", "beta", "gamma")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sys.stdout is before
    assert {w: set(text.split()) for w, text in results.items()} == {
        w: {w} for w in ("alpha", "beta", "gamma")
    }


def test_a_diamond_records_each_steps_upstream_steps(settings: Settings) -> None:
    @step
    def source(n: int) -> int:
        return n

    @step
    def double(x: int) -> int:
        return 2 * x

    @step
    def join(a: int, b: int) -> int:
        return a + b

    @pipeline
    def diamond(n: int = 3) -> int:
        s = source(n)
        return join(double(s), add(s, 1))

    expected = {"source": [], "double": ["source"], "add": ["source"], "join": ["double", "add"]}
    for cached in (False, True):  # a cache hit records the edges of this run's graph too
        result = diamond.run({}, settings=settings)
        assert result.value == 10 and bool(result.cached_steps) is cached
        run = get_run(result.run_id, settings)
        assert {s.step: s.upstream for s in run.steps} == expected
        assert {s["step"]: s["upstream"] for s in run.to_dict()["steps"]} == expected
