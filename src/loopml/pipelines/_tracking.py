"""A pipeline run as a tracking run (experiment = pipeline name) with a nested run per step.

Step runs carry ``mlflow.parentRunId``, the step's literal parameters, its duration and
attempts as metrics, ``loopml.pipeline.cached``, the dataset versions it read (as run
inputs, so ``loopml.data.runs_using`` finds them) and what it produced (tags naming the
dataset and model versions and the output digests). Logs and tracebacks are the step run's artifacts.
"""

from __future__ import annotations

import io
from typing import Any

import orjson

from loopml.data.lineage import dataset_input
from loopml.data.records import DatasetVersion
from loopml.errors import AlreadyExists
from loopml.pipelines.records import PipelineRunRecord, StepRecord
from loopml.pipelines.values import Ref
from loopml.store.blobs import BlobStore
from loopml.tracking.records import Param
from loopml.tracking.service import TrackingService

PARENT_RUN_TAG = "mlflow.parentRunId"
_MAX_PARAM = 6000
LOG_STREAMS = ("stdout", "stderr", "traceback")


class RunTracker:
    """Writes one pipeline run and its steps to the tracking service."""

    def __init__(self, svc: TrackingService, blobs: BlobStore) -> None:
        self.svc = svc
        self.blobs = blobs
        self.experiment_id = ""
        self.parent = ""

    def start(self, run: PipelineRunRecord) -> str:
        self.experiment_id = self._experiment(run.pipeline)
        tags = {"loopml.pipeline": run.pipeline, "loopml.pipeline.run_id": run.run_id,
                "loopml.pipeline.executor": run.executor}  # fmt: skip
        if run.resumed_from:
            tags["loopml.pipeline.resumed_from"] = run.resumed_from
        if run.trigger_id:
            tags["loopml.pipeline.trigger_id"] = run.trigger_id
        created = self.svc.create_run(
            self.experiment_id, run_name=f"{run.pipeline}-{run.run_id[:8]}", start_time=run.started_at,
            tags=tags, user_id=run.created_by,
        )  # fmt: skip
        self.parent = created.info.run_id
        params = [Param(k, _text(v)) for k, v in sorted(run.params.items())]
        if params:
            self.svc.log_batch(self.parent, params=params)
        return self.parent

    def _experiment(self, name: str) -> str:
        exp = self.svc.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.svc.create_experiment(name)
        except AlreadyExists:  # another run of this pipeline created it just now
            found = self.svc.get_experiment_by_name(name)
            assert found is not None
            return found.experiment_id

    def step(
        self, step: StepRecord, literals: dict[str, Any], inputs: list[Ref], reused_from: str = ""
    ) -> str:
        """Record a finished (or cached, or failed) step as a nested run; returns its id.

        Its duration is the run's start and end time; everything else is tags set at creation
        and one batch of parameters, so a cached step costs three short transactions."""
        outputs = step.outputs or []
        tags = {
            PARENT_RUN_TAG: self.parent,
            "loopml.pipeline.step": step.step,
            "loopml.pipeline.cached": "true" if step.cached else "false",
            "loopml.pipeline.cache_key": step.cache_key or "",
            "loopml.pipeline.attempts": str(step.attempts),
            "loopml.pipeline.outputs": orjson.dumps([_summary(r) for r in outputs]).decode(),
        }
        if reused_from:
            tags["loopml.pipeline.reused_from"] = reused_from
        produced = [_dataset_ref(self.blobs, r) for r in outputs if r["kind"] == "dataset"]
        if produced:
            tags["loopml.pipeline.output_datasets"] = ",".join(produced)
        for direction, refs in (("input", inputs), ("output", outputs)):
            versions = [str(r["ref"]) for r in refs if r["kind"] == "model_version"]
            if versions:
                tags[f"loopml.pipeline.{direction}_model_versions"] = ",".join(versions)
        if step.error:
            tags["loopml.pipeline.error"] = step.error[-_MAX_PARAM:]
        recorded = _recorded(self.blobs, step.logs.get("context"))
        tags.update(recorded.get("tags", {}))
        created = self.svc.create_run(
            self.experiment_id, run_name=step.step, start_time=step.started_at, tags=tags
        )
        run_id = created.info.run_id
        values = {**{k: _text(v) for k, v in literals.items()}, **recorded.get("params", {})}
        params = [Param(k, v) for k, v in sorted(values.items())]
        at = step.finished_at or 0
        metrics = [(k, float(v), at, 0) for k, v in sorted(recorded.get("metrics", {}).items())]
        if params or metrics:
            self.svc.log_batch(run_id, metrics=metrics, params=params)
        datasets = [_dataset(self.blobs, r) for r in inputs if r["kind"] == "dataset"]
        if datasets:
            self.svc.log_inputs(run_id, [dataset_input(dv, "pipeline") for dv in datasets])
        for name, digest in step.logs.items():
            if name in LOG_STREAMS:
                self.svc.put_artifact(run_id, f"logs/{name}.txt", io.BytesIO(self.blobs.read_bytes(digest)))
        status = "FAILED" if step.status == "FAILED" else "FINISHED"
        self.svc.update_run(run_id, status=status, end_time=step.finished_at)
        return run_id

    def finish(self, status: str, end_time: int) -> None:
        self.svc.update_run(
            self.parent, status="FINISHED" if status == "SUCCEEDED" else "FAILED", end_time=end_time
        )


def _recorded(blobs: BlobStore, digest: str | None) -> dict[str, Any]:
    """What the step recorded through its StepContext (stored beside its logs)."""
    if digest is None:
        return {}
    loaded: dict[str, Any] = orjson.loads(blobs.read_bytes(digest))
    return loaded


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text[:_MAX_PARAM]


def _summary(ref: Ref) -> dict[str, Any]:
    return {k: v for k, v in ref.items() if k != "items"}


def _dataset(blobs: BlobStore, ref: Ref) -> DatasetVersion:
    return DatasetVersion.from_dict(orjson.loads(blobs.read_bytes(ref["digest"])))


def _dataset_ref(blobs: BlobStore, ref: Ref) -> str:
    return str(ref.get("ref") or _dataset(blobs, ref).ref)
