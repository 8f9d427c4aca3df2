"""Request validation against a model's signature, before predict.

An :class:`InputSpec` is built once per loaded model version from its signature, so each
request costs a few dtype and shape comparisons. Every failure is an ``InvalidInput``
(HTTP 400) whose message names the field and the expected type or shape, and whose
``details`` are ``{"field": ..., "expected": ...}``; values from the request are never
echoed back (they may be personal data, and they may be huge).

>>> import numpy as np
>>> from loopml.models.signature import Schema, Signature, Column
>>> spec = InputSpec(Signature(Schema("columns", (Column("age", "int64"), Column("plan", "object")))))
>>> spec.from_records([{"age": 41, "plan": "pro"}]).dtypes["age"]
dtype('int64')
>>> spec.from_records([{"age": "old", "plan": "pro"}])
Traceback (most recent call last):
loopml.errors.InvalidInput: column 'age' expects int64 values, got strings
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.errors import InvalidInput
from loopml.models.signature import Signature, is_dataframe

# Open Inference Protocol datatypes <-> numpy. BYTES holds strings and bytes (object arrays).
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_V2: dict[str, str] = {str(dt): name for name, dt in V2_TO_NUMPY.items() if name != "BYTES"}
_KIND_WORDS = {"U": "strings", "S": "bytes", "O": "mixed or null values", "b": "booleans", "f": "floats"}
_KIND_WORDS.update({"i": "integers", "u": "integers", "M": "datetimes", "m": "durations"})


def v2_datatype(dtype: np.dtype[Any] | None) -> str:
    """The v2 datatype of a numpy dtype (strings, objects and datetimes travel as BYTES)."""
    return "BYTES" if dtype is None else NUMPY_TO_V2.get(str(dtype), "BYTES")


def _numpy_dtype(text: str) -> np.dtype[Any] | None:
    try:
        dtype = np.dtype(text)
    except TypeError:
        return None  # pandas extension dtypes (category, string): accepted as given
    return dtype if dtype.kind in "biuf" else None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column, or the tensor: ``dtype`` None accepts any values (strings, objects)."""

    name: str
    dtype: np.dtype[Any] | None
    shape: tuple[int, ...]  # full shape, -1 for the batch axis (columns: (-1,))

    @property
    def expected(self) -> str:
        return "any" if self.dtype is None else str(self.dtype)

    def coerce(self, values: Any, what: str) -> np.ndarray[Any, Any]:
        """``values`` as an array of this field's dtype; ``InvalidInput`` names the field."""
        try:
            arr = values if isinstance(values, np.ndarray) else np.asarray(values)
        except (ValueError, TypeError):
            raise self._error(what, "ragged or nested values", "shape") from None
        want = self.dtype
        if want is None:
            return arr
        got = arr.dtype.kind
        if got == want.kind or (want.kind == "f" and got in "biu") or (want.kind in "iu" and got in "iu"):
            return arr if arr.dtype == want else arr.astype(want)
        if got == "O" and arr.size == 0:
            return arr.astype(want)
        raise self._error(what, _KIND_WORDS.get(got, str(arr.dtype)))

    def _error(self, what: str, got: str, aspect: str = "type") -> InvalidInput:
        expected = self.expected if aspect == "type" else list(self.shape)
        return InvalidInput(
            f"{what} {self.name!r} expects {self.expected} values, got {got}"
            if aspect == "type"
            else f"{what} {self.name!r} has {got}; expected shape {list(self.shape)}",
            details={"field": self.name, "expected": expected},
        )


class InputSpec:
    """What a model version accepts, precomputed from its signature.

    ``kind`` is ``columns`` (a DataFrame), ``tensor`` (one array) or ``any`` (no signature:
    inputs are passed on unchecked).
    """

    def __init__(self, signature: Signature | None) -> None:
        schema = signature.inputs if signature is not None else None
        if schema is None:
            self.kind = "any"
            self.fields: tuple[FieldSpec, ...] = ()
        elif schema.kind == "columns":
            self.kind = "columns"
            self.fields = tuple(FieldSpec(c.name, _numpy_dtype(c.dtype), (-1,)) for c in schema.columns)
        else:
            self.kind = "tensor"
            self.fields = (FieldSpec("input", _numpy_dtype(schema.dtype), tuple(schema.shape)),)
        self.names = [f.name for f in self.fields]
        self._by_name = {f.name: f for f in self.fields}
        dtypes = {f.dtype for f in self.fields}
        # All columns one numeric dtype: a 2-D array of the row values is a valid input too.
        self.matrix_dtype = next(iter(dtypes)) if len(dtypes) == 1 and None not in dtypes else None

    # ---- tables (MLflow dataframe formats, CSV, Parquet, v2 tensor per column) -----------------
    def from_columns(self, columns: Mapping[str, Any]) -> Any:
        """A DataFrame from ``{column: values}`` after the missing/extra/type checks."""
        import pandas as pd

        if self.kind == "tensor":
            if len(columns) == 1:
                return self.from_tensor(next(iter(columns.values())))
            raise InvalidInput(
                f"the model takes one tensor {self._shape_text()}, got {len(columns)} named columns",
                details={"field": "input", "expected": self.fields[0].expected},
            )
        if self.kind == "any":
            return pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
        self._check_names(list(columns))
        arrays = {f.name: f.coerce(columns[f.name], "column") for f in self.fields}
        lengths = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
        if len(lengths) > 1 or any(a.ndim != 1 for a in arrays.values()):
            raise InvalidInput(
                "every column must be a flat list of the same length (one value per row)",
                details={"field": "input", "expected": "one value per row in every column"},
            )
        return pd.DataFrame(arrays, columns=self.names, copy=False)

    def from_records(self, records: Any) -> Any:
        """``[{column: value}, ...]`` (MLflow's ``dataframe_records``)."""
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInput(
                "dataframe_records must be a list of objects {column: value}",
                details={"field": "dataframe_records", "expected": "list of objects"},
            )
        names = self.names if self.kind == "columns" else _union_keys(records)
        if self.kind == "columns":
            given = _union_keys(records)
            self._check_names(given)
            missing_in_row = [n for n in names for r in records[:1000] if n not in r]
            if missing_in_row:
                raise _missing([missing_in_row[0]], self._by_name)
        return self.from_columns({n: [r.get(n) for r in records] for n in names})

    def from_split(self, columns: Any, data: Any) -> Any:
        """``{"columns": [...], "data": [[...], ...]}`` (MLflow's ``dataframe_split``)."""
        if not isinstance(data, list):
            raise InvalidInput(
                "dataframe_split.data must be a list of rows",
                details={"field": "dataframe_split.data", "expected": "list of rows"},
            )
        if columns is None:
            columns = self.names
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput(
                "dataframe_split.columns must be a list of column names",
                details={"field": "dataframe_split.columns", "expected": "list of strings"},
            )
        if self.kind == "columns":
            self._check_names(columns)
        width = len(columns)
        if any(not isinstance(row, list) or len(row) != width for row in data):
            raise InvalidInput(
                f"every row of dataframe_split.data must have {width} values (one per column)",
                details={"field": "dataframe_split.data", "expected": f"rows of {width} values"},
            )
        if self.matrix_dtype is not None and columns == self.names and data:
            matrix = FieldSpec("input", self.matrix_dtype, (-1, width)).coerce(data, "input")
            return self._frame_from_matrix(matrix)
        return self.from_columns({c: [row[i] for row in data] for i, c in enumerate(columns)})

    def from_frame(self, frame: Any) -> Any:
        """A DataFrame parsed from CSV or Parquet."""
        if self.kind == "tensor":
            return self.from_tensor(frame.to_numpy())
        if self.kind == "any":
            return frame
        return self.from_columns({str(c): frame[c].to_numpy() for c in frame.columns})

    # ---- tensors (MLflow instances/inputs, v2) -------------------------------------------------
    def from_tensor(self, values: Any, name: str | None = None) -> Any:
        """One array: for a tensor model, checked against its dtype and shape; for a table model
        whose columns share one numeric dtype, a 2-D array of rows is accepted too."""
        if self.kind == "any":
            return values if isinstance(values, np.ndarray) else np.asarray(values)
        if self.kind == "columns":
            if self.matrix_dtype is None:
                raise InvalidInput(
                    f"the model takes named columns {self.names}; send them by name "
                    "(dataframe_split, dataframe_records, or one v2 input per column)",
                    details={"field": name or "input", "expected": "named columns"},
                )
            spec = FieldSpec(name or "input", self.matrix_dtype, (-1, len(self.names)))
            return self._frame_from_matrix(self._shaped(spec, spec.coerce(values, "input")))
        field = self.fields[0]
        spec = field if name is None or name == field.name else FieldSpec(name, field.dtype, field.shape)
        return self._shaped(spec, spec.coerce(values, "input"))

    def _frame_from_matrix(self, matrix: np.ndarray[Any, Any]) -> Any:
        import pandas as pd

        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            raise InvalidInput(
                f"input has shape {list(matrix.shape)}; expected [-1, {len(self.names)}] "
                f"(one value per column {self.names})",
                details={"field": "input", "expected": [-1, len(self.names)]},
            )
        return pd.DataFrame(matrix, columns=self.names, copy=False)

    @staticmethod
    def _shaped(spec: FieldSpec, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        want = spec.shape
        if len(want) != arr.ndim or any(w not in (-1, g) for w, g in zip(want, arr.shape, strict=True)):
            raise InvalidInput(
                f"input {spec.name!r} has shape {list(arr.shape)}; expected {list(want)} "
                "(-1 is any number of rows)",
                details={"field": spec.name, "expected": list(want)},
            )
        return arr

    def _shape_text(self) -> str:
        f = self.fields[0]
        return f"of {f.expected} with shape {list(f.shape)}"

    def _check_names(self, given: Sequence[str]) -> None:
        missing = [n for n in self.names if n not in given]
        if missing:
            raise _missing(missing, self._by_name)
        extra = [g for g in given if g not in self._by_name]
        if extra:
            raise InvalidInput(
                f"unexpected column(s) {extra[:10]}; the model takes exactly {self.names}",
                details={"field": extra[0], "expected": self.names},
            )


def _missing(missing: list[str], by_name: Mapping[str, FieldSpec]) -> InvalidInput:
    first = by_name[missing[0]]
    return InvalidInput(
        f"missing column(s) {missing[:10]}; column {first.name!r} expects {first.expected} values",
        details={"field": first.name, "expected": first.expected},
    )


def _union_keys(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def output_columns(result: Any) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """A prediction as named arrays: a DataFrame's columns, else one array ``predictions``."""
    if is_dataframe(result):
        return [(str(c), result[c].to_numpy()) for c in result.columns]
    if isinstance(result, Mapping):
        return [(str(k), np.asarray(v)) for k, v in result.items()]
    return [("predictions", result if isinstance(result, np.ndarray) else np.asarray(result))]
