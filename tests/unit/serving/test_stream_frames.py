"""Stream payloads become typed model input; model output becomes one prediction per message."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInput
from loopml.models.signature import Column, Schema, Signature
from loopml.serving.stream.frames import payloads_to_input, split_outputs

SIG = Signature(
    Schema("columns", (Column("tenure", "int64"), Column("charges", "float64"), Column("plan", "object"))),
    Schema("tensor", dtype="int64", shape=(-1,)),
)


def test_string_fields_are_typed_by_the_signature_and_extra_fields_ignored() -> None:
    frame = payloads_to_input(SIG, [{"tenure": "12", "charges": "70.5", "plan": "pro", "customer": "c-1"}])
    assert list(frame.columns) == ["tenure", "charges", "plan"]
    assert frame.dtypes.tolist()[:2] == [np.dtype("int64"), np.dtype("float64")]
    assert frame.iloc[0].tolist() == [12, 70.5, "pro"]


def test_whole_row_as_json_in_a_data_field() -> None:
    frame = payloads_to_input(SIG, [{"data": '{"tenure": 3, "charges": 20.0, "plan": "basic"}'}])
    assert frame.iloc[0].tolist() == [3, 20.0, "basic"]


def test_missing_field_is_named_with_the_expected_fields() -> None:
    with pytest.raises(InvalidInput, match=r"no field\(s\) \['charges'\]") as info:
        payloads_to_input(SIG, [{"tenure": "1", "plan": "pro"}])
    assert info.value.details["field"] == "charges"


def test_wrong_type_names_the_field_and_the_type_without_the_value() -> None:
    with pytest.raises(InvalidInput) as info:
        payloads_to_input(SIG, [{"tenure": "twelve-ish", "charges": "1", "plan": "pro"}])
    assert info.value.details == {"field": "tenure", "expected_type": "int64"}
    assert "twelve-ish" not in info.value.message


@pytest.mark.parametrize(
    ("tenure", "charges", "ok"),
    [
        (12, 70, True),  # JSON numbers (a Kafka value)
        ("12", "7e1", True),
        ("12.0", " 70 ", True),
        ("12.5", "70", False),  # a fraction is not an int64
        ("12", "seventy", False),
        ("", "70", False),
    ],
)
def test_numbers_from_text_or_json(tenure: Any, charges: Any, ok: bool) -> None:
    payload = {"tenure": tenure, "charges": charges, "plan": "pro"}
    if ok:
        assert payloads_to_input(SIG, [payload]).iloc[0].tolist()[:2] == [12, 70.0]
    else:
        with pytest.raises(InvalidInput, match="must be a"):
            payloads_to_input(SIG, [payload])


def test_invalid_json_envelope_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        payloads_to_input(SIG, [{"data": "{oops"}])


def test_tensor_models_read_the_inputs_list() -> None:
    sig = Signature(Schema("tensor", dtype="float32", shape=(-1, 3)))
    arr = payloads_to_input(sig, [{"inputs": "[1, 2, 3]"}, {"data": "[4, 5, 6]"}])
    assert arr.dtype == np.float32
    assert arr.tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InvalidInput, match="'inputs'"):
        payloads_to_input(sig, [{"x": "1"}])


def test_boolean_fields() -> None:
    sig = Signature(Schema("columns", (Column("active", "bool"),)))
    assert payloads_to_input(sig, [{"active": "true"}, {"active": "0"}])["active"].tolist() == [True, False]
    with pytest.raises(InvalidInput, match="boolean"):
        payloads_to_input(sig, [{"active": "maybe"}])


def test_without_a_signature_numeric_looking_columns_become_numbers() -> None:
    frame = payloads_to_input(None, [{"a": "1", "b": "x"}, {"a": "2.5", "b": "y"}])
    assert frame["a"].tolist() == [1.0, 2.5]
    assert frame["b"].tolist() == ["x", "y"]


def test_outputs_split_per_row() -> None:
    assert split_outputs(np.array([1, 0]), 2) == [1, 0]
    assert split_outputs(np.array([[0.25, 0.75]]), 1) == [[0.25, 0.75]]
    assert split_outputs(pd.DataFrame({"p": [0.5], "label": ["a"]}), 1) == [{"p": 0.5, "label": "a"}]
    assert split_outputs(pd.Series([np.int64(3)]), 1) == [3]


def test_a_model_returning_the_wrong_number_of_rows_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="returned 1 predictions for 2 messages"):
        split_outputs(np.array([1]), 2)
