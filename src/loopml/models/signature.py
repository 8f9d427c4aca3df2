"""Model signatures: the input and output schema, inferred from an example.

A schema is either ``columns`` (a DataFrame: names and dtypes, in order) or a
``tensor`` (an array: dtype and shape, ``-1`` for the batch axis). Loaded models
check their input against it, so a missing column fails with a message naming
it instead of deep inside the model.

>>> import numpy as np
>>> infer_schema(np.zeros((4, 3), dtype="float32")).to_dict()
{'kind': 'tensor', 'dtype': 'float32', 'shape': [-1, 3]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopml.errors import InvalidInput

# numpy dtype kinds that accept one another (an int column may feed a float model).
_NUMERIC_KINDS = frozenset("biuf")


def is_dataframe(obj: object) -> bool:
    """A pandas DataFrame, detected without importing pandas."""
    return type(obj).__module__.startswith("pandas") and type(obj).__name__ == "DataFrame"


def _is_polars(obj: object) -> bool:
    return type(obj).__module__.startswith("polars") and type(obj).__name__ == "DataFrame"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class Schema:
    """``kind`` is ``columns`` (then ``columns`` is set) or ``tensor`` (``dtype``, ``shape``)."""

    kind: str
    columns: tuple[Column, ...] = ()
    dtype: str = ""
    shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "columns":
            return {"kind": "columns", "columns": [{"name": c.name, "dtype": c.dtype} for c in self.columns]}
        return {"kind": "tensor", "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        if data.get("kind") == "columns":
            return cls("columns", tuple(Column(str(c["name"]), str(c["dtype"])) for c in data["columns"]))
        return cls("tensor", dtype=str(data.get("dtype", "")), shape=tuple(int(s) for s in data["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes and returns.

    >>> import numpy as np
    >>> sig = Signature.infer(np.ones((2, 2)), np.array([0, 1]))
    >>> sig.outputs.shape if sig.outputs else None
    (-1,)
    """

    inputs: Schema
    outputs: Schema | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs.to_dict(), "outputs": self.outputs.to_dict() if self.outputs else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        outputs = data.get("outputs")
        return cls(Schema.from_dict(data["inputs"]), Schema.from_dict(outputs) if outputs else None)

    @classmethod
    def infer(cls, example: Any, output: Any = None) -> Signature:
        return cls(infer_schema(example), None if output is None else infer_schema(output))


def infer_schema(data: Any) -> Schema:
    """The schema of a DataFrame (pandas or polars), a Series, an array or a list."""
    import numpy as np

    if _is_polars(data):
        data = data.to_pandas()
    if is_dataframe(data):
        return Schema("columns", tuple(Column(str(n), str(t)) for n, t in data.dtypes.items()))
    arr = np.asarray(data)
    return Schema("tensor", dtype=str(arr.dtype), shape=(-1, *arr.shape[1:]))


def conform(schema: Schema, data: Any) -> Any:
    """``data`` checked against ``schema`` (columns put in the signature's order).

    An array given to a model that takes columns becomes a DataFrame with the
    signature's column names, so both forms predict the same.
    """
    if _is_polars(data):
        data = data.to_pandas()
    if schema.kind == "columns":
        return _conform_columns(schema, data)
    return _conform_tensor(schema, data)


def _conform_columns(schema: Schema, data: Any) -> Any:
    import numpy as np

    names = [c.name for c in schema.columns]
    if not is_dataframe(data):
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise InvalidInput(
                f"the model takes a table of {len(names)} columns ({', '.join(names)}); got an array "
                f"of shape {arr.shape}: pass a DataFrame with these columns",
                details={"field": "input", "expected_columns": names},
            )
        import pandas as pd

        return pd.DataFrame(arr, columns=names).astype({c.name: c.dtype for c in schema.columns})
    given = [str(c) for c in data.columns]
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        parts = [
            f"missing column(s) {missing}" if missing else "",
            f"unexpected column(s) {extra}" if extra else "",
        ]
        raise InvalidInput(
            f"input does not match the model's signature: {'; '.join(p for p in parts if p)}; "
            f"pass exactly the columns {names}",
            details={"field": "input", "missing": missing, "extra": extra},
        )
    for col in schema.columns:
        got = data[col.name].dtype
        if _kind(col.dtype) in _NUMERIC_KINDS and getattr(got, "kind", "O") not in _NUMERIC_KINDS:
            raise InvalidInput(
                f"column {col.name!r} is {got} but the model expects numbers ({col.dtype}); "
                "convert it before predicting",
                details={"field": "input", "column": col.name},
            )
    return data[names] if given != names else data


def _conform_tensor(schema: Schema, data: Any) -> Any:
    import numpy as np

    # A DataFrame is passed on as it is: the model treats it exactly as the original did.
    frame = is_dataframe(data)
    arr = data if frame else np.asarray(data)
    expected = schema.shape[1:]
    if tuple(arr.shape[1:]) != tuple(expected) and not any(s == -1 for s in expected):
        raise InvalidInput(
            f"input has shape {arr.shape} but the model takes (n, {', '.join(map(str, expected))}); "
            "reshape it to match the signature",
            details={"field": "input", "expected_shape": list(schema.shape)},
        )
    kinds = {getattr(t, "kind", "O") for t in data.dtypes} if frame else {arr.dtype.kind}
    if _kind(schema.dtype) in _NUMERIC_KINDS and not kinds <= _NUMERIC_KINDS:
        raise InvalidInput(
            f"input is not numeric but the model expects numbers ({schema.dtype}); convert it first",
            details={"field": "input"},
        )
    return arr


def _kind(dtype: str) -> str:
    import numpy as np

    try:
        return str(np.dtype(dtype).kind)
    except TypeError:
        return "O"  # pandas extension dtypes (category, string) are not numeric here
