"""Models the mlflow client logged: finding their files and reading their ``MLmodel``.

There is no loopml manifest in such a directory; what loading trusts instead is the
artifact store's own manifest, which records the sha256 of every file when it is
uploaded (and the blob store checks each file against it on read). The digest of
that listing (:func:`loopml.models.manifest.tree_digest`) is what the registry
records for a version, so ``models:/name/3`` pins the registered bytes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from loopml.errors import IntegrityError, NotFound
from loopml.models._fetch import LoggedModelFiles, ModelFiles, RunFiles
from loopml.models.flavors._mlflow import LOADER, MLMODEL_FILE, choose, parse_mlmodel, requirements
from loopml.models.manifest import MANIFEST_NAME, Manifest, tree_digest
from loopml.models.uris import ArtifactSource, LoggedModelSource, parse_source

if TYPE_CHECKING:  # the tracking stack (SQLAlchemy) loads only when a model is logged or loaded
    from loopml.store.artifacts import FileInfo
    from loopml.tracking.service import TrackingService

# Tags log_model puts on the logged model it records for a loopml model (its files stay in the run).
LOOPML_URI_TAG = "loopml.model_uri"
LOOPML_DIGEST_TAG = "loopml.manifest_sha256"


def run_model_files(svc: TrackingService, source: ArtifactSource) -> ModelFiles | None:
    """An MLflow-format model at ``source``: in the run's own artifacts (mlflow 2), or the logged
    model the run produced under that name (mlflow 3 ``runs:/<run>/<name>``); None if neither."""
    if any(f.path.rsplit("/", 1)[-1] == MLMODEL_FILE for f in _list(svc, source)):
        return RunFiles(svc, source)
    experiment_id = svc.get_run(source.run_id).info.experiment_id
    quoted = source.artifact_path.replace("'", "''")
    found, _ = svc.search_logged_models(
        [experiment_id],
        max_results=1,
        filter_string=f"source_run_id = '{source.run_id}' AND name = '{quoted}'",
    )
    return LoggedModelFiles(svc, LoggedModelSource(found[0].model_id, "")) if found else None


def _list(svc: TrackingService, source: ArtifactSource) -> list[FileInfo]:
    try:
        return list(svc.list_artifacts(source.run_id, source.artifact_path or None))
    except NotFound:
        return []


def loopml_redirect(svc: TrackingService, source: LoggedModelSource) -> tuple[ArtifactSource, str] | None:
    """The run files and manifest digest of a logged model that ``loopml.models.log_model``
    recorded (it points at the run's artifacts instead of holding files)."""
    if source.artifact_path:
        return None
    tags = svc.get_logged_model(source.model_id).tags
    uri, digest = tags.get(LOOPML_URI_TAG), tags.get(LOOPML_DIGEST_TAG)
    if not uri or not digest:
        return None
    target = parse_source(uri)
    return (target, digest) if isinstance(target, ArtifactSource) else None


def read_mlflow_manifest(files: ModelFiles, expected: str | None, trust_pickle: bool) -> tuple[Manifest, str]:
    """A manifest for an MLflow-format directory, with the digest of its file listing.

    Raises ``NotFound`` when the directory has no ``MLmodel``, ``IntegrityError`` when the
    listing differs from ``expected`` or the ``MLmodel`` bytes from their recorded sha256,
    ``PermissionDenied``/``InvalidInput`` (from the flavor) before anything else is fetched.
    """
    listing = files.listing()
    if MLMODEL_FILE not in listing:
        raise NotFound(
            f"{files.where} has no model: neither {MANIFEST_NAME} (loopml) nor {MLMODEL_FILE} (MLflow)",
            details={"files": sorted(listing)[:20]},
        )
    digest = tree_digest(listing)
    if expected is not None and digest != expected:
        raise IntegrityError(
            f"{files.where}: its files hash to {digest} but {expected} was recorded when it was "
            "registered; the artifacts were altered: do not load it, log and register the model again",
            details={"expected": expected, "actual": digest},
        )
    data = b"".join(files.read(MLMODEL_FILE))
    actual = hashlib.sha256(data).hexdigest()
    if actual != listing[MLMODEL_FILE]:
        raise IntegrityError(
            f"{files.where}: {MLMODEL_FILE} has sha256 {actual} but the artifact store recorded "
            f"{listing[MLMODEL_FILE]}; do not load it, log the model again",
            details={"file": MLMODEL_FILE, "expected": listing[MLMODEL_FILE], "actual": actual},
        )
    saved = choose(parse_mlmodel(data, files.where), listing, files.where, trust_pickle)
    conf = saved.options["conf"]
    manifest = Manifest(
        flavor="mlflow",
        loader=LOADER,
        files=listing,
        options=saved.options,
        requirements=requirements(saved),
        model_class=str(conf.get("model_class") or f"mlflow {saved.options['flavor']} model"),
    )
    return manifest, digest
