"""The fluent SDK: ``with loopml.start_run(): loopml.log_metric(...)``.

The service is chosen from configuration: ``LOOPML_TRACKING_URI=http://…``
talks to a server, anything else works straight on the local stores. Both
behave the same (one behavioural suite runs against each).

>>> import loopml
>>> with loopml.start_run(run_name="demo") as run:  # doctest: +SKIP
...     loopml.log_param("alpha", 0.5)
...     loopml.log_metric("rmse", 0.27, step=1)
"""

from __future__ import annotations

import functools
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.tracking.capture import Provenance, capture
from loopml.tracking.records import Comparison, DatasetInput, Experiment, Metric, Param, Run, RunTag
from loopml.tracking.service import TrackingService
from loopml.tracking.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH

PARENT_RUN_TAG = "mlflow.parentRunId"
_lock = threading.Lock()
_services: dict[Settings, TrackingService] = {}
_state = threading.local()
_experiment_id: str | None = None
_settings_override: Settings | None = None


def _settings() -> Settings:
    return _settings_override or Settings.load()


def service(settings: Settings | None = None) -> TrackingService:
    """The tracking service for ``settings`` (default: the environment), built once."""
    settings = settings or _settings()
    with _lock:
        if settings not in _services:
            _services[settings] = _build(settings)
        return _services[settings]


def _build(settings: Settings) -> TrackingService:
    if settings.is_remote:
        from loopml.client.http import HttpTrackingService  # httpx only when remote

        assert settings.tracking_uri is not None
        return HttpTrackingService(
            settings.tracking_uri,
            token=settings.token,
            retries=settings.http_retries,
            timeout=settings.http_timeout,
        )
    from loopml.tracking.local import LocalTrackingService

    return LocalTrackingService.from_settings(settings)


def reset() -> None:
    """Forget the active experiment and runs and close every cached service (tests, notebooks)."""
    global _settings_override, _experiment_id
    with _lock:
        for svc in _services.values():
            svc.close()
        _services.clear()
    _settings_override, _experiment_id = None, None
    _state.runs = []


def set_tracking_uri(uri: str | None) -> None:
    """Point the SDK at a server (``http://…``), a database URL, or back to the environment."""
    global _settings_override, _experiment_id
    _settings_override = None if uri is None else Settings.load(overrides={"tracking_uri": uri})
    _experiment_id = None


def set_experiment(name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make an experiment active for later runs, creating it by name if needed."""
    global _experiment_id
    svc = service()
    if experiment_id is not None:
        exp = svc.get_experiment(experiment_id)
    elif name:
        exp = svc.get_experiment_by_name(name) or svc.get_experiment(svc.create_experiment(name))
    else:
        raise InvalidInput("set_experiment needs a name or an experiment_id")
    if exp.lifecycle_stage != "active":
        raise InvalidInput(f"experiment {exp.name!r} is deleted; restore it first")
    _experiment_id = exp.experiment_id
    return exp


class ActiveRun:
    """A started run; ending the ``with`` block ends it (FAILED if an exception escaped)."""

    def __init__(self, run: Run, service: TrackingService) -> None:
        self.run = run
        self.service = service

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def info(self) -> Any:
        return self.run.info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            status = "FINISHED"
        else:
            status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        end_run(status, run_id=self.run_id)


def _stack() -> list[ActiveRun]:
    if not hasattr(_state, "runs"):
        _state.runs = []
    stack: list[ActiveRun] = _state.runs
    return stack


@functools.lru_cache(maxsize=4)
def _provenance(cwd: str) -> Provenance:
    # Computed once per process and directory: git and the package list do not change mid-sweep.
    return capture(Path(cwd))


def start_run(
    run_name: str | None = None,
    experiment_id: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
    capture_env: bool = True,
) -> ActiveRun:
    """Start a run (nested under the active one if ``nested``); use it as a context manager."""
    stack = _stack()
    if stack and not nested:
        raise InvalidInput(f"run {stack[-1].run_id} is already active; end it first or pass nested=True")
    svc = service()
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    provenance = _provenance(str(Path.cwd())) if capture_env else None
    if provenance:
        all_tags = {**provenance.tags, **all_tags}
    if stack:
        all_tags[PARENT_RUN_TAG] = stack[-1].run_id
    exp_id = experiment_id or _experiment_id or "0"
    run = svc.create_run(exp_id, run_name=run_name, tags=all_tags)
    if provenance:
        for path, text in provenance.files.items():
            _put_text(svc, run.info.run_id, path, text)
    active = ActiveRun(run, svc)
    stack.append(active)
    return active


def end_run(status: str = "FINISHED", run_id: str | None = None) -> None:
    """End the active run (or ``run_id``) with ``status``."""
    stack = _stack()
    target = run_id or (stack[-1].run_id if stack else None)
    if target is None:
        return
    service().update_run(target, status=status, end_time=int(time.time() * 1000))
    _state.runs = [r for r in stack if r.run_id != target]


def active_run() -> ActiveRun | None:
    stack = _stack()
    return stack[-1] if stack else None


def _active_id() -> str:
    run = active_run()
    if run is None:
        raise InvalidInput("no active run: call loopml.start_run() first")
    return run.run_id


def log_param(key: str, value: Any) -> None:
    service().log_batch(_active_id(), params=[Param(key, str(value))])


def log_params(params: Mapping[str, Any]) -> None:
    items = [Param(k, str(v)) for k, v in params.items()]
    for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
        service().log_batch(_active_id(), params=chunk)


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    ts = timestamp or int(time.time() * 1000)
    service().log_batch(_active_id(), metrics=[Metric(key, value, ts, step or 0)])


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    ts = int(time.time() * 1000)
    items = [Metric(k, v, ts, step or 0) for k, v in metrics.items()]
    for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
        service().log_batch(_active_id(), metrics=chunk)


def set_tag(key: str, value: Any) -> None:
    service().log_batch(_active_id(), tags=[RunTag(key, str(value))])


def set_tags(tags: Mapping[str, Any]) -> None:
    service().log_batch(_active_id(), tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_artifact(local_path: str | Path, artifact_path: str | None = None) -> None:
    service().log_artifact(_active_id(), Path(local_path), artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str | None = None) -> None:
    service().log_artifact(_active_id(), Path(local_dir), artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _put_text(service(), _active_id(), artifact_file, text)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    _put_text(service(), _active_id(), artifact_file, orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _put_text(svc: TrackingService, run_id: str, path: str, text: str) -> None:
    _put_bytes(svc, run_id, path, text.encode())


def _put_bytes(svc: TrackingService, run_id: str, path: str, data: bytes) -> None:
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.seek(0)
        svc.put_artifact(run_id, path, fh)


def log_figure(figure: Any, artifact_file: str) -> None:
    """Store a matplotlib figure (``.png``/``.svg``/``.pdf``/``.jpg``) or a plotly figure
    (``.html``/``.json``) as ``artifact_file`` of the active run.

    >>> loopml.log_figure(fig, "plots/roc.png")  # doctest: +SKIP
    """
    from loopml.tracking import media  # numpy loads when media is logged, not on `import loopml.sdk`

    _put_bytes(service(), _active_id(), artifact_file, media.figure_bytes(figure, artifact_file))


def log_image(image: Any, artifact_file: str) -> None:
    """Store an image (NumPy HxW / HxWx3 / HxWx4, uint8 0..255 or float 0..1, or a PIL image)
    as the PNG ``artifact_file`` of the active run.

    >>> loopml.log_image(np.zeros((32, 32, 3), dtype=np.uint8), "images/black.png")  # doctest: +SKIP
    """
    from loopml.tracking import media  # numpy loads when media is logged, not on `import loopml.sdk`

    media.suffix_of(artifact_file, ("png",), "an image")
    _put_bytes(service(), _active_id(), artifact_file, media.png_bytes(image))


def log_table(data: Any, artifact_file: str) -> None:
    """Store a DataFrame or dict of columns as MLflow's table JSON (``{"columns", "data"}``);
    logging to the same ``artifact_file`` again appends the rows, as MLflow does.

    >>> loopml.log_table({"text": ["a", "b"], "score": [0.1, 0.9]}, "eval/table.json")  # doctest: +SKIP
    """
    from loopml.tracking import media  # numpy loads when media is logged, not on `import loopml.sdk`

    media.suffix_of(artifact_file, ("json",), "a table")
    svc, run_id = service(), _active_id()
    try:
        existing: bytes | None = b"".join(svc.iter_artifact(run_id, artifact_file))
    except NotFound:
        existing = None
    _put_bytes(svc, run_id, artifact_file, media.table_json(data, existing))
    # mlflow.load_table finds runs by this tag (a JSON list of {"path", "type": "table"}).
    logged = media.logged_tables(svc.get_run(run_id).tags.get(media.LOGGED_ARTIFACTS_TAG), artifact_file)
    if logged is not None:
        svc.set_tag(run_id, media.LOGGED_ARTIFACTS_TAG, logged)


def log_input(dataset: DatasetInput, context: str | None = None) -> None:
    """Record that the active run consumed ``dataset`` (e.g. ``context="training"``)."""
    if context:
        dataset.context = context
    service().log_inputs(_active_id(), [dataset])


def get_run(run_id: str) -> Run:
    return service().get_run(run_id)


def search_runs(
    filter_string: str = "",
    experiment_names: Sequence[str] | None = None,
    experiment_ids: Sequence[str] | None = None,
    order_by: Sequence[str] = (),
    max_results: int = 1000,
) -> list[Run]:
    """Runs matching MLflow's filter syntax, e.g. ``"metrics.acc > 0.9 AND params.model = 'rf'"``."""
    svc = service()
    ids = list(experiment_ids or [])
    for name in experiment_names or []:
        exp = svc.get_experiment_by_name(name)
        if exp is None:
            raise NotFound(f"experiment {name!r} does not exist")
        ids.append(exp.experiment_id)
    if not ids:
        ids = [_experiment_id or "0"]
    runs: list[Run] = []
    token: str | None = None
    while len(runs) < max_results:
        page = svc.search_runs(
            ids, filter_string, max_results=max_results - len(runs), order_by=order_by, page_token=token
        )
        runs += page.runs
        token = page.next_page_token
        if not token:
            break
    return runs


def compare_runs(run_ids: Iterable[str]) -> Comparison:
    return service().compare_runs(list(run_ids))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
