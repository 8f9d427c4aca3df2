"""Serving by entity keys: a model trained on a feature service fetches its own features.

When a model's manifest records the feature service it was trained with (``log_model(...,
feature_service="churn")``), its endpoint accepts the entity keys alone (plus the request fields
the service's on-demand views read, and any other model input that is not a feature): MLflow
``/invocations`` records or split with only ``driver_id``, or v2 with a ``driver_id`` input. The
features come from the online store through :meth:`FeatureStoreService.get_online_features` (the
same code path as any online read, on-demand transforms included), are put in the order of the
model's signature, and the model predicts. The answer is the model's, nothing added.

A missing value (entity never materialized, or outside the ttl) reaches the model as a null only
where the signature's column can hold one (float: NaN, object: None); for an integer or boolean
column the request fails with ``NotFound`` (404) naming the entities and features.

>>> keyed = EntityKeyInput(manifest.feature_service, loaded.signature)  # doctest: +SKIP
>>> keyed.wrap(loaded.predictor.predict)(pd.DataFrame({"driver_id": [1]}))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from loopml.errors import InvalidInput, NotFound
from loopml.features.service import FeatureStoreService, feature_store, service_record
from loopml.models.signature import Column, Schema, Signature

# Feature store types as the numpy dtypes a request column is checked against.
_REQUEST_DTYPES = {
    "int32": "int32",
    "int64": "int64",
    "float32": "float32",
    "float64": "float64",
    "bool": "bool",
    "string": "object",
    "bytes": "object",
    "timestamp": "object",
}
MAX_NAMED = 5


class EntityKeyInput:
    """Builds a model's input from a request frame of entity keys (see the module docstring).

    ``record`` is the manifest's ``feature_service`` entry; ``signature`` the model's own.
    :attr:`signature` is what requests must match: join keys, request fields, other inputs.
    """

    def __init__(
        self, record: dict[str, Any], signature: Signature | None, store: FeatureStoreService | None = None
    ) -> None:
        if signature is None or signature.inputs.kind != "columns":
            raise InvalidInput(
                f"the model records feature service {record.get('name')!r} but has no signature of "
                "named columns; log it again with a DataFrame input_example",
                details={"field": "signature"},
            )
        self.name = str(record["name"])
        self.version = int(record["version"]) if record.get("version") is not None else None
        self.full_names = bool(record.get("full_feature_names", False))
        self.features = dict(record["outputs"])
        self.model_columns = signature.inputs.columns
        request = {**record.get("join_keys", {}), **record.get("request_fields", {})}
        self.join_keys = list(record.get("join_keys", {}))
        self.lookup_names = list(request)
        columns = [Column(k, _REQUEST_DTYPES.get(t, "object")) for k, t in request.items()]
        columns += [c for c in self.model_columns if c.name not in self.features and c.name not in request]
        self.request_names = [c.name for c in columns]
        self.signature = Signature(Schema("columns", tuple(columns)), signature.outputs)
        self._store = store

    @property
    def store(self) -> FeatureStoreService:
        if self._store is None:
            self._store = feature_store()
        return self._store

    def wrap(self, predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``predict`` taking a request frame: features fetched, then the model's predict."""

        def keyed(frame: Any) -> Any:
            return predict(self.model_input(frame))

        return keyed

    def model_input(self, frame: Any) -> Any:
        """The model's input frame (signature order and dtypes) for a frame of request columns."""
        import pandas as pd

        rows = frame[self.lookup_names].to_dict(orient="records")
        found = self.store.get_online_features(
            rows, service=self.name, service_version=self.version, full_feature_names=self.full_names
        )
        self._check_missing(frame, found.statuses)
        columns: dict[str, Any] = {}
        for column in self.model_columns:
            if column.name in self.features:
                columns[column.name] = _typed(found.values[column.name], column.dtype)
            else:
                columns[column.name] = frame[column.name].to_numpy()
        return pd.DataFrame(columns, columns=[c.name for c in self.model_columns])

    def _check_missing(self, frame: Any, statuses: dict[str, list[str]]) -> None:
        strict = [c.name for c in self.model_columns if c.name in self.features and not _nullable(c.dtype)]
        bad_rows = sorted({i for name in strict for i, s in enumerate(statuses[name]) if s != "present"})
        if not bad_rows:
            return
        keys = frame[self.join_keys].iloc[bad_rows[:MAX_NAMED]].to_dict(orient="records")
        why = {
            name: statuses[name][bad_rows[0]] for name in strict if statuses[name][bad_rows[0]] != "present"
        }
        raise NotFound(
            f"no online feature values for {len(bad_rows)} entit{'y' if len(bad_rows) == 1 else 'ies'} "
            f"(e.g. {keys[0]}: {', '.join(f'{k} {v}' for k, v in why.items())}); the model's "
            f"columns {sorted(why)} cannot be null: materialize or push them first",
            details={"field": self.join_keys[0], "entities": keys, "features": why},
        )


def tagged_service(value: str | None, signature: Signature | None) -> dict[str, Any] | None:
    """The feature service record of a version registered with ``feature_service=`` (its tag
    ``name@version``), checked against the model's signature; None without the tag."""
    if not value:
        return None
    name, _, version = value.partition("@")
    cols = feature_store().describe_service(name, int(version) if version.isdigit() else None)
    return service_record(cols, signature.to_dict() if signature is not None else None)


def _nullable(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind in "fcOMm"
    except TypeError:
        return True  # pandas extension dtypes (category, string) hold missing values


def _typed(values: list[Any], dtype: str) -> Any:
    try:
        want = np.dtype(dtype)
    except TypeError:
        return values
    if want.kind in "fc":
        return np.array([np.nan if v is None else v for v in values], dtype=want)
    if want.kind == "O":
        return np.array(values, dtype=object)
    return np.asarray(values, dtype=want)
