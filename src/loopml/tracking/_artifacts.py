"""Run artifacts over the content-addressed store (a mixin of the local service)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

from loopml.errors import InvalidInput, NotFound
from loopml.store.artifacts import ArtifactRepository, FileInfo
from loopml.store.paths import join, safe_relpath

ARTIFACT_SCHEME = "mlflow-artifacts:/"


def artifact_prefix(artifact_uri: str) -> str:
    """The manifest prefix of an ``mlflow-artifacts:/`` URI (``1/<run>/artifacts``)."""
    if not artifact_uri.startswith(ARTIFACT_SCHEME):
        raise InvalidInput(
            f"artifact location {artifact_uri!r} is not served by loopml; "
            "create the experiment without an artifact_location",
            details={"field": "artifact_uri"},
        )
    return safe_relpath(artifact_uri[len(ARTIFACT_SCHEME) :].lstrip("/"), field="artifact_uri")


class ArtifactsMixin:
    artifacts: ArtifactRepository

    def _run_prefix(self, run_id: str) -> str:
        db = self.artifacts.db
        with db.read() as conn:
            uri = conn.exec_driver_sql(
                db.sql("SELECT artifact_uri FROM runs WHERE run_uuid = ?"), (run_id,)
            ).scalar()
        if uri is None:
            raise NotFound(f"run {run_id!r} does not exist", details={"run_id": run_id})
        return artifact_prefix(str(uri))

    def _model_prefix(self, model_id: str) -> str:
        db = self.artifacts.db
        with db.read() as conn:
            uri = conn.exec_driver_sql(
                db.sql("SELECT artifact_location FROM logged_models WHERE model_id = ?"), (model_id,)
            ).scalar()
        if uri is None:
            raise NotFound(f"logged model {model_id!r} does not exist", details={"model_id": model_id})
        return artifact_prefix(str(uri))

    def _list_under(self, prefix: str, path: str | None, recursive: bool) -> list[FileInfo]:
        start = len(prefix) + 1
        full = join(prefix, safe_relpath(path or "", allow_root=True))
        found = self.artifacts.walk(full) if recursive else self.artifacts.list(full)
        return [FileInfo(f.path[start:], f.is_dir, f.file_size, f.digest) for f in found]

    def list_artifacts(self, run_id: str, path: str | None = None, recursive: bool = False) -> list[FileInfo]:
        return self._list_under(self._run_prefix(run_id), path, recursive)

    def download_artifacts(self, run_id: str, path: str, dest: Path) -> Path:
        full = join(self._run_prefix(run_id), safe_relpath(path, allow_root=True))
        return self.artifacts.download(full, Path(dest))

    def put_artifact(self, run_id: str, path: str, stream: IO[bytes]) -> FileInfo:
        """Store one file's bytes at ``path`` under the run's artifact root."""
        prefix = self._run_prefix(run_id)
        info = self.artifacts.put(join(prefix, safe_relpath(path)), stream)
        return FileInfo(info.path[len(prefix) + 1 :], False, info.file_size, info.digest)

    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        """The verified bytes of one artifact file."""
        return self.artifacts.iter_bytes(join(self._run_prefix(run_id), safe_relpath(path)))

    def list_logged_model_artifacts(
        self, model_id: str, path: str | None = None, recursive: bool = False
    ) -> list[FileInfo]:
        return self._list_under(self._model_prefix(model_id), path, recursive)

    def iter_logged_model_artifact(self, model_id: str, path: str) -> Iterator[bytes]:
        """The verified bytes of one file of an MLflow 3 logged model."""
        return self.artifacts.iter_bytes(join(self._model_prefix(model_id), safe_relpath(path)))
