"""Model flavors, registered by name and imported only when used.

Detection looks at the class's module, so logging an XGBoost model never
imports LightGBM, and loading a scikit-learn model never imports ONNX.
Order matters: the XGBoost and LightGBM wrappers are scikit-learn estimators too.
"""

from __future__ import annotations

import importlib
from typing import Any

from loopml.errors import InvalidInput
from loopml.models.flavors.base import Flavor, Predictor, Saved

__all__ = ["FLAVORS", "Flavor", "Predictor", "Saved", "detect", "get_flavor"]

FLAVORS: dict[str, str] = {
    "xgboost": "loopml.models.flavors._xgboost:XGBoostFlavor",
    "lightgbm": "loopml.models.flavors._lightgbm:LightGBMFlavor",
    "onnx": "loopml.models.flavors._onnx:OnnxFlavor",
    "sklearn": "loopml.models.flavors._sklearn:SklearnFlavor",
    "pyfunc": "loopml.models.flavors._pyfunc:PyfuncFlavor",
    "mlflow": "loopml.models.flavors._mlflow:MlflowFlavor",  # reads MLmodel directories; never detected
}
_instances: dict[str, Flavor] = {}


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name`` (``InvalidInput`` naming the known ones otherwise)."""
    if name not in FLAVORS:
        raise InvalidInput(
            f"unknown model flavor {name!r}; known flavors: {', '.join(FLAVORS)}", details={"field": "flavor"}
        )
    if name not in _instances:
        module_name, _, cls_name = FLAVORS[name].partition(":")
        _instances[name] = getattr(importlib.import_module(module_name), cls_name)()
    return _instances[name]


def detect(model: Any) -> Flavor:
    """The first flavor that claims ``model``."""
    for name in FLAVORS:
        flavor = get_flavor(name)
        if flavor.matches(model):
            return flavor
    raise InvalidInput(
        f"cannot log a {type(model).__name__}: it is not a scikit-learn, XGBoost, LightGBM or ONNX "
        "model and has no predict method",
        details={"field": "model"},
    )
