"""scikit-learn estimators and pipelines, stored with skops.

The types skops may rebuild are decided by loopml at load time (from the module
allow-list below), never read from the artifact: a file that names anything
else is refused before it is deserialised.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from loopml.errors import InvalidInput, PermissionDenied
from loopml.models.flavors._pickle import PICKLE_FILE, PICKLE_LOADERS, load_pickle, save_pickle
from loopml.models.flavors.base import Flavor, Predictor, Saved, in_modules

SKOPS_FILE = "model.skops"
# Types from these libraries are what a scikit-learn model is made of; skops rebuilds them
# from their state without calling arbitrary constructors.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
_PACKAGES = ("scikit-learn", "skops", "numpy", "scipy")


def refused_types(untrusted: list[str]) -> list[str]:
    """The types skops reports that loopml's allow-list does not cover."""
    return sorted(t for t in untrusted if not t.startswith(TRUSTED_PREFIXES))


class SklearnFlavor(Flavor):
    name = "sklearn"
    loaders = ("skops", *PICKLE_LOADERS)

    def matches(self, model: Any) -> bool:
        return in_modules(model, "sklearn.") and hasattr(model, "predict")

    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved:
        import skops.io as sio

        path = dest / SKOPS_FILE
        try:
            sio.dump(model, path)
            refused = refused_types(sio.get_untrusted_types(file=path))
        except Exception as exc:  # skops cannot express some objects (lambdas, locals)
            refused = [f"{type(exc).__name__}: {exc}"]
        if not refused:
            return Saved("skops", {"file": SKOPS_FILE}, _PACKAGES)
        path.unlink(missing_ok=True)
        if trust_pickle:
            saved = save_pickle(model, dest)
            return Saved(saved.loader, saved.options, (*_PACKAGES, *saved.packages))
        raise InvalidInput(
            f"{type(model).__name__} holds objects loopml does not load safely with skops "
            f"({', '.join(refused)}); use scikit-learn/numpy/scipy components only, or pass "
            "trust_pickle=True to store it with cloudpickle if you trust everyone who can load it",
            details={"field": "model", "untrusted": refused},
        )

    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor:
        if saved.loader in PICKLE_LOADERS:
            found: Predictor = load_pickle(src / PICKLE_FILE, trust_pickle=trust_pickle)
            return found
        return load_skops(src / SKOPS_FILE)


def load_skops(path: Path, also_trusted: frozenset[str] = frozenset()) -> Predictor:
    """A skops file rebuilt only if every type it names is in loopml's allow-list (or in the
    caller's fixed ``also_trusted`` names); the file's own list of trusted types is never used."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # was a 500 on a non-skops file
        raise InvalidInput(
            f"{path.name} is not a skops file ({exc}); it was not loaded. Log the model again",
            details={"field": "model", "file": path.name},
        ) from None
    refused = [t for t in refused_types(untrusted) if t not in also_trusted]
    if refused:
        raise PermissionDenied(
            f"the skops file names types outside loopml's allow-list ({', '.join(refused)}); "
            "it was not loaded. Re-log the model with scikit-learn/numpy/scipy components only",
            details={"field": "model", "untrusted": refused},
        )
    model: Predictor = sio.load(path, trusted=untrusted)
    return model
