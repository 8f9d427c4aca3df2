"""Pipelines: typed steps, a DAG from data dependencies, caching, retries, resume, executors
and triggers.

    import pandas as pd
    from loopml.pipelines import StepContext, pipeline, step

    @step
    def load(n: int) -> pd.DataFrame:
        return pd.DataFrame({"x": range(n)})

    @step(retries=2, backoff_s=0.5)
    def total(frame: pd.DataFrame, ctx: StepContext) -> float:
        ctx.log_metric("rows", len(frame))   # on the step's nested tracking run
        return float(frame["x"].sum())

    @step
    def square(x: int) -> int:
        return x * x

    @pipeline
    def example(n: int = 10) -> float:
        squares = square.map([1, 2, 3])   # fan-out: one step run per item, in parallel on a pool
        return total(load(n))             # the DAG comes from passing outputs to steps

    result = example.run({"n": "20"})     # parameters coerced to the signature (here from a string)
    result.value, result.cached_steps     # (190.0, []) then, run again: (190.0, ['load', 'total'])
    result.output("square")               # [1, 4, 9]

Values move between steps through the content-addressed artifact store (DataFrames and
Arrow tables as Parquet, NumPy arrays, models of the safe flavors, dataset versions by
reference, JSON values). Each run is a tracking run (experiment = pipeline name) with a
nested run per step. Steps run in process by default; ``LOOPML_EXECUTOR=process:4`` or
``executor="ray"`` run independent steps in parallel. From the shell::

    loopml pipeline run path/to/file.py:example -p n=20
    loopml pipeline resume RUN_ID
    loopml pipeline logs RUN_ID total
    loopml pipeline register path/to/file.py:example --cron "0 * * * *" --on-dataset churn
"""

from __future__ import annotations

from typing import Any

from loopml.config import Settings
from loopml.pipelines.dsl import Output, Pipeline, Step, StepContext, pipeline, step
from loopml.pipelines.engine import PipelineFailed, PipelineResult, context, run_pipeline
from loopml.pipelines.records import Definition, PipelineRunRecord, StepRecord, TriggerRecord

__all__ = [
    "Definition",
    "Output",
    "Pipeline",
    "PipelineFailed",
    "PipelineResult",
    "PipelineRunRecord",
    "Step",
    "StepContext",
    "StepRecord",
    "TriggerRecord",
    "get_run",
    "list_runs",
    "pipeline",
    "register",
    "resume",
    "run_pipeline",
    "step",
]


def get_run(run_id: str, settings: Settings | None = None) -> PipelineRunRecord:
    """A pipeline run with its steps (status, cached, attempts, outputs, log digests)."""
    store, _ = context(settings or Settings.load())
    return store.get_run(run_id)


def list_runs(
    pipeline: str | None = None, limit: int = 50, settings: Settings | None = None
) -> list[PipelineRunRecord]:
    """The latest runs, newest first (of one pipeline if named)."""
    store, _ = context(settings or Settings.load())
    return store.list_runs(pipeline, limit)


def resume(run_id: str, settings: Settings | None = None, **options: Any) -> PipelineResult:
    """Re-run a failed run from its failed step: steps that finished (with unchanged code and
    inputs) are reused, the rest run. Same parameters; ``options`` as :func:`run_pipeline`."""
    from loopml.pipelines.loader import load_target

    settings = settings or Settings.load()
    store, _ = context(settings)
    old = store.get_run(run_id, with_steps=False)
    if not old.target:
        from loopml.errors import InvalidInput

        raise InvalidInput(
            f"run {run_id} of pipeline {old.pipeline!r} cannot be reloaded (it was defined in __main__ "
            "or a function); resume it from Python with pipe.run(params, resume_from=RUN_ID)",
            details={"run_id": run_id},
        )
    pipe = load_target(old.target)
    pipe.name = old.pipeline
    return run_pipeline(pipe, old.params, settings=settings, resume_from=run_id, **options)


def register(
    pipe: Pipeline | str,
    *,
    name: str | None = None,
    schedule: str | None = None,
    on_dataset: str | None = None,
    on_alert: bool = True,
    params: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> Definition:
    """Register a pipeline by name with its triggers: a cron ``schedule``, new versions of
    dataset ``on_dataset``, and monitoring alerts naming it (``on_alert``, on by default: a
    monitor created with ``pipeline=NAME`` asks for it). Registering again updates it.

    >>> register("flows/churn.py:training", schedule="0 3 * * *", on_dataset="churn")  # doctest: +SKIP
    """
    from loopml.pipelines.triggers import register_definition

    return register_definition(
        pipe, name=name, schedule=schedule, on_dataset=on_dataset, on_alert=on_alert,
        params=params or {}, settings=settings or Settings.load(),
    )  # fmt: skip
