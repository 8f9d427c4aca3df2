"""Where a model version's files come from: only artifact URIs loopml issued are accepted.

A registry that takes any path would let ``file:///home/me/model.pkl`` or ``s3://elsewhere``
reach Production with no run, no digest and no lineage; so a source must resolve to files in
loopml's own artifact manifest, and the version records their digest.

When ``loopml.models`` ships its source parser, :func:`resolve_source` is the one place to
switch over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopml.errors import InvalidInput, NotFound
from loopml.models.manifest import MANIFEST_NAME, tree_digest
from loopml.store.artifacts import ArtifactRepository, FileInfo
from loopml.store.paths import join, safe_relpath
from loopml.tracking._artifacts import ARTIFACT_SCHEME, artifact_prefix
from loopml.tracking.local import LocalTrackingService

# The file loopml.models writes at the root of a logged model; when present its sha256 is the
# model's digest (it lists the sha256 of every other file), so the registry and the loader agree.
MODEL_MANIFEST = MANIFEST_NAME
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_LOGGED_MODEL = re.compile(r"^m-[0-9a-f]{32}$")
_ACCEPTED = (
    "runs:/<run_id>/<path>, mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path> "
    "or models:/m-<logged model id>"
)


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """A validated source: the run and logged model it belongs to, and where its files are."""

    run_id: str | None
    model_id: str | None
    storage_location: str
    digest: str
    run_path: str | None  # the path under the run's artifact root, when it is a run artifact


def resolve_source(tracking: LocalTrackingService, source: str, run_id: str | None = None) -> ResolvedSource:
    """Validate ``source`` and find its files; ``InvalidInput`` (field ``source``) otherwise."""
    if not isinstance(source, str) or not source.strip():
        raise _refused(str(source), "it is empty")
    if source.startswith("runs:/"):
        found = _from_runs_uri(tracking, source)
    elif source.startswith("models:/"):
        found = _from_logged_model(tracking, source)
    elif source.startswith(ARTIFACT_SCHEME) and not source.startswith(ARTIFACT_SCHEME + "/"):
        found = _from_artifact_uri(tracking, source)
    else:
        raise _refused(source, "it is not an artifact URI loopml issued")
    if run_id and found.run_id and run_id != found.run_id:
        raise InvalidInput(
            f"run_id {run_id!r} does not match the source, which belongs to run {found.run_id!r}",
            details={"field": "run_id"},
        )
    return found


def _refused(source: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"model version source {source!r} is refused: {why}; register a model logged to loopml, "
        f"as {_ACCEPTED}",
        details={"field": "source"},
    )


def _from_runs_uri(tracking: LocalTrackingService, source: str) -> ResolvedSource:
    run_id, _, path = source.removeprefix("runs:/").partition("/")
    if not _RUN_ID.match(run_id):
        raise _refused(source, f"{run_id!r} is not a run id")
    run_path = safe_relpath(path, field="source", allow_root=True)
    try:
        run = tracking.get_run(run_id)
    except NotFound:
        raise _refused(source, f"run {run_id!r} does not exist") from None
    prefix = join(artifact_prefix(run.info.artifact_uri), run_path)
    if run_path and not tracking.artifacts.walk(prefix) and tracking.artifacts.lookup(prefix) is None:
        # MLflow 3 logs a model under its own logged-model root and names it by the run and
        # the artifact path, which is how its runs:/ URIs resolve: do the same.
        logged = _logged_model_of_run(tracking, run.info.experiment_id, run_id, run_path)
        if logged is not None:
            found = _from_logged_model(tracking, f"models:/{logged}")
            return ResolvedSource(run_id, found.model_id, found.storage_location, found.digest, None)
    digest = _tree_digest(tracking.artifacts, prefix, source)
    location = run.info.artifact_uri + (f"/{run_path}" if run_path else "")
    return ResolvedSource(run_id, None, location, digest, run_path)


def _logged_model_of_run(
    tracking: LocalTrackingService, experiment_id: str, run_id: str, name: str
) -> str | None:
    quoted = name.replace("'", "''")
    found, _ = tracking.search_logged_models(
        [experiment_id], max_results=1, filter_string=f"source_run_id = '{run_id}' AND name = '{quoted}'"
    )
    return found[0].model_id if found else None


def _from_logged_model(tracking: LocalTrackingService, source: str) -> ResolvedSource:
    model_id = source.removeprefix("models:/").rstrip("/")
    if not _LOGGED_MODEL.match(model_id):
        raise _refused(
            source,
            "models:/ sources must name a logged model (models:/m-<id>); to copy a registered "
            "version, register its run's model instead",
        )
    try:
        logged = tracking.get_logged_model(model_id)
    except NotFound:
        raise _refused(source, f"logged model {model_id!r} does not exist") from None
    prefix = artifact_prefix(logged.artifact_location)
    digest = _tree_digest(tracking.artifacts, prefix, source)
    return ResolvedSource(logged.source_run_id, model_id, logged.artifact_location, digest, None)


def _from_artifact_uri(tracking: LocalTrackingService, source: str) -> ResolvedSource:
    prefix = artifact_prefix(source.rstrip("/"))
    parts = prefix.split("/")
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        found = _from_logged_model(tracking, f"models:/{parts[2]}")
        return ResolvedSource(
            found.run_id,
            found.model_id,
            source.rstrip("/"),
            _tree_digest(tracking.artifacts, prefix, source),
            None,
        )
    if len(parts) < 3 or parts[2] != "artifacts" or not _RUN_ID.match(parts[1]):
        raise _refused(source, "it is not under a run's or a logged model's artifact root")
    run_id = parts[1]
    try:
        run = tracking.get_run(run_id)
    except NotFound:
        raise _refused(source, f"run {run_id!r} does not exist") from None
    if artifact_prefix(run.info.artifact_uri) != "/".join(parts[:3]):
        raise _refused(source, f"it is not under run {run_id}'s artifact root {run.info.artifact_uri}")
    run_path = "/".join(parts[3:])
    return ResolvedSource(
        run_id, None, source.rstrip("/"), _tree_digest(tracking.artifacts, prefix, source), run_path
    )


def _tree_digest(artifacts: ArtifactRepository, prefix: str, source: str) -> str:
    """The loopml model manifest's sha256 if there is one, else a sha256 over every
    (relative path, file sha256) pair under ``prefix`` — the same bytes give the same digest,
    and :func:`loopml.models.load` checks an MLflow-format model's files against it."""
    manifest = artifacts.lookup(join(prefix, MODEL_MANIFEST))
    if manifest is not None and manifest.digest:
        return manifest.digest
    files = artifacts.walk(prefix)
    if not files:
        single = artifacts.lookup(prefix)
        if single is None:
            raise _refused(source, "no artifacts were logged there")
        files = [FileInfo(prefix + "/" + prefix.rsplit("/", 1)[-1], False, single.file_size, single.digest)]
    start = len(prefix) + 1
    return tree_digest({f.path[start:]: f.digest or "" for f in files})
