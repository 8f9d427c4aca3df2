"""Messages to model input, model output to per-message predictions.

Stream payloads arrive as text (a Redis entry's fields are strings) or as JSON (a Kafka
value): the model's signature says what each field becomes. A message carries either
one field per input column, or the whole row as a JSON object in a single ``data`` field;
a model that takes a tensor reads the row from ``inputs`` (a JSON list).

>>> from loopml.models.signature import Column, Schema, Signature
>>> sig = Signature(Schema("columns", (Column("age", "int64"), Column("plan", "object"))))
>>> frame = payloads_to_input(sig, [{"age": "41", "plan": "pro"}])
>>> frame["age"].dtype, frame["plan"].iloc[0]
(dtype('int64'), 'pro')
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from loopml.errors import InvalidInput
from loopml.models.signature import Schema, Signature, is_dataframe

ENVELOPE_FIELD = "data"
TENSOR_FIELD = "inputs"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def payloads_to_input(signature: Signature | None, payloads: Sequence[dict[str, Any]]) -> Any:
    """The DataFrame (or array, for a tensor model) that ``payloads`` describe, typed per the signature.

    Raises ``InvalidInput`` naming the field when a message lacks a column or a value
    does not convert to the column's type. Fields the model does not take are ignored
    (messages often carry keys and metadata alongside the features).
    """
    schema = signature.inputs if signature else None
    rows = [_unwrap(schema, p) for p in payloads]
    if schema is None:
        return _untyped_frame(rows)
    if schema.kind == "tensor":
        return _tensor(schema, rows)
    return _columns(schema, rows)


def _unwrap(schema: Schema | None, payload: dict[str, Any]) -> dict[str, Any]:
    names = {c.name for c in schema.columns} if schema is not None else set()
    if set(payload) != {ENVELOPE_FIELD} or ENVELOPE_FIELD in names:
        return payload
    value = payload[ENVELOPE_FIELD]
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInput(
                f"field {ENVELOPE_FIELD!r} is not valid JSON; send the row as a JSON object",
                details={"field": ENVELOPE_FIELD},
            ) from None
    if isinstance(value, list):
        return {TENSOR_FIELD: value}
    if not isinstance(value, dict):
        raise InvalidInput(
            f"field {ENVELOPE_FIELD!r} must hold a JSON object (one row); got {type(value).__name__}",
            details={"field": ENVELOPE_FIELD},
        )
    return value


def _columns(schema: Schema, rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    names = [c.name for c in schema.columns]
    for row in rows:
        missing = [n for n in names if n not in row]
        if missing:
            raise InvalidInput(
                f"message has no field(s) {missing}; the model takes the fields {names}",
                details={"field": missing[0], "expected": names},
            )
    # Columns are converted as plain lists, then framed once: cheaper than per-column Series work.
    return pd.DataFrame(
        {c.name: _convert([row[c.name] for row in rows], c.name, c.dtype) for c in schema.columns}
    )


def _convert(values: list[Any], name: str, dtype: str) -> Any:
    import numpy as np
    import pandas as pd

    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return values  # pandas extension dtypes (category, string): the model conforms them
    try:
        if kind == "b":
            return np.array([_to_bool(v) for v in values], dtype=bool)
        if kind in "iuf":
            return _numbers(values, dtype, kind)
        if kind == "M":
            return pd.to_datetime(values)
    except (ValueError, TypeError, OverflowError):
        expected = {"b": "a boolean", "M": "a date-time", "f": "a number"}.get(kind, "a whole number")
        raise InvalidInput(
            f"field {name!r} must be {expected} ({dtype}); convert it before sending",
            details={"field": name, "expected_type": dtype},
        ) from None
    return values


def _numbers(values: list[Any], dtype: str, kind: str) -> Any:
    """``values`` (numbers or decimal text) as an array of ``dtype``; ValueError if one is not."""
    import numpy as np
    import pandas as pd

    arr = np.asarray(values)
    if arr.dtype.kind in "iub" or (arr.dtype.kind == "U" and kind in "iu"):
        try:
            return arr.astype(dtype)  # integers, or text like "12": exact, no detour through floats
        except (ValueError, OverflowError):
            pass
    if arr.dtype.kind in "Uf":
        floats = arr.astype("float64")
    else:  # mixed or odd values (None, Decimal, padded text): pandas' parser decides
        floats = pd.to_numeric(pd.Series(values, dtype=object)).to_numpy(dtype="float64")
    if kind in "iu" and not (np.isfinite(floats).all() and (floats == np.round(floats)).all()):
        raise ValueError("not a whole number")  # 1.7 would silently become 1
    return floats.astype(dtype)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _tensor(schema: Schema, rows: list[dict[str, Any]]) -> Any:
    import numpy as np

    values = []
    for row in rows:
        value = row.get(TENSOR_FIELD)
        if isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, list):
            raise InvalidInput(
                f"the model takes a tensor: send field {TENSOR_FIELD!r} as a JSON list "
                f"of shape {list(schema.shape[1:])}",
                details={"field": TENSOR_FIELD, "expected_shape": list(schema.shape)},
            )
        values.append(value)
    try:
        return np.asarray(values, dtype=schema.dtype or None)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"field {TENSOR_FIELD!r} must be a list of shape {list(schema.shape[1:])} of {schema.dtype}",
            details={"field": TENSOR_FIELD, "expected_type": schema.dtype},
        ) from None


def _untyped_frame(rows: list[dict[str, Any]]) -> Any:
    """Without a signature: a column becomes numeric when every value in it parses as a number."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for name in frame.columns:
        with contextlib.suppress(ValueError, TypeError):
            frame[name] = pd.to_numeric(frame[name])
    return frame


def split_outputs(result: Any, count: int) -> list[Any]:
    """One JSON-ready prediction per input row: a number, a list (one row of an array) or an object.

    >>> import numpy as np
    >>> split_outputs(np.array([[0.2, 0.8], [0.9, 0.1]]), 2)
    [[0.2, 0.8], [0.9, 0.1]]
    """
    import numpy as np

    if is_dataframe(result):
        # to_json turns NumPy scalars, NaN and timestamps into JSON the way pandas readers expect.
        rows: list[Any] = json.loads(result.to_json(orient="records", date_format="iso"))
    elif type(result).__module__.startswith("pandas"):  # a Series
        rows = json.loads(result.to_json(orient="values", date_format="iso"))
    else:
        rows = np.asarray(result).tolist()
    if len(rows) != count:
        raise InvalidInput(
            f"the model returned {len(rows)} predictions for {count} messages; "
            "a streamed model must return one prediction per input row",
            details={"field": "prediction"},
        )
    return rows
