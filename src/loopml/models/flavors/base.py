"""The flavor contract: how one kind of model is written, read and asked to predict."""

from __future__ import annotations

import abc
import functools
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from loopml.errors import IntegrityError

# Distributions published under another name than the module (xgboost ships as xgboost-cpu too).
_DIST_ALIASES: dict[str, tuple[str, ...]] = {"xgboost": ("xgboost", "xgboost-cpu")}


class Predictor(Protocol):
    def predict(self, data: Any) -> Any: ...


@dataclass(slots=True)
class Saved:
    """What :meth:`Flavor.save` wrote: the loader (format) and its options."""

    loader: str
    options: dict[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()


class Flavor(abc.ABC):
    """One model family. Subclasses set ``name`` and implement:

    - :meth:`matches`: whether an object belongs to the family, judged by its class's
      module so that detection never imports the family's library;
    - :meth:`save`: write the model into an empty directory in a format that loading
      can read without running code from the artifact (unless ``trust_pickle``);
    - :meth:`load`: rebuild a predictor from a directory whose digests were verified,
      given only the manifest's ``loader`` and ``options`` (the artifact never chooses
      which classes are imported beyond the flavor's own fixed tables).
    """

    name: ClassVar[str]
    loaders: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def matches(self, model: Any) -> bool: ...

    @abc.abstractmethod
    def save(self, model: Any, dest: Path, *, trust_pickle: bool) -> Saved: ...

    @abc.abstractmethod
    def load(self, src: Path, saved: Saved, *, trust_pickle: bool) -> Predictor: ...

    def predictor(self, model: Any) -> Predictor:
        """The original model as a predictor (to infer the output signature)."""
        found: Predictor = model
        return found

    def check_loader(self, saved: Saved, where: str) -> None:
        if saved.loader not in self.loaders:
            raise IntegrityError(
                f"{where}: flavor {self.name!r} has no loader {saved.loader!r} "
                f"(known: {', '.join(self.loaders)}); the manifest was altered or written by a newer loopml",
                details={"field": "loader"},
            )


def module_chain(model: Any) -> list[str]:
    """``module.Class`` of the model's class and each base, most derived first."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__]


def in_modules(model: Any, *prefixes: str) -> bool:
    return any(name.startswith(prefixes) for name in module_chain(model))


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """``{distribution: version}`` for each installed package (aliases tried in order)."""
    found: dict[str, str] = {}
    for name in packages:
        for dist in _DIST_ALIASES.get(name, (name,)):
            version = _version(dist)
            if version is not None:
                found[dist] = version
                break
    return found


@functools.lru_cache(maxsize=256)
def _version(dist: str) -> str | None:
    """A distribution's version, looked up once per process: ``importlib.metadata`` scans every
    path entry on each call (milliseconds a model), and the code a process has imported does
    not change under it."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
