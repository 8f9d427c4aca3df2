"""Lineage both ways: model version -> run -> commit -> dataset versions, and dataset version
-> model versions (a mixin of the local registry, over the tracking and data services)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from loopml.data.lineage import runs_using
from loopml.data.service import LocalDataService
from loopml.errors import InvalidInput, NotFound
from loopml.models.manifest import MANIFEST_NAME
from loopml.registry import _store as st
from loopml.registry.records import DatasetLineage, Lineage, ModelVersion, RunLineage
from loopml.store.db import Database
from loopml.store.paths import join
from loopml.store.schema import model_versions, registered_models
from loopml.tracking import capture
from loopml.tracking._artifacts import artifact_prefix
from loopml.tracking.local import LocalTrackingService
from loopml.tracking.records import DatasetInput, Run

MAX_MANIFEST_BYTES = 4 << 20
FEATURE_SERVICE_TAG = "loopml.feature_service"  # as loopml.features.service names it


class LineageMixin:
    db: Database
    tracking: LocalTrackingService
    data: LocalDataService

    if TYPE_CHECKING:  # provided by the class that assembles the mixins

        def get_model_version(self, name: str, version: int | str) -> ModelVersion: ...

    def lineage(self, name: str, version: int | str) -> Lineage:
        mv = self.get_model_version(name, version)
        run = self._run(mv.run_id)
        manifest = self._manifest(mv)
        return Lineage(
            model=mv,
            run=None if run is None else self._run_lineage(run),
            datasets=[] if run is None else [self._dataset(i) for i in run.inputs],
            features=_features(manifest.get("feature_service"), mv.tags.get(FEATURE_SERVICE_TAG))
            or self._dataset_features(run),
            signature=manifest.get("signature"),
            flavor=manifest.get("flavor"),
        )

    def models_trained_on(self, dataset_name: str, dataset_version: int | str) -> list[ModelVersion]:
        dv = self.data.get(dataset_name, dataset_version)
        run_ids = set(runs_using(self.tracking, dv))
        if not run_ids:
            return []
        c = model_versions.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(model_versions, registered_models.c.name.label("model_name"))
                .join(registered_models, registered_models.c.id == c.model_id)
                .where(c.run_id.in_(sorted(run_ids)))
                .order_by(registered_models.c.name, c.version)
            ).all()
            return st.load_versions(conn, rows, {int(r.model_id): r.model_name for r in rows})

    def _run(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        try:
            return self.tracking.get_run(run_id)
        except NotFound:  # the run was purged; the version still stands on its digest
            return None

    def _run_lineage(self, run: Run) -> RunLineage:
        tags = run.tags
        dirty = tags.get(capture.GIT_DIRTY)
        try:
            experiment = self.tracking.get_experiment(run.info.experiment_id).name
        except NotFound:
            experiment = ""
        return RunLineage(
            run_id=run.info.run_id,
            run_name=run.info.run_name,
            experiment_id=run.info.experiment_id,
            experiment_name=experiment,
            status=run.info.status,
            user=run.info.user_id,
            commit=tags.get(capture.GIT_COMMIT),
            branch=tags.get(capture.GIT_BRANCH),
            repo=tags.get(capture.GIT_REPO),
            dirty=None if dirty is None else dirty == "true",
            metrics={k: m.value for k, m in sorted(run.metrics.items())},
            params=dict(sorted(run.params.items())),
        )

    def _dataset(self, given: DatasetInput) -> DatasetLineage:
        dv = self.data.get_by_digest(given.digest)
        if dv is None:
            return DatasetLineage(given.name, given.digest, given.context)
        return DatasetLineage(
            dv.name,
            dv.digest,
            given.context,
            dv.version,
            dv.num_rows,
            [f"{f.name}: {f.type}" for f in dv.schema],
        )

    def _dataset_features(self, run: Run | None) -> list[str]:
        """The feature definitions recorded on the run's training sets (the ``loopml.features``
        tag that loopml.features.training.register_training_set writes)."""
        lines: list[str] = []
        for given in [] if run is None else run.inputs:
            dv = self.data.get_by_digest(given.digest)
            try:
                found = orjson.loads(dv.tags.get("loopml.features", "[]")) if dv is not None else []
            except orjson.JSONDecodeError:
                continue
            lines += [str(x) for x in found if str(x) not in lines] if isinstance(found, list) else []
        return lines

    def _manifest(self, mv: ModelVersion) -> dict[str, Any]:
        """The loopml model manifest of the version, or {} when the model was not logged by loopml."""
        try:
            path = join(artifact_prefix(mv.storage_location), MANIFEST_NAME)
        except InvalidInput:  # a foreign location simply has no loopml manifest
            return {}
        if self.tracking.artifacts.lookup(path) is None:
            return {}
        body = b"".join(self.tracking.artifacts.iter_bytes(path))  # verified: tampering raises
        if len(body) > MAX_MANIFEST_BYTES:
            return {}
        try:
            found = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {}
        return found if isinstance(found, dict) else {}


def _features(service: Any, tagged: str | None) -> list[str]:
    """The feature service a model was logged with, then its features (``view:feature``); or
    the service its version was registered with (the tag ``name@version``)."""
    if not isinstance(service, dict) or not service.get("name"):
        name, _, version = (tagged or "").partition("@")
        return [f"feature_service {name} v{version or '?'}"] if name else []
    return [f"feature_service {service['name']} v{service.get('version', '?')}", *service.get("refs", [])]
