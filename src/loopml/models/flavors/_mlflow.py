"""MLflow-format model directories (an ``MLmodel`` file), read without importing mlflow.

``mlflow.<flavor>.log_model`` writes an ``MLmodel`` YAML naming one section per flavor.
loopml loads the first it knows, in this order: ``onnx``, ``xgboost`` and ``lightgbm``
from their native files, ``sklearn`` from skops with loopml's own allow-list (the
``skops_trusted_types`` the file lists are ignored). A pickle-serialised model
(``serialization_format: pickle`` or ``cloudpickle``) is refused unless
``trust_pickle=True``, and never unpickled otherwise. Anything else (a ``python_function``
with a ``loader_module`` or a cloudpickled ``python_model``) needs mlflow's own classes
to load, so it is refused with ``InvalidInput`` naming the flavor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.errors import IntegrityError, InvalidInput, PermissionDenied
from loopml.models.flavors._lightgbm import BoosterPredictor as LightGBMPredictor
from loopml.models.flavors._onnx import load_onnx
from loopml.models.flavors._pickle import load_pickle
from loopml.models.flavors._sklearn import load_skops
from loopml.models.flavors._xgboost import WRAPPERS, BoosterPredictor
from loopml.models.flavors.base import Flavor, Predictor, Saved
from loopml.store.paths import safe_relpath

MLMODEL_FILE = "MLmodel"
LOADER = "mlmodel"
NATIVE = ("onnx", "xgboost", "lightgbm", "sklearn")  # preferred when a model has several
PICKLE_FORMATS = ("pickle", "cloudpickle")
LIGHTGBM_BOOSTER = "lightgbm.basic.Booster"
# What an LGBM scikit-learn estimator is made of, beyond loopml's sklearn/numpy/scipy allow-list.
LIGHTGBM_SKOPS_TYPES = frozenset(
    {
        "collections.OrderedDict",
        LIGHTGBM_BOOSTER,
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
    }
)
_FORMATS = ("skops", "native", *PICKLE_FORMATS)
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "onnx": "onnx"}
_VERSION_KEYS = {"sklearn": "sklearn_version", "lightgbm": "lgb_version", "onnx": "onnx_version"}


def parse_mlmodel(data: bytes, where: str) -> dict[str, Any]:
    """The ``MLmodel`` YAML as a mapping with a ``flavors`` mapping (``IntegrityError`` otherwise)."""
    import yaml

    try:
        found = yaml.safe_load(data)  # safe_load: the file builds plain data, never objects
    except yaml.YAMLError as exc:
        raise _corrupt(where, f"it is not YAML ({exc})") from None
    if not isinstance(found, dict) or not isinstance(found.get("flavors"), dict):
        raise _corrupt(where, "it has no 'flavors' section")
    return found


def choose(mlmodel: Mapping[str, Any], files: Mapping[str, str], where: str, trust_pickle: bool) -> Saved:
    """The flavor loopml will load and its settings, checked before any file is fetched."""
    flavors: dict[str, Any] = mlmodel["flavors"]
    for name in NATIVE:
        conf = flavors.get(name)
        if not isinstance(conf, dict):
            continue
        data_file = model_file(name, conf, files, where)
        fmt = serialization(name, conf)
        if fmt not in _FORMATS:
            raise _corrupt(where, f"its {name} section has an unknown serialization_format {fmt!r}")
        if fmt in PICKLE_FORMATS and not trust_pickle:
            raise PermissionDenied(
                f"{where} is an MLflow {name} model stored with {fmt}, which runs code when loaded; "
                "pass trust_pickle=True only if you trust who logged it, or log it again with "
                "serialization_format='skops'",
                details={"field": "trust_pickle", "loader": fmt},
            )
        return Saved(LOADER, {"flavor": name, "file": data_file, "format": fmt, "conf": conf})
    raise InvalidInput(
        f"{where} has MLflow flavor(s) {', '.join(map(str, flavors)) or 'none'}: loopml loads "
        f"{', '.join(NATIVE)} without mlflow, not these (trust_pickle does not change that); load it "
        "with mlflow.pyfunc.load_model, or log the model with loopml.models.log_model",
        details={"field": "flavor", "flavors": sorted(map(str, flavors))},
    )


def model_file(name: str, conf: Mapping[str, Any], files: Mapping[str, str], where: str) -> str:
    """The flavor's data file, confined to the model directory and present in its listing."""
    raw = conf.get("pickled_model") if name == "sklearn" else conf.get("data")
    if not isinstance(raw, str) or not raw:
        raise _corrupt(where, f"its {name} section names no model file")
    path = safe_relpath(raw, field="file")
    if path not in files:
        raise IntegrityError(
            f"{where}: the MLmodel names {path!r}, which is not among the model's files; log it again",
            details={"file": path},
        )
    return path


def serialization(name: str, conf: Mapping[str, Any]) -> str:
    """How the flavor's file is stored: ``skops``, ``pickle``, ``cloudpickle`` or ``native``."""
    if name == "sklearn" or (name == "lightgbm" and conf.get("model_class") != LIGHTGBM_BOOSTER):
        # mlflow's loaders treat a missing format as cloudpickle (older mlflow wrote no format)
        return str(conf.get("serialization_format") or "cloudpickle")
    return "native"


def requirements(saved: Saved) -> dict[str, str]:
    """``{distribution: version}`` the MLmodel records, so loading can warn about drift."""
    name, conf = saved.options["flavor"], saved.options["conf"]
    version = conf.get(_VERSION_KEYS.get(name, ""))
    return {_DISTRIBUTIONS[name]: str(version)} if name in _DISTRIBUTIONS and version else {}


class MlflowFlavor(Flavor):
    """Reads MLflow-format models; loopml never writes them (``log_model`` writes its own)."""

    name = "mlflow"
    loaders = (LOADER,)

    def matches(self, model: Any) -> bool:
        return False

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        raise InvalidInput(
            "loopml reads MLflow-format models but does not write them; log the model without "
            "flavor='mlflow' and loopml picks its flavor",
            details={"field": "flavor"},
        )

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        name, fmt = saved.options.get("flavor"), saved.options.get("format")
        path = src / safe_relpath(str(saved.options.get("file")), field="file")
        conf: Mapping[str, Any] = saved.options.get("conf") or {}
        if fmt in PICKLE_FORMATS:
            found: Predictor = load_pickle(path, trust_pickle=trust_pickle)
            return found
        if fmt == "skops":
            extra = LIGHTGBM_SKOPS_TYPES if name == "lightgbm" else frozenset()
            return load_skops(path, extra)
        if name == "xgboost":
            return _xgboost(path, str(conf.get("model_class") or "xgboost.core.Booster"))
        if name == "lightgbm":
            import lightgbm as lgb

            return LightGBMPredictor(lgb.Booster(model_file=str(path)))
        if name == "onnx":
            return load_onnx(path, src)
        raise IntegrityError(f"MLflow flavor {name!r} is not one loopml loads", details={"field": "flavor"})


def _xgboost(path: Path, model_class: str) -> Predictor:
    import xgboost as xgb

    cls = model_class.rsplit(".", 1)[-1]
    if cls == "Booster":
        booster = xgb.Booster()
        booster.load_model(str(path))
        return BoosterPredictor(booster)
    if not model_class.startswith("xgboost.") or cls not in WRAPPERS:
        raise InvalidInput(
            f"xgboost model class {model_class!r} is not one loopml loads (Booster, {', '.join(WRAPPERS)})",
            details={"field": "model_class"},
        )
    model = getattr(xgb, cls)()
    model.load_model(str(path))
    found: Predictor = model
    return found


def _corrupt(where: str, why: str) -> IntegrityError:
    return IntegrityError(f"{where}: {MLMODEL_FILE} is unreadable: {why}", details={"file": MLMODEL_FILE})
