"""The tracking service over the local stores: used embedded and inside the server."""

from __future__ import annotations

from loopml.config import Settings
from loopml.store.artifacts import ArtifactRepository
from loopml.store.blobs import open_blob_store
from loopml.store.db import Database
from loopml.tracking._artifacts import ArtifactsMixin
from loopml.tracking._experiments import ExperimentsMixin
from loopml.tracking._logged_models import LoggedModelsMixin
from loopml.tracking._runs import RunsMixin
from loopml.tracking.service import TrackingService


class LocalTrackingService(RunsMixin, ExperimentsMixin, ArtifactsMixin, LoggedModelsMixin, TrackingService):
    """Tracking straight on the metadata database and the artifact store.

    >>> svc = LocalTrackingService.from_settings(Settings.load(env={"LOOPML_HOME": "/tmp/lm"}))
    >>> svc.get_experiment("0").name
    'Default'
    """

    def __init__(self, db: Database, artifacts: ArtifactRepository) -> None:
        self.db = db
        self.artifacts = artifacts

    def close(self) -> None:
        self.db.dispose()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalTrackingService:
        db = Database(settings.database_url)
        return cls(db, ArtifactRepository(db, open_blob_store(settings.artifact_root)))
