"""The feature store as a service: one interface, used in process and over HTTP.

:class:`FeatureStoreService` names definitions, views and services by name (the registry rebuilds
the live objects), so a caller needs no definitions file: list and show definitions, read online
values, push fresh rows, materialize. :class:`LocalFeatureStoreService` runs over the registry and
an online store (embedded, and inside ``loopml server``);
:class:`loopml.client.http_features.HttpFeatureStoreService` is the same interface against
``/api/v1/features``. :func:`feature_store` picks one from the settings, like the other
capabilities do.

>>> fs = feature_store()                                                  # doctest: +SKIP
>>> fs.get_online_features([{"driver_id": 1}], service="churn_v1").values  # doctest: +SKIP
{'driver_id': [1], 'conv_rate': [0.5], 'trips': [12]}

Bad input is refused before any read: an unknown view, feature or service raises ``NotFound``
naming the known ones; an entity row without a join key, or with a value of the wrong type,
raises ``InvalidInput`` naming the column.
"""

from __future__ import annotations

import abc
import base64
import binascii
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import func, select

from loopml import sdk
from loopml.config import Settings
from loopml.errors import InvalidInput, NotFound
from loopml.features.definitions import (
    DTYPES,
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    RequestSource,
    View,
)
from loopml.features.materialize import (
    MaterializeResult,
    OnlineFeatures,
    get_online_features,
    materialize,
    materialize_incremental,
    push,
)
from loopml.features.online import OnlineStore, open_online_store
from loopml.features.registry import DefinitionRecord, FeatureRegistry
from loopml.store.db import Database
from loopml.store.schema import feature_definitions as definitions_table

EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]
"""Entity rows as a list of ``{column: value}`` or as columns ``{column: [values]}``."""

MAX_ENTITY_ROWS = 10_000
FEATURE_SERVICE_TAG = "loopml.feature_service"
"""The model version tag naming the feature service (``name@version``) it was registered with."""
CACHE_S = 1.0
"""How long a resolved latest definition is reused before the registry is asked again."""


@dataclass(frozen=True, slots=True)
class ServiceColumns:
    """What a feature service reads and returns, from the registered specs.

    ``join_keys`` and ``request_fields`` map the entity-row columns to their types; ``outputs``
    maps each output column (the feature name, or ``view__feature`` with full names) to its type.
    """

    name: str
    version: int
    join_keys: dict[str, str] = field(default_factory=dict)
    request_fields: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    refs: tuple[str, ...] = ()
    full_outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TypedOnlineFeatures(OnlineFeatures):
    """:class:`OnlineFeatures` plus each feature column's declared type (``float64``, ``bytes``...)."""

    types: dict[str, str] = field(default_factory=dict)


def output_types(refs: Sequence[str], views: Sequence[View], full_feature_names: bool) -> dict[str, str]:
    """The declared type of each output column of ``refs`` (``"view:feature"``)."""
    by_name = {v.name: v for v in views}
    types: dict[str, str] = {}
    for ref in refs:
        view_name, _, feature = ref.partition(":")
        dtype = next(f.dtype for f in by_name[view_name].fields if f.name == feature)
        types[f"{view_name}__{feature}" if full_feature_names else feature] = dtype
    return types


class FeatureStoreService(abc.ABC):
    """The feature store by name: definitions, online reads, pushes, materialization.

    Implementations: :class:`LocalFeatureStoreService` (in process) and
    ``HttpFeatureStoreService`` (a loopml server). A subclass implements the abstract methods;
    :meth:`describe_service` is built on :meth:`get_definition`.
    """

    @abc.abstractmethod
    def list_definitions(self, kind: str | None = None) -> list[DefinitionRecord]:
        """The latest version of every registered definition (of ``kind``)."""

    @abc.abstractmethod
    def get_definition(self, kind: str, name: str, version: int | None = None) -> DefinitionRecord:
        """One stored version (default: the latest); ``NotFound`` names the known ones."""

    @abc.abstractmethod
    def get_online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        service_version: int | None = None,
        full_feature_names: bool = False,
        now: Any = None,
    ) -> OnlineFeatures:
        """The latest values (and a status each) of ``features`` (``"view:feature"``) or of the
        registered ``service``, for each entity row; on-demand features computed from the row's
        request fields. ttl is enforced against ``now`` (default: the current time)."""

    @abc.abstractmethod
    def push(self, view: str, rows: Any) -> int:
        """Write fresh rows (DataFrame, Arrow table or ``{column: [values]}``) of feature view
        ``view``; an older event never replaces a newer value. Returns how many were stored."""

    @abc.abstractmethod
    def materialize(
        self,
        end: Any = None,
        *,
        start: Any = None,
        views: Sequence[str] | None = None,
        incremental: bool = False,
    ) -> list[MaterializeResult]:
        """Load the latest values of ``views`` (default: every feature view) into the online
        store: event times in ``[start, end]``, or since the previous run with ``incremental``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def describe_service(self, name: str, version: int | None = None) -> ServiceColumns:
        """The entity-row columns a feature service reads and the columns it returns, with types.

        >>> feature_store().describe_service("churn_v1").join_keys   # doctest: +SKIP
        {'driver_id': 'int64'}
        """
        record = self.get_definition("feature_service", name, version)
        return self.describe_features(record.spec["features"], name=name, version=record.version)

    def describe_features(self, refs: Sequence[str], *, name: str = "", version: int = 0) -> ServiceColumns:
        """What reading ``refs`` (``"view:feature"``) needs and returns, as :meth:`describe_service`
        says it for a service; an unknown view or feature is ``NotFound`` naming the known ones.

        >>> feature_store().describe_features(["stats:rate"]).join_keys   # doctest: +SKIP
        {'driver_id': 'int64'}
        """
        cols = ServiceColumns(name, version, refs=tuple(_check_ref(ref) for ref in refs))
        for ref in cols.refs:
            view_name, _, feature = ref.partition(":")
            view = self._view_record(view_name)
            types = {f["name"]: f["dtype"] for f in view.spec["fields"]}
            if feature not in types:
                raise NotFound(
                    f"feature view {view_name!r} has no feature {feature!r}; known: {', '.join(types)}",
                    details={"field": "features", "feature_view": view_name, "known": list(types)},
                )
            cols.outputs[feature] = types[feature]
            cols.full_outputs[f"{view_name}__{feature}"] = types[feature]
            if view.kind == "feature_view":
                self._add_join_keys(cols, view.spec)
            else:
                for source in view.spec["sources"]:
                    if "request" in source:
                        cols.request_fields.update(
                            {f["name"]: f["dtype"] for f in source["request"]["fields"]}
                        )
                    else:
                        self._add_join_keys(cols, self._view_record(source["feature_view"]).spec)
        return cols

    def _view_record(self, name: str) -> DefinitionRecord:
        try:
            return self.get_definition("feature_view", name)
        except NotFound:
            pass
        try:
            return self.get_definition("on_demand_feature_view", name)
        except NotFound:
            known = [r.name for r in self.list_definitions() if r.kind.endswith("feature_view")]
            raise NotFound(
                f"no feature view {name!r}; known: {', '.join(sorted(known)) or 'none'}",
                details={"feature_view": name, "known": sorted(known)},
            ) from None

    def _add_join_keys(self, cols: ServiceColumns, view_spec: dict[str, Any]) -> None:
        for entity in view_spec["entities"]:
            spec = self.get_definition("entity", entity).spec
            cols.join_keys.update(zip(spec["join_keys"], spec["value_types"], strict=True))


def service_record(cols: ServiceColumns, signature: dict[str, Any] | None) -> dict[str, Any]:
    """What a model's manifest records of the feature service it was trained with.

    The model's input columns must be the service's features (short or ``view__feature`` names),
    its request fields or join keys, so an endpoint can build the input from entity keys alone.
    """
    inputs = (signature or {}).get("inputs") or {}
    if inputs.get("kind") != "columns":
        raise InvalidInput(
            f"a model logged with feature service {cols.name!r} needs a signature of named columns; "
            "pass input_example as a DataFrame of the service's features",
            details={"field": "input_example"},
        )
    names = [str(c["name"]) for c in inputs["columns"]]
    given = {**cols.request_fields, **cols.join_keys}
    short_ok = all(n in cols.outputs or n in given for n in names)
    use_full = not short_ok and all(n in cols.full_outputs or n in given for n in names)
    outputs = cols.full_outputs if use_full else cols.outputs
    unknown = [n for n in names if n not in outputs and n not in given]
    if unknown:
        raise InvalidInput(
            f"the model's input column(s) {unknown} are neither features of service {cols.name!r} "
            f"({', '.join(cols.outputs)}) nor its request fields or join keys; train on the "
            "columns get_historical_features(service=...) returns",
            details={"field": "feature_service", "unknown": unknown},
        )
    return {
        "name": cols.name,
        "version": cols.version,
        "refs": list(cols.refs),
        "join_keys": cols.join_keys,
        "request_fields": cols.request_fields,
        "outputs": outputs,
        "full_feature_names": use_full,
    }


# ---- entity rows -------------------------------------------------------------------------------


def as_rows(entity_rows: EntityRows) -> list[Mapping[str, Any]]:
    """Entity rows as a list of mappings, from rows or from columns (all of one length)."""
    if isinstance(entity_rows, Mapping):
        for k, v in entity_rows.items():
            if isinstance(v, str | bytes | Mapping) or not hasattr(v, "__len__"):
                raise InvalidInput(
                    f"entity column {k!r} is not a list of values; give {{column: [values]}}",
                    details={"field": str(k)},
                )
        columns = {str(k): list(v) for k, v in entity_rows.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput(
                f"entity columns have different lengths {sorted(lengths)}; give one value per row "
                "in every column",
                details={"field": "entities"},
            )
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    rows = list(entity_rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput(
                f"entity row {i} is a {type(row).__name__}; give objects {{join_key: value}}",
                details={"field": "entity_rows", "row": i},
            )
    return rows


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "int32": (int,),
    "int64": (int,),
    "float32": (int, float),
    "float64": (int, float),
    "string": (str,),
    "bool": (bool,),
    "bytes": (bytes, str),
}


def check_value(column: str, dtype: str, value: Any, row: int, owner: str) -> None:
    """``InvalidInput`` naming ``column`` when ``value`` cannot be of ``dtype`` (nulls pass)."""
    if value is None or dtype not in _PYTHON_TYPES:
        return
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    wanted = _PYTHON_TYPES[dtype]
    ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
    if not ok:
        raise InvalidInput(
            f"entity row {row}: column {column!r} holds a {type(value).__name__}, but {owner} "
            f"expects {dtype}; send {dtype} values",
            details={"field": column, "row": row, "expected": dtype, "got": type(value).__name__},
        )


# ---- the local implementation ------------------------------------------------------------------


class LocalFeatureStoreService(FeatureStoreService):
    """The feature store over a :class:`FeatureRegistry` and an :class:`OnlineStore`.

    ``definitions`` (optional) are live objects that win over the registered ones of the same
    name, for a notebook whose definitions are not applied yet. Latest definitions are rebuilt
    from the registry at most every ``cache_s`` seconds.

    >>> fs = LocalFeatureStoreService.from_settings(Settings.load())  # doctest: +SKIP
    """

    def __init__(
        self,
        registry: FeatureRegistry,
        store: OnlineStore,
        *,
        definitions: Sequence[Definition] = (),
        cache_s: float = CACHE_S,
        owns: bool = False,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache_s = cache_s
        self._given = {(_kind(d), d.name): d for d in definitions}
        self._cache: dict[tuple[str, str, int | None], Any] = {}
        self._checked = 0.0
        self._revision: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._owns = owns

    @classmethod
    def from_settings(cls, settings: Settings, db: Database | None = None) -> LocalFeatureStoreService:
        """Over the metadata database ``settings`` name (or ``db``) and ``LOOPML_ONLINE_STORE``
        (default: ``online.db`` under ``LOOPML_HOME``)."""
        registry = FeatureRegistry(db or Database(settings.database_url), settings.user)
        store = open_online_store(settings.online_store, home=settings.home)
        return cls(registry, store, owns=db is None)

    def close(self) -> None:
        self.store.close()
        if self._owns:
            self.registry.close()

    # -- definitions -----------------------------------------------------------------------
    def list_definitions(self, kind: str | None = None) -> list[DefinitionRecord]:
        return self.registry.list_definitions(kind)

    def get_definition(self, kind: str, name: str, version: int | None = None) -> DefinitionRecord:
        return self.registry.get(kind, name, version)

    def _cached(self, key: tuple[str, str, int | None], build: Any) -> Any:
        """A rebuilt definition, reused until the registry changes (checked every ``cache_s``)."""
        now = time.monotonic()
        if now - self._checked >= self.cache_s:
            revision = self._registry_revision()
            with self._lock:
                if revision != self._revision:
                    self._cache.clear()
                    self._revision = revision
                self._checked = now
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = build()
        with self._lock:
            self._cache[key] = value
        return value

    def _registry_revision(self) -> tuple[Any, ...]:
        # Definitions are only ever added (a new version is a new row): count and newest suffice.
        query = select(func.count(), func.max(definitions_table.c.created_at))
        with self.registry.db.read() as conn:
            return tuple(conn.execute(query).one())

    def resolve_service(self, name: str, version: int | None = None) -> FeatureService:
        """The live feature service ``name`` (given, or rebuilt from the registry)."""
        given = self._given.get(("feature_service", name))
        if isinstance(given, FeatureService) and version is None:
            return given
        found: FeatureService = self._cached(
            ("feature_service", name, version), lambda: self._rebuild_service(name, version)
        )
        return found

    def _rebuild_service(self, name: str, version: int | None) -> FeatureService:
        self.registry.get("feature_service", name, version)  # NotFound naming the known services
        return self.registry.resolve_service(name, version)

    def resolve_view(self, name: str) -> View:
        """The live feature view or on-demand view ``name``; NotFound names the known views."""
        for kind in ("feature_view", "on_demand_feature_view"):
            given = self._given.get((kind, name))
            if isinstance(given, FeatureView | OnDemandFeatureView):
                return given
        found: View = self._cached(("view", name, None), lambda: self._rebuild_view(name))
        return found

    def _rebuild_view(self, name: str) -> View:
        known = [r.name for r in self.list_definitions() if r.kind.endswith("feature_view")]
        known += [n for k, n in self._given if k.endswith("feature_view")]
        if name not in known:
            raise NotFound(
                f"no feature view {name!r}; known: {', '.join(sorted(set(known))) or 'none'}",
                details={"feature_view": name, "known": sorted(set(known))},
            )
        return self.registry.resolve_views([name])[0]

    # -- online reads ----------------------------------------------------------------------
    def reads_inline(self, features: Any, service: Any, service_version: Any = None) -> bool:
        """Whether a small read of ``features`` (or ``service``) needs no registry query and no
        transform: every definition it names is cached and fresh, all are stored feature views,
        and the online store is idle and in process. A server runs such reads on its event loop."""
        if not self.store.idle() or time.monotonic() - self._checked >= self.cache_s:
            return False
        if not isinstance(service, str | None) or not isinstance(service_version, int | None):
            return False  # not a cache key (was a 500): the full path answers 400 naming the field
        held: dict[str, Any] = {}
        if service is not None:
            found = self._cache.get(("feature_service", service, service_version))
            if not isinstance(found, FeatureService):
                return False
            held = {v.name: v for v in [*found.views, *(f for f in found.features if not isinstance(f, str))]}
            refs: Sequence[Any] = found.refs
        elif isinstance(features, list) and all(isinstance(f, str) for f in features):
            refs = features
        else:
            return False
        names = [r.partition(":")[0] for r in refs]
        return all(isinstance(held.get(n) or self._cache.get(("view", n, None)), FeatureView) for n in names)

    def get_online_features(
        self,
        entity_rows: EntityRows,
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        service_version: int | None = None,
        full_feature_names: bool = False,
        now: Any = None,
    ) -> OnlineFeatures:
        rows = as_rows(entity_rows)
        if len(rows) > MAX_ENTITY_ROWS:
            raise InvalidInput(
                f"{len(rows)} entity rows in one read; the limit is {MAX_ENTITY_ROWS}: split the request",
                details={"field": "entity_rows", "limit": MAX_ENTITY_ROWS},
            )
        if (features is None) == (service is None):
            raise InvalidInput(
                "give exactly one of features=[...] or service=...", details={"field": "features"}
            )
        if service is not None:
            svc = self.resolve_service(service, service_version)
            views = list(svc.views) + [v for v in svc.features if not isinstance(v, str)]
            held = {v.name for v in views}
            views += [
                self.resolve_view(n)
                for n in dict.fromkeys(r.partition(":")[0] for r in svc.refs)
                if n not in held
            ]  # a given service may name registered views
            check_entity_rows(rows, views)
            found = get_online_features(
                rows,
                service=svc,
                views=views,
                store=self.store,
                full_feature_names=full_feature_names,
                now=now,
            )
            refs: Sequence[str] = svc.refs
        else:
            refs = [_check_ref(ref) for ref in features or ()]
            views = [self.resolve_view(name) for name in dict.fromkeys(r.partition(":")[0] for r in refs)]
            check_entity_rows(rows, views)
            found = get_online_features(
                rows, refs, views=views, store=self.store, full_feature_names=full_feature_names, now=now
            )
        types = output_types(refs, views, full_feature_names)
        return TypedOnlineFeatures(found.values, found.statuses, types)

    # -- writes ----------------------------------------------------------------------------
    def push(self, view: str, rows: Any) -> int:
        found = self.resolve_view(view)
        if not isinstance(found, FeatureView):
            raise InvalidInput(
                f"{view!r} is an on-demand feature view, computed at request time; push to a feature view",
                details={"field": "view"},
            )
        table = rows_to_table(found, rows) if isinstance(rows, Mapping) else rows
        return push(found, table, self.store)

    def materialize(
        self,
        end: Any = None,
        *,
        start: Any = None,
        views: Sequence[str] | None = None,
        incremental: bool = False,
    ) -> list[MaterializeResult]:
        end = time.time_ns() // 1000 if end is None else end
        if views is None:
            chosen = [v for v in self.registry.definitions("feature_view") if isinstance(v, FeatureView)]
        else:
            chosen = [_stored(self.resolve_view(name)) for name in views]
        if incremental:
            return [materialize_incremental(v, self.store, end) for v in chosen]
        return [materialize(v, self.store, start, end) for v in chosen]


def _kind(definition: Definition) -> str:
    return {
        Entity: "entity",
        FeatureView: "feature_view",
        OnDemandFeatureView: "on_demand_feature_view",
        FeatureService: "feature_service",
    }[type(definition)]


def _check_ref(ref: Any) -> str:
    if not isinstance(ref, str) or ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":"):
        raise InvalidInput(
            f"feature reference {ref!r} is not 'view:feature'",
            details={"field": "features", "value": str(ref)},
        )
    return ref


def _stored(view: View) -> FeatureView:
    if not isinstance(view, FeatureView):
        raise InvalidInput(
            f"{view.name!r} is an on-demand feature view: nothing to materialize",
            details={"field": "views", "value": view.name},
        )
    return view


def check_entity_rows(rows: Sequence[Mapping[str, Any]], views: Sequence[View]) -> None:
    """Every join key present and typed as its entity says; no column nobody reads.

    A missing or mistyped column is ``InvalidInput`` naming it; a column that is neither a join
    key nor a request field of the views is ``NotFound`` naming the known ones.
    """
    keys: dict[str, tuple[str, str]] = {}
    request: dict[str, tuple[str, str]] = {}
    for view in _with_sources(views):
        if isinstance(view, FeatureView):
            for entity in view.entities:
                for key, dtype in zip(entity.join_keys, entity.value_types, strict=True):
                    keys[key] = (dtype, f"entity {entity.name!r}")
        else:
            for source in view.sources:
                if isinstance(source, RequestSource):
                    request.update(
                        {f.name: (f.dtype, f"request source {source.name!r}") for f in source.fields}
                    )
    known = {**keys, **request}
    for i, row in enumerate(rows):
        for column in keys:
            if column not in row:
                given = ", ".join(map(str, row)) or "nothing"
                raise InvalidInput(
                    f"entity row {i} has no join key {column!r} (it has {given}); add it",
                    details={"field": column, "row": i},
                )
        for column, value in row.items():
            if column not in known:
                raise NotFound(
                    f"entity row {i} has column {column!r}, which no requested view reads; known join "
                    f"keys: {', '.join(keys) or 'none'}; request fields: {', '.join(request) or 'none'}",
                    details={"field": column, "known": list(known)},
                )
            dtype, owner = known[column]
            check_value(column, dtype, value, i, owner)


def _with_sources(views: Sequence[View]) -> list[View]:
    out: dict[str, View] = {}
    for view in views:
        out[view.name] = view
        if isinstance(view, OnDemandFeatureView):
            out.update({s.name: s for s in view.sources if isinstance(s, FeatureView)})
    return list(out.values())


def rows_to_table(view: FeatureView, columns: Mapping[str, Any]) -> pa.Table:
    """Pushed ``{column: [values]}`` (JSON) as an Arrow table typed like ``view``'s source.

    Timestamps may be ISO strings (any zone; naive is UTC) or datetimes; a value that does not fit
    its column's type is ``InvalidInput`` naming the column.
    """
    import pandas as pd

    types = {f.name: f.arrow_type for f in view.fields}
    for entity in view.entities:
        types.update({k: _arrow(t) for k, t in zip(entity.join_keys, entity.value_types, strict=True)})
    stamps = [view.timestamp_field, *([view.created_timestamp_field] if view.created_timestamp_field else [])]
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if not isinstance(values, list | tuple):
            raise InvalidInput(
                f"pushed column {name!r} is not a list of values", details={"field": str(name)}
            )
        try:
            if name in stamps:
                stamps_utc = pd.to_datetime(list(values), utc=True, format="ISO8601").tz_convert(None)
                arrays[name] = pa.array(stamps_utc.to_numpy()).cast(pa.timestamp("ns", tz="UTC"))
            elif types.get(name) == pa.binary():  # bytes travel base64-encoded in JSON
                arrays[name] = pa.array([_b64(v) for v in values], pa.binary())
            elif name in types and pa.types.is_floating(types[name]):  # NaN/inf may come as text
                arrays[name] = pa.array([float(v) if isinstance(v, str) else v for v in values], types[name])
            elif name in types:  # a safe cast: 1.5 is not silently an int64 of 1
                arrays[name] = pa.array(values).cast(types[name], safe=True)
            else:
                arrays[name] = pa.array(values)
        except (ValueError, TypeError, binascii.Error, pa.ArrowException) as exc:
            expected = "timestamp" if name in stamps else str(types.get(name, "values"))
            raise InvalidInput(
                f"pushed column {name!r} does not hold {expected} values ({type(exc).__name__}); "
                "fix its values",
                details={"field": str(name), "expected": expected},
            ) from None
    try:
        return pa.table(arrays)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(
            f"pushed columns have different lengths: {exc}", details={"field": "rows"}
        ) from None


def _b64(value: Any) -> Any:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


def _arrow(dtype: str) -> pa.DataType:
    return DTYPES[dtype]


# ---- choosing an implementation ----------------------------------------------------------------

_lock = threading.Lock()
_services: dict[Settings, FeatureStoreService] = {}


def feature_store(settings: Settings | None = None) -> FeatureStoreService:
    """The feature store for ``settings`` (default: the SDK's): over HTTP when
    ``LOOPML_TRACKING_URI`` is a server, else on the local registry and online store.

    >>> feature_store().list_definitions("feature_service")  # doctest: +SKIP
    """
    settings = settings or sdk._settings()
    with _lock:
        if settings not in _services:
            _services[settings] = _build(settings)
        return _services[settings]


def _build(settings: Settings) -> FeatureStoreService:
    if settings.is_remote:
        from loopml.client.http_features import HttpFeatureStoreService

        return HttpFeatureStoreService.from_settings(settings)
    return LocalFeatureStoreService.from_settings(settings)


def reset() -> None:
    """Forget (and close) every cached feature store (tests, notebooks)."""
    with _lock:
        for svc in _services.values():
            svc.close()
        _services.clear()
