"""XGBoost boosters and scikit-learn wrappers, in XGBoost's own UBJSON format.

The wrapper class is chosen from a fixed table; the model file carries the
wrapper's attributes (classes, objective) so nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopml.errors import IntegrityError, InvalidInput
from loopml.models.flavors.base import Flavor, Predictor, Saved, in_modules

MODEL_FILE = "model.ubj"
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


class XGBoostFlavor(Flavor):
    name = "xgboost"
    loaders = ("xgboost-ubj",)

    def matches(self, model: Any) -> bool:
        return in_modules(model, "xgboost.")

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        import xgboost as xgb

        wrapper = _wrapper_class(model, xgb)
        model.save_model(str(dest / MODEL_FILE))
        packages = ("xgboost", "numpy") if wrapper == "Booster" else ("xgboost", "numpy", "scikit-learn")
        return Saved("xgboost-ubj", {"class": wrapper}, packages)

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        import xgboost as xgb

        wrapper = saved.options.get("class")
        if wrapper == "Booster":
            booster = xgb.Booster()
            booster.load_model(str(src / MODEL_FILE))
            return BoosterPredictor(booster)
        if wrapper not in WRAPPERS:
            raise IntegrityError(
                f"xgboost wrapper {wrapper!r} is not one loopml loads ({', '.join(WRAPPERS)})",
                details={"field": "class"},
            )
        model = getattr(xgb, str(wrapper))()
        model.load_model(str(src / MODEL_FILE))
        found: Predictor = model
        return found

    def predictor(self, model: Any) -> Predictor:
        import xgboost as xgb

        return BoosterPredictor(model) if isinstance(model, xgb.Booster) else model


def _wrapper_class(model: Any, xgb: Any) -> str:
    if isinstance(model, xgb.Booster):
        return "Booster"
    for cls in type(model).__mro__:  # a user subclass is stored as the wrapper it extends
        if cls.__module__.startswith("xgboost") and cls.__name__ in WRAPPERS:
            return cls.__name__
    raise InvalidInput(
        f"{type(model).__name__} is not an XGBoost Booster or one of {', '.join(WRAPPERS)}; "
        "log its booster (model.get_booster())",
        details={"field": "model"},
    )


class BoosterPredictor:
    """A raw Booster taking DataFrames and arrays (it predicts on a DMatrix)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, data: Any) -> Any:
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(data))
