"""The tracking contract, implemented locally (over the stores) and remotely (over HTTP).

One behavioural suite (``tests/contract``) runs against every implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from loopml.errors import NotFound
from loopml.store.artifacts import FileInfo
from loopml.store.paths import join, safe_relpath
from loopml.tracking.records import (
    Comparison,
    DatasetInput,
    Experiment,
    ExperimentPage,
    LoggedModel,
    Metric,
    MetricTuple,
    Param,
    Run,
    RunInfo,
    RunPage,
    RunTag,
    ViewType,
)


class TrackingService(abc.ABC):
    """Experiments, runs, their logged data and artifacts.

    Subclasses implement every abstract method with these semantics: names are
    validated; a missing object raises ``NotFound``; re-logging a param with a
    different value raises ``Conflict``; a rejected batch writes nothing.

    >>> svc = loopml.tracking.local.LocalTrackingService.from_settings(settings)  # doctest: +SKIP
    >>> run = svc.create_run(svc.create_experiment("sweep"))                        # doctest: +SKIP
    """

    # experiments
    @abc.abstractmethod
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str: ...

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment: ...

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    @abc.abstractmethod
    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        page_token: str | None = None,
        order_by: Sequence[str] = (),
    ) -> ExperimentPage: ...

    @abc.abstractmethod
    def rename_experiment(self, experiment_id: str, new_name: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None: ...

    @abc.abstractmethod
    def restore_experiment(self, experiment_id: str) -> None: ...

    @abc.abstractmethod
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None: ...

    # runs
    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        user_id: str | None = None,
    ) -> Run: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abc.abstractmethod
    def update_run(
        self,
        run_id: str,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo: ...

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def restore_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricTuple] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None: ...

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    @abc.abstractmethod
    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None: ...

    @abc.abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RunPage: ...

    # artifacts
    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
        """Upload a file, or every file under a directory, below ``artifact_path``."""
        local_path = Path(local_path)
        if local_path.is_dir():
            files = sorted(p for p in local_path.rglob("*") if p.is_file())
            targets = [(f, f.relative_to(local_path).as_posix()) for f in files]
        elif local_path.is_file():
            targets = [(local_path, local_path.name)]
        else:
            raise NotFound(f"local path {str(local_path)!r} does not exist", details={"field": "path"})
        base = safe_relpath(artifact_path or "", field="artifact_path", allow_root=True)
        for file, rel in targets:
            with open(file, "rb") as fh:
                self.put_artifact(run_id, join(base, rel), fh)

    @abc.abstractmethod
    def list_artifacts(self, run_id: str, path: str | None = None, recursive: bool = False) -> list[FileInfo]:
        """The entries directly under ``path``, or with ``recursive`` every file below it."""

    @abc.abstractmethod
    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path: ...

    @abc.abstractmethod
    def put_artifact(self, run_id: str, path: str, stream: IO[bytes]) -> FileInfo:
        """Store one file's bytes at ``path`` under the run's artifact root."""

    @abc.abstractmethod
    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        """The verified bytes of one artifact file."""

    # MLflow 3 logged models: read side (``mlflow.<flavor>.log_model`` writes them)
    @abc.abstractmethod
    def get_logged_model(self, model_id: str) -> LoggedModel: ...

    @abc.abstractmethod
    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        max_results: int = 100,
        page_token: str | None = None,
        filter_string: str = "",
    ) -> tuple[list[LoggedModel], str | None]:
        """Active logged models, newest first; ``filter_string`` is ``name = '...'`` and/or
        ``source_run_id = '...'`` joined by AND."""

    @abc.abstractmethod
    def list_logged_model_artifacts(
        self, model_id: str, path: str | None = None, recursive: bool = False
    ) -> list[FileInfo]:
        """Like :meth:`list_artifacts`, under the logged model's own artifact root; each file
        carries the sha256 the artifact store recorded for it."""

    @abc.abstractmethod
    def iter_logged_model_artifact(self, model_id: str, path: str) -> Iterator[bytes]:
        """The verified bytes of one file under the logged model's artifact root."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the service is not used afterwards."""

    # derived operations, shared by every implementation
    def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int = 0) -> None:
        self.log_batch(run_id, metrics=[Metric(key, value, timestamp, step)])

    def log_param(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, params=[Param(key, str(value))])

    def set_tag(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        """Side-by-side params and latest metrics of ``run_ids``, in the order given."""
        runs = [self.get_run(r) for r in run_ids]
        param_keys = sorted({k for r in runs for k in r.params})
        metric_keys = sorted({k for r in runs for k in r.metrics})
        return Comparison(
            run_ids=[r.info.run_id for r in runs],
            run_names=[r.info.run_name for r in runs],
            param_keys=param_keys,
            metric_keys=metric_keys,
            params=[dict(r.params) for r in runs],
            metrics=[{k: m.value for k, m in r.metrics.items()} for r in runs],
        )
