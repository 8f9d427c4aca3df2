"""``models:/`` URIs for :func:`loopml.models.load`: the resolver loopml.models names.

    models:/churn@champion     the version an alias points at
    models:/churn/3            a version number
    models:/churn/latest       the newest version
    models:/churn/Production   the newest version in a stage (MLflow's form)

>>> resolve_model_uri("models:/churn@champion")  # doctest: +SKIP
('runs:/0a1b.../model', '5e88...')
"""

from __future__ import annotations

from loopml import sdk
from loopml.errors import InvalidInput, NotFound
from loopml.models.manifest import MANIFEST_NAME
from loopml.registry import service
from loopml.registry.records import ModelStage, ModelVersion
from loopml.registry.service import RegistryService


def parse_model_uri(uri: str) -> tuple[str, str, str]:
    """``(name, kind, ref)`` with kind ``alias``, ``version``, ``latest`` or ``stage``."""
    body = uri.removeprefix("models:/").strip("/") if isinstance(uri, str) else ""
    if not uri.startswith("models:/") or not body:
        raise InvalidInput(
            f"model URI {uri!r} is invalid; use models:/<name>@<alias> or models:/<name>/<version>",
            details={"field": "uri"},
        )
    if "@" in body:
        name, _, alias = body.rpartition("@")
        return name, "alias", alias
    name, _, ref = body.rpartition("/")
    if not name:
        raise InvalidInput(
            f"model URI {uri!r} names no version; use models:/{body}@<alias> or models:/{body}/<version>",
            details={"field": "uri"},
        )
    if ref.isdigit():
        return name, "version", ref
    if ref.lower() == "latest":
        return name, "latest", ref
    return name, "stage", ModelStage.parse(ref).value


def find_version(registry: RegistryService, uri: str) -> ModelVersion:
    """The model version a ``models:/`` URI names (``NotFound`` says what exists)."""
    name, kind, ref = parse_model_uri(uri)
    if kind == "alias":
        return registry.get_model_version_by_alias(name, ref)
    if kind == "version":
        return registry.get_model_version(name, ref)
    stages = [] if kind == "latest" else [ref]
    found = registry.get_latest_versions(name, stages)
    if not found:
        where = "has no versions" if kind == "latest" else f"has no version in stage {ref}"
        raise NotFound(f"model {name!r} {where}", details={"name": name})
    return max(found, key=lambda v: v.version)


def loadable_source(mv: ModelVersion) -> str:
    """``runs:/<run>/<path>`` when the files are a run's artifacts, else the storage location
    (an MLflow 3 logged model's ``mlflow-artifacts:/<exp>/models/m-<id>/artifacts``)."""
    location = mv.storage_location
    parts = location.removeprefix("mlflow-artifacts:/").split("/", 3)
    if mv.run_id and len(parts) >= 3 and parts[1] == mv.run_id and parts[2] == "artifacts":
        return f"runs:/{mv.run_id}/{parts[3] if len(parts) > 3 else ''}".rstrip("/")
    return location


def resolve_model_uri(uri: str) -> tuple[str, str | None]:
    """The loadable source of the version ``uri`` names, and the digest the registry recorded
    for it (the manifest's sha256 when loopml.models logged it, else the digest of its file
    listing), so loading pins the registered bytes."""
    mv = find_version(service(), uri)
    source = loadable_source(mv)
    return source, _manifest_digest(mv, source)


def _manifest_digest(mv: ModelVersion, source: str) -> str | None:
    if not source.startswith("runs:/"):
        return mv.digest  # a logged model's files: the registry digested their listing
    if not mv.run_id:
        return None
    path = source.removeprefix(f"runs:/{mv.run_id}").strip("/")
    entries = sdk.service().list_artifacts(mv.run_id, path or None)
    manifest = next((f for f in entries if f.path.rsplit("/", 1)[-1] == MANIFEST_NAME), None)
    if manifest is None:
        return mv.digest  # an MLflow-format directory in the run's artifacts: its listing's digest
    return mv.digest if manifest.digest == mv.digest else None
