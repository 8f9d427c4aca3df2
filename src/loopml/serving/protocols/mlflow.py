"""MLflow's scoring protocol (``/invocations``), as ``mlflow models serve`` speaks it.

JSON bodies hold exactly one of ``dataframe_split``, ``dataframe_records``, ``instances`` or
``inputs`` (plus optional ``params``, accepted and ignored); ``text/csv`` and Parquet
(``application/vnd.apache.parquet``, also ``application/x-parquet``) bodies are tables. The
answer is ``{"predictions": [...]}``: a list for an array, a list of records for a DataFrame.

>>> from loopml.serving.validation import InputSpec
>>> decode(b'{"instances": [[1.0, 2.0]]}', "application/json", InputSpec(None)).shape
(1, 2)
>>> encode(np.array([1, 0]))
b'{"predictions":[1,0]}'
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

from loopml.errors import InvalidInput, LoopmlError
from loopml.models.signature import is_dataframe
from loopml.serving.validation import InputSpec

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON = "application/json"
CSV = "text/csv"
PARQUET = ("application/vnd.apache.parquet", "application/x-parquet")
CONTENT_TYPES = (JSON, CSV, *PARQUET)


class UnsupportedMediaType(LoopmlError):
    """HTTP 415: the body's content type is not one this endpoint reads."""

    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


def media_type(header: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (header or "").split(";", 1)[0].strip().lower()


def decode(body: bytes, content_type: str | None, spec: InputSpec) -> Any:
    """The model input an ``/invocations`` body describes, checked against ``spec``."""
    kind = media_type(content_type)
    if kind == JSON:
        return _decode_json(body, spec)
    if kind == CSV:
        return spec.from_frame(_read_table(body, "csv"))
    if kind in PARQUET:
        return spec.from_frame(_read_table(body, "parquet"))
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} is not supported; send one of {', '.join(CONTENT_TYPES)}",
        details={"field": "content-type", "expected": list(CONTENT_TYPES)},
    )


def _decode_json(body: bytes, spec: InputSpec) -> Any:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            "the body is not valid JSON", details={"field": "body", "expected": "JSON object"}
        ) from None
    keys = [k for k in FORMATS if isinstance(doc, dict) and k in doc]
    if len(keys) != 1:
        raise InvalidInput(
            f"the JSON body must hold exactly one of {', '.join(FORMATS)} (MLflow's scoring formats)",
            details={"field": "body", "expected": list(FORMATS)},
        )
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise InvalidInput(
                "dataframe_split must be an object {columns, data}",
                details={"field": key, "expected": "object with columns and data"},
            )
        return spec.from_split(value.get("columns"), value.get("data"))
    if key == "dataframe_records":
        return spec.from_records(value)
    return _tensor_input(key, value, spec)


def _tensor_input(key: str, value: Any, spec: InputSpec) -> Any:
    if isinstance(value, dict):
        return spec.from_columns(value)
    if not isinstance(value, list):
        raise InvalidInput(
            f"{key} must be a list of rows or an object of named columns",
            details={"field": key, "expected": "list or object"},
        )
    if value and all(isinstance(v, dict) for v in value):
        return spec.from_records(value)
    return spec.from_tensor(value)


def _read_table(body: bytes, fmt: str) -> Any:
    import pandas as pd

    try:
        if fmt == "csv":
            return pd.read_csv(io.BytesIO(body))
        return pd.read_parquet(io.BytesIO(body))
    except Exception as exc:  # pandas/pyarrow raise many types for malformed input
        raise InvalidInput(
            f"the body is not a readable {fmt.upper()} table ({type(exc).__name__})",
            details={"field": "body", "expected": fmt},
        ) from None


def encode(result: Any) -> bytes:
    """``{"predictions": ...}`` like ``mlflow models serve`` (records for a DataFrame)."""
    if is_dataframe(result):
        return orjson.dumps({"predictions": result.to_dict(orient="records")}, default=_jsonable)
    if isinstance(result, np.ndarray) and result.dtype.kind in "biuf" and result.flags.c_contiguous:
        return orjson.dumps({"predictions": result}, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"predictions": result}, option=orjson.OPT_SERIALIZE_NUMPY, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
