"""Fetching a logged model's files into a local cache keyed by the manifest's digest.

Every file is hashed and compared with the manifest before anything reads it,
on every load (a cached copy may have been altered since it was written). The files
come from a run's artifacts (:class:`RunFiles`) or from an MLflow 3 logged model's
(:class:`LoggedModelFiles`).
"""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.errors import IntegrityError, NotFound
from loopml.models.manifest import MANIFEST_NAME, Manifest, verify_files
from loopml.models.uris import ArtifactSource, LoggedModelSource
from loopml.store.paths import join

if TYPE_CHECKING:  # the tracking stack (SQLAlchemy) loads only when a model is logged or loaded
    from loopml.store.artifacts import FileInfo
    from loopml.tracking.service import TrackingService


def digest_tag(artifact_path: str) -> str:
    """The run tag where ``log_model`` records the manifest digest of ``artifact_path``."""
    return f"loopml.model.{artifact_path}.sha256"


class ModelFiles(abc.ABC):
    """One model directory in the tracking service: subclasses implement :meth:`read` and
    :meth:`listing` and set ``where`` (how messages name the directory)."""

    where: str

    @abc.abstractmethod
    def read(self, name: str) -> Iterator[bytes]:
        """The verified bytes of file ``name`` (relative to the directory)."""

    @abc.abstractmethod
    def listing(self) -> dict[str, str]:
        """``{relative path: sha256}`` of every file below the directory, as the store recorded it."""


class RunFiles(ModelFiles):
    def __init__(self, svc: TrackingService, source: ArtifactSource) -> None:
        self.svc, self.source = svc, source
        self.where = f"model runs:/{source.run_id}/{source.artifact_path}"

    def read(self, name: str) -> Iterator[bytes]:
        return self.svc.iter_artifact(self.source.run_id, join(self.source.artifact_path, name))

    def listing(self) -> dict[str, str]:
        found = self.svc.list_artifacts(self.source.run_id, self.source.artifact_path or None, recursive=True)
        return _relative(found, self.source.artifact_path)


class LoggedModelFiles(ModelFiles):
    def __init__(self, svc: TrackingService, source: LoggedModelSource) -> None:
        self.svc, self.source = svc, source
        self.where = f"logged model models:/{source.model_id}" + (
            f" (path {source.artifact_path!r})" if source.artifact_path else ""
        )

    def read(self, name: str) -> Iterator[bytes]:
        path = join(self.source.artifact_path, name)
        return self.svc.iter_logged_model_artifact(self.source.model_id, path)

    def listing(self) -> dict[str, str]:
        path = self.source.artifact_path or None
        found = self.svc.list_logged_model_artifacts(self.source.model_id, path, recursive=True)
        return _relative(found, self.source.artifact_path)


def _relative(found: list[FileInfo], path: str) -> dict[str, str]:
    start = len(path.rstrip("/")) + 1 if path else 0
    return {f.path[start:]: f.digest for f in found if not f.is_dir and f.digest}


def read_manifest(
    svc: TrackingService, source: ArtifactSource, expected: str | None
) -> tuple[Manifest, str] | None:
    """The parsed manifest and its sha256, checked against ``expected`` (or the run's tag);
    None when there is no loopml manifest at ``source``."""
    where = f"model runs:/{source.run_id}/{source.artifact_path}"
    try:
        data = b"".join(svc.iter_artifact(source.run_id, join(source.artifact_path, MANIFEST_NAME)))
    except NotFound:
        svc.get_run(source.run_id)  # raises NotFound naming the run when the run itself is unknown
        return None
    digest = hashlib.sha256(data).hexdigest()
    if expected is None:
        expected = svc.get_run(source.run_id).tags.get(digest_tag(source.artifact_path))
    if expected is not None and digest != expected:
        raise IntegrityError(
            f"{where}: {MANIFEST_NAME} has sha256 {digest} but {expected} was recorded when it was "
            "logged; the artifact was altered: do not load it, log the model again",
            details={"file": MANIFEST_NAME, "expected": expected, "actual": digest},
        )
    return Manifest.from_bytes(data, where=where), digest


def missing(svc: TrackingService, source: ArtifactSource) -> NotFound:
    """``NotFound`` saying where the run's models are, when there is none at ``source``."""
    found = sorted(
        f.path.removesuffix("/" + MANIFEST_NAME)
        for f in svc.list_artifacts(source.run_id, recursive=True)
        if f.path == MANIFEST_NAME or f.path.endswith("/" + MANIFEST_NAME)
    )
    known = f"its models are at: {', '.join(found)}" if found else "it has no logged model"
    return NotFound(
        f"run {source.run_id} has no model at {source.artifact_path!r}; {known}",
        details={"run_id": source.run_id, "artifact_path": source.artifact_path, "models": found},
    )


def materialize(files: ModelFiles, manifest: Manifest, digest: str, cache_root: Path) -> Path:
    """A local directory holding exactly the manifest's files, each verified."""
    target = cache_root / digest
    if not target.is_dir():
        _download(files, manifest, target, files.where)
    verify_files(target, manifest.files, where=f"{files.where} (cached at {target})")
    return target


def _download(files: ModelFiles, manifest: Manifest, target: Path, where: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{uuid.uuid4().hex}.", dir=target.parent))
    try:
        for name in manifest.files:
            local = staging / name
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                chunks = files.read(name)
                with open(local, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
            except NotFound:
                raise IntegrityError(
                    f"{where}: file {name!r} is listed in the manifest but missing from the artifacts; "
                    "log the model again",
                    details={"file": name},
                ) from None
        verify_files(staging, manifest.files, where=where)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # another process may have published the same digest first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
