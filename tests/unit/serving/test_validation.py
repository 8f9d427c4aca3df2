"""Signature validation: each failure is a 400 naming the field and the expected type/shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInput
from loopml.models.signature import Column, Schema, Signature
from loopml.serving.validation import InputSpec

TABLE = InputSpec(
    Signature(
        Schema("columns", (Column("age", "int64"), Column("income", "float64"), Column("plan", "object")))
    )
)
TENSOR = InputSpec(Signature(Schema("tensor", dtype="float32", shape=(-1, 3))))


def _error(fn: object, *args: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


def test_records_become_a_frame_in_signature_order_and_types() -> None:
    frame = TABLE.from_records([{"plan": "pro", "income": 3, "age": 41}])
    assert list(frame.columns) == ["age", "income", "plan"]
    assert frame["income"].dtype == np.float64 and frame["age"].dtype == np.int64


def test_missing_column_names_it_and_its_type() -> None:
    err = _error(TABLE.from_records, [{"age": 1, "plan": "a"}])
    assert err.details == {"field": "income", "expected": "float64"}


def test_extra_column_is_named() -> None:
    err = _error(TABLE.from_split, ["age", "income", "plan", "ssn"], [[1, 2.0, "a", "123-45"]])
    assert err.details["field"] == "ssn"
    assert "123-45" not in err.message


def test_wrong_type_names_field_and_expected_without_the_value() -> None:
    err = _error(TABLE.from_split, ["age", "income", "plan"], [["secret-value", 2.0, "a"]])
    assert err.details == {"field": "age", "expected": "int64"}
    assert "secret-value" not in err.message


def test_float_for_int_column_is_refused() -> None:
    assert (
        _error(TABLE.from_columns, {"age": [1.5], "income": [1.0], "plan": ["a"]}).details["field"] == "age"
    )


def test_ragged_columns_are_refused() -> None:
    err = _error(TABLE.from_columns, {"age": [1, 2], "income": [1.0], "plan": ["a", "b"]})
    assert err.details["field"] == "input"


def test_tensor_shape_and_dtype() -> None:
    assert TENSOR.from_tensor([[1, 2, 3]]).dtype == np.float32
    err = _error(TENSOR.from_tensor, [[1.0, 2.0]])
    assert err.details == {"field": "input", "expected": [-1, 3]}
    assert _error(TENSOR.from_tensor, [["a", "b", "c"]]).details == {"field": "input", "expected": "float32"}


def test_numeric_table_accepts_a_matrix_of_rows() -> None:
    spec = InputSpec(Signature(Schema("columns", (Column("a", "float64"), Column("b", "float64")))))
    frame = spec.from_tensor(np.ones((4, 2)))
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["a", "b"]
    assert _error(spec.from_tensor, np.ones((4, 3))).details["expected"] == [-1, 2]


def test_no_signature_passes_input_through() -> None:
    spec = InputSpec(None)
    assert spec.from_tensor([[1, 2]]).shape == (1, 2)
    assert list(spec.from_records([{"x": 1}]).columns) == ["x"]
