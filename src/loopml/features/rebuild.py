"""Live definition objects rebuilt from the specs the registry stored, without the user's defs.py.

This is what lets the server and ``loopml features materialize`` resolve ``service="churn"`` or
``"stats:rate"`` on their own. Data-only definitions (entities, feature views, services) come back
exactly from their spec. An on-demand view's transform is Python code, so its spec records where
the function lives (``udf_ref``: ``module:function``, or ``file:/abs/defs.py:function`` for a
function of a definitions file) and the sha256 of its source; rebuilding imports it and refuses,
naming the view and the fix (re-apply), when it cannot be imported or its source changed since
``apply``. A function of a definitions file is found by running that file again, under the module
name ``__loopml_features__`` (so code guarded by ``if __name__ == "__main__"`` does not run).

A feature view whose source was an in-memory DataFrame comes back with a :class:`DetachedSource`:
online reads work (they need only keys, fields and ttl), offline reads and materialization say
that the rows are not in the registry.

>>> from loopml.features.definitions import Entity
>>> Rebuilder(lambda kind, name: None).build("entity", Entity("driver").spec()).join_keys
('driver',)
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from loopml.errors import Conflict, InvalidInput, NotFound
from loopml.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RequestSource,
    Source,
    SqlSource,
    View,
    udf_digest,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

# (kind, name) -> the stored spec, or None when no such definition is registered.
Lookup = Callable[[str, str], dict[str, Any] | None]

_FILE_MODULES: dict[str, tuple[float, ModuleType]] = {}
_FILE_LOCK = threading.Lock()


class DetachedSource(Source):
    """The source of a view registered with an in-memory DataFrame: its spec, but no rows."""

    kind = "dataframe"

    def __init__(self, spec: dict[str, Any], view: str) -> None:
        self._spec = dict(spec)
        self._view = view

    def _refuse(self) -> InvalidInput:
        return InvalidInput(
            f"feature view {self._view!r} was registered with an in-memory DataFrame source, whose "
            "rows are not stored in the registry; pass the FeatureView object itself, or define "
            "it on a file, SQL or PostgreSQL source and re-apply",
            details={"feature_view": self._view, "field": "source"},
        )

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        raise self._refuse()

    def arrow_schema(self) -> pa.Schema:
        raise self._refuse()

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)


def _postgres(spec: dict[str, Any], _view: str) -> Source:
    # Imported only when a registered view reads PostgreSQL, so psycopg loads only then.
    from loopml.features.postgres import PostgresSource

    return PostgresSource(spec["url"], table=spec.get("table"), query=spec.get("query"))


# How each source kind is rebuilt from its spec: kind -> builder(spec, view name).
SOURCE_BUILDERS: dict[str, Callable[[dict[str, Any], str], Source]] = {
    "file": lambda spec, _view: FileSource(spec["path"], spec["format"]),
    "sql": lambda spec, _view: SqlSource(spec["query"]),
    "dataframe": lambda spec, view: DetachedSource(spec, view),
    "postgres": _postgres,
}


def source_from_spec(spec: dict[str, Any], view: str) -> Source:
    """The source a stored spec describes."""
    builder = SOURCE_BUILDERS.get(spec.get("kind", ""))
    if builder is None:
        raise InvalidInput(
            f"feature view {view!r} has a source of kind {spec.get('kind')!r} this loopml cannot "
            f"read (known: {', '.join(SOURCE_BUILDERS)}); upgrade loopml or re-apply the view",
            details={"feature_view": view, "field": "source"},
        )
    return builder(spec, view)


def _fields(specs: list[dict[str, Any]]) -> list[Field]:
    return [Field(f["name"], f["dtype"], f.get("description", "")) for f in specs]


def _load_file(path: str) -> ModuleType:
    """Run a definitions file as module ``__loopml_features__`` (once per modification time)."""
    mtime = Path(path).stat().st_mtime
    with _FILE_LOCK:
        cached = _FILE_MODULES.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        spec = importlib.util.spec_from_file_location("__loopml_features__", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _FILE_MODULES[path] = (mtime, module)
        return module


def _import_udf(ref: str) -> Any:
    if ref.startswith("file:"):
        path, _, qualname = ref.removeprefix("file:").rpartition(":")
        target: Any = _load_file(path)
    else:
        module, _, qualname = ref.partition(":")
        target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def load_udf(view: str, spec: dict[str, Any]) -> Callable[..., Any]:
    """The transform an on-demand view's spec names, verified against the source digest."""
    ref = spec.get("udf_ref")
    if not ref:
        raise InvalidInput(
            f"on-demand feature view {view!r} was applied with a transform loopml cannot find again "
            "(a lambda, a nested function, or applied before transforms were recorded); define it "
            "as a module-level function and re-apply the view",
            details={"feature_view": view, "field": "udf"},
        )
    try:
        udf = _import_udf(ref)
    except Exception as exc:  # any failure of the user's module is reported the same way
        raise InvalidInput(
            f"on-demand feature view {view!r}: its transform {ref!r} cannot be imported "
            f"({type(exc).__name__}: {exc}); make it importable here, or re-apply the view",
            details={"feature_view": view, "field": "udf", "udf_ref": ref},
        ) from None
    if not callable(udf) or udf_digest(udf) != spec.get("udf_sha256"):
        raise Conflict(
            f"on-demand feature view {view!r}: the source of its transform {ref!r} changed since it "
            "was applied, so it could compute different values; re-apply the view to register the "
            "new transform (loopml features apply)",
            details={"feature_view": view, "field": "udf", "udf_ref": ref},
        )
    return udf  # type: ignore[no-any-return]


class Rebuilder:
    """Builds definitions from specs, fetching the ones they reference through ``lookup`` once."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._built: dict[tuple[str, str], Definition] = {}

    def get(self, kind: str, name: str) -> Definition:
        """The definition ``kind``/``name`` as the lookup stores it; NotFound if it has none."""
        key = (kind, name)
        if key not in self._built:
            spec = self._lookup(kind, name)
            if spec is None:
                raise NotFound(
                    f"{kind} {name!r} is not registered; apply it (loopml features apply)",
                    details={"kind": kind, "name": name},
                )
            self._built[key] = self.build(kind, spec)
        return self._built[key]

    def view(self, name: str) -> View:
        """The feature view or on-demand feature view called ``name``."""
        for kind in ("feature_view", "on_demand_feature_view"):
            if self._lookup(kind, name) is not None:
                built = self.get(kind, name)
                assert isinstance(built, FeatureView | OnDemandFeatureView)
                return built
        raise NotFound(
            f"no feature view {name!r} is registered; apply it (loopml features apply)",
            details={"feature_view": name},
        )

    def build(self, kind: str, spec: dict[str, Any]) -> Definition:
        """The live object of one spec (``kind`` as in the registry)."""
        if kind == "entity":
            return Entity(spec["name"], spec["join_keys"], spec["value_types"], spec.get("description", ""))
        if kind == "feature_view":
            return self._feature_view(spec)
        if kind == "on_demand_feature_view":
            return self._on_demand(spec)
        if kind == "feature_service":
            refs = list(spec["features"])
            views = [self.view(name) for name in dict.fromkeys(r.partition(":")[0] for r in refs)]
            description, tags = spec.get("description", ""), spec.get("tags", {})
            return FeatureService(spec["name"], refs, description, tags, views)
        raise InvalidInput(f"unknown definition kind {kind!r}", details={"field": "kind"})

    def _feature_view(self, spec: dict[str, Any]) -> FeatureView:
        entities = [self.get("entity", name) for name in spec["entities"]]
        ttl = spec.get("ttl_seconds")
        return FeatureView(
            spec["name"],
            entities=entities,  # type: ignore[arg-type]
            fields=_fields(spec["fields"]),
            source=source_from_spec(spec["source"], spec["name"]),
            timestamp_field=spec["timestamp_field"],
            created_timestamp_field=spec.get("created_timestamp_field"),
            ttl=None if ttl is None else timedelta(seconds=ttl),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
        )

    def _on_demand(self, spec: dict[str, Any]) -> OnDemandFeatureView:
        sources: list[FeatureView | RequestSource] = []
        for source in spec["sources"]:
            if "feature_view" in source:
                sources.append(self.get("feature_view", source["feature_view"]))  # type: ignore[arg-type]
            else:
                request = source["request"]
                sources.append(RequestSource(request["name"], _fields(request["fields"])))
        return OnDemandFeatureView(
            spec["name"],
            sources=sources,
            schema=_fields(spec["fields"]),
            udf=load_udf(spec["name"], spec),
            description=spec.get("description", ""),
        )
