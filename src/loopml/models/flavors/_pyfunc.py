"""Any other object with ``predict``: stored with cloudpickle, only when trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopml.errors import InvalidInput
from loopml.models.flavors._pickle import PICKLE_FILE, PICKLE_LOADERS, load_pickle, save_pickle
from loopml.models.flavors.base import Flavor, Predictor, Saved


class PyfuncFlavor(Flavor):
    name = "pyfunc"
    loaders = PICKLE_LOADERS

    def matches(self, model: Any) -> bool:
        return callable(getattr(model, "predict", None))

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        if not trust_pickle:
            raise InvalidInput(
                f"{type(model).__module__}.{type(model).__qualname__} has no safe format, so it can only "
                "be stored with cloudpickle, which runs code when loaded; pass trust_pickle=True if you "
                "trust everyone who can load this model",
                details={"field": "trust_pickle"},
            )
        saved = save_pickle(model, dest)
        top = type(model).__module__.split(".")[0]
        return Saved(saved.loader, saved.options, (*saved.packages, top))

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        found: Predictor = load_pickle(src / PICKLE_FILE, trust_pickle=trust_pickle)
        return found
