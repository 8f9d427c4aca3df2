"""Dataset versions as run inputs, through the tracking service's public contract.

A run records a version as a ``DatasetInput`` whose digest is the content hash, source
type ``loopml`` and source ``loopml:dataset/<name>/<version>``.  So the registry goes
run -> dataset versions by ``get_by_digest`` on each input's digest, and dataset version
-> runs by :func:`runs_using` (a ``datasets.digest`` search over every experiment).

>>> dv = loopml.data.get("churn@3")                   # doctest: +SKIP
>>> with loopml.start_run() as run:                  # doctest: +SKIP
...     loopml.data.log_input(dv)
>>> run.run_id in loopml.data.runs_using(dv)          # doctest: +SKIP
True
"""

from __future__ import annotations

import orjson

from loopml.data.records import DatasetVersion
from loopml.tracking.records import DatasetInput, ViewType
from loopml.tracking.service import TrackingService

SOURCE_TYPE = "loopml"
_PAGE = 1000


def dataset_input(dv: DatasetVersion, context: str | None = "training") -> DatasetInput:
    """The run input that names ``dv`` (the small MLflow-style profile: rows and elements)."""
    schema = {"loopml_fields": [f.to_dict() for f in dv.schema]}
    profile = {"num_rows": dv.num_rows, "num_elements": dv.num_rows * len(dv.schema)}
    return DatasetInput(
        name=dv.name,
        digest=dv.digest,
        source_type=SOURCE_TYPE,
        source=dv.uri,
        schema=orjson.dumps(schema).decode(),
        profile=orjson.dumps(profile).decode(),
        context=context,
        tags={"loopml.dataset.version": str(dv.version)},
    )


def log_input(
    tracking: TrackingService, run_id: str, dv: DatasetVersion, context: str | None = "training"
) -> None:
    """Record ``dv`` as an input of run ``run_id``."""
    tracking.log_inputs(run_id, [dataset_input(dv, context)])


def runs_using(tracking: TrackingService, dv: DatasetVersion) -> list[str]:
    """Ids of every run (in any experiment, deleted ones included) that recorded ``dv``'s rows."""
    experiment_ids = _all_experiment_ids(tracking)
    if not experiment_ids:
        return []
    found: list[str] = []
    token: str | None = None
    while True:
        page = tracking.search_runs(
            experiment_ids,
            f"datasets.digest = '{dv.digest}'",
            view_type=ViewType.ALL,
            max_results=_PAGE,
            page_token=token,
        )
        found += [r.info.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            return found


def _all_experiment_ids(tracking: TrackingService) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    while True:
        page = tracking.search_experiments(view_type=ViewType.ALL, page_token=token)
        ids += [e.experiment_id for e in page.experiments]
        token = page.next_page_token
        if not token:
            return ids
