"""``log_model`` and ``load``: safe model packaging over the tracking service's artifacts.

>>> from sklearn.linear_model import LinearRegression              # doctest: +SKIP
>>> with loopml.start_run():                                         # doctest: +SKIP
...     info = loopml.models.log_model(LinearRegression().fit(X, y), input_example=X[:5])
>>> loopml.models.load(info.model_uri).predict(X)                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.config import Settings
from loopml.errors import InvalidInput, PermissionDenied
from loopml.models._fetch import (
    LoggedModelFiles,
    ModelFiles,
    RunFiles,
    digest_tag,
    materialize,
    missing,
    read_manifest,
)
from loopml.models._mlmodel import loopml_redirect, read_mlflow_manifest, run_model_files
from loopml.models.flavors import Flavor, Predictor, Saved, detect, get_flavor
from loopml.models.flavors._pickle import PICKLE_LOADERS
from loopml.models.flavors.base import installed_versions
from loopml.models.manifest import MANIFEST_NAME, Manifest, build_files
from loopml.models.signature import Signature, conform, is_dataframe
from loopml.models.uris import RUNS_SCHEME, LoggedModelSource, resolve
from loopml.store.paths import safe_relpath

if TYPE_CHECKING:  # the tracking stack (SQLAlchemy) loads only when a model is logged or loaded
    from loopml.tracking.service import TrackingService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Where ``log_model`` put a model and what it recorded."""

    model_uri: str
    run_id: str
    artifact_path: str
    flavor: str
    signature: Signature | None
    manifest_digest: str
    model_id: str | None = None


class LoadedModel:
    """A verified, deserialised model; ``predict`` checks its input against the signature."""

    def __init__(self, predictor: Predictor, manifest: Manifest, uri: str, digest: str) -> None:
        self.predictor = predictor
        self.manifest = manifest
        self.uri = uri
        self.manifest_digest = digest
        self.signature = Signature.from_dict(manifest.signature) if manifest.signature else None

    @property
    def flavor(self) -> str:
        return self.manifest.flavor

    @property
    def metadata(self) -> dict[str, Any]:
        """Flavor, loader, signature, requirements and file digests, from the manifest."""
        m = self.manifest
        return {
            "flavor": m.flavor,
            "loader": m.loader,
            "model_class": m.model_class,
            "signature": m.signature,
            "requirements": dict(m.requirements),
            "python_version": m.python_version,
            "files": dict(m.files),
            "manifest_digest": self.manifest_digest,
        }

    def _input(self, data: Any) -> Any:
        return conform(self.signature.inputs, data) if self.signature else data

    def predict(self, data: Any) -> Any:
        """What the original model's ``predict`` returns for ``data`` (DataFrame or array)."""
        return self.predictor.predict(self._input(data))

    def predict_proba(self, data: Any) -> Any:
        method = getattr(self.predictor, "predict_proba", None)
        if method is None:
            raise InvalidInput(
                f"{self.manifest.model_class or self.flavor} gives no probabilities; call predict",
                details={"field": "method"},
            )
        return method(self._input(data))

    def __repr__(self) -> str:
        return f"LoadedModel({self.uri!r}, flavor={self.flavor!r})"


def log_model(
    model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Signature | None = None,
    trust_pickle: bool = False,
    pip_requirements: list[str] | None = None,
    run_id: str | None = None,
    flavor: str | None = None,
    feature_service: Any = None,
) -> ModelInfo:
    """Store ``model`` as the artifact directory ``name`` of the active run (or ``run_id``).

    The flavor is detected (scikit-learn, XGBoost, LightGBM, ONNX, else pyfunc);
    pickle-based storage needs ``trust_pickle=True``. Returns where it went.
    ``feature_service`` (a registered service's name, or the ``FeatureService``) records the
    features the model was trained with: the registry's lineage shows it, and an endpoint
    serving the model accepts entity keys alone and fetches the features from the online store.

    >>> info = log_model(pipeline, input_example=X_train[:5])  # doctest: +SKIP
    >>> info.model_uri                                          # doctest: +SKIP
    'runs:/4c1e…/model'
    """
    from loopml import sdk  # the tracking stack is loaded on use: `import loopml.models` stays light

    svc = sdk.service()
    active = sdk.active_run()
    if run_id is None and active is None:
        raise InvalidInput(
            "log_model needs a run: call it inside `with loopml.start_run():` or pass run_id",
            details={"field": "run_id"},
        )
    run_id = run_id or active.run_id  # type: ignore[union-attr]
    name = safe_relpath(name, field="name")
    chosen = get_flavor(flavor) if flavor else detect(model)
    with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
        manifest = _package(chosen, model, Path(tmp), input_example, signature, trust_pickle)
        manifest.pip_requirements = list(pip_requirements or [])
        if feature_service is not None:
            manifest.feature_service = _feature_service(feature_service, manifest.signature)
        data = manifest.to_bytes()
        (Path(tmp) / MANIFEST_NAME).write_bytes(data)
        svc.log_artifact(run_id, Path(tmp), name)
    digest = hashlib.sha256(data).hexdigest()
    svc.set_tag(run_id, digest_tag(name), digest)
    uri = f"{RUNS_SCHEME}{run_id}/{name}"
    model_id = _record_logged_model(svc, run_id, name, uri, chosen.name, digest)
    sig = Signature.from_dict(manifest.signature) if manifest.signature else None
    return ModelInfo(uri, run_id, name, chosen.name, sig, digest, model_id)


def _package(
    flavor: Flavor, model: Any, dest: Path, example: Any, signature: Signature | None, trust_pickle: bool
) -> Manifest:
    saved = flavor.save(model, dest, trust_pickle=trust_pickle)
    example_file = _write_example(example, dest) if example is not None else None
    if signature is None and example is not None:
        signature = Signature.infer(example, flavor.predictor(model).predict(example))
    cls = type(model)
    return Manifest(
        flavor=flavor.name,
        loader=saved.loader,
        options=saved.options,
        files=build_files(dest),
        signature=signature.to_dict() if signature else None,
        requirements=installed_versions(saved.packages),
        python_version=platform.python_version(),
        model_class=f"{cls.__module__}.{cls.__qualname__}",
        input_example=example_file,
    )


def _feature_service(service: Any, signature: dict[str, Any] | None) -> dict[str, Any]:
    """What the manifest records of the feature service a model was trained with."""
    from loopml.features.service import feature_store, service_record

    name = service if isinstance(service, str) else getattr(service, "name", None)
    if not isinstance(name, str):
        raise InvalidInput(
            f"feature_service is a {type(service).__name__}; pass a registered feature service's name",
            details={"field": "feature_service"},
        )
    return service_record(feature_store().describe_service(name), signature)


def _write_example(example: Any, dest: Path) -> str:
    import numpy as np

    if type(example).__module__.startswith("polars"):
        example = example.to_pandas()
    if is_dataframe(example):
        example.to_parquet(dest / "input_example.parquet", index=False)
        return "input_example.parquet"
    arr = np.asarray(example)
    if arr.dtype == object:
        arr = arr.astype(str)  # .npy files are read back with allow_pickle=False
    np.save(dest / "input_example.npy", arr, allow_pickle=False)
    return "input_example.npy"


def _record_logged_model(
    svc: TrackingService, run_id: str, name: str, uri: str, flavor: str, digest: str
) -> str | None:
    """Record an MLflow 3 logged model pointing at the run's files, where the service keeps them.

    Logged models are a local-store feature of the tracking service (not on its HTTP
    contract), so against a server this records nothing and returns None.
    """
    create = getattr(svc, "create_logged_model", None)
    if create is None:
        return None
    exp_id = svc.get_run(run_id).info.experiment_id
    tags = {"loopml.model_uri": uri, "loopml.manifest_sha256": digest}
    logged = create(exp_id, name=name, source_run_id=run_id, tags=tags, model_type=flavor)
    svc.finalize_logged_model(logged.model_id, "LOGGED_MODEL_READY")  # type: ignore[attr-defined]
    model_id: str = logged.model_id
    return model_id


def load(uri: str, *, trust_pickle: bool = False, manifest_digest: str | None = None) -> LoadedModel:
    """Load a model by URI: ``runs:/<run_id>/<path>``, ``mlflow-artifacts:/…``,
    ``models:/name@alias`` / ``models:/name/3`` (resolved by the registry) or an MLflow 3
    logged model ``models:/m-<id>``.

    Every file's sha256 is checked before it is read; a pickle-based model needs
    ``trust_pickle=True``; ``manifest_digest`` (``ModelInfo.manifest_digest``) pins the
    exact model expected. Models the mlflow client logged (an ``MLmodel`` directory) load
    too: sklearn (skops), xgboost, lightgbm and onnx flavors, verified against the artifact
    store's own sha256 of each file (see :mod:`loopml.models.flavors._mlflow`).

    >>> model = load("models:/churn@champion")  # doctest: +SKIP
    >>> model.predict(frame)                    # doctest: +SKIP
    """
    from loopml import sdk  # the tracking stack is loaded on use: `import loopml.models` stays light

    resolved = resolve(uri)
    svc = sdk.service()
    expected = manifest_digest or resolved.manifest_digest
    source = resolved.source
    if isinstance(source, LoggedModelSource):
        redirect = loopml_redirect(svc, source)
        if redirect is None:
            return _load_mlflow(LoggedModelFiles(svc, source), expected, uri, trust_pickle)
        source, expected = redirect[0], expected or redirect[1]
    found = read_manifest(svc, source, expected)
    if found is None:
        files = run_model_files(svc, source)
        if files is None:
            raise missing(svc, source)
        return _load_mlflow(files, expected, uri, trust_pickle)
    manifest, digest = found
    flavor = get_flavor(manifest.flavor)
    saved = Saved(manifest.loader, dict(manifest.options))
    flavor.check_loader(saved, uri)
    if manifest.loader in PICKLE_LOADERS and not trust_pickle:
        raise PermissionDenied(
            f"model {uri!r} is stored with {manifest.loader}, which runs code when loaded; "
            "pass trust_pickle=True only if you trust who logged it",
            details={"field": "trust_pickle", "loader": manifest.loader},
        )
    local = materialize(RunFiles(svc, source), manifest, digest, _cache_root())
    _warn_on_version_drift(manifest, uri)
    return LoadedModel(flavor.load(local, saved, trust_pickle=trust_pickle), manifest, uri, digest)


def _load_mlflow(files: ModelFiles, expected: str | None, uri: str, trust_pickle: bool) -> LoadedModel:
    """A model the mlflow client logged: refused (pickle, unknown flavor) before any model file
    is fetched, then every file checked against the artifact store's sha256."""
    manifest, digest = read_mlflow_manifest(files, expected, trust_pickle)
    saved = Saved(manifest.loader, dict(manifest.options))
    local = materialize(files, manifest, digest, _cache_root())
    _warn_on_version_drift(manifest, uri)
    predictor = get_flavor(manifest.flavor).load(local, saved, trust_pickle=trust_pickle)
    return LoadedModel(predictor, manifest, uri, digest)


def _cache_root() -> Path:
    return Settings.load().home / "cache" / "models"


def _warn_on_version_drift(manifest: Manifest, uri: str) -> None:
    now = installed_versions(tuple(manifest.requirements))
    drift = {k: (v, now.get(k)) for k, v in manifest.requirements.items() if now.get(k) != v}
    if drift:
        shown = ", ".join(f"{k} {old} (installed: {new or 'missing'})" for k, (old, new) in drift.items())
        log.warning("model %s was logged with %s; predictions may differ", uri, shown)
