"""Pickle-based storage: only ever used when the caller trusts the model's source.

Unpickling runs whatever code the file names, so loopml never does it unless
``trust_pickle=True`` was passed at load time; callers check that before this
module is reached, and :func:`load_pickle` checks it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopml.errors import PermissionDenied
from loopml.models.flavors.base import Saved

PICKLE_LOADERS = ("cloudpickle",)
PICKLE_FILE = "model.pkl"


def save_pickle(model: Any, dest: Path) -> Saved:
    import cloudpickle

    with open(dest / PICKLE_FILE, "wb") as fh:
        cloudpickle.dump(model, fh)
    return Saved("cloudpickle", {"file": PICKLE_FILE}, ("cloudpickle",))


def load_pickle(path: Path, *, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise PermissionDenied(
            f"{path.name} is a pickle, which runs code when loaded; pass trust_pickle=True "
            "only if you trust who logged it",
            details={"field": "trust_pickle"},
        )
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)  # reached only with trust_pickle=True
