"""LightGBM boosters and scikit-learn wrappers, in LightGBM's text model format.

A classifier's labels are kept in a ``.npy`` file read with ``allow_pickle=False``;
predictions follow ``LGBMClassifier.predict`` (argmax of the class probabilities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopml.errors import IntegrityError, InvalidInput
from loopml.models.flavors.base import Flavor, Predictor, Saved, in_modules

MODEL_FILE = "model.txt"
CLASSES_FILE = "classes.npy"
KINDS = ("booster", "classifier", "regressor")


class LightGBMFlavor(Flavor):
    name = "lightgbm"
    loaders = ("lightgbm-text",)

    def matches(self, model: Any) -> bool:
        return in_modules(model, "lightgbm.")

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        import lightgbm as lgb
        import numpy as np

        if isinstance(model, lgb.Booster):
            kind, booster = "booster", model
        elif isinstance(model, lgb.LGBMClassifier):
            kind, booster = "classifier", model.booster_
            classes = np.asarray(model.classes_)
            if classes.dtype == object:  # string labels: store them as fixed-width unicode
                classes = classes.astype(str)
            np.save(dest / CLASSES_FILE, classes, allow_pickle=False)
        elif isinstance(model, lgb.LGBMModel):
            kind, booster = "regressor", model.booster_
        else:
            raise InvalidInput(
                f"{type(model).__name__} is not a LightGBM Booster or LGBM estimator",
                details={"field": "model"},
            )
        booster.save_model(str(dest / MODEL_FILE))
        packages = ("lightgbm", "numpy") if kind == "booster" else ("lightgbm", "numpy", "scikit-learn")
        return Saved("lightgbm-text", {"kind": kind}, packages)

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        import lightgbm as lgb
        import numpy as np

        kind = saved.options.get("kind")
        if kind not in KINDS:
            raise IntegrityError(
                f"lightgbm model kind {kind!r} is not one of {KINDS}", details={"field": "kind"}
            )
        booster = lgb.Booster(model_file=str(src / MODEL_FILE))
        if kind != "classifier":
            return BoosterPredictor(booster)
        return ClassifierPredictor(booster, np.load(src / CLASSES_FILE, allow_pickle=False))


class BoosterPredictor:
    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, data: Any) -> Any:
        return self.booster.predict(data)


class ClassifierPredictor(BoosterPredictor):
    """``LGBMClassifier``'s predict and predict_proba over a bare booster."""

    def __init__(self, booster: Any, classes: Any) -> None:
        super().__init__(booster)
        self.classes_ = classes

    def predict_proba(self, data: Any) -> Any:
        import numpy as np

        result = self.booster.predict(data)
        if len(self.classes_) > 2:
            return result
        return np.vstack((1.0 - result, result)).transpose()

    def predict(self, data: Any) -> Any:
        import numpy as np

        return self.classes_[np.argmax(self.predict_proba(data), axis=1)]
