"""Feature definitions in Python: the one description both the offline and the online path read.

An :class:`Entity` names the join keys; a source says where rows live (:class:`FileSource`,
:class:`DataFrameSource`, :class:`SqlSource`); a :class:`FeatureView` is a typed set of features
of some entities read from a source with an event timestamp and a ttl; an
:class:`OnDemandFeatureView` is a vectorised pandas transform over request data and other
features, run by the same code offline and online; a :class:`FeatureService` is the named set of
features a model uses.

>>> from datetime import timedelta
>>> driver = Entity("driver", join_keys=["driver_id"])
>>> stats = FeatureView(
...     "driver_stats",
...     entities=[driver],
...     fields=[Field("conv_rate", "float64"), Field("trips", "int64")],
...     source=FileSource("data/driver_stats.parquet"),
...     ttl=timedelta(days=2),
... )
>>> FeatureService("churn_v1", features=[stats]).refs
('driver_stats:conv_rate', 'driver_stats:trips')

Every object has ``spec()``: its JSON-able description, which the registry versions and diffs.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# The feature types a definition may declare, and the Arrow type each one is stored as.
DTYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: use letters, digits and '_' (not first), "
            "at most 128 characters",
            details={"field": "name", "value": str(name)},
        )


def _check_dtype(owner: str, dtype: str) -> None:
    if dtype not in DTYPES:
        raise InvalidInput(
            f"{owner} has type {dtype!r}; known types are {', '.join(DTYPES)}",
            details={"field": "dtype", "value": str(dtype), "known": list(DTYPES)},
        )


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Field:
    """One typed column of a feature view: ``Field("conv_rate", "float64")``."""

    name: str
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("field", self.name)
        _check_dtype(f"field {self.name!r}", self.dtype)

    @property
    def arrow_type(self) -> pa.DataType:
        return DTYPES[self.dtype]

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description}


@dataclass(frozen=True, init=False)
class Entity:
    """What features are about, and the column(s) that identify it.

    >>> Entity("driver", join_keys="driver_id").join_keys
    ('driver_id',)
    >>> Entity("trip", join_keys=["city", "trip_id"], value_types=["string", "int64"]).value_types
    ('string', 'int64')
    """

    name: str
    join_keys: tuple[str, ...]
    value_types: tuple[str, ...]
    description: str

    def __init__(
        self,
        name: str,
        join_keys: str | Sequence[str] | None = None,
        value_types: str | Sequence[str] = "int64",
        description: str = "",
    ) -> None:
        _check_name("entity", name)
        keys = _strings(join_keys) if join_keys is not None else (name,)
        types = _strings(value_types)
        if len(types) == 1 and len(keys) > 1:
            types = types * len(keys)
        if not keys or len(types) != len(keys):
            raise InvalidInput(
                f"entity {name!r} has {len(keys)} join key(s) and {len(types)} value type(s); "
                "give one value type per join key",
                details={"field": "value_types"},
            )
        for key, dtype in zip(keys, types, strict=True):
            _check_name(f"join key of entity {name!r}", key)
            _check_dtype(f"join key {key!r} of entity {name!r}", dtype)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "value_types", types)
        object.__setattr__(self, "description", description)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": list(self.join_keys),
            "value_types": list(self.value_types),
            "description": self.description,
        }


class Source(abc.ABC):
    """Where a feature view's rows live. A subclass implements :meth:`relation` and :meth:`spec`.

    ``relation(con)`` returns the rows as a DuckDB relation on ``con`` (lazily: nothing is read
    until a query runs, which keeps a 10M-row source out of memory); ``spec()`` is the JSON-able
    description the registry versions. ``arrow_schema()`` reads only the schema.
    """

    kind: str = ""

    @abc.abstractmethod
    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation: ...

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]: ...

    def arrow_schema(self) -> pa.Schema:
        """The source's columns and types, read without loading its rows."""
        import duckdb

        con = duckdb.connect()
        try:
            return self.relation(con).limit(0).arrow().schema
        finally:
            con.close()


@dataclass(frozen=True)
class FileSource(Source):
    """A Parquet file, a directory of Parquet files (read recursively), or a CSV file.

    >>> FileSource("data/stats.csv").format
    'csv'
    """

    path: str | Path
    format: str = ""
    kind = "file"

    def __post_init__(self) -> None:
        fmt = self.format or ("csv" if ".csv" in Path(self.path).suffixes else "parquet")
        if fmt not in ("parquet", "csv"):
            raise InvalidInput(
                f"file source {str(self.path)!r} has format {fmt!r}; use 'parquet' or 'csv'",
                details={"field": "format"},
            )
        object.__setattr__(self, "format", fmt)

    def _glob(self) -> str:
        path = Path(self.path)
        if not path.exists():
            raise InvalidInput(
                f"file source {str(path)!r} does not exist; check the path in the definition",
                details={"field": "path", "value": str(path)},
            )
        if path.is_dir():
            return str(path / "**" / ("*.csv" if self.format == "csv" else "*.parquet"))
        return str(path)

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        if self.format == "csv":
            return con.read_csv(self._glob())
        return con.read_parquet(self._glob())

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(Path(self.path).resolve()), "format": self.format}


@dataclass(frozen=True, eq=False)
class DataFrameSource(Source):
    """Rows held in memory: a pandas or polars DataFrame, or a pyarrow Table.

    Its spec records the column names only (the rows are not part of the definition), so it
    suits tests and notebooks; a shared registry should point at files or a query.
    """

    frame: Any
    name: str = "dataframe"
    kind = "dataframe"

    def table(self) -> pa.Table:
        """The rows as an Arrow table."""
        frame = self.frame
        if isinstance(frame, pa.Table):
            return frame
        if hasattr(frame, "to_arrow"):  # polars
            return frame.to_arrow()
        return pa.Table.from_pandas(frame, preserve_index=False)

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        return con.from_arrow(self.table())

    def arrow_schema(self) -> pa.Schema:
        return self.table().schema

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "columns": self.arrow_schema().names}


@dataclass(frozen=True)
class SqlSource(Source):
    """A DuckDB query, e.g. over Parquet files: ``SqlSource("SELECT * FROM 'stats/*.parquet'")``."""

    query: str
    kind = "sql"

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise InvalidInput(
                "SQL source has an empty query; give a DuckDB SELECT", details={"field": "query"}
            )

    def relation(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
        return con.sql(self.query)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "query": self.query}


@dataclass(frozen=True)
class RequestSource:
    """Values that arrive with the request (not stored), used by on-demand feature views."""

    name: str
    fields: Sequence[Field]

    def __post_init__(self) -> None:
        _check_name("request source", self.name)
        object.__setattr__(self, "fields", tuple(self.fields))

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "fields": [f.spec() for f in self.fields]}


def _check_unique_fields(owner: str, fields: Sequence[Field], reserved: Iterable[str] = ()) -> None:
    seen: set[str] = set(reserved)
    for f in fields:
        if f.name in seen:
            raise InvalidInput(
                f"{owner} declares column {f.name!r} twice (or reuses a join key/timestamp name)",
                details={"field": f.name},
            )
        seen.add(f.name)


@dataclass(frozen=True)
class FeatureView:
    """Typed features of some entities, read from a source, valid for ``ttl`` after their event.

    ``timestamp_field`` is the event time; ``created_timestamp_field`` (optional) breaks ties
    between rows of the same entity and event time (the latest created wins); ``ttl=None``
    means a value never expires.
    """

    name: str
    entities: Sequence[Entity]
    fields: Sequence[Field]
    source: Source
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    ttl: timedelta | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields:
            raise InvalidInput(f"feature view {self.name!r} has no fields", details={"field": "fields"})
        if not isinstance(self.source, Source):
            raise InvalidInput(
                f"feature view {self.name!r} has source {type(self.source).__name__}; "
                "use FileSource, DataFrameSource or SqlSource",
                details={"field": "source"},
            )
        if self.ttl is not None and (not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)):
            raise InvalidInput(
                f"feature view {self.name!r} has ttl {self.ttl!r}; use a positive timedelta or None",
                details={"field": "ttl"},
            )
        reserved = [*self.join_keys, self.timestamp_field]
        if self.created_timestamp_field:
            reserved.append(self.created_timestamp_field)
        _check_unique_fields(f"feature view {self.name!r}", self.fields, reserved)

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(key for entity in self.entities for key in entity.join_keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        """The field called ``name``; raises NotFound naming the known ones."""
        for f in self.fields:
            if f.name == name:
                return f
        raise NotFound(
            f"feature view {self.name!r} has no feature {name!r}; known: {', '.join(self.feature_names)}",
            details={"feature_view": self.name, "feature": name, "known": list(self.feature_names)},
        )

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.name for e in self.entities],
            "fields": [f.spec() for f in self.fields],
            "source": self.source.spec(),
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "description": self.description,
            "tags": dict(self.tags),
        }


def _udf_source(udf: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(udf))
    except (OSError, TypeError):
        return getattr(udf, "__qualname__", repr(udf))


def udf_digest(udf: Callable[..., Any]) -> str:
    """The sha256 of a transform's source text: what the registry compares before reusing it."""
    return hashlib.sha256(_udf_source(udf).encode()).hexdigest()


# Modules that exist only while a definitions file runs (loopml features apply, python defs.py).
_SCRIPT_MODULES = ("__main__", "__loopml_features__")


def udf_ref(udf: Callable[..., Any]) -> str | None:
    """Where the registry finds a transform again: ``module:function``, ``file:/abs/path.py:function``
    for a function defined in a script or definitions file, or ``None`` for a lambda or a nested
    function (which cannot be found again without the code that made it).

    >>> udf_ref(textwrap.dedent)
    'textwrap:dedent'
    """
    module = getattr(udf, "__module__", None)
    qualname = getattr(udf, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        return None
    if module not in _SCRIPT_MODULES:
        return f"{module}:{qualname}"
    code = getattr(udf, "__code__", None)
    filename = getattr(code, "co_filename", "")
    if filename and Path(filename).is_file():
        return f"file:{Path(filename).resolve()}:{qualname}"
    return None


@dataclass(frozen=True)
class OnDemandFeatureView:
    """Features computed at request time by a vectorised pandas transform.

    ``udf`` takes one DataFrame holding the request fields and the features of ``sources`` (by
    feature name) and returns a DataFrame with one column per field of ``schema``, same rows.
    The offline join and the online lookup both call :meth:`transform`, so they cannot differ.

    >>> import pandas as pd
    >>> req = RequestSource("req", [Field("amount", "float64")])
    >>> double = OnDemandFeatureView(
    ...     "double", sources=[req], schema=[Field("amount_x2", "float64")],
    ...     udf=lambda df: pd.DataFrame({"amount_x2": df["amount"] * 2}),
    ... )
    >>> double.transform(pd.DataFrame({"amount": [1.5]}))["amount_x2"].tolist()
    [3.0]
    """

    name: str
    sources: Sequence[FeatureView | RequestSource]
    schema: Sequence[Field]
    udf: Callable[[pd.DataFrame], pd.DataFrame]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name("on-demand feature view", self.name)
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "schema", tuple(self.schema))
        if not self.schema:
            raise InvalidInput(
                f"on-demand feature view {self.name!r} has no schema", details={"field": "schema"}
            )
        _check_unique_fields(f"on-demand feature view {self.name!r}", self.schema)
        if not callable(self.udf):
            raise InvalidInput(
                f"on-demand feature view {self.name!r}: udf is not callable", details={"field": "udf"}
            )

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(self.schema)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    @property
    def udf_source(self) -> str:
        return _udf_source(self.udf)

    def transform(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """Run the transform; the result has exactly the schema's columns, one row per input row."""
        out = self.udf(inputs)
        missing = [name for name in self.feature_names if name not in out.columns]
        if missing or len(out) != len(inputs):
            raise InvalidInput(
                f"on-demand feature view {self.name!r} returned {len(out)} rows with columns "
                f"{list(out.columns)}; it must return {len(inputs)} rows with {list(self.feature_names)}",
                details={"field": "udf", "missing": missing},
            )
        return out[list(self.feature_names)].reset_index(drop=True)

    def spec(self) -> dict[str, Any]:
        code = self.udf_source
        return {
            "name": self.name,
            "sources": [
                {"feature_view": s.name} if isinstance(s, FeatureView) else {"request": s.spec()}
                for s in self.sources
            ],
            "fields": [f.spec() for f in self.schema],
            "udf": code,
            "udf_sha256": hashlib.sha256(code.encode()).hexdigest(),
            "udf_ref": udf_ref(self.udf),
            "description": self.description,
        }


View = FeatureView | OnDemandFeatureView


def _refs(item: str | View) -> list[str]:
    if isinstance(item, str):
        view, sep, feature = item.partition(":")
        if not sep or not view or not feature:
            raise InvalidInput(
                f"feature reference {item!r} is not 'view:feature'",
                details={"field": "features", "value": item},
            )
        return [item]
    return [f"{item.name}:{name}" for name in item.feature_names]


@dataclass(frozen=True)
class FeatureService:
    """The named set of features a model is trained and served with.

    ``features`` holds ``"view:feature"`` references or whole views (all their features).
    ``views`` (not part of the spec) are the definitions the references name, so a service
    rebuilt by the registry (:meth:`FeatureRegistry.resolve_service`) is enough for retrieval.
    """

    name: str
    features: Sequence[str | View]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    views: Sequence[View] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "views", tuple(self.views))
        if not self.features:
            raise InvalidInput(
                f"feature service {self.name!r} has no features", details={"field": "features"}
            )
        self.refs  # noqa: B018  (validates every reference now, not at first use)

    @property
    def refs(self) -> tuple[str, ...]:
        """The ``"view:feature"`` references, in order, without duplicates."""
        return tuple(dict.fromkeys(ref for item in self.features for ref in _refs(item)))

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": list(self.refs),
            "description": self.description,
            "tags": dict(self.tags),
        }


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService
