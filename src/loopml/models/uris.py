"""Model URIs: which artifact a URI names, and resolvers for the schemes above us.

``runs:/<run_id>/<path>`` and the ``mlflow-artifacts:/<exp>/<run_id>/artifacts/<path>``
URIs the tracking service issues name a run's artifact directory directly.
An MLflow 3 logged model (``models:/m-<id>``, or its location
``mlflow-artifacts:/<exp>/models/m-<id>/artifacts/<path>``) names a logged model's files.
``models:/name@alias`` (and ``models:/name/3``) belong to the registry, which sits
above this package: its resolver is named here and imported only when such a URI
is used (Metaflow-style), so ``loopml.models`` never imports ``loopml.registry``.

>>> parse_source("runs:/0a1b/model")
ArtifactSource(run_id='0a1b', artifact_path='model')
>>> parse_source("models:/m-" + "0" * 32)
LoggedModelSource(model_id='m-00000000000000000000000000000000', artifact_path='')
>>> parse_source("/tmp/model")
Traceback (most recent call last):
loopml.errors.InvalidInput: source '/tmp/model' is refused: it is a local path; ...
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from loopml.errors import InvalidInput, NotFound
from loopml.store.paths import safe_relpath

RUNS_SCHEME = "runs:/"
LOGGED_MODEL_SCHEME = "models:/"
ARTIFACTS_SCHEME = "mlflow-artifacts:/"
_RUN_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")

# scheme -> "module:function" (imported on first use) or the function itself. The function
# takes the whole URI and returns a loadable source URI, or (source URI, manifest sha256).
Resolver = Callable[[str], str | tuple[str, str | None]]
RESOLVERS: dict[str, str | Resolver] = {"models": "loopml.registry.resolve:resolve_model_uri"}


class ArtifactSource(NamedTuple):
    """A directory of a run's artifacts."""

    run_id: str
    artifact_path: str


class LoggedModelSource(NamedTuple):
    """A directory of an MLflow 3 logged model's artifacts (``mlflow.<flavor>.log_model``)."""

    model_id: str
    artifact_path: str


Source = ArtifactSource | LoggedModelSource


class Resolved(NamedTuple):
    source: Source
    manifest_digest: str | None


def parse_source(uri: str) -> Source:
    """The run (or MLflow 3 logged model) and artifact path an artifact URI issued by loopml names.

    Local paths, ``file://`` and foreign schemes raise ``InvalidInput`` (field ``source``):
    a registered model must point at artifacts whose digests loopml recorded.
    """
    if not isinstance(uri, str) or not uri:
        raise _bad(uri, "it is empty")
    if uri.startswith(RUNS_SCHEME):
        run_id, _, path = uri[len(RUNS_SCHEME) :].lstrip("/").partition("/")
        return _source(uri, run_id, path)
    if is_logged_model_uri(uri):
        return LoggedModelSource(uri[len(LOGGED_MODEL_SCHEME) :].rstrip("/"), "")
    if uri.startswith(ARTIFACTS_SCHEME):
        parts = uri[len(ARTIFACTS_SCHEME) :].lstrip("/").split("/", 3)
        if len(parts) > 2 and parts[1] == "models":
            return _logged_model_location(uri, uri[len(ARTIFACTS_SCHEME) :].lstrip("/").split("/", 4))
        if len(parts) < 3 or parts[2] != "artifacts" or not parts[0].isdigit():
            raise _bad(uri, "it is not under a run's artifact root (<experiment>/<run_id>/artifacts/...)")
        return _source(uri, parts[1], parts[3] if len(parts) > 3 else "")
    if uri.startswith("file:") or uri.startswith(("/", ".", "~")) or re.match(r"^[A-Za-z]:[\\/]", uri):
        raise _bad(
            uri, "it is a local path; log the model with loopml.models.log_model and use its model_uri"
        )
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri):
        raise _bad(uri, f"loopml does not issue {uri.split(':', 1)[0]!r} URIs; use runs:/<run_id>/<path>")
    raise _bad(uri, "it is a local path; log the model with loopml.models.log_model and use its model_uri")


def is_logged_model_uri(uri: str) -> bool:
    """Whether ``uri`` is MLflow 3's ``models:/m-<id>`` (a logged model, not a registry name)."""
    return uri.startswith(LOGGED_MODEL_SCHEME) and bool(
        _MODEL_ID.match(uri[len(LOGGED_MODEL_SCHEME) :].rstrip("/"))
    )


def _logged_model_location(uri: str, parts: list[str]) -> LoggedModelSource:
    if len(parts) < 4 or not parts[0].isdigit() or not _MODEL_ID.match(parts[2]) or parts[3] != "artifacts":
        raise _bad(uri, "it is not under a logged model's root (<experiment>/models/m-<id>/artifacts)")
    try:
        clean = safe_relpath(parts[4] if len(parts) > 4 else "", field="source", allow_root=True)
    except InvalidInput:
        raise _bad(uri, "its artifact path must be a relative path") from None
    return LoggedModelSource(parts[2], clean)


def _source(uri: str, run_id: str, path: str) -> ArtifactSource:
    if not _RUN_ID.match(run_id):
        raise _bad(uri, f"{run_id!r} is not a run id")
    try:
        clean = safe_relpath(path, field="source")
    except InvalidInput:
        raise _bad(uri, "its artifact path must be a relative path like 'model'") from None
    return ArtifactSource(run_id, clean)


def _bad(uri: object, why: str) -> InvalidInput:
    return InvalidInput(f"source {uri!r} is refused: {why}", details={"field": "source"})


def resolve(uri: str) -> Resolved:
    """Follow resolvers (``models:/…``) until the URI names a run's or a logged model's files."""
    digest: str | None = None
    for _ in range(4):  # a resolver answers with a runs:/ URI; a short bound stops a loop
        scheme = uri.split(":", 1)[0] if ":" in uri else ""
        if scheme not in RESOLVERS or is_logged_model_uri(uri):
            return Resolved(parse_source(uri), digest)
        answer = _resolver(scheme)(uri)
        uri, digest = answer if isinstance(answer, tuple) else (answer, digest)
    raise InvalidInput(f"model URI {uri!r} resolves in a loop", details={"field": "uri"})


def _resolver(scheme: str) -> Resolver:
    target = RESOLVERS[scheme]
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module: Any = importlib.import_module(module_name)
    except ImportError:
        raise NotFound(
            f"{scheme}:/ URIs need {module_name}, which is not available in this installation",
            details={"field": "uri"},
        ) from None
    found: Resolver = getattr(module, attr)
    return found
