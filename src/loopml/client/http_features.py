"""The feature store over HTTP (``/api/v1/features``): the same contract as the local service.

>>> fs = HttpFeatureStoreService("http://127.0.0.1:5000")                  # doctest: +SKIP
>>> fs.get_online_features({"driver_id": [1, 2]}, service="churn_v1").statuses  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from loopml.client.http import UserApiClient, _q
from loopml.features.materialize import MaterializeResult, OnlineFeatures
from loopml.features.online import to_utc_micros
from loopml.features.registry import DefinitionRecord
from loopml.features.service import EntityRows, FeatureStoreService, TypedOnlineFeatures

_HEADERS = {"Content-Type": "application/json"}


class HttpFeatureStoreService(UserApiClient, FeatureStoreService):
    """:class:`FeatureStoreService` against a loopml server (see :class:`UserApiClient`)."""

    def list_definitions(self, kind: str | None = None) -> list[DefinitionRecord]:
        params = {"kind": kind} if kind else {}
        found = self._call("GET", "/features", params=params)["definitions"]
        return [DefinitionRecord(**r) for r in found]

    def get_definition(self, kind: str, name: str, version: int | None = None) -> DefinitionRecord:
        params = {"version": version} if version is not None else {}
        return DefinitionRecord(**self._call("GET", f"/features/{_q(kind)}/{_q(name)}", params=params))

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
        body: dict[str, Any] = {"full_feature_names": full_feature_names}
        if isinstance(entity_rows, Mapping):
            body["entities"] = {str(k): list(v) for k, v in entity_rows.items()}
        else:
            body["entity_rows"] = list(entity_rows)
        body |= {"features": list(features)} if features is not None else {}
        body |= {"service": service} if service is not None else {}
        body |= {"service_version": service_version} if service_version is not None else {}
        body |= {"now": to_utc_micros(now)} if now is not None else {}
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        found = self._call("POST", "/features/online", content=data, headers=_HEADERS, safe=True)
        return decode_online(found)

    def push(self, view: str, rows: Any) -> int:
        columns = rows if isinstance(rows, Mapping) else _columns(rows)
        data = orjson.dumps(
            {"view": view, "rows": columns}, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC
        )
        # Pushing the same rows twice leaves the same state (newer wins): safe to retry.
        found = self._call("POST", "/features/push", content=data, headers=_HEADERS, safe=True)
        return int(found["written"])

    def materialize(
        self,
        end: Any = None,
        *,
        start: Any = None,
        views: Sequence[str] | None = None,
        incremental: bool = False,
    ) -> list[MaterializeResult]:
        body: dict[str, Any] = {"incremental": incremental}
        body |= {"end": to_utc_micros(end)} if end is not None else {}
        body |= {"start": to_utc_micros(start)} if start is not None else {}
        body |= {"views": list(views)} if views is not None else {}
        found = self._call("POST", "/features/materialize", json=body, safe=True)
        return [MaterializeResult(**r) for r in found["results"]]


def decode_online(doc: dict[str, Any]) -> TypedOnlineFeatures:
    """The server's online answer as :class:`TypedOnlineFeatures`, bytes and times restored."""
    values: dict[str, list[Any]] = doc["values"]
    types: dict[str, str] = doc.get("types", {})
    statuses: dict[str, list[str]] = doc.get("statuses", {})
    for name, dtype in types.items():
        if dtype.startswith("float"):  # non-finite floats travel as text ("nan", "inf")
            values[name] = [float(v) if isinstance(v, str) else v for v in values[name]]
        elif dtype == "bytes":
            values[name] = [None if v is None else base64.b64decode(v) for v in values[name]]
        elif dtype == "timestamp":
            values[name] = [None if v is None else datetime.fromisoformat(v) for v in values[name]]
    return TypedOnlineFeatures(values, statuses, types)


def _columns(rows: Any) -> dict[str, list[Any]]:
    """A DataFrame or Arrow table as JSON-able columns; timestamps as UTC microsecond datetimes."""
    from loopml.features.offline import _as_arrow

    table: pa.Table = _as_arrow(rows)
    out: dict[str, list[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", tz=column.type.tz or "UTC"), safe=False)
            out[name] = [None if v is None else v.isoformat() for v in column.to_pylist()]
        elif pa.types.is_floating(column.type):  # JSON has no NaN/inf: sent as text
            out[name] = [v if v is None or math.isfinite(v) else str(v) for v in column.to_pylist()]
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            out[name] = [None if v is None else base64.b64encode(v).decode() for v in column.to_pylist()]
        else:
            out[name] = column.to_pylist()
    return out
