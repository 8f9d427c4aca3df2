"""The registry over the local stores: used embedded and inside the server."""

from __future__ import annotations

from loopml.config import Settings
from loopml.data.service import LocalDataService
from loopml.registry._lineage import LineageMixin
from loopml.registry._models import ModelsMixin
from loopml.registry._promotion import PromotionMixin
from loopml.registry.service import RegistryService
from loopml.store.artifacts import ArtifactRepository
from loopml.store.blobs import open_blob_store
from loopml.store.db import Database
from loopml.tracking.local import LocalTrackingService


class LocalRegistryService(ModelsMixin, PromotionMixin, LineageMixin, RegistryService):
    """The registry straight on the metadata database, next to tracking and data.

    Runs, artifacts and dataset versions are read through those services' public methods;
    the registry's own tables are written one transaction per mutation.

    >>> reg = LocalRegistryService.from_settings(Settings.load(env={"LOOPML_HOME": "/tmp/lm"}))
    >>> reg.search_registered_models("name = 'no-such-model'").models
    []
    """

    def __init__(
        self, db: Database, tracking: LocalTrackingService, data: LocalDataService, default_user: str
    ) -> None:
        self.db = db
        self.tracking = tracking
        self.data = data
        self.default_user = default_user or "unknown"

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalRegistryService:
        db = Database(settings.database_url)
        blobs = open_blob_store(settings.artifact_root)
        tracking = LocalTrackingService(db, ArtifactRepository(db, blobs))
        return cls(db, tracking, LocalDataService(db, blobs, settings.user), settings.user)

    @classmethod
    def over(cls, tracking: LocalTrackingService, user: str) -> LocalRegistryService:
        """A registry on ``tracking``'s database and blobs: one engine, one connection pool."""
        data = LocalDataService(tracking.db, tracking.artifacts.blobs, user)
        return cls(tracking.db, tracking, data, user)

    def _user(self, user: str | None) -> str:
        return user or self.default_user

    def close(self) -> None:
        self.db.dispose()
